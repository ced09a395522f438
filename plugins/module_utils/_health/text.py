# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How values, numbers, errors and URLs appear in the health checks' details and messages."""

from __future__ import annotations

import socket
import ssl
import urllib.parse

# Characters of a body, an output or an answer quoted in a message.
TEXT_TAIL = 200


def show(value, limit=120):
    """A value for a message: quoted, control characters escaped, a very long one cut."""
    if isinstance(value, str):
        text = "'%s'" % value if value.isprintable() else repr(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rounded(seconds, digits=4):
    return round(seconds, digits)


def number_text(number):
    """A number as people read it: 0.05, 3, 1.234e-05."""
    if number is None:
        return "none"
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return "%.4g" % number


def tail(data):
    """The end of a command's output or an answer's body, as text."""
    text = data.decode("utf-8", errors="replace").strip()
    if len(text) > TEXT_TAIL:
        text = "..." + text[-TEXT_TAIL:]
    return text


def short(text, limit=80):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def timeout_text(timeout):
    return "timed out after %ss" % rounded(timeout, 3)


def os_error_text(err):
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return "cannot resolve host name (%s)" % (err.strerror or err)
    if isinstance(err, ssl.SSLError):
        return "TLS error: %s" % (getattr(err, "reason", None) or err)
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def redact_url(url):
    """The URL without any password in it, for details and errors."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # pylint: disable=pointless-statement  # raises on a broken port, like the request would
    except ValueError:
        # Not parseable: hide whatever stands before an @ of the authority.
        scheme, sep, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = "********@" + authority.rpartition("@")[2]
        return scheme + sep + authority + slash + path
    if parts.password is None:
        return url
    netloc = "%s:********@%s" % (parts.username or "", parts.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
