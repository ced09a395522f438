# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redaction of secrets in the text that diffs, plans, messages and tool output show.

Text is redacted by span: each rule finds the part of a line that holds a secret value, and only that part is
masked. Key names, quotes, separators and every other line stay as they are, so a reader still sees what changed.
The rules know the common config syntaxes: KEY=value and key: value (.env, shell, ini, YAML, TOML, JSON, systemd,
docker-compose), whitespace directives (nginx, apache, redis.conf), netrc tokens, pgpass lines, command-line flags,
Authorization headers and bearer or basic tokens, URL credentials and PEM private keys.

The two sides of a diff are redacted together (`redact_pair`): a secret whose value differs between them gets a
different mask on each side, so a rotated secret shows as a changed line without showing either value.
"""

from __future__ import annotations

import difflib
import functools
import re

REDACTED = "********"
# Masks of a secret whose value differs between the two sides of a diff. Constant words: nothing in them is
# derived from the value, so they tell that it changed and nothing else.
CHANGED_BEFORE = REDACTED + " (changed, before)"
CHANGED_AFTER = REDACTED + " (changed, after)"

# ------------------------------------------------------------------------------------------------ key names

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")
# A word holding one of these is a secret's name wherever the part sits ("PGPASSWORD", "client_secret").
_STRONG_PARTS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY", "PRIVATE")
_STRONG_WORDS = frozenset(("KEYS", "PSK", "AUTH", "DSN", "SALT", "CREDS", "OTP"))
# Words that end like a password ("REDIS_PASS", "MYSQL_PWD", "requirepass") but are not one.
_NOT_PASS = frozenset(("BYPASS", "COMPASS", "SURPASS", "TRESPASS", "OVERPASS", "UNDERPASS", "ENCOMPASS", "OLDPWD"))
# "KEY" alone, or glued to one of these ("APIKEY", "SIGNINGKEY"); not "MONKEY" nor "HOTKEY".
# AUTH... is a secret's name, AUTHOR... is not, but for these.
_AUTHORIZATION = ("AUTHORIZATION", "AUTHORISATION")
_PASSES_TO = frozenset(("PROXY", "FASTCGI", "UWSGI", "SCGI", "GRPC", "MEMCACHED"))
_KEY_PREFIXES = frozenset(("", "API", "ACCESS", "SECRET", "PRIVATE", "PRIV", "AUTH", "SIGNING", "SIGN", "MASTER",
                           "ENCRYPTION", "ENC", "CRYPT", "LICENSE", "HMAC", "SSH", "GPG", "PGP", "AES", "JWT", "SHARED",
                           "PRESHARED", "CLIENT", "APP", "SESSION", "COOKIE", "WEBHOOK", "DEPLOY", "ROOT", "KMS"))
# Secret only as KEY=value or key: value; as an nginx or apache directive they name settings, not secrets
# (ssl_session_cache, proxy_cookie_path).
_WEAK_PARTS = ("SESSION", "COOKIE")
# A key whose last word says it holds a file name: its value is a path, shown when it looks like one.
_FILE_WORDS = frozenset(("FILE", "FILENAME", "PATH", "DIR", "KEYFILE", "LOCATION"))
_KEYISH_WORDS = frozenset(("KEY", "CERT", "CERTIFICATE"))


@functools.lru_cache(maxsize=4096)
def _key_words(name):
    return tuple(word for word in _NON_ALNUM.split(_CAMEL.sub("_", name).upper()) if word)


def _word_strength(word):
    if word in _STRONG_WORDS or any(part in word for part in _STRONG_PARTS):
        return 2
    if word.endswith(("PASS", "PWD")) and word not in _NOT_PASS:
        return 2
    if word.endswith("KEY") and word[:-3] in _KEY_PREFIXES:
        return 2
    if word.endswith(("AUTH", "SALT", "DSN")):
        return 2
    if word.startswith("AUTH") and (not word.startswith("AUTHOR") or word.startswith(_AUTHORIZATION)):
        return 2
    if any(part in word for part in _WEAK_PARTS):
        return 1
    return 0


@functools.lru_cache(maxsize=4096)
def key_strength(name):
    """2 for a name that holds a secret in any syntax, 1 for one that does only as KEY=value or key: value
    (SESSION, COOKIE), 0 for any other name."""
    words = _key_words(name)
    if words in (("PWD",), ("OLDPWD",)):  # the shell's working directory, not a password
        return 0
    strength = 0
    for index, word in enumerate(words):
        if word == "PASS" and index and words[index - 1] in _PASSES_TO:
            continue  # proxy_pass, fastcgi_pass, ProxyPass: where requests go
        strength = max(strength, _word_strength(word))
    return strength


def is_secret_key(name):
    return key_strength(name) > 0


# ------------------------------------------------------------------------------------------------ patterns

_KEY = r"[A-Za-z_][A-Za-z0-9_.\-]*"
# KEY=value, key: value, export KEY="value", "key": "value", - KEY=value (a YAML list), at the start of a line.
ASSIGNMENT = re.compile(r"^(?P<lead>\s*(?:-\s+)?(?:(?:export|declare|typeset|local|readonly)\s+(?:-\w+\s+)*)?)"
                        r"(?P<q>[\"']?)(?P<key>" + _KEY + r")(?P<kq>[\"']?)(?P<sep>\s*(?:=|:(?!//))\s*)(?P<value>.*)$")
# "key": value anywhere (one-line JSON, inline YAML maps, Python reprs).
QUOTED_PAIR = re.compile(r"(?P<q>[\"'])(?P<key>[A-Za-z_$@][A-Za-z0-9_.\-@$]*)(?P=q)\s*[:=]\s*")
# "KEY=value" in quotes anywhere (systemd Environment=, docker-compose lists, argv items).
QUOTED_ASSIGN = re.compile(r"(?P<q>[\"'])(?P<key>" + _KEY + r")\s*=")
# KEY=value anywhere: command lines, --password=x, query strings, log and error messages.
INLINE_PAIR = re.compile(r"(?<![A-Za-z0-9_.])(?P<key>" + _KEY + r")\s*=\s*")
# key: value anywhere; with an opening quote before the key the value runs to the closing one
# ('Authorization: Bearer x' in curl -H, a header in a list).
HEADER = re.compile(r"(?<![A-Za-z0-9_.\-])(?P<open>[\"']?)(?P<key>" + _KEY + r")\s*:(?![:/])\s*")
# An nginx / apache / redis.conf / ini-ish directive: the key first on the line, its value the rest.
DIRECTIVE = re.compile(r"^\s*(?P<key>\$?" + _KEY + r")[ \t]+(?=[^ \t=:{])")
# A secret key followed by one last value: "set $secret_key abc;", "proxy_set_header Authorization "Bearer x";",
# "# requirepass foobared" (commented-out lines keep real passwords too).
LAST_VALUE = re.compile(r"(?<![^\s#;])(?P<key>\$?" + _KEY + r")[ \t]+"
                        r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^ \t\"';]+)[ \t]*;?[ \t]*$")
# --password x, -password "x y" (the --password=x form is an INLINE_PAIR).
FLAG = re.compile(r"(?<![^\s\"'=])--?(?P<key>[A-Za-z]" + r"[A-Za-z0-9_.\-]*)[ \t]+"
                  r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^ \t\-\"'][^ \t]*)")
# ["app", "--password", "x"]: an argv list in JSON, YAML flow or Python.
ARGV_FLAG = re.compile(r"(?P<q>[\"'])--?(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)(?P=q)\s*,\s*(?P<vq>[\"'])")
# The password runs to the last "@" of the authority: a raw "@" in it is a mistake, but a common one.
URL_CREDENTIALS = re.compile(r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/?#@\"']*):"
                             r"(?P<password>[^\s/?#]+)@")
# A token standing as the user of a URL (https://ghp_xxx@github.com/...).
URL_TOKEN_USER = re.compile(r"://(?P<token>(?:ghp_|gho_|ghs_|ghu_|github_pat_|glpat-|xox[abps]-)[^\s:/?#@]+)@")
# user:password@host without a scheme (Go's MySQL DSN user:pw@tcp(db:3306)/app, proxies); not image@sha256 digests.
BARE_CREDENTIALS = re.compile(r"(?<![^\s=\"'(,])(?P<user>[A-Za-z0-9_.\-]+):(?P<password>[^\s/?#@:\"']+)@"
                              r"(?!sha\d+:)(?=tcp\(|unix\(|[A-Za-z0-9\[])")
AUTH_SCHEME = re.compile(r"(?i)(?<![A-Za-z0-9_\-])(?:bearer|basic|token)[ \t]+(?P<value>[A-Za-z0-9\-._~+/]+=*)")
_SCHEME_PREFIX = re.compile(r"(?i)(?:bearer|basic|token|bot|apikey|digest|negotiate)[ \t]+(?=\S)")
_NETRC_LINE = re.compile(r"(?<!\S)(?:machine|default|login)(?!\S)")
_NETRC_START = re.compile(r"^\s*(?:machine\s+\S|default(?:\s|$))")
NETRC_TOKEN = re.compile(r"(?<!\S)(?:password|passwd|account)[ \t]+(?P<value>\"(?:[^\"\\]|\\.)*\"|[^ \t]+)")
# hostname:port:database:username:password (a backslash escapes ':' and '\').
PGPASS = re.compile(r"^(?:[^\s:#\\]|\\.)(?:[^\s:\\]|\\.)*:(?:\d+|\*):(?:[^\s:\\]|\\.)+:(?:[^\s:\\]|\\.)+:(?P<pw>.+)$")
# Passwords given to well-known tools by short flags.
_TOOL_FLAGS = (
    (re.compile(r"\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b"), re.compile(r"(?<!\S)-p(?P<value>[^ \t]+)")),
    (re.compile(r"\bsshpass\b"), re.compile(r"(?<!\S)-p[ \t]*(?P<value>[^ \t]+)")),
    (re.compile(r"\bredis-cli\b"), re.compile(r"(?<!\S)-a[ \t]+(?P<value>[^ \t]+)")),
    (re.compile(r"\b(?:curl|wget)\b"), re.compile(r"(?<!\S)(?:-u|--user)[ \t]+[\"']?[^\s:\"']*:(?P<value>[^\s\"']+)")),
)
PRIVATE_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
PRIVATE_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
# Kept for callers that redact whole private key blocks of a string.
PRIVATE_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
                           r"(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.DOTALL)
_BLOCK_SCALAR = re.compile(r"^(?:!\S+\s+)?[|>][0-9+\-]*\s*(?:#.*)?$")
_SECTION = re.compile(r"^\s*\[+\s*(?P<name>[^\[\]]+?)\s*\]+\s*(?:[#;].*)?$")
_TRAILER = re.compile(r"\s*[,;]?\s*(?:#.*)?")
_LITERALS = frozenset(("true", "false", "null", "none", "yes", "no", "on", "off", "~"))
_SYSTEM_PATH = re.compile(r"^/(?:etc|run|var|usr|opt|srv|home|root|tmp|mnt|data|secrets|certs?|ssl)/\S*$")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


# ------------------------------------------------------------------------------------------------ values


def _closing(line, start, quote):
    """Where the string opened by `quote` just before `start` closes, or -1. In "..." a backslash escapes."""
    escapes = quote[0] == '"'
    index, end = start, len(line)
    while index < end:
        if escapes and line[index] == "\\":
            index += 2
            continue
        if line.startswith(quote, index):
            return index
        index += 1
    return -1


def _rstrip(line, start, end):
    while end > start and line[end - 1].isspace():
        end -= 1
    return end


def _container(line, start, depth, stack=None):
    """Scan JSON / YAML flow / TOML inline collections from `start` at nesting `depth`: spans of every scalar
    inside (the keys of objects stay), and where the outermost collection closes (-1 when it does not)."""
    spans = []
    stack = list(stack or [])
    index, end = start, len(line)
    while index < end:
        char = line[index]
        if char in "[{":
            stack.append(char)
            depth += 1
            index += 1
        elif char in "]}":
            if stack:
                stack.pop()
            depth -= 1
            index += 1
            if depth <= 0:
                return spans, index, 0, stack
        elif char in ",:= \t":
            index += 1
        elif char in "\"'":
            close = _closing(line, index + 1, char)
            close = end if close < 0 else close
            after = close + 1
            while after < end and line[after] in " \t":
                after += 1
            is_key = stack[-1:] == ["{"] and after < end and line[after] in ":="
            if not is_key:
                spans.append((index + 1, close))
            index = close + 1
        else:
            token_end = index
            while token_end < end and line[token_end] not in "[]{},:=\"' \t":
                token_end += 1
            after = token_end
            while after < end and line[after] in " \t":
                after += 1
            is_key = stack[-1:] == ["{"] and after < end and line[after] in ":="
            if not is_key and line[index:token_end].lower() not in _LITERALS:
                spans.append((index, token_end))
            index = token_end
    return spans, -1, depth, stack


def _inline_container(line, start):
    """Spans of the scalars of a collection that starts at `start`; all the rest of the line if it stays open."""
    spans, close, _depth, _stack = _container(line, start, 0)
    if close < 0:
        return [(start + 1, len(line))]
    if close < len(line) and line[close] not in " \t,;}])\"'#&":
        # "[]00": brackets that open a value without making it a collection; the whole word is the value.
        token_end = close
        while token_end < len(line) and line[token_end] not in " \t":
            token_end += 1
        return [(start, token_end)]
    return spans


def _exempt(key, value, directive):
    """A value that is no secret though its key looks like one: a file's path, or a switch in a directive."""
    words = _key_words(key)
    last = words[-1] if words else ""
    token = value.strip().strip("\"'")
    if last in _FILE_WORDS and token.startswith(("/", "~/")) and not any(c.isspace() for c in token):
        return True
    if directive:
        if token.lower() in _LITERALS:
            return True
        if last in _KEYISH_WORDS and _SYSTEM_PATH.match(token):
            return True
    return False


def _value(line, start, key, end=None, continues=False, wrapper=""):
    """Spans of a value that runs from `start` to `end` (the end of the line by default), and the state that
    carries it over the next lines, if any. `continues`: a quote or bracket that ends the line opens a multi-line
    value. `wrapper`: the quote that wraps the whole KEY=value ("KEY=value"), not part of the value."""
    end = len(line) if end is None else end
    while start < end and line[start].isspace():
        start += 1
    if start >= end:
        return [], None
    if wrapper:
        last = _rstrip(line, start, end)
        if last - 1 > start and line[last - 1] == wrapper:
            end = last - 1
    text = line[start:end]
    for quote in ('"""', "'''", '"', "'"):
        if not text.startswith(quote):
            continue
        inner = start + len(quote)
        close = _closing(line[:end], inner, quote)
        if close >= 0:
            if _TRAILER.fullmatch(line, close + len(quote), end):
                return _scheme_kept(line, inner, close, key), None
            return [(start, _rstrip(line, start, end))], None
        if continues and not line[inner:end].strip():
            return [], ("quote", quote)
        return [(inner, _rstrip(line, inner, end))], None
    if text[0] in "[{":
        spans, close, depth, stack = _container(line[:end], start, 0)
        if close >= 0:
            if _TRAILER.fullmatch(line, close, end):
                return spans, None
            return [(start, _rstrip(line, start, end))], None
        if continues and not line[start + 1:end].strip():
            return [], ("container", (depth, stack))
        return [(start, _rstrip(line, start, end))], None
    return _scheme_kept(line, start, _rstrip(line, start, end), key), None


def _scheme_kept(line, start, end, key):
    """The span of a value; an Authorization header keeps its scheme word (Bearer, Basic) in sight."""
    if "AUTH" in "".join(_key_words(key)):
        match = _SCHEME_PREFIX.match(line, start, end)
        if match:
            start = match.end()
    return [(start, end)] if end > start else []


# ------------------------------------------------------------------------------------------------ one line


def _line_rules(line, netrc=False):
    """Spans of secret values in one line, and the states it opens for the lines after it."""
    spans, states = [], []

    # PEM private keys: the body goes, the BEGIN / END lines stay.
    begin = PRIVATE_BEGIN.search(line)
    if begin:
        finish = PRIVATE_END.search(line, begin.end())
        if finish:
            spans.append((begin.end(), finish.start()))
        else:
            spans.append((begin.end(), len(line)))
            states.append(("pem", None))

    for match in URL_CREDENTIALS.finditer(line):
        spans.append(match.span("password"))
    for match in URL_TOKEN_USER.finditer(line):
        spans.append(match.span("token"))
    for match in BARE_CREDENTIALS.finditer(line):
        spans.append(match.span("password"))

    match = ASSIGNMENT.match(line)
    if match and is_secret_key(match.group("key")) and not _exempt(match.group("key"), match.group("value"), False):
        key, start = match.group("key"), match.start("value")
        value = match.group("value")
        is_colon = ":" in match.group("sep")
        if is_colon and not value.strip():
            states.append(("nested", match.start("key")))
        elif is_colon and _BLOCK_SCALAR.match(value):
            states.append(("block", len(match.group("lead")) + len(match.group("q"))))
        else:
            wrapper = match.group("q") if match.group("q") and not match.group("kq") else ""
            found, state = _value(line, start, key, continues=True, wrapper=wrapper)
            spans += found
            if state:
                states.append(state)

    for match in QUOTED_PAIR.finditer(line):
        key = match.group("key")
        if not is_secret_key(key):
            continue
        start = match.end()
        if start < len(line) and line[start] in "\"'":
            close = _closing(line, start + 1, line[start])
            spans += _scheme_kept(line, start + 1, close if close >= 0 else len(line), key)
        elif start < len(line) and line[start] in "[{":
            spans += _inline_container(line, start)
        else:
            token = re.match(r"[^,}\]\s]+", line[start:])
            if token and token.group(0).lower() not in _LITERALS:
                spans.append((start, start + token.end()))

    for match in QUOTED_ASSIGN.finditer(line):
        if is_secret_key(match.group("key")):
            close = _closing(line, match.end(), match.group("q"))
            spans.append((match.end(), close if close >= 0 else _rstrip(line, match.end(), len(line))))

    for match in INLINE_PAIR.finditer(line):
        key, start = match.group("key"), match.end()
        if not is_secret_key(key) or start >= len(line):
            continue
        if line[start] in "\"'":
            close = _closing(line, start + 1, line[start])
            spans.append((start + 1, close if close >= 0 else len(line)))
        elif line[start] in "[{":
            spans += _inline_container(line, start)
        else:
            lead = line[match.start() - 1] if match.start() else ""
            # In a query string "&" ends the value; in a quoted "KEY=value" the quote does.
            token = re.match(r"[^&#\s]+" if lead in "?&" and lead else r"[^\s%s]+" % lead if lead in "\"'" and lead
                             else r"[^ \t]+", line[start:])
            if token and not _exempt(key, token.group(0), False):
                spans.append((start, start + token.end()))

    for match in HEADER.finditer(line):
        key, start = match.group("key"), match.end()
        if not is_secret_key(key) or start >= len(line):
            continue
        if match.group("open"):
            close = _closing(line, start, match.group("open"))
            spans += _scheme_kept(line, start, close if close >= 0 else _rstrip(line, start, len(line)), key)
            continue
        before = line[:match.start()].rstrip()
        if before.endswith(("{", ",")) and line[start] not in "\"'[{":
            token = re.match(r"[^,}]+", line[start:])
            spans.append((start, _rstrip(line, start, start + token.end())))
        elif not _exempt(key, line[start:], False) and not _BLOCK_SCALAR.match(line[start:]):
            spans += _value(line, start, key)[0]

    stripped = line.lstrip()
    commented = stripped.startswith(("#", ";", "//"))
    match = DIRECTIVE.match(line)
    if match and not commented and key_strength(match.group("key")) == 2:
        end = len(line)
        rest = line[match.end():].rstrip()
        if rest.endswith(";"):
            end = match.end() + len(rest) - 1
        if not _exempt(match.group("key"), line[match.end():end], True):
            spans += _value(line, match.end(), match.group("key"), end=end)[0]
    match = LAST_VALUE.search(line)
    if match and key_strength(match.group("key")) == 2 and not _exempt(match.group("key"), match.group("value"), True):
        value = match.group("value")
        if value[0] in "\"'":
            spans += _scheme_kept(line, match.start("value") + 1, match.end("value") - 1, match.group("key"))
        else:
            spans.append(match.span("value"))

    for match in FLAG.finditer(line):
        if key_strength(match.group("key")) == 2 and not _exempt(match.group("key"), match.group("value"), False):
            start, end = match.span("value")
            if match.group("value")[0] in "\"'":
                start, end = start + 1, end - 1
            spans.append((start, end))
    for match in ARGV_FLAG.finditer(line):
        if key_strength(match.group("key")) == 2:
            close = _closing(line, match.end(), match.group("vq"))
            spans.append((match.end(), close if close >= 0 else len(line)))
    for tool, flag in _TOOL_FLAGS:
        if tool.search(line):
            spans += [m.span("value") for m in flag.finditer(line)]

    for match in AUTH_SCHEME.finditer(line):
        value = match.group("value")
        if len(value) >= 8 and (re.search(r"[0-9+/=_~.\-]", value) or re.search(r"[A-Z]", value[1:])):
            spans.append(match.span("value"))

    if netrc or _NETRC_LINE.search(line):
        for match in NETRC_TOKEN.finditer(line):
            start, end = match.span("value")
            if match.group("value")[0] == '"':
                start, end = start + 1, end - 1
            spans.append((start, end))

    match = PGPASS.match(line)
    if match:
        spans.append(match.span("pw"))

    section = _SECTION.match(line)
    if section and any(is_secret_key(part) for part in section.group("name").split(".")):
        states.append(("section", None))
    return spans, states


def _markers(line):
    """The BEGIN / END markers of private keys in a line: they stay whole ("PRIVATE KEY-----" is no key and
    its value, and a reader should see that a key is there)."""
    return [m.span() for pattern in (PRIVATE_BEGIN, PRIVATE_END) for m in pattern.finditer(line)]


def _outside(spans, protected):
    """The parts of `spans` that overlap none of the `protected` spans."""
    for low, high in protected:
        cut = []
        for start, end in spans:
            if end <= low or start >= high:
                cut.append((start, end))
                continue
            if start < low:
                cut.append((start, low))
            if end > high:
                cut.append((high, end))
        spans = cut
    return spans


def _whole_line(line):
    """In a file that holds secrets by its name (redis.pass, master.key): a line no rule masked is masked too,
    the value of a key: value or KEY=value line, else all of it but comments and punctuation."""
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", ";", "//")) or not any(c.isalnum() for c in stripped) \
            or _SECTION.match(line) or PRIVATE_BEGIN.search(line) or PRIVATE_END.search(line):
        return []
    match = re.match(r"\s*(?:-\s+)?[\"']?(?P<key>" + _KEY + r")[\"']?\s*(?:=|:(?!//))\s*", line)
    if match and match.end() < len(line):
        return _value(line, match.end(), match.group("key"))[0]
    first = _indent(line)
    return [(first, _rstrip(line, first, len(line)))]


def _indent(line):
    return len(line) - len(line.lstrip())


def _carry(line, state):
    """A state opened on an earlier line, applied to this one: (spans, the state or None when it ended here,
    whether the line rules still run on this line)."""
    kind, arg = state
    first = _indent(line)
    if kind == "pem":
        finish = PRIVATE_END.search(line)
        if finish:
            return [(first, finish.start())], None, True
        return [(first, _rstrip(line, first, len(line)))], state, False
    if kind == "quote":
        close = _closing(line, 0, arg)
        if close >= 0:
            return [(first, close)], None, True
        return [(first, _rstrip(line, first, len(line)))], state, False
    if kind == "container":
        depth, stack = arg
        spans, close, depth, stack = _container(line, 0, depth, stack)
        if close >= 0:
            return spans, None, True
        return spans, ("container", (depth, stack)), False
    if not line.strip():
        return [], state, kind != "section"
    if kind == "block":
        if first > arg:
            return [(first, _rstrip(line, first, len(line)))], state, False
        return [], None, True
    if kind == "nested":
        if first <= arg:
            return [], None, True
        return _nested_item(line, first), state, True
    # section: every value of a [secrets] table, up to the next table
    if _SECTION.match(line):
        return [], None, True
    match = re.match(r"\s*(?P<key>[^\s=:#;]+)\s*[=:]\s*", line)
    if match and not line.lstrip().startswith(("#", ";")):
        return _value(line, match.end(), match.group("key"))[0], state, True
    return [], state, True


def _nested_item(line, first):
    """The value part of a line under a secret YAML key: a list item, the value of a key: value, or the line."""
    start = first
    if line.startswith("- ", start) or line[start:].rstrip() == "-":
        start += 1
        while start < len(line) and line[start] == " ":
            start += 1
    match = re.compile(r"(?P<key>" + _KEY + r")\s*:(?:\s+|$)").match(line, start)
    if match:
        start = match.end()
        value = line[start:]
        if not value.strip() or _BLOCK_SCALAR.match(value):
            return []
    return _value(line, start, "")[0]


def _merge(spans, length):
    out = []
    for start, end in sorted((max(0, a), min(length, b)) for a, b in spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _scan(text, secret_file=False):
    """[(line, [(start, end), ...])]: every line of `text` (only "\\n" ends one) with its secret spans. With
    `secret_file` (see is_secret_file), a line that no rule masks is masked whole (_whole_line)."""
    lines = text.split("\n")
    netrc = any(_NETRC_START.match(line) for line in lines)
    out, states = [], []
    for line in lines:
        spans, kept, rules = [], [], True
        for state in states:
            found, state, run = _carry(line, state)
            spans += found
            if state is not None:
                kept.append(state)
            rules = rules and run
        if rules:
            found, opened = _line_rules(line, netrc)
            spans += found
            kept += opened
            if secret_file and not any(line[a:b].strip() for a, b in spans):
                spans += _whole_line(line)
        states = kept
        spans = _outside(spans, _markers(line))
        merged = [(a, b) for a, b in _merge(spans, len(line)) if line[a:b].strip()]
        out.append((line, merged))
    return out


# Names of files that are not secret though their words look so, and of files that are though they do not.
_PUBLIC_FILES = frozenset(("passwd", "group", "authorized_keys", "authorized_keys2", "known_hosts", "ssh_known_hosts"))
_PUBLIC_EXTENSIONS = (".pub", ".crt", ".cer", ".csr", ".der")
_SECRET_FILES = frozenset(("shadow", "gshadow", "htpasswd", ".htpasswd", "master.key", "credentials"))
_SECRET_EXTENSIONS = (".key", ".keytab", ".p12", ".pfx", ".jks", ".kdbx", ".gpg", ".asc")


def is_secret_file(path):
    """Whether a file's name says that its content as a whole is secret (redis.pass, db_password, api.token,
    server.key, .htpasswd): a bare value in it has no key name that would give it away."""
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    lower = name.lower()
    if lower in _PUBLIC_FILES or lower.endswith(_PUBLIC_EXTENSIONS):
        return False
    if lower in _SECRET_FILES or lower.endswith(_SECRET_EXTENSIONS):
        return True
    return key_strength(name.lstrip(".")) == 2


def _render(line, spans, masks):
    parts, pos = [], 0
    for (start, end), mask in zip(spans, masks):
        parts.append(line[pos:start])
        parts.append(mask)
        pos = end
    parts.append(line[pos:])
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ public


def redact_line(line):
    """One line with its secret values masked (no context from the lines around it)."""
    spans = [(a, b) for a, b in _merge(_outside(_line_rules(line)[0], _markers(line)), len(line)) if line[a:b].strip()]
    return _render(line, spans, [REDACTED] * len(spans))


def redact_text(text, secret_file=False):
    """Text with secret values replaced; key names stay so a reader sees *what* changed. `secret_file`: the text
    is the content of a file whose name says it is secret as a whole (see is_secret_file)."""
    # Only "\n" ends a line: splitting on \r or unicode separators would cut a value in two and leak its tail.
    return "\n".join(_render(line, spans, [REDACTED] * len(spans)) for line, spans in _scan(text, secret_file))


def redact_pair(before, after, secret_file=False):
    """The two sides of a diff, redacted together. A secret that is the same on both sides is masked the same;
    one whose value differs gets CHANGED_BEFORE on one side and CHANGED_AFTER on the other, so its line shows
    in the diff as a change while neither value shows. `secret_file` as for redact_text."""
    old, new = _scan(before, secret_file), _scan(after, secret_file)
    old_masks = [[REDACTED] * len(spans) for _line, spans in old]
    new_masks = [[REDACTED] * len(spans) for _line, spans in new]
    old_shown = [_render(line, spans, masks) for (line, spans), masks in zip(old, old_masks)]
    new_shown = [_render(line, spans, masks) for (line, spans), masks in zip(new, new_masks)]
    matcher = difflib.SequenceMatcher(None, old_shown, new_shown, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            # The same line but for its secrets: mark each secret whose value differs.
            for i, j in zip(range(i1, i2), range(j1, j2)):
                (old_line, old_spans), (new_line, new_spans) = old[i], new[j]
                for index, ((a, b), (c, d)) in enumerate(zip(old_spans, new_spans)):
                    if old_line[a:b] != new_line[c:d]:
                        old_masks[i][index], new_masks[j][index] = CHANGED_BEFORE, CHANGED_AFTER
        elif tag == "replace":
            # Lines that differ anyway: say which of their secrets are not on the other side.
            old_values = {line[a:b] for line, spans in old[i1:i2] for a, b in spans}
            new_values = {line[a:b] for line, spans in new[j1:j2] for a, b in spans}
            for i in range(i1, i2):
                line, spans = old[i]
                for index, (a, b) in enumerate(spans):
                    if line[a:b] not in new_values:
                        old_masks[i][index] = CHANGED_BEFORE
            for j in range(j1, j2):
                line, spans = new[j]
                for index, (a, b) in enumerate(spans):
                    if line[a:b] not in old_values:
                        new_masks[j][index] = CHANGED_AFTER
    return ("\n".join(_render(line, spans, masks) for (line, spans), masks in zip(old, old_masks)),
            "\n".join(_render(line, spans, masks) for (line, spans), masks in zip(new, new_masks)))


def redact_output(output, limit=None):
    """What a command printed (bytes or text), fit for a result or a message: decoded, terminal escapes removed
    (a colour code between a key and its value would hide the pair), redacted whole, then, with `limit`, cut to
    its last `limit` characters. Cutting comes last so that a cut never separates a value from its key."""
    if output is None:
        return ""
    if isinstance(output, (bytes, bytearray)):
        output = bytes(output).decode("utf-8", "replace")
    text = redact_text(_ANSI.sub("", str(output)).replace("\r\n", "\n")).strip()
    if limit is not None and len(text) > limit:
        text = "..." + text[-limit:]
    return text


def short_digest(value, length=12):
    """The first `length` hex digits of a sha256: enough to tell bodies apart, while the full hash of a short
    secret file (a password, a token) would let anyone who reads the result confirm guesses of it offline."""
    if not isinstance(value, str):
        return value
    prefix = "sha256:" if value.startswith("sha256:") else ""
    return prefix + value[len(prefix):len(prefix) + length]


def shorten_digests(data, keys=("blob", "sha256")):
    """A copy of JSON-like data with the value of every key in `keys` shortened by short_digest."""
    if isinstance(data, dict):
        return {key: short_digest(value) if key in keys else shorten_digests(value, keys) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [shorten_digests(item, keys) for item in data]
    return data


# Larger bodies are not shown in diffs.
TEXT_LIMIT = 256 * 1024


def printable_text(data, limit=TEXT_LIMIT):
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
