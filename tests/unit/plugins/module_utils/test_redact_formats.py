"""Property tests for module_utils/_redact.py over the config formats a host holds: a secret value written in any
of them never shows in redacted text, every non-secret line around it stays byte-identical, and a secret that
changes between the two sides of a diff shows as a changed line without showing either value."""

import json
import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import (
    CHANGED_AFTER, CHANGED_BEFORE, REDACTED, redact_pair, redact_text)

# ---------------------------------------------------------------------------------------------- values

# Any text on one line (a file's lines end at "\n").
FREE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=4,
               max_size=40)
# A value written bare in a KEY=value or key: value line: it does not open a quoted string, a collection or a
# YAML block (those are the quoted formats below).
BARE = FREE.filter(lambda v: v.strip() and v.strip()[0] not in "\"'[{|>!&*" and not v.strip().startswith("- "))
# One whitespace-free word as nginx, redis.conf, netrc and command lines take it unquoted.
_TOKEN_CHARS = string.ascii_letters + string.digits + "!$%&()*+,-./:<=>?@[]^_|~" + "éßλ漢Ж"
_LITERALS = ("true", "false", "null", "none", "yes", "no", "on", "off")
TOKEN = st.text(alphabet=_TOKEN_CHARS, min_size=4, max_size=40).filter(
    lambda v: v[0] not in "-/=:" and v.lower() not in _LITERALS)
# A directive's value: the rest of the line (words), not starting like another syntax (=, :, {, a quote).
WORDS = FREE.filter(lambda v: v.strip() and v.strip()[0] not in "=:{\"'[#;" and v.strip().lower() not in _LITERALS
                    and not v.strip().startswith(("/", "~/")))
# RFC 3986 userinfo: unreserved, sub-delims, ":" and percent-escapes; "@", "/", "?" and "#" must be escaped.
URL_PASSWORD = st.text(alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%", min_size=4, max_size=40)
# RFC 7235 token68: what follows Bearer / Basic.
TOKEN68 = st.from_regex(r"[A-Za-z0-9\-._~+/]{8,40}={0,2}", fullmatch=True)
PEM_LINES = st.lists(st.from_regex(r"[A-Za-z0-9+/]{16,64}", fullmatch=True), min_size=1, max_size=5, unique=True)


def json_escape(value):
    return json.dumps(value, ensure_ascii=False)[1:-1]


def shell_double(value):
    return "".join("\\" + c if c in '\\"$`' else c for c in value)


def systemd_double(value):
    return "".join("\\" + c if c in '\\"' else c for c in value)


def pgpass_escape(value):
    return "".join("\\" + c if c in "\\:" else c for c in value)


# ---------------------------------------------------------------------------------------------- formats

SECRET_NAMES = ["DB_PASSWORD", "MYSQL_PWD", "PGPASS", "REDIS_PASS", "SECRET_KEY", "api_token", "client_secret",
                "apiKey", "AWS_SECRET_ACCESS_KEY", "private_key_passphrase", "auth_token", "db.password",
                "smtp-passwd", "GITHUB_TOKEN", "jwtSigningKey", "PASSWORD", "passphrase", "SENTRY_DSN"]
# Only KEY=value / key: value makes these secrets (as nginx directives they are settings).
WEAK_NAMES = ["SESSION_SECRET_COOKIE", "session_cookie", "sessionid"]
DIRECTIVE_NAMES = ["requirepass", "masterauth", "password", "passwd", "auth_token", "secret", "api_key"]

ENV_NEIGHBOURS = ["HOST=db.internal", "PORT=5432", "PWD=/srv/app", "PASSENGER_MAX_POOL_SIZE=6", "KEYBOARD_LAYOUT=us",
                  "DB_PASSWORD_FILE=/run/secrets/db", "# password is set elsewhere", "LOG_LEVEL=debug",
                  "URL=https://example.com:8443/path?x=1", "DB_USER=app", ""]
YAML_NEIGHBOURS = ["host: db.internal", "port: 5432", "image: nginx:1.25@sha256:0123abcd",
                   "url: https://example.com:8443/path", "user: app", "# the password is in vault", "workers: 4"]
NGINX_NEIGHBOURS = ["listen 443 ssl;", "server_name example.com;", "ssl_certificate_key /etc/ssl/private/app.key;",
                    "ssl_session_cache shared:SSL:10m;", "ssl_session_timeout 1d;", "auth_basic off;",
                    "proxy_pass http://127.0.0.1:8080;", "location /private/ {", "}",
                    "# password is set elsewhere", "keepalive_timeout 65;"]
APACHE_NEIGHBOURS = ["ServerName example.com", "SSLCertificateKeyFile /etc/ssl/private/app.key",
                     "AuthUserFile /etc/apache2/.htpasswd", "<VirtualHost *:443>", "</VirtualHost>",
                     "ProxyPass / http://127.0.0.1:8080/"]
REDIS_NEIGHBOURS = ["port 6379", "bind 127.0.0.1", "# requirepass is set below", "maxmemory 2gb", "appendonly yes"]
NETRC_NEIGHBOURS = ["machine other.example.com login bob", "default login anonymous", ""]
SYSTEMD_NEIGHBOURS = ["[Service]", "User=app", "ExecStart=/usr/bin/app --port 80", "Environment=LOG_LEVEL=debug",
                      "Environment=\"HOST=db\" \"PORT=5432\"", "EnvironmentFile=/etc/app/app.env", "Restart=always"]
JSON_NEIGHBOURS = ['  "host": "db.internal",', '  "port": 5432,', '  "url": "https://example.com:8443/x",',
                   '  "enabled": true,']
TOML_NEIGHBOURS = ["[server]", "port = 80", 'host = "db.internal"', "debug = false", "[database]"]
INI_NEIGHBOURS = ["[client]", "host = db.internal", "user: app", "port = 3306", "; comment line"]


class Fmt:
    """One way a secret is written: keys and values to draw, the lines that hold it (a function of key and
    value, and the secret texts that must not show), and the non-secret lines that sit around it."""

    def __init__(self, name, keys, values, write, neighbours, secret_file=False):
        self.name, self.keys, self.values, self.write, self.neighbours = name, keys, values, write, neighbours
        # The file's name says it is secret as a whole (redis.pass): a bare value in it is masked too.
        self.secret_file = secret_file


def _single(template, encode=lambda v: v):
    return lambda key, value: ([template.format(key=key, value=encode(value))], [value, encode(value)])


FORMATS = [
    Fmt("env", SECRET_NAMES + WEAK_NAMES, BARE, _single("{key}={value}"), ENV_NEIGHBOURS),
    Fmt("env-double", SECRET_NAMES, FREE, _single('{key}="{value}"', shell_double), ENV_NEIGHBOURS),
    Fmt("env-single", SECRET_NAMES, FREE.filter(lambda v: "'" not in v), _single("{key}='{value}'"), ENV_NEIGHBOURS),
    Fmt("shell-export", SECRET_NAMES, FREE, _single('export {key}="{value}"', shell_double), ENV_NEIGHBOURS),
    Fmt("ini", SECRET_NAMES + WEAK_NAMES, BARE, _single("{key} = {value}"), INI_NEIGHBOURS),
    Fmt("ini-colon", SECRET_NAMES, BARE, _single("{key}: {value}"), INI_NEIGHBOURS),
    Fmt("ini-space", DIRECTIVE_NAMES, WORDS, _single("{key} {value}"), INI_NEIGHBOURS),
    Fmt("yaml", SECRET_NAMES + WEAK_NAMES, BARE, _single("{key}: {value}"), YAML_NEIGHBOURS),
    Fmt("yaml-double", SECRET_NAMES, FREE, _single('{key}: "{value}"', json_escape), YAML_NEIGHBOURS),
    Fmt("yaml-single", SECRET_NAMES, FREE, _single("{key}: '{value}'", lambda v: v.replace("'", "''")),
        YAML_NEIGHBOURS),
    Fmt("yaml-nested", SECRET_NAMES, BARE,
        lambda k, v: (["database:", "  host: db", "  %s: %s" % (k, v), "  port: 5432"], [v]), YAML_NEIGHBOURS),
    Fmt("yaml-list-under-secret", ["passwords", "api_keys", "credentials"], BARE,
        lambda k, v: (["%s:" % k, "  - %s" % v], [v]), YAML_NEIGHBOURS),
    Fmt("yaml-block-scalar", SECRET_NAMES, BARE,
        lambda k, v: (["%s: |" % k, "  %s" % v, "  second-line-%s" % v], [v]), YAML_NEIGHBOURS),
    Fmt("json-pretty", SECRET_NAMES + WEAK_NAMES, FREE,
        lambda k, v: (['  "%s": "%s",' % (k, json_escape(v))], [v, json_escape(v)]), JSON_NEIGHBOURS),
    Fmt("json-one-line", SECRET_NAMES + WEAK_NAMES, FREE,
        lambda k, v: (['{"host": "db", "%s": "%s", "port": 5432}' % (k, json_escape(v))], [v, json_escape(v)]),
        JSON_NEIGHBOURS),
    Fmt("json-array-under-secret", ["api_keys", "tokens", "passwords"], FREE,
        lambda k, v: (['  "%s": ["%s", "other-%s"],' % (k, json_escape(v), json_escape(v))], [v, json_escape(v)]),
        JSON_NEIGHBOURS),
    Fmt("toml", SECRET_NAMES, FREE, _single('{key} = "{value}"', json_escape), TOML_NEIGHBOURS),
    Fmt("toml-inline-table", ["password", "token", "secret"], FREE,
        _single('db = {{ host = "db", {key} = "{value}", port = 5432 }}', json_escape), TOML_NEIGHBOURS),
    Fmt("toml-secret-table", ["secrets", "credentials"], FREE,
        lambda k, v: (["[%s]" % k, 'github = "%s"' % json_escape(v), "[server]"], [v, json_escape(v)]),
        TOML_NEIGHBOURS),
    Fmt("nginx-set", ["$secret_key", "$api_token", "$upstream_password"], TOKEN, _single("set {key} {value};"),
        NGINX_NEIGHBOURS),
    Fmt("nginx-auth-header", ["Bearer", "Basic"], TOKEN68,
        _single('proxy_set_header Authorization "{key} {value}";'), NGINX_NEIGHBOURS),
    Fmt("nginx-api-key-header", ["X-Api-Key", "X-Auth-Token"], TOKEN,
        _single('proxy_set_header {key} "{value}";'), NGINX_NEIGHBOURS),
    Fmt("apache-header", ["Bearer", "Basic"], TOKEN68,
        _single('RequestHeader set Authorization "{key} {value}"'), APACHE_NEIGHBOURS),
    Fmt("apache-setenv", ["DB_PASSWORD", "API_TOKEN"], TOKEN, _single("SetEnv {key} {value}"), APACHE_NEIGHBOURS),
    Fmt("redis-conf", ["requirepass", "masterauth"], TOKEN, _single("{key} {value}"), REDIS_NEIGHBOURS),
    Fmt("redis-conf-commented", ["requirepass", "masterauth"], TOKEN, _single("# {key} {value}"), REDIS_NEIGHBOURS),
    Fmt("netrc-one-line", ["password", "passwd", "account"], TOKEN,
        _single("machine api.example.com login joe {key} {value}"), NETRC_NEIGHBOURS),
    Fmt("netrc-multi-line", ["password", "account"], TOKEN,
        lambda k, v: (["machine api.example.com", "  login joe", "  %s %s" % (k, v)], [v]), NETRC_NEIGHBOURS),
    Fmt("pgpass", ["db.example.com:5432:app:appuser", "*:*:*:replicator", "localhost:6432:*:app"], FREE,
        lambda k, v: (["%s:%s" % (k, pgpass_escape(v))], [v, pgpass_escape(v)]),
        ["# hostname:port:database:username:password"]),
    Fmt("systemd-environment", SECRET_NAMES, TOKEN.filter(lambda v: "\\" not in v and "%" not in v),
        _single("Environment={key}={value}"), SYSTEMD_NEIGHBOURS),
    Fmt("systemd-environment-quoted", SECRET_NAMES, FREE.filter(lambda v: "%" not in v),
        _single('Environment="{key}={value}" "LOG_LEVEL=info"', systemd_double), SYSTEMD_NEIGHBOURS),
    Fmt("systemd-execstart-flag", ["--password", "--db-password", "--api-token", "-password"], TOKEN,
        _single("ExecStart=/usr/bin/app {key} {value} --port 80"), SYSTEMD_NEIGHBOURS),
    Fmt("systemd-execstart-flag-equals", ["--password", "--db-password", "--secret"], TOKEN,
        _single("ExecStart=/usr/bin/app {key}={value} --port 80"), SYSTEMD_NEIGHBOURS),
    Fmt("cron-flag", ["--password", "--db-pass"], TOKEN.filter(lambda v: "%" not in v),
        _single("0 3 * * * app /usr/local/bin/backup {key} {value} >/dev/null 2>&1"), ["MAILTO=ops", "SHELL=/bin/sh"]),
    Fmt("cron-mysqldump", ["root", "backup"], TOKEN.filter(lambda v: "%" not in v),
        _single("30 2 * * * root mysqldump -u {key} -p{value} app > /var/backups/app.sql"), ["MAILTO=ops"]),
    Fmt("compose-list", SECRET_NAMES, BARE, _single("      - {key}={value}"),
        ["    environment:", "      - HOST=db", "    image: app:1.2"]),
    Fmt("compose-list-quoted", SECRET_NAMES, FREE.filter(lambda v: '"' not in v and "\\" not in v),
        _single('      - "{key}={value}"'), ["    environment:", '      - "HOST=db"', "    image: app:1.2"]),
    Fmt("compose-map", SECRET_NAMES, BARE, _single("      {key}: {value}"),
        ["    environment:", "      HOST: db", "    image: app:1.2"]),
    Fmt("url-env", ["", "app", "guest"], URL_PASSWORD, _single("REDIS_URL=redis://{key}:{value}@cache:6379/0"),
        ENV_NEIGHBOURS),
    Fmt("url-yaml", ["", "app"], URL_PASSWORD, _single("  upstream: amqp://{key}:{value}@mq.internal/vhost"),
        YAML_NEIGHBOURS),
    Fmt("url-json", ["", "app"], URL_PASSWORD.filter(lambda v: '"' not in v),
        _single('  "database": "postgres://{key}:{value}@db:5432/app",'), JSON_NEIGHBOURS),
    Fmt("url-nginx", ["", "user"], URL_PASSWORD.filter(lambda v: ";" not in v),
        _single("proxy_pass https://{key}:{value}@backend.internal;"), NGINX_NEIGHBOURS),
    Fmt("curl-header", ["Bearer", "Basic"], TOKEN68,
        _single("curl -sS -H 'Authorization: {key} {value}' https://api.example.com/v1"), ["#!/bin/sh", "set -e"]),
    Fmt("curl-api-key", ["X-Api-Key", "X-Auth-Token", "Private-Token"], TOKEN.filter(lambda v: "'" not in v),
        _single("curl -H '{key}: {value}' https://api.example.com/v1"), ["#!/bin/sh", "set -e"]),
    Fmt("json-auth-header", ["Bearer", "Basic"], TOKEN68,
        _single('{{"headers": {{"Authorization": "{key} {value}"}}, "timeout": 5}}'), JSON_NEIGHBOURS),
    Fmt("yaml-auth-header", ["Bearer", "Basic"], TOKEN68, _single("    Authorization: {key} {value}"),
        YAML_NEIGHBOURS),
    Fmt("bearer-in-prose", ["Bearer", "Basic"], TOKEN68.filter(lambda v: any(c.isdigit() for c in v)),
        _single("# call it with {key} {value} for now"), ENV_NEIGHBOURS),
]


def pem(kind):
    def write(_key, lines):
        return (["-----BEGIN %s-----" % kind] + lines + ["-----END %s-----" % kind], list(lines))
    return write


FORMATS += [
    Fmt("pem-rsa", ["x"], PEM_LINES, pem("RSA PRIVATE KEY"), ENV_NEIGHBOURS + YAML_NEIGHBOURS),
    Fmt("pem-pkcs8", ["x"], PEM_LINES, pem("PRIVATE KEY"), YAML_NEIGHBOURS),
    Fmt("pem-openssh", ["x"], PEM_LINES, pem("OPENSSH PRIVATE KEY"), ENV_NEIGHBOURS),
    Fmt("pem-in-yaml", ["tls_key", "ssl_cert"], PEM_LINES,
        lambda k, lines: (["%s: |" % k, "  -----BEGIN EC PRIVATE KEY-----"] + ["  " + line for line in lines]
                          + ["  -----END EC PRIVATE KEY-----"], list(lines)), YAML_NEIGHBOURS),
    Fmt("pem-in-json", ["tls_key", "cert"], PEM_LINES,
        lambda k, lines: (['  "%s": "-----BEGIN PRIVATE KEY-----\\n%s\\n-----END PRIVATE KEY-----\\n",'
                           % (k, "\\n".join(lines))], list(lines)), JSON_NEIGHBOURS),
]
# A file that is secret by its name holds a bare value: a password, a token, a key, lines of them.
SECRET_FILE_LINE = FREE.filter(lambda v: any(c.isalnum() for c in v) and not v.strip().startswith(("#", ";", "//"))
                               and not v.strip().startswith(("[", "-----")))
FORMATS += [
    Fmt("secret-file-bare", ["redis.pass"], SECRET_FILE_LINE, lambda _k, v: ([v], [v]),
        ["# managed by ansible", ""], secret_file=True),
    Fmt("secret-file-lines", ["tokens"], st.lists(SECRET_FILE_LINE, min_size=1, max_size=4, unique=True),
        lambda _k, lines: (list(lines), list(lines)), ["# one token a line", ""], secret_file=True),
    Fmt("secret-file-yaml", ["db_password.yml"], BARE, _single("primary: {value}"), ["# rotated monthly", "---"],
        secret_file=True),
]
BY_NAME = {fmt.name: fmt for fmt in FORMATS}
# Filters keep each format's grammar; some formats' values are rare among all texts.
SLOW = [HealthCheck.filter_too_much, HealthCheck.too_slow]
MARKER = re.compile(r"^\s*-----(BEGIN|END) [A-Z ]+-----$")


def _values_text(values):
    return values if isinstance(values, list) else [values]


def document(fmt, key, value, before, after):
    """The lines of a file: neighbours, the secret's lines, neighbours. Returns (lines, neighbour indexes,
    secret texts)."""
    secret_lines, secrets = fmt.write(key, value)
    lines = list(before) + secret_lines + list(after)
    neighbours = list(range(len(before))) + list(range(len(before) + len(secret_lines), len(lines)))
    return lines, neighbours, [s for s in secrets if s]


def undecidable(fmt, key, value, before, after, secrets):
    """A secret that is part of what may legitimately show (a neighbour, a key, the format's own words, a mask)
    cannot be checked: the same document written with the mask for its value is what may show."""
    placeholder = [REDACTED] * len(value) if isinstance(value, list) else REDACTED
    visible = "\n".join(document(fmt, key, placeholder, before, after)[0]) + CHANGED_BEFORE + CHANGED_AFTER
    return any(secret in visible or not secret.strip() for secret in secrets)


def draw_case(data, fmt):
    key = data.draw(st.sampled_from(fmt.keys), label="key")
    value = data.draw(fmt.values, label="value")
    before = data.draw(st.lists(st.sampled_from(fmt.neighbours), max_size=3), label="before")
    after = data.draw(st.lists(st.sampled_from(fmt.neighbours), max_size=3), label="after")
    return key, value, before, after


@pytest.mark.parametrize("name", sorted(BY_NAME))
@settings(max_examples=80, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_a_secret_never_shows_and_its_neighbours_stay(name, data):
    fmt = BY_NAME[name]
    key, value, before, after = draw_case(data, fmt)
    lines, neighbours, secrets = document(fmt, key, value, before, after)
    assume(not undecidable(fmt, key, value, before, after, secrets))
    text = "\n".join(lines) + "\n"
    out = redact_text(text, secret_file=fmt.secret_file)
    for secret in secrets:
        assert secret not in out, (secret, out)
    assert REDACTED in out
    shown = out.split("\n")
    assert len(shown) == len(lines) + 1, "redaction changed the number of lines"
    for index in neighbours:
        assert shown[index] == lines[index], "a non-secret line changed: %r -> %r" % (lines[index], shown[index])
    for index, line in enumerate(lines):
        if MARKER.match(line):
            assert shown[index] == line, "a private key's BEGIN / END line changed: %r" % shown[index]


@pytest.mark.parametrize("name", sorted(BY_NAME))
@settings(max_examples=40, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_a_rotated_secret_shows_as_a_change_and_an_equal_one_does_not(name, data):
    fmt = BY_NAME[name]
    key, old, before, after = draw_case(data, fmt)
    new = data.draw(fmt.values.filter(lambda v: v != old), label="new value")
    old_lines, old_neighbours, old_secrets = document(fmt, key, old, before, after)
    new_lines, new_neighbours, new_secrets = document(fmt, key, new, before, after)
    assume(not undecidable(fmt, key, old, before, after, old_secrets + new_secrets))
    shown_old, shown_new = redact_pair("\n".join(old_lines), "\n".join(new_lines), secret_file=fmt.secret_file)
    both = shown_old + "\n" + shown_new
    for secret in old_secrets + new_secrets:
        assert secret not in both, (secret, both)
    assert shown_old != shown_new, "the rotation is invisible: %r" % shown_old
    for index in old_neighbours:
        assert shown_old.split("\n")[index] == old_lines[index]
    for index in new_neighbours:
        assert shown_new.split("\n")[index] == new_lines[index]
    # The same value on both sides: the same text on both sides, so the diff shows no line for it.
    same_old, same_new = redact_pair("\n".join(old_lines), "\n".join(old_lines), secret_file=fmt.secret_file)
    assert same_old == same_new == redact_text("\n".join(old_lines), secret_file=fmt.secret_file)
