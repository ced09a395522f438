# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redaction of secrets in the text that diffs and plans show."""

from __future__ import annotations

import re

REDACTED = "********"

# Key names that hold secrets in .env files, ini files, YAML and the like.
SECRET_KEY = re.compile(
    r"(PASS(WORD|WD|PHRASE)?|SECRET|TOKEN|(^|[_.\-])KEY($|[_.\-])|APIKEY|PRIVATE|CREDENTIAL|AUTH|SALT|DSN|COOKIE|SESSION)",
    re.IGNORECASE)
# KEY=value, KEY: value, export KEY="value", "key": "value"
ASSIGNMENT = re.compile(r"^(?P<lead>\s*(?:export\s+)?[\"']?)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>[\"']?\s*[=:]\s*)(?P<value>.*)$")
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@", re.IGNORECASE)
# "key": "value" pairs anywhere on a line (one-line JSON, inline YAML maps).
QUOTED_PAIR = re.compile(r"(?P<q>[\"'])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P=q)(?P<sep>\s*:\s*)"
                         r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^,}\]\s]+)")
PRIVATE_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL)


def is_secret_key(name):
    return bool(SECRET_KEY.search(name))


def _redact_pair(match):
    if not is_secret_key(match.group("key")):
        return match.group(0)
    return "%s%s%s%s\"%s\"" % (match.group("q"), match.group("key"), match.group("q"), match.group("sep"), REDACTED)


def redact_line(line):
    line = URL_CREDENTIALS.sub(lambda m: "%s%s:%s@" % (m.group("scheme"), m.group("user"), REDACTED), line)
    line = QUOTED_PAIR.sub(_redact_pair, line)
    match = ASSIGNMENT.match(line)
    if match and match.group("value").strip() and is_secret_key(match.group("key")):
        return "%s%s%s%s" % (match.group("lead"), match.group("key"), match.group("sep"), REDACTED)
    return line


def redact_text(text):
    """Text with secret values replaced; key names stay so a reader sees *what* changed."""
    text = PRIVATE_BLOCK.sub("-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----" % REDACTED, text)
    # Only "\n" ends a line: splitting on \r or unicode separators would cut a value in two and leak its tail.
    return "\n".join(redact_line(line) for line in text.split("\n"))


def printable_text(data, limit=256 * 1024):
    """Bytes as diff text, or None when binary or too large to show."""
    if data is None:
        return ""
    if len(data) > limit or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
