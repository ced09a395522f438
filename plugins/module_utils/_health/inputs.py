# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the values the health checks and the watch take: numbers, patterns, URLs, headers, hosts,
queries and programs. Each raises `HealthInputError` with a message naming the option and the bad value."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import urllib.parse

from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import kind_of
from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import number_text, redact_url, show

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class HealthInputError(ValueError):
    """Bad input: the message names the option and the bad value."""


def number(value, where, minimum=None, strict=True, maximum=None, unit=""):
    """A float from an int/float (or numeric string); `strict` means > minimum, else >= minimum; `unit` (" seconds")
    follows the maximum in its message."""
    if isinstance(value, bool):
        raise HealthInputError("%s: %s is not a number" % (where, show(value)))
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise HealthInputError("%s: %s is not a number" % (where, show(value))) from None
    except OverflowError:
        result = math.inf  # an integer too large for a float
    if math.isnan(result) or math.isinf(result):
        raise HealthInputError("%s: %s is not a finite number" % (where, show(value)))
    if maximum is not None and result > maximum:
        raise HealthInputError("%s: %s is more than %s%s; give a smaller number"
                               % (where, show(value), number_text(maximum), unit))
    if minimum is not None:
        if strict and result <= minimum:
            raise HealthInputError("%s: %s must be greater than %s" % (where, show(value), minimum))
        if not strict and result < minimum:
            raise HealthInputError("%s: %s must be %s or more" % (where, show(value), minimum))
    return result


def integer(value, where, minimum=None, maximum=None, what=None):
    if isinstance(value, bool):
        raise HealthInputError("%s: %s is not an integer" % (where, show(value)))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.match(r"^-?[0-9]+$", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise HealthInputError("%s: %s is not an integer" % (where, show(value)))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if what:
            raise HealthInputError("%s: %s is not %s" % (where, show(value), what))
        if maximum is None:
            if minimum == 1:
                raise HealthInputError("%s: %s must be greater than 0" % (where, show(value)))
            raise HealthInputError("%s: %s must be %s or more" % (where, show(value), minimum))
        raise HealthInputError("%s: %s must be between %s and %s" % (where, show(value), minimum, maximum))
    return value


def pattern(value, where):
    if not isinstance(value, str):
        raise HealthInputError("%s: %s is not a string (a regular expression)" % (where, show(value)))
    try:
        return re.compile(value)
    except re.error as err:
        raise HealthInputError("%s: %s is not a valid regular expression: %s" % (where, show(value), err)) from None


def boolean(value, where):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "on", "1", "no", "false", "off", "0"):
        return value.lower() in ("yes", "true", "on", "1")
    raise HealthInputError("%s: %s is not a boolean" % (where, show(value)))


def check_program(program, where):
    """An absolute program path that exists must be a regular file (a FIFO or a device would never run, and a
    directory or a dangling link is a typo); a missing one with a space in it is a shell line given as a program.
    Any other missing program stays a failed sample: it may be installed later."""
    if not os.path.lexists(program):
        if any(char.isspace() for char in program):
            raise HealthInputError("%s: %s is not a program: give the program and each argument as separate items "
                                   "of argv (argv is never run through a shell)" % (where, show(program)))
        return
    if not os.path.isabs(program):
        return
    try:
        mode = os.stat(program).st_mode
    except OSError as err:
        if os.path.islink(program) and not os.path.exists(program):
            raise HealthInputError("%s: %s is a symbolic link to %s, which does not exist; give the program's real "
                                   "path" % (where, show(program), show(os.readlink(program)))) from None
        raise HealthInputError("%s: %s cannot be read: %s" % (where, show(program), err.strerror or err)) from None
    if not stat.S_ISREG(mode):
        raise HealthInputError("%s: %s is %s, not a program; give the path of an executable file"
                               % (where, show(program), kind_of(mode)))


def parse_url(url, where, kind="http"):
    """An http(s) URL with a host, a valid port and no credentials; HealthInputError naming `where` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise HealthInputError("%s: %s is not a URL; give an http:// or https:// URL" % (where, show(url)))
    if _CONTROL_RE.search(url):
        raise HealthInputError("%s: %s holds a space or a control character; give the URL without them "
                               "(percent-encode them: %%20)" % (where, show(redact_url(url))))
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as err:
        raise HealthInputError("%s: %s is not a valid URL (%s)" % (where, show(redact_url(url)), err)) from None
    if parts.scheme not in ("http", "https") or not host:
        example = {"prometheus": "http://127.0.0.1:9090", "k8s_rollout": "https://127.0.0.1:6443"}.get(
            kind, "http://127.0.0.1:8080/health")
        raise HealthInputError("%s: %s is not an http:// or https:// URL with a host (for example %s)"
                               % (where, show(redact_url(url)), example))
    if port == 0:
        raise HealthInputError("%s: %s has port 0; give a TCP port (1-65535)" % (where, show(url)))
    if not (parts.path + parts.query + parts.fragment).isascii():
        raise HealthInputError("%s: %s holds non-ASCII characters in its path or query; percent-encode them "
                               "(%%C3%%BC for u-umlaut)" % (where, show(redact_url(url))))
    if parts.username is not None or parts.password is not None:
        raise HealthInputError("%s: %s carries credentials; send them in headers instead (Authorization)"
                               % (where, show(redact_url(url))))
    return url


def parse_headers(given, where):
    headers = given.get("headers", {})
    if not isinstance(headers, dict):
        raise HealthInputError("%s.headers: not a dictionary of header names to values" % where)
    clean = {}
    for name, value in headers.items():
        # Never echo a header value: it may be a secret.
        if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
            raise HealthInputError("%s.headers: %s is not a valid header name" % (where, show(name)))
        if value is None or isinstance(value, (dict, list)):
            raise HealthInputError("%s.headers: the value of %s must be a string" % (where, show(name)))
        value = str(value)
        if any((ord(char) < 32 and char != "\t") or ord(char) == 127 for char in value):
            raise HealthInputError("%s.headers: the value of %s contains a line break or a control character; "
                                   "give it on one line" % (where, show(name)))
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise HealthInputError("%s.headers: the value of %s holds characters HTTP headers cannot carry "
                                   "(only Latin-1); encode it (base64, percent-encoding)" % (where, show(name))) \
                from None
        clean[name] = value
    return clean


def parse_host(value, where):
    """A host name or an IP address (IPv6 without brackets); nothing else reaches a socket."""
    if not isinstance(value, str) or not value.strip():
        raise HealthInputError("%s: %s is not a host name or address" % (where, show(value)))
    host = value.strip()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if host.startswith("[") and host.endswith("]"):
        raise HealthInputError("%s: %s: give an IPv6 address without brackets (%s)" % (where, show(value), host[1:-1]))
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        hint = ""
        if "://" in host:
            hint = "; give only the host, not a URL"
        elif ":" in host:
            hint = "; give the port in port, not in host"
        raise HealthInputError("%s: %s is not a host name or IP address%s" % (where, show(value), hint))
    return host


def parse_query(query, where):
    """A PromQL expression: a non-empty string without NUL bytes."""
    if not isinstance(query, str) or not query.strip():
        raise HealthInputError("%s: %s is not a PromQL query (a non-empty string)" % (where, show(query)))
    if "\x00" in query:
        raise HealthInputError("%s: %s holds a NUL byte; give the PromQL expression as text" % (where, show(query)))
    return query.strip()
