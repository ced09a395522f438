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
# KEY=value anywhere in a line: command lines, URLs' query strings, log and error messages.
INLINE_PAIR = re.compile(r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&]+)")
PRIVATE_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL)


def is_secret_key(name):
    return bool(SECRET_KEY.search(name))


def _redact_pair(match):
    if not is_secret_key(match.group("key")):
        return match.group(0)
    return "%s%s%s%s\"%s\"" % (match.group("q"), match.group("key"), match.group("q"), match.group("sep"), REDACTED)


def _redact_inline(match):
    if not is_secret_key(match.group("key")):
        return match.group(0)
    return "%s=%s" % (match.group("key"), REDACTED)


def redact_line(line):
    line = URL_CREDENTIALS.sub(lambda m: "%s%s:%s@" % (m.group("scheme"), m.group("user"), REDACTED), line)
    line = QUOTED_PAIR.sub(_redact_pair, line)
    match = ASSIGNMENT.match(line)
    if match and match.group("value").strip() and is_secret_key(match.group("key")):
        return "%s%s%s%s" % (match.group("lead"), match.group("key"), match.group("sep"), REDACTED)
    return INLINE_PAIR.sub(_redact_inline, line)


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


def redact_data(data):
    """A copy of JSON-like data with the value of every secret-looking key replaced and secret-looking text
    (KEY=value lines, URL credentials, private key blocks) redacted in every string. Key names stay."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if isinstance(key, str) and is_secret_key(key) and value not in (None, "", [], {}) \
                    and not isinstance(value, bool):
                out[key] = REDACTED
            else:
                out[key] = redact_data(value)
        return out
    if isinstance(data, (list, tuple)):
        return [redact_data(item) for item in data]
    if isinstance(data, str):
        return redact_text(data)
    return data


# Values too short or too common to scrub by value: replacing them everywhere would mangle text, not protect it.
_NOT_SECRETS = frozenset(("true", "false", "none", "null", "yes", "no", "on", "off", REDACTED))
MIN_SCRUB_LENGTH = 4


def secret_values(data, inherited=False):
    """Every string under a secret-looking key of JSON-like data (nested values included), for scrubbing by value."""
    found = set()
    stack = [(data, inherited)]
    while stack:
        item, secret = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                stack.append((value, secret or (isinstance(key, str) and is_secret_key(key))))
        elif isinstance(item, (list, tuple, set)):
            stack.extend((value, secret) for value in item)
        elif secret and isinstance(item, (str, int, float)) and not isinstance(item, bool):
            text = str(item)
            if len(text) >= MIN_SCRUB_LENGTH and text.lower() not in _NOT_SECRETS:
                found.add(text)
    return found


class Scrubber:
    """Replaces known secret values wherever they occur in strings, longest first (so a secret that contains
    another is replaced whole)."""

    def __init__(self, values=()):
        self.values = set()
        self.add(values)

    def add(self, values):
        for value in values:
            text = str(value)
            if len(text) >= MIN_SCRUB_LENGTH and text.lower() not in _NOT_SECRETS:
                self.values.add(text)
        self._pattern = (re.compile("|".join(re.escape(v) for v in sorted(self.values, key=len, reverse=True)))
                         if self.values else None)

    def text(self, text):
        if self._pattern is None or not isinstance(text, str):
            return text
        return self._pattern.sub(REDACTED, text)

    def data(self, data):
        """A copy of JSON-like data with known secret values scrubbed from every string (keys included)."""
        if isinstance(data, dict):
            return {self.text(key): self.data(value) for key, value in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.data(item) for item in data]
        return self.text(data)


def sanitize(data, values=()):
    """What may leave a run (reports, notifications, the journal): secret keys and text redacted, then every
    known secret value scrubbed."""
    return Scrubber(values).data(redact_data(data))
