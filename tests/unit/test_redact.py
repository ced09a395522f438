"""Unit tests for module_utils/_redact.py: secrets never reach diff or plan text."""

import json

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import (
    REDACTED, is_secret_key, printable_text, redact_line, redact_text)


@pytest.mark.parametrize("line, secret, kept", [
    ("DB_PASSWORD=hunter2", "hunter2", "DB_PASSWORD="),
    ("API_TOKEN = abc123", "abc123", "API_TOKEN"),
    ("export AWS_SECRET_ACCESS_KEY=\"wJalrXUtnFEMI\"", "wJalrXUtnFEMI", "export AWS_SECRET_ACCESS_KEY="),
    ("export GITHUB_TOKEN='ghp_0123456789'", "ghp_0123456789", "export GITHUB_TOKEN="),
    ("password: s3cr3t-yaml", "s3cr3t-yaml", "password: "),
    ("    db_pass: nested-yaml-value", "nested-yaml-value", "    db_pass: "),
    ("  \"api_token\": \"tok-json-1\",", "tok-json-1", "  \"api_token\": "),
    ("'client_secret': 'quoted'", "quoted", "'client_secret'"),
    ("stripe.api_key=sk_live_xyz", "sk_live_xyz", "stripe.api_key="),
    ("SESSION_COOKIE_SALT=pepper99", "pepper99", "SESSION_COOKIE_SALT="),
    ("private_key_passphrase: correct horse", "correct horse", "private_key_passphrase: "),
    ("SENTRY_DSN=https://abc@sentry.example/1", "https://abc@sentry.example/1", "SENTRY_DSN="),
])
def test_assignments_with_secret_keys_are_redacted(line, secret, kept):
    out = redact_text(line + "\n")
    assert secret not in out
    assert out.startswith(kept)
    assert REDACTED in out
    assert out.endswith("\n")
    assert redact_line(line) == out[:-1]


@pytest.mark.parametrize("line", [
    "HOST=db.internal",
    "port: 5432",
    "  \"workers\": 4,",
    "export LOG_LEVEL=debug",
    "MONKEY=banana",
    "KEYBOARD_LAYOUT=us",
    "timeout: 30s",
    "# password is set elsewhere",
    "listen 443 ssl;",
    "PASSWORD=",
    "-----BEGIN CERTIFICATE-----",
])
def test_non_secrets_are_untouched(line):
    assert redact_text(line + "\n") == line + "\n"
    assert redact_text(line) == line


def test_url_credentials_are_redacted():
    text = "DATABASE_URL_PRIMARY=postgres://app:pa55w0rd@db:5432/app\nupstream amqp://guest:guestpw@mq/vhost;\n"
    out = redact_text(text)
    assert "pa55w0rd" not in out and "guestpw" not in out
    assert "amqp://guest:%s@mq/vhost;" % REDACTED in out
    assert "postgres://app:%s@db:5432/app" % REDACTED in out
    # A URL without credentials is left alone.
    assert redact_text("url: https://example.com:8443/path\n") == "url: https://example.com:8443/path\n"


@pytest.mark.parametrize("kind", ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY",
                                  "ENCRYPTED PRIVATE KEY"])
def test_pem_private_key_blocks_are_redacted(kind):
    body = "MIIEowIBAAKCAQEAzZ9s\nQWxhZGRpbjpvcGVuIHNlc2FtZQ==\nendofkeymaterial"
    text = "before: 1\n-----BEGIN %s-----\n%s\n-----END %s-----\nafter: 2\n" % (kind, body, kind)
    out = redact_text(text)
    for part in body.splitlines():
        assert part not in out
    assert out.startswith("before: 1\n")
    assert out.endswith("after: 2\n")
    assert REDACTED in out


def test_truncated_pem_block_is_redacted_to_the_end():
    out = redact_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nmorekeybytes")
    assert "MIIEvQIBADANBgkq" not in out and "morekeybytes" not in out


def test_certificate_blocks_are_kept():
    cert = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----\n"
    assert redact_text(cert) == cert


def test_only_secret_lines_change_in_a_mixed_file():
    text = "HOST=db\nDB_PASSWORD=topsecret\nPORT=5432\n"
    assert redact_text(text) == "HOST=db\nDB_PASSWORD=%s\nPORT=5432\n" % REDACTED


def test_secret_in_single_line_json_is_redacted():
    """Compact JSON (one line, several keys) is a common config format: its secrets must not show."""
    text = json.dumps({"user": "app", "api_token": "tok-compact-9f8e7d", "port": 5432}) + "\n"
    out = redact_text(text)
    assert "tok-compact-9f8e7d" not in out


@pytest.mark.parametrize("separator", ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_value_with_unicode_line_boundary_is_redacted_whole(separator):
    """A config file's lines end at \\n; a value holding another line boundary character is still one value."""
    value = "abc" + separator + "tail-of-the-secret"
    out = redact_text("DB_PASSWORD=%s\nHOST=db\n" % value)
    assert "tail-of-the-secret" not in out
    assert out.endswith("HOST=db\n")


def test_is_secret_key():
    for name in ("password", "DB_PASSWD", "api_token", "SECRET_KEY_BASE", "API_KEY", "key", "jwt.key", "APIKEY",
                 "AUTH_HEADER", "credentials_file", "private", "sentry_dsn", "cookie_salt"):
        assert is_secret_key(name), name
    for name in ("host", "port", "MONKEY", "KEYBOARD", "workers", "path", "user"):
        assert not is_secret_key(name), name


def test_printable_text():
    assert printable_text(None) == ""
    assert printable_text(b"a=1\n") == "a=1\n"
    assert printable_text(b"\x00\x01") is None
    assert printable_text(b"\xff\xfe") is None
    assert printable_text(b"x" * 11, limit=10) is None


# ---------------------------------------------------------------------------------------- property

SECRET_WORDS = ["password", "passwd", "passphrase", "secret", "token", "key", "apikey", "private_key",
                "credential", "auth", "salt", "dsn", "cookie", "session"]
KEY_NAMES = st.builds(
    lambda prefix, word, suffix, upper: (prefix + word + suffix).upper() if upper else prefix + word + suffix,
    st.sampled_from(["", "db_", "app.", "aws-", "MY_SERVICE_", "x_"]),
    st.sampled_from(SECRET_WORDS),
    st.sampled_from(["", "_1", "_file_content", ".value", "-primary"]),
    st.booleans())
# Any text on one line: a file's lines end at "\n" (only that character is excluded).
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                 min_size=4, max_size=40)
FORMATS = {
    "env": lambda k, v: "%s=%s" % (k, v),
    "env_spaced": lambda k, v: "%s = %s" % (k, v),
    "export": lambda k, v: 'export %s="%s"' % (k, v),
    "yaml": lambda k, v: "  %s: %s" % (k, v),
    "json": lambda k, v: '    "%s": %s,' % (k, v),
}


@settings(max_examples=300, deadline=None)
@given(key=KEY_NAMES, value=VALUES, fmt=st.sampled_from(sorted(FORMATS)))
@example(key="DB_PASSWORD", value="hunter2!", fmt="env")
@example(key="api_token", value="p@ss:word/x", fmt="yaml")
def test_secret_values_never_appear_in_redacted_text(key, value, fmt):
    assert is_secret_key(key)
    assume(value.strip())
    shown = value
    if fmt == "json":
        shown = json.dumps(value)[1:-1]
        line = FORMATS[fmt](key, json.dumps(value))
    else:
        line = FORMATS[fmt](key, value)
    # What may legitimately remain: everything around the value, and the mask.
    # The neighbouring lines stay as they are, so a value that is part of them is no leak.
    neighbours = "HOST=db.internal\nPORT=5432\n"
    skeleton = line.replace(shown if fmt == "json" else value, "") + REDACTED + neighbours
    assume(value not in skeleton and shown not in skeleton)
    text = "HOST=db.internal\n%s\nPORT=5432\n" % line
    out = redact_text(text)
    assert value not in out
    assert shown not in out
    assert out.startswith("HOST=db.internal\n") and out.endswith("PORT=5432\n")
