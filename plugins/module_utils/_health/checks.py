# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks: one sample each, bounded by a time budget. `HttpCheck`, `TcpCheck` and `CommandCheck` here; the
prometheus check is in prometheus.py."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import (
    TEXT_TAIL,
    os_error_text,
    redact_url,
    rounded,
    show,
    tail,
    timeout_text,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.workers import kill_group, killed_on_shutdown

# The most of a body (or of a Prometheus answer, 16 times this) that is read.
BODY_LIMIT = 1024 * 1024


class Check:
    """One check; `run(budget)` takes one sample in at most about `budget` seconds."""

    type = None

    def __init__(self, request_timeout):
        self.request_timeout = request_timeout

    def label(self):
        raise NotImplementedError

    def sample(self, budget):
        """Return (ok, detail_or_error, extra) for one sample; must not raise."""
        raise NotImplementedError

    def run(self, budget, clock=time.monotonic):
        timeout = min(self.request_timeout, budget)
        if timeout <= 0:
            return {"type": self.type, "ok": False, "latency": 0.0,
                    "error": "%s: not run, the deadline was reached" % self.label()}
        started = clock()
        try:
            ok, text, extra = self.sample(timeout)
        except Exception as err:  # pylint: disable=broad-except
            # A check must never take the poller down: a check that broke is a failed sample.
            ok, text, extra = False, "the check could not run: %s: %s" % (type(err).__name__, err), {}
        latency = clock() - started
        result = {"type": self.type, "ok": ok, "latency": rounded(latency)}
        result.update(extra)
        result["detail" if ok else "error"] = "%s: %s" % (self.label(), text)
        return result


_OPENERS = {}
_OPENERS_LOCK = threading.Lock()


def opener(validate_certs):
    """One shared opener per certificate policy: loading the CA store costs tens of milliseconds, far
    too much to repeat for every check of a large fleet."""
    with _OPENERS_LOCK:
        shared = _OPENERS.get(validate_certs)
        if shared is None:
            if validate_certs:
                context = ssl.create_default_context()
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            shared = _OPENERS[validate_certs] = urllib.request.build_opener(
                urllib.request.HTTPSHandler(context=context))
        return shared


class HttpCheck(Check):
    """An HTTP request: the status, the body (a pattern) and the latency."""

    type = "http"

    def __init__(self, url, method, status, body, request_timeout, max_latency, headers, validate_certs):
        super().__init__(request_timeout)
        self.url = url
        self.method = method
        self.status = tuple(status)
        self.body = body
        self.max_latency = max_latency
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs

    def label(self):
        return "%s %s" % (self.method, redact_url(self.url))

    def sample(self, budget):
        request = urllib.request.Request(self.url, method=self.method, headers=self.headers)
        started = time.monotonic()
        try:
            response = opener(self.validate_certs).open(request, timeout=budget)
        except urllib.error.HTTPError as err:
            response = err  # a 4xx/5xx answer is still an answer with a status
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, OSError):
                if isinstance(reason, socket.timeout):
                    return False, timeout_text(budget), {"status": None}
                return False, os_error_text(reason), {"status": None}
            return False, str(reason), {"status": None}
        except socket.timeout:
            return False, timeout_text(budget), {"status": None}
        except (OSError, ValueError) as err:
            return False, os_error_text(err), {"status": None}
        except Exception as err:  # pylint: disable=broad-except
            # http.client raises its own exceptions for broken answers (BadStatusLine and friends).
            return False, "bad answer: %s: %s" % (type(err).__name__, err), {"status": None}
        try:
            status = response.status if getattr(response, "status", None) is not None else response.code
            try:
                data = response.read(BODY_LIMIT) or b""
            except socket.timeout:
                return False, "status %s, then %s reading the body" % (status, timeout_text(budget)), \
                    {"status": status}
            except Exception as err:  # pylint: disable=broad-except
                return False, "status %s, then the body broke off: %s" % (status, os_error_text(err)), \
                    {"status": status}
        finally:
            response.close()
        latency = time.monotonic() - started
        extra = {"status": status}
        if status not in self.status:
            return False, "status %s, expected %s" % (
                status, " or ".join(str(s) for s in self.status)), extra
        if latency > budget:
            return False, "status %s, but the answer took %.3fs (over the %ss request timeout)" % (
                status, latency, rounded(budget, 3)), extra
        if self.max_latency is not None and latency > self.max_latency:
            return False, "status %s, but slow: %.3fs over max_latency %ss" % (
                status, latency, self.max_latency), extra
        if self.body is not None:
            text = data.decode("utf-8", errors="replace")
            if not self.body.search(text):
                snippet = text[:TEXT_TAIL].replace("\n", "\\n")
                return False, "status %s, body does not match %s (body starts %s)" % (
                    status, show(self.body.pattern), show(snippet)), extra
        return True, "status %s in %.3fs" % (status, latency), extra


class TcpCheck(Check):
    """A TCP connection."""

    type = "tcp"

    def __init__(self, host, port, request_timeout):
        super().__init__(request_timeout)
        self.host = host
        self.port = port

    def label(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "tcp %s:%s" % (host, self.port)

    def sample(self, budget):
        started = time.monotonic()
        try:
            with socket.create_connection((self.host, self.port), timeout=budget):
                pass
        except socket.timeout:
            return False, timeout_text(budget), {}
        except OSError as err:
            return False, os_error_text(err), {}
        return True, "connected in %.3fs" % (time.monotonic() - started), {}


class CommandCheck(Check):
    """A command (an argv list, never a shell): its return code and its output (a pattern)."""

    type = "command"

    def __init__(self, argv, rc, stdout, request_timeout):
        super().__init__(request_timeout)
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout

    def label(self):
        shown = " ".join(self.argv)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return "command %s" % shown

    def sample(self, budget):
        try:
            # An argv list, never a shell; its own session so a timeout can end the whole group.
            proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            return False, "cannot run %s: %s" % (show(self.argv[0]), os_error_text(err)), {"rc": None}
        with killed_on_shutdown(proc):
            try:
                out, err = proc.communicate(timeout=budget)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                proc.communicate()
                return False, timeout_text(budget), {"rc": None}
        extra = {"rc": proc.returncode}
        if proc.returncode != self.rc:
            said = tail(err) or tail(out)
            return False, "rc %s, expected %s%s" % (
                proc.returncode, self.rc, (": " + said) if said else ""), extra
        if self.stdout is not None:
            text = out.decode("utf-8", errors="replace")
            if not self.stdout.search(text):
                return False, "rc %s, stdout does not match %s (stdout ends %s)" % (
                    proc.returncode, show(self.stdout.pattern), show(tail(out))), extra
        return True, "rc %s" % proc.returncode, extra
