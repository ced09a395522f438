"""Unit tests for module_utils/_redact.py: secrets never reach diff or plan text."""

import json

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import (
    CHANGED_AFTER, CHANGED_BEFORE, REDACTED, is_secret_key, key_strength, printable_text, redact_line, redact_output,
    redact_pair, redact_text, short_digest, shorten_digests)


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
                 "AUTH_HEADER", "credentials_file", "private", "sentry_dsn", "cookie_salt", "MYSQL_PWD", "PGPASS",
                 "PGPASSWORD", "REDIS_PASS", "db_pass", "requirepass", "masterauth", "dbPassword", "apiKey",
                 "X-Api-Key", "Authorization", "Proxy-Authorization", "keyStorePassword", "SSLCertificateKeyFile",
                 "$secret_key", "client_secret", "oauth_client", "PASSPHRASE", "smtp-passwd"):
        assert is_secret_key(name), name
    for name in ("host", "port", "MONKEY", "KEYBOARD", "workers", "path", "user", "PWD", "OLDPWD",
                 "PASSENGER_MAX_POOL_SIZE", "BYPASS_CACHE", "compass", "author", "AUTHORS", "proxy_pass",
                 "ProxyPassReverse", "fastcgi_pass", "keepalive_timeout", "hotkey"):
        assert not is_secret_key(name), name
    # Session and cookie names hold secrets as KEY=value, but as directives they name settings.
    assert key_strength("SESSION_ID") == 1 and key_strength("ssl_session_cache") == 1
    assert key_strength("requirepass") == 2


# ---------------------------------------------------------------------------------------- issue 13 formats


@pytest.mark.parametrize("line, secret, kept", [
    # Well-known names with PWD and PASS.
    ("MYSQL_PWD=hunter2-mysql", "hunter2-mysql", "MYSQL_PWD="),
    ("PGPASS=pg-secret-1", "pg-secret-1", "PGPASS="),
    ("REDIS_PASS=redis-secret-1", "redis-secret-1", "REDIS_PASS="),
    # URL credentials with an empty user, and with an "@" left raw in the password.
    ("REDIS_URL=redis://:redis-url-pw@cache:6379/0", "redis-url-pw", "REDIS_URL=redis://:"),
    ("cache: rediss://:tls-pw-42@cache.internal:6380", "tls-pw-42", "cache: rediss://:"),
    ("DATABASE_URL=postgres://app:p@ss-w0rd@db/app", "ss-w0rd", "DATABASE_URL=postgres://app:"),
    ("MYSQL_ADDR=app:go-dsn-pw@tcp(db:3306)/app", "go-dsn-pw", "MYSQL_ADDR=app:"),
    # netrc tokens.
    ("machine api.example.com login joe password netrc-pw-1", "netrc-pw-1", "machine api.example.com login joe"),
    ("machine h login u passwd netrc-pw-2 account acct-77", "netrc-pw-2", "machine h login u passwd"),
    ("machine h login u account acct-secret-77", "acct-secret-77", "machine h login u account"),
    # Authorization headers in any syntax, and bearer / basic tokens anywhere.
    ('proxy_set_header Authorization "Bearer nginx-tok-123";', "nginx-tok-123", 'proxy_set_header Authorization "Bearer '),
    ('RequestHeader set Authorization "Basic dXNlcjpwYXNzd29yZA=="', "dXNlcjpwYXNzd29yZA==", "RequestHeader set"),
    ("curl -H 'Authorization: Bearer curl-tok-456' https://api", "curl-tok-456", "curl -H 'Authorization: Bearer "),
    ('curl -H "X-Api-Key: curl-key-789" https://api', "curl-key-789", 'curl -H "X-Api-Key: '),
    ('{"headers": {"Authorization": "Bearer json-tok-1"}, "timeout": 5}', "json-tok-1", '{"headers": '),
    ("    Authorization: Bearer yaml-tok-2", "yaml-tok-2", "    Authorization: Bearer "),
    ("# try: curl with Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig now", "eyJhbGciOiJIUzI1NiJ9.e30.sig", "# try: curl with"),
    ("curl -u admin:curl-user-pw https://api", "curl-user-pw", "curl -u admin:"),
    # A value after a secret key on any line.
    ("set $secret_key nginx-set-value;", "nginx-set-value", "set $secret_key "),
    ("requirepass redis-requirepass", "redis-requirepass", "requirepass "),
    ("masterauth redis-masterauth", "redis-masterauth", "masterauth "),
    ("# requirepass foobared-old", "foobared-old", "# requirepass "),
    ("password ini-space-pw", "ini-space-pw", "password "),
    ("SetEnv DB_PASSWORD apache-env-pw", "apache-env-pw", "SetEnv DB_PASSWORD "),
    ("ExecStart=/usr/bin/app --password=flag-pw-1 --port 80", "flag-pw-1", "ExecStart=/usr/bin/app --password="),
    ("ExecStart=/usr/bin/app --db-password flag-pw-2 --port 80", "flag-pw-2", "ExecStart=/usr/bin/app --db-password "),
    ("0 3 * * * /usr/bin/backup --password cron-pw-3 >/dev/null", "cron-pw-3", "0 3 * * * /usr/bin/backup"),
    ("30 2 * * * root mysqldump -u root -pmysql-pw-4 app", "mysql-pw-4", "30 2 * * * root mysqldump -u root -p"),
    ('command: ["app", "--api-token", "argv-tok-5"]', "argv-tok-5", 'command: ["app", "--api-token", "'),
    # pgpass, systemd, docker-compose.
    ("db.example.com:5432:app:appuser:pgpass-pw-1", "pgpass-pw-1", "db.example.com:5432:app:appuser:"),
    ("*:*:*:replicator:pg\\:pass\\\\word", "pass", "*:*:*:replicator:"),
    ('Environment="API_TOKEN=sys tok 1" "LOG_LEVEL=debug"', "sys tok 1", 'Environment="API_TOKEN='),
    ("Environment=DB_PASSWORD=sys-pw-2 LOG_LEVEL=debug", "sys-pw-2", "Environment=DB_PASSWORD="),
    ("      - DB_PASSWORD=compose pw 3", "compose pw 3", "      - DB_PASSWORD="),
    ('      - "API_TOKEN=compose-tok-4"', "compose-tok-4", '      - "API_TOKEN='),
    ('db = { host = "db", password = "toml inline pw" }', "toml inline pw", 'db = { host = "db", password = "'),
    ('"api_keys": ["arr-key-1", "arr-key-2"],', "arr-key-", '"api_keys": ["'),
    ("-Djavax.net.ssl.keyStorePassword=jks-pw-5", "jks-pw-5", "-Djavax.net.ssl.keyStorePassword="),
])
def test_secrets_of_every_syntax_are_redacted(line, secret, kept):
    out = redact_text("HOST=db\n%s\nPORT=5432\n" % line)
    assert secret not in out, out
    assert out.startswith("HOST=db\n" + kept), out
    assert out.endswith("\nPORT=5432\n")
    assert REDACTED in out


@pytest.mark.parametrize("line", [
    "PWD=/srv/app",
    "PASSENGER_MAX_POOL_SIZE=6",
    "proxy_pass http://127.0.0.1:8080;",
    "ProxyPass / http://127.0.0.1:8080/",
    "ssl_certificate_key /etc/ssl/private/app.key;",
    "SSLCertificateKeyFile /etc/ssl/private/app.key",
    "DB_PASSWORD_FILE=/run/secrets/db",
    "ssl_session_cache shared:SSL:10m;",
    "ssl_session_timeout 1d;",
    "auth_basic off;",
    "image: nginx:1.25@sha256:0123abcd",
    "url: https://example.com:8443/path?email=a@b.example",
    "# hostname:port:database:username:password",
    "machine other.example.com login bob",
    "# Basic configuration follows",
    "# the token expires after an hour",
    "ExecStart=/usr/bin/app --port 80 --password-stdin",
])
def test_lookalikes_are_untouched(line):
    assert redact_text(line + "\n") == line + "\n"


def test_multi_line_secret_values_are_redacted_to_their_end():
    text = "\n".join([
        "api:",
        "  password: |",
        "    block-line-1",
        "    block-line-2",
        "  user: bob",
        "passwords:",
        "  - list-pw-1",
        "  - name: x",
        "    key: list-pw-2",
        "host: db",
        "[secrets]",
        'github = "section-pw"',
        "[server]",
        "port = 80",
        'PRIVATE_KEY="',
        "quoted-line-1",
        '"',
        "NEXT=1",
        "{",
        '  "api_keys": [',
        '    "array-pw-1",',
        '    "array-pw-2"',
        "  ],",
        '  "host": "db"',
        "}",
        'password = """',
        "toml-multi-pw",
        '"""',
        "x = 1",
        "machine api.example.com",
        "  login joe",
        "  account netrc-acct-9",
    ]) + "\n"
    out = redact_text(text)
    for secret in ("block-line", "list-pw", "section-pw", "quoted-line", "array-pw", "toml-multi-pw", "netrc-acct"):
        assert secret not in out, (secret, out)
    for kept in ("  user: bob", "host: db", "port = 80", "NEXT=1", '  "host": "db"', "x = 1", "  login joe"):
        assert "\n%s\n" % kept in out, (kept, out)
    assert out.count("\n") == text.count("\n")


# ---------------------------------------------------------------------------------------- pairs (diffs)


def test_a_rotated_secret_differs_between_the_sides_of_a_diff():
    before = "HOST=db\nSECRET_KEY=old-rotated-value\nAPI_TOKEN=same-token\n"
    after = "HOST=db\nSECRET_KEY=new-rotated-value\nAPI_TOKEN=same-token\n"
    old, new = redact_pair(before, after)
    assert old == "HOST=db\nSECRET_KEY=%s\nAPI_TOKEN=%s\n" % (CHANGED_BEFORE, REDACTED)
    assert new == "HOST=db\nSECRET_KEY=%s\nAPI_TOKEN=%s\n" % (CHANGED_AFTER, REDACTED)
    # Nothing of the values is in the masks: the same masks for any two different values.
    assert redact_pair(before.replace("old-rotated", "x"), after) == (old, new)


def test_an_unchanged_secret_redacts_the_same_on_both_sides():
    text = "HOST=db\nSECRET_KEY=kept-value\n"
    assert redact_pair(text, text.replace("HOST=db", "HOST=db2")) == (
        redact_text(text), redact_text(text.replace("HOST=db", "HOST=db2")))


def test_pair_marks_secrets_of_lines_that_change_anyway():
    old, new = redact_pair("DB_URL=postgres://app:pw-1@db1/app\nX=1\n", "DB_URL=postgres://app:pw-2@db2/app\nX=1\n")
    assert old == "DB_URL=postgres://app:%s@db1/app\nX=1\n" % CHANGED_BEFORE
    assert new == "DB_URL=postgres://app:%s@db2/app\nX=1\n" % CHANGED_AFTER
    old, new = redact_pair("DB_URL=postgres://app:pw-1@db1/app\n", "DB_URL=postgres://app:pw-1@db2/app\n")
    assert REDACTED + "@db1" in old and REDACTED + "@db2" in new and "changed" not in old + new


def test_pair_of_a_rotated_private_key():
    key = "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n"
    old, new = redact_pair(key % "MIIEold0key0body", key % "MIIEnew0key0body")
    assert "MIIE" not in old + new and old != new


# ---------------------------------------------------------------------------------------- tool output


def test_redact_output_takes_bytes_and_text_and_cuts_after_redacting():
    out = redact_output(b"checking /etc/app/.env\nDB_PASSWORD=echoed-by-validator\nerror: line 2\n", limit=30)
    assert "echoed-by-validator" not in out and out.endswith("error: line 2")
    # A cut before redacting would keep "WORD=<value>" without the key that makes it a secret.
    long = "x" * 1000 + "\nMY_PASSWORD=tail-secret-value\n"
    for limit in range(5, 40):
        assert "tail-secret" not in redact_output(long, limit=limit)
    assert redact_output(None) == "" and redact_output("  plain  ") == "plain"


def test_redact_output_sees_through_terminal_colours():
    out = redact_output("\x1b[1mpassword\x1b[0m: coloured-secret\r\nok\x1b]0;title\x07\n")
    assert "coloured-secret" not in out and out.endswith("ok")


def test_short_digest_and_shorten_digests():
    sha = "ab" * 32
    assert short_digest(sha) == sha[:12] and short_digest("sha256:" + sha) == "sha256:" + sha[:12]
    assert short_digest(None) is None
    data = {"entries": [{"blob": sha, "rel": "a"}], "sha256": sha, "id": sha}
    short = {"entries": [{"blob": sha[:12], "rel": "a"}], "sha256": sha, "id": sha}
    assert shorten_digests(data, keys=("blob",)) == short


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
    # A value that is only an opening quote or bracket opens a multi-line value: not this one-line case.
    assume(value.strip() not in ('"', "'", '"""', "'''", "[", "{"))
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
