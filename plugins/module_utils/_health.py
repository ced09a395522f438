# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health gating: checks, the verdict policy and the concurrent poller behind `health_gate`.

Private to the collection and standard library only. The pieces, from the bottom up:

* `HttpCheck`, `TcpCheck`, `CommandCheck`, `PrometheusCheck`: one sample each, bounded by a time budget.
* `prometheus_query()`: one instant query against the Prometheus HTTP API (/api/v1/query), also used
  by the rollback_watch module to read signals.
* `Streak`: the pure policy state machine (consecutive passing / failing rounds -> a verdict).
* `poll()`: one scheduler loop that dispatches each target's due round to a bounded thread pool,
  waits on a condition bounded by the next due time or the deadline (never a fixed sleep) and
  returns as soon as every target has a verdict.
* `parse_policy()` / `parse_targets()`: input validation with messages that name the option and
  the bad value; nothing runs when they raise `HealthInputError`.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import math
import os
import queue
import re
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import Future

from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import kind_of

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
TIMEOUT = "timeout"
# How bad a verdict is, for the overall verdict of several targets: the worst one wins.
# `unhealthy` (proven broken) is worse than `timeout` (not proven healthy in time).
VERDICT_RANK = {HEALTHY: 0, TIMEOUT: 1, UNHEALTHY: 2}

CHECK_TYPES = ("http", "tcp", "command", "prometheus")
ON_EMPTY = ("fail", "pass", "zero")
DEFAULT_REQUEST_TIMEOUT = 5.0
DEFAULT_HOST = "127.0.0.1"
MAX_WORKERS = 64
SAMPLES_KEPT = 20
BODY_LIMIT = 1024 * 1024
TEXT_TAIL = 200

# Upper bounds of the time options: past these a number is a typo (1e12), and the platform's timers overflow.
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_REQUEST_TIMEOUT = 3600.0
# Exit statuses a command can end with: 0-255, or minus the signal that killed it.
RC_RANGE = (-64, 255)

_METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL_RE = re.compile(r"[\x00-\x20\x7f]")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

_COMMON_KEYS = ("type", "request_timeout")
_TYPE_KEYS = {
    "http": _COMMON_KEYS + ("url", "method", "status", "body", "max_latency", "headers", "validate_certs"),
    "tcp": _COMMON_KEYS + ("host", "port"),
    "command": _COMMON_KEYS + ("argv", "rc", "stdout"),
    "prometheus": _COMMON_KEYS + ("url", "query", "max", "min", "baseline_query", "max_ratio", "on_empty",
                                  "headers", "validate_certs"),
}
_ALL_KEYS = frozenset(k for keys in _TYPE_KEYS.values() for k in keys)

# The argument spec of one check, shared by the modules that take checks (health_gate, rollback_watch).
CHECK_OPTIONS = dict(
    type=dict(type="str", required=True),
    request_timeout=dict(type="float", default=DEFAULT_REQUEST_TIMEOUT),
    url=dict(type="str"),
    method=dict(type="str"),
    status=dict(type="list", elements="int"),
    body=dict(type="str"),
    max_latency=dict(type="float"),
    headers=dict(type="dict", no_log=True),
    validate_certs=dict(type="bool"),
    host=dict(type="str"),
    port=dict(type="int"),
    argv=dict(type="list", elements="str"),
    rc=dict(type="int"),
    stdout=dict(type="str"),
    query=dict(type="str"),
    max=dict(type="float"),
    min=dict(type="float"),
    baseline_query=dict(type="str"),
    max_ratio=dict(type="float"),
    on_empty=dict(type="str", choices=list(ON_EMPTY)),
)


class HealthInputError(ValueError):
    """Bad input: the message names the option and the bad value."""


def _show(value, limit=120):
    """A value for a message: quoted, control characters escaped, a very long one cut."""
    if isinstance(value, str):
        text = "'%s'" % value if value.isprintable() else repr(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _r(seconds, digits=4):
    return round(seconds, digits)


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------

def _number(value, where, minimum=None, strict=True, maximum=None):
    """A float from an int/float (or numeric string); `strict` means > minimum, else >= minimum."""
    if isinstance(value, bool):
        raise HealthInputError("%s: %s is not a number" % (where, _show(value)))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HealthInputError("%s: %s is not a number" % (where, _show(value))) from None
    except OverflowError:
        number = math.inf  # an integer too large for a float
    if math.isnan(number) or math.isinf(number):
        raise HealthInputError("%s: %s is not a finite number" % (where, _show(value)))
    if maximum is not None and number > maximum:
        raise HealthInputError("%s: %s is more than %s; give a smaller number" % (where, _show(value), _g(maximum)))
    if minimum is not None:
        if strict and number <= minimum:
            raise HealthInputError("%s: %s must be greater than %s" % (where, _show(value), minimum))
        if not strict and number < minimum:
            raise HealthInputError("%s: %s must be %s or more" % (where, _show(value), minimum))
    return number


def _integer(value, where, minimum=None, maximum=None, what=None):
    if isinstance(value, bool):
        raise HealthInputError("%s: %s is not an integer" % (where, _show(value)))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.match(r"^-?[0-9]+$", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise HealthInputError("%s: %s is not an integer" % (where, _show(value)))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if what:
            raise HealthInputError("%s: %s is not %s" % (where, _show(value), what))
        if maximum is None:
            if minimum == 1:
                raise HealthInputError("%s: %s must be greater than 0" % (where, _show(value)))
            raise HealthInputError("%s: %s must be %s or more" % (where, _show(value), minimum))
        raise HealthInputError("%s: %s must be between %s and %s" % (where, _show(value), minimum, maximum))
    return value


def _pattern(value, where):
    if not isinstance(value, str):
        raise HealthInputError("%s: %s is not a string (a regular expression)" % (where, _show(value)))
    try:
        return re.compile(value)
    except re.error as err:
        raise HealthInputError("%s: %s is not a valid regular expression: %s" % (where, _show(value), err)) from None


def _boolean(value, where):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "on", "1", "no", "false", "off", "0"):
        return value.lower() in ("yes", "true", "on", "1")
    raise HealthInputError("%s: %s is not a boolean" % (where, _show(value)))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

# The command each worker thread is running, so that a pool's shutdown (the deadline, SIGTERM) can end them.
_RUNNING = {}
_RUNNING_LOCK = threading.Lock()


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass  # it ended on its own


class WorkerPool:
    """Daemon worker threads for rounds and queries, started as work arrives (at most `max_workers`).

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so a round stuck on an endpoint that
    never answers, or a long command, would hold the module past its deadline or a SIGTERM. Daemon threads do not
    hold the exit, and `shutdown()` kills the commands they run.
    """

    def __init__(self, max_workers, name="health_gate"):
        self._max = max(1, max_workers)
        self._name = name
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = []
        self._idle = 0
        self._closed = False

    def submit(self, fn, *args):
        future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._queue.put((future, fn, args))
            if self._queue.qsize() > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name="%s_%d" % (self._name, len(self._threads)),
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self):
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # pylint: disable=broad-except  # handed to whoever waits on the future
                future.set_exception(err)

    def shutdown(self):
        """Cancel the work not started, stop the threads once idle, and kill the commands still running."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for unused in threads:
            self._queue.put(None)
        with _RUNNING_LOCK:
            procs = [proc for thread, proc in _RUNNING.items() if thread in threads]
        for proc in procs:
            _kill_group(proc)


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
        result = {"type": self.type, "ok": ok, "latency": _r(latency)}
        result.update(extra)
        result["detail" if ok else "error"] = "%s: %s" % (self.label(), text)
        return result


def _timeout_text(timeout):
    return "timed out after %ss" % _r(timeout, 3)


def _os_error_text(err):
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return "cannot resolve host name (%s)" % (err.strerror or err)
    if isinstance(err, ssl.SSLError):
        return "TLS error: %s" % (getattr(err, "reason", None) or err)
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _redact_url(url):
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


_OPENERS = {}
_OPENERS_LOCK = threading.Lock()


def _opener(validate_certs):
    """One shared opener per certificate policy: loading the CA store costs tens of milliseconds, far
    too much to repeat for every check of a large fleet."""
    with _OPENERS_LOCK:
        opener = _OPENERS.get(validate_certs)
        if opener is None:
            if validate_certs:
                context = ssl.create_default_context()
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            opener = _OPENERS[validate_certs] = urllib.request.build_opener(
                urllib.request.HTTPSHandler(context=context))
        return opener


class HttpCheck(Check):
    type = "http"

    def __init__(self, url, method="GET", status=(200,), body=None, request_timeout=DEFAULT_REQUEST_TIMEOUT,
                 max_latency=None, headers=None, validate_certs=True):
        super().__init__(request_timeout)
        self.url = url
        self.method = method
        self.status = tuple(status)
        self.body = body
        self.max_latency = max_latency
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs

    def label(self):
        return "%s %s" % (self.method, _redact_url(self.url))

    def sample(self, budget):
        request = urllib.request.Request(self.url, method=self.method, headers=self.headers)
        started = time.monotonic()
        try:
            response = _opener(self.validate_certs).open(request, timeout=budget)
        except urllib.error.HTTPError as err:
            response = err  # a 4xx/5xx answer is still an answer with a status
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, OSError):
                if isinstance(reason, socket.timeout):
                    return False, _timeout_text(budget), {"status": None}
                return False, _os_error_text(reason), {"status": None}
            return False, str(reason), {"status": None}
        except socket.timeout:
            return False, _timeout_text(budget), {"status": None}
        except (OSError, ValueError) as err:
            return False, _os_error_text(err), {"status": None}
        except Exception as err:  # pylint: disable=broad-except
            # http.client raises its own exceptions for broken answers (BadStatusLine and friends).
            return False, "bad answer: %s: %s" % (type(err).__name__, err), {"status": None}
        try:
            status = response.status if getattr(response, "status", None) is not None else response.code
            try:
                data = response.read(BODY_LIMIT) or b""
            except socket.timeout:
                return False, "status %s, then %s reading the body" % (status, _timeout_text(budget)), \
                    {"status": status}
            except Exception as err:  # pylint: disable=broad-except
                return False, "status %s, then the body broke off: %s" % (status, _os_error_text(err)), \
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
                status, latency, _r(budget, 3)), extra
        if self.max_latency is not None and latency > self.max_latency:
            return False, "status %s, but slow: %.3fs over max_latency %ss" % (
                status, latency, self.max_latency), extra
        if self.body is not None:
            text = data.decode("utf-8", errors="replace")
            if not self.body.search(text):
                snippet = text[:TEXT_TAIL].replace("\n", "\\n")
                return False, "status %s, body does not match %s (body starts %s)" % (
                    status, _show(self.body.pattern), _show(snippet)), extra
        return True, "status %s in %.3fs" % (status, latency), extra


class TcpCheck(Check):
    type = "tcp"

    def __init__(self, port, host=DEFAULT_HOST, request_timeout=DEFAULT_REQUEST_TIMEOUT):
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
            return False, _timeout_text(budget), {}
        except OSError as err:
            return False, _os_error_text(err), {}
        return True, "connected in %.3fs" % (time.monotonic() - started), {}


def _tail(data):
    text = data.decode("utf-8", errors="replace").strip()
    if len(text) > TEXT_TAIL:
        text = "..." + text[-TEXT_TAIL:]
    return text


class CommandCheck(Check):
    type = "command"

    def __init__(self, argv, rc=0, stdout=None, request_timeout=DEFAULT_REQUEST_TIMEOUT):
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
            return False, "cannot run %s: %s" % (_show(self.argv[0]), _os_error_text(err)), {"rc": None}
        me = threading.current_thread()
        with _RUNNING_LOCK:
            _RUNNING[me] = proc
        try:
            out, err = proc.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return False, _timeout_text(budget), {"rc": None}
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(me, None)
        extra = {"rc": proc.returncode}
        if proc.returncode != self.rc:
            said = _tail(err) or _tail(out)
            return False, "rc %s, expected %s%s" % (
                proc.returncode, self.rc, (": " + said) if said else ""), extra
        if self.stdout is not None:
            text = out.decode("utf-8", errors="replace")
            if not self.stdout.search(text):
                return False, "rc %s, stdout does not match %s (stdout ends %s)" % (
                    proc.returncode, _show(self.stdout.pattern), _show(_tail(out))), extra
        return True, "rc %s" % proc.returncode, extra


class PrometheusError(Exception):
    """A query that gave no usable answer: the message says why (no answer, an error from Prometheus...)."""


def _short(text, limit=80):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def query_url(base_url, query):
    """The /api/v1/query URL of an instant query; `base_url` is the server (a path prefix is kept) or the
    full API endpoint."""
    parts = urllib.parse.urlsplit(base_url)
    path = parts.path.rstrip("/")
    if not path.endswith("/api/v1/query"):
        path += "/api/v1/query"
    return urllib.parse.urlunsplit(parts._replace(path=path, query=urllib.parse.urlencode({"query": query}),
                                                  fragment=""))


def _labels(metric):
    """`{a="1",b="2"}` for a series' labels (the metric name first when there is one)."""
    metric = dict(metric or {})
    name = metric.pop("__name__", "")
    inner = ",".join('%s="%s"' % (k, metric[k]) for k in sorted(metric))
    return "%s{%s}" % (name, inner) if inner or not name else name


def _float(text, where):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PrometheusError("%s: %s is not a number" % (where, _show(text))) from None


def prometheus_query(base_url, query, timeout, headers=None, validate_certs=True):
    """The values of one instant query: a list of (labels, float), [] when the result is empty.

    A scalar result is one value without labels. A range vector (matrix) or a string result, an error
    answer, a broken answer or no answer raises PrometheusError with a one-line message.
    """
    url = query_url(base_url, query)
    request = urllib.request.Request(url, headers=dict(headers or {}, Accept="application/json"))
    shown = _redact_url(base_url)
    try:
        response = _opener(validate_certs).open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        response = err  # 400/422/503 answers carry a JSON error body
    except urllib.error.URLError as err:
        reason = err.reason
        text = _os_error_text(reason) if isinstance(reason, OSError) else str(reason)
        raise PrometheusError("Prometheus %s: %s" % (shown, text)) from None
    except socket.timeout:
        raise PrometheusError("Prometheus %s: %s" % (shown, _timeout_text(timeout))) from None
    except (OSError, ValueError) as err:
        raise PrometheusError("Prometheus %s: %s" % (shown, _os_error_text(err))) from None
    except Exception as err:  # pylint: disable=broad-except
        raise PrometheusError("Prometheus %s: bad answer: %s: %s" % (shown, type(err).__name__, err)) from None
    try:
        status = getattr(response, "status", None) or response.code
        try:
            data = response.read(BODY_LIMIT * 16)
        except socket.timeout:
            raise PrometheusError("Prometheus %s: status %s, then %s reading the answer"
                                  % (shown, status, _timeout_text(timeout))) from None
        except Exception as err:  # pylint: disable=broad-except
            raise PrometheusError("Prometheus %s: status %s, then the answer broke off: %s"
                                  % (shown, status, _os_error_text(err))) from None
    finally:
        response.close()
    try:
        answer = json.loads(data.decode("utf-8"))
        if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
            raise ValueError("not an answer of the Prometheus HTTP API")
    except (ValueError, UnicodeDecodeError):
        raise PrometheusError("Prometheus %s: status %s, the answer is not the JSON of the HTTP API (is %s a "
                              "Prometheus server?): %s" % (shown, status, shown, _show(_tail(data)))) from None
    if answer.get("status") != "success":
        raise PrometheusError("Prometheus %s rejected the query %s: %s: %s" % (
            shown, _show(_short(query)), answer.get("errorType", "status %s" % status), answer.get("error", "")))
    result = answer.get("data") or {}
    kind = result.get("resultType")
    if kind == "scalar":
        return [({}, _float((result.get("result") or [None, None])[1], "scalar result"))]
    if kind == "vector":
        return [(item.get("metric") or {}, _float((item.get("value") or [None, None])[1], _labels(item.get("metric"))))
                for item in result.get("result") or []]
    if kind == "matrix":
        raise PrometheusError("the query %s returns a range vector; make it an instant value with a function "
                              "such as rate(), avg_over_time() or max_over_time()" % _show(_short(query)))
    raise PrometheusError("the query %s returns a %s, not a number" % (_show(_short(query)), kind or "nothing"))


def _finite_values(values):
    """The values that are numbers (NaN, from 0/0 such as an error ratio without traffic, counts as no data)."""
    return [(labels, value) for labels, value in values if not math.isnan(value)]


def _json_number(value):
    """A float that JSON can carry (infinities become None)."""
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return _r(value, 6)


class PrometheusCheck(Check):
    """A PromQL instant query against a threshold (`max`/`min`: every series must pass) or against a
    baseline query (`max_ratio`: one value each)."""

    type = "prometheus"

    def __init__(self, url, query, max=None, min=None, baseline_query=None, max_ratio=None,  # pylint: disable=redefined-builtin
                 on_empty="fail", headers=None, validate_certs=True, request_timeout=DEFAULT_REQUEST_TIMEOUT):
        super().__init__(request_timeout)
        self.url = url
        self.query = query
        self.max = max
        self.min = min
        self.baseline_query = baseline_query
        self.max_ratio = max_ratio
        self.on_empty = on_empty
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs

    def label(self):
        return "prometheus %s" % _show(_short(self.query))

    def _read(self, query, budget, what, notes):
        """The query's values, or None when it returned no data and on_empty is fail or pass; a note in
        `notes` says how no data was handled."""
        values = _finite_values(prometheus_query(self.url, query, budget, self.headers, self.validate_certs))
        if values:
            return values
        if self.on_empty == "zero":
            notes.append("%s returned no data, counted as 0 (on_empty=zero)" % what)
            return [({}, 0.0)]
        notes.append("%s returned no data (on_empty=%s)" % (what, self.on_empty))
        return None

    def sample(self, budget):
        deadline = time.monotonic() + budget
        notes = []
        try:
            values = self._read(self.query, budget, "the query", notes)
        except PrometheusError as err:
            return False, str(err), {"value": None}
        if values is None:
            return self.on_empty == "pass", "; ".join(notes), {"value": None}
        many = len(values) > 1
        extra = {"value": _json_number(values[0][1])}
        if many:
            extra["series"] = len(values)

        # A threshold: every series must pass; the worst one is reported.
        if self.max is not None or self.min is not None:
            worst = None
            for labels, value in values:
                if self.max is not None and value > self.max:
                    miss, text = value - self.max, "is above max %s" % _g(self.max)
                elif self.min is not None and value < self.min:
                    miss, text = self.min - value, "is below min %s" % _g(self.min)
                else:
                    continue
                if worst is None or miss > worst[0]:
                    worst = (miss, labels, value, text)
            limits = ", ".join(part for part in (
                "max %s" % _g(self.max) if self.max is not None else "",
                "min %s" % _g(self.min) if self.min is not None else "") if part)
            if worst is not None:
                unused, labels, value, text = worst
                extra["value"] = _json_number(value)
                series = "%s " % _labels(labels) if many and labels else ""
                return False, "; ".join(notes + ["%svalue %s %s" % (series, _g(value), text)]), extra
            if many:
                notes.append("%d series, all within %s" % (len(values), limits))
            else:
                notes.append("value %s within %s" % (_g(values[0][1]), limits))

        # A baseline ratio: one value each.
        if self.baseline_query is not None:
            if many:
                return False, "; ".join(notes + [
                    "the query returned %d series; a baseline ratio needs one value: aggregate it (sum, max, avg)"
                    % len(values)]), extra
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, "; ".join(notes + ["no time left for the baseline query (%s)"
                                                 % _timeout_text(budget)]), extra
            try:
                base_values = self._read(self.baseline_query, remaining, "the baseline query", notes)
            except PrometheusError as err:
                return False, "; ".join(notes + ["baseline: %s" % err]), extra
            if base_values is None:
                return self.on_empty == "pass", "; ".join(notes), extra
            if len(base_values) > 1:
                return False, "; ".join(notes + [
                    "the baseline query returned %d series; a baseline ratio needs one value: aggregate it "
                    "(sum, max, avg)" % len(base_values)]), extra
            value, base = values[0][1], base_values[0][1]
            if base == 0:
                # 0 against 0 is no change; anything against 0 is an unbounded increase.
                ratio = 1.0 if value == 0 else math.copysign(math.inf, value)
            else:
                ratio = value / base
            extra.update(baseline=_json_number(base), ratio=_json_number(ratio))
            compared = "value %s, baseline %s, ratio %s" % (
                _g(value), _g(base), "infinite" if math.isinf(ratio) else _g(ratio))
            if ratio > self.max_ratio:
                return False, "; ".join(notes + ["%s is above max_ratio %s" % (compared, _g(self.max_ratio))]), extra
            notes.append("%s within max_ratio %s" % (compared, _g(self.max_ratio)))
        return True, "; ".join(notes), extra


def _g(number):
    """A number as people read it: 0.05, 3, 1.234e-05."""
    if number is None:
        return "none"
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return "%.4g" % number


# --------------------------------------------------------------------------------------------
# Input parsing
# --------------------------------------------------------------------------------------------

class Policy:
    """When to sample and when a run of samples is a verdict."""

    def __init__(self, interval=1.0, timeout=60.0, successes=3, failures=3):
        self.interval = interval
        self.timeout = timeout
        self.successes = successes
        self.failures = failures

    def __repr__(self):
        return "Policy(interval=%r, timeout=%r, successes=%r, failures=%r)" % (
            self.interval, self.timeout, self.successes, self.failures)


class Target:
    def __init__(self, name, checks):
        self.name = name
        self.checks = list(checks)

    def __repr__(self):
        return "Target(%r, %d checks)" % (self.name, len(self.checks))


def parse_policy(interval=1.0, timeout=60.0, successes=3, failures=3):
    # A successes count that cannot fit in the timeout is allowed: the drill uses one to wait for "unhealthy".
    return Policy(
        interval=_number(interval, "interval", minimum=0, maximum=MAX_TIMEOUT),
        timeout=_number(timeout, "timeout", minimum=0, maximum=MAX_TIMEOUT),
        successes=_integer(successes, "successes", minimum=1),
        failures=_integer(failures, "failures", minimum=0),
    )


def _check_program(program, where):
    """An absolute program path that exists must be a regular file (a FIFO or a device would never run, and a
    directory or a dangling link is a typo); a missing one with a space in it is a shell line given as a program.
    Any other missing program stays a failed sample: it may be installed later."""
    if not os.path.lexists(program):
        if any(char.isspace() for char in program):
            raise HealthInputError("%s: %s is not a program: give the program and each argument as separate items "
                                   "of argv (argv is never run through a shell)" % (where, _show(program)))
        return
    if not os.path.isabs(program):
        return
    try:
        mode = os.stat(program).st_mode
    except OSError as err:
        if os.path.islink(program) and not os.path.exists(program):
            raise HealthInputError("%s: %s is a symbolic link to %s, which does not exist; give the program's real "
                                   "path" % (where, _show(program), _show(os.readlink(program)))) from None
        raise HealthInputError("%s: %s cannot be read: %s" % (where, _show(program), err.strerror or err)) from None
    if not stat.S_ISREG(mode):
        raise HealthInputError("%s: %s is %s, not a program; give the path of an executable file"
                               % (where, _show(program), kind_of(mode)))


def parse_check(raw, where):
    """Validate one check dict (keys set to None count as absent) and build its Check."""
    if not isinstance(raw, dict):
        raise HealthInputError("%s: %s is not a dictionary (a check with a type)" % (where, _show(raw)))
    given = {k: v for k, v in raw.items() if v is not None}
    kind = given.get("type")
    if kind is None:
        raise HealthInputError("%s.type: required, one of %s" % (where, ", ".join(CHECK_TYPES)))
    if kind not in CHECK_TYPES:
        raise HealthInputError("%s.type: %s is not one of %s" % (where, _show(kind), ", ".join(CHECK_TYPES)))
    for key in sorted(given):
        if key in _TYPE_KEYS[kind]:
            continue
        if key in _ALL_KEYS:
            owners = [t for t in CHECK_TYPES if key in _TYPE_KEYS[t]]
            raise HealthInputError("%s.%s: not an option of a %s check (it belongs to %s checks; %s checks take %s)" % (
                where, key, kind, " and ".join(owners), kind, ", ".join(_TYPE_KEYS[kind][1:])))
        raise HealthInputError("%s.%s: unknown option (%s checks take %s)" % (
            where, key, kind, ", ".join(_TYPE_KEYS[kind][1:])))

    request_timeout = _number(given.get("request_timeout", DEFAULT_REQUEST_TIMEOUT),
                              where + ".request_timeout", minimum=0, maximum=MAX_REQUEST_TIMEOUT)
    if kind == "http":
        return _parse_http(given, where, request_timeout)
    if kind == "prometheus":
        return _parse_prometheus(given, where, request_timeout)
    if kind == "tcp":
        if "port" not in given:
            raise HealthInputError("%s.port: required for a tcp check" % where)
        host = _parse_host(given.get("host", DEFAULT_HOST), where + ".host")
        port = _integer(given["port"], where + ".port", minimum=1, maximum=65535, what="a TCP port (1-65535)")
        return TcpCheck(host=host, port=port, request_timeout=request_timeout)
    # command
    argv = given.get("argv")
    if argv is None:
        raise HealthInputError("%s.argv: required for a command check (a list: the program, then its arguments)"
                               % where)
    if isinstance(argv, str) or not isinstance(argv, (list, tuple)) or not argv:
        raise HealthInputError("%s.argv: %s is not a non-empty list (the program, then its arguments; "
                               "never a shell line)" % (where, _show(argv)))
    for index, item in enumerate(argv):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise HealthInputError("%s.argv[%d]: %s is not a string" % (where, index, _show(item)))
    argv = [str(item) for item in argv]
    if not argv[0].strip():
        raise HealthInputError("%s.argv[0]: the program name is empty" % where)
    for index, item in enumerate(argv):
        if "\x00" in item:
            raise HealthInputError("%s.argv[%d]: %s holds a NUL byte, which no program argument can carry"
                                   % (where, index, _show(item)))
    _check_program(argv[0], where + ".argv[0]")
    rc = _integer(given.get("rc", 0), where + ".rc", minimum=RC_RANGE[0], maximum=RC_RANGE[1],
                  what="an exit status (0-255, or minus a signal number for a command killed by it)")
    stdout = _pattern(given["stdout"], where + ".stdout") if "stdout" in given else None
    return CommandCheck(argv=argv, rc=rc, stdout=stdout, request_timeout=request_timeout)


def parse_url(url, where, kind="http"):
    """An http(s) URL with a host, a valid port and no credentials; HealthInputError naming `where` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise HealthInputError("%s: %s is not a URL; give an http:// or https:// URL" % (where, _show(url)))
    if _CONTROL_RE.search(url):
        raise HealthInputError("%s: %s holds a space or a control character; give the URL without them "
                               "(percent-encode them: %%20)" % (where, _show(_redact_url(url))))
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as err:
        raise HealthInputError("%s: %s is not a valid URL (%s)" % (where, _show(_redact_url(url)), err)) from None
    if parts.scheme not in ("http", "https") or not host:
        example = "http://127.0.0.1:9090" if kind == "prometheus" else "http://127.0.0.1:8080/health"
        raise HealthInputError("%s: %s is not an http:// or https:// URL with a host (for example %s)"
                               % (where, _show(_redact_url(url)), example))
    if port == 0:
        raise HealthInputError("%s: %s has port 0; give a TCP port (1-65535)" % (where, _show(url)))
    if not (parts.path + parts.query + parts.fragment).isascii():
        raise HealthInputError("%s: %s holds non-ASCII characters in its path or query; percent-encode them "
                               "(%%C3%%BC for u-umlaut)" % (where, _show(_redact_url(url))))
    if parts.username is not None or parts.password is not None:
        raise HealthInputError("%s: %s carries credentials; send them in headers instead (Authorization)"
                               % (where, _show(_redact_url(url))))
    return url


def _parse_url(given, where, kind):
    url = given.get("url")
    if url is None:
        raise HealthInputError("%s.url: required for %s %s check" % (where, "an" if kind == "http" else "a", kind))
    return parse_url(url, where + ".url", kind)


def _parse_headers(given, where):
    headers = given.get("headers", {})
    if not isinstance(headers, dict):
        raise HealthInputError("%s.headers: not a dictionary of header names to values" % where)
    clean = {}
    for name, value in headers.items():
        # Never echo a header value: it may be a secret.
        if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
            raise HealthInputError("%s.headers: %s is not a valid header name" % (where, _show(name)))
        if value is None or isinstance(value, (dict, list)):
            raise HealthInputError("%s.headers: the value of %s must be a string" % (where, _show(name)))
        value = str(value)
        if any((ord(char) < 32 and char != "\t") or ord(char) == 127 for char in value):
            raise HealthInputError("%s.headers: the value of %s contains a line break or a control character; "
                                   "give it on one line" % (where, _show(name)))
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise HealthInputError("%s.headers: the value of %s holds characters HTTP headers cannot carry "
                                   "(only Latin-1); encode it (base64, percent-encoding)" % (where, _show(name))) \
                from None
        clean[name] = value
    return clean


def _parse_host(value, where):
    """A host name or an IP address (IPv6 without brackets); nothing else reaches a socket."""
    if not isinstance(value, str) or not value.strip():
        raise HealthInputError("%s: %s is not a host name or address" % (where, _show(value)))
    host = value.strip()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if host.startswith("[") and host.endswith("]"):
        raise HealthInputError("%s: %s: give an IPv6 address without brackets (%s)" % (where, _show(value), host[1:-1]))
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        hint = ""
        if "://" in host:
            hint = "; give only the host, not a URL"
        elif ":" in host:
            hint = "; give the port in port, not in host"
        raise HealthInputError("%s: %s is not a host name or IP address%s" % (where, _show(value), hint))
    return host


def _parse_http(given, where, request_timeout):
    url = _parse_url(given, where, "http")
    method = given.get("method", "GET")
    if not isinstance(method, str) or not _METHOD_RE.match(method):
        raise HealthInputError("%s.method: %s is not an HTTP method" % (where, _show(method)))
    status = given.get("status", [200])
    if isinstance(status, (int, str)) and not isinstance(status, bool):
        status = [status]
    if not isinstance(status, (list, tuple)) or not status:
        raise HealthInputError("%s.status: %s is not a non-empty list of HTTP status codes" % (where, _show(status)))
    codes = [_integer(code, "%s.status[%d]" % (where, index), minimum=100, maximum=599,
                      what="an HTTP status (100-599)") for index, code in enumerate(status)]
    body = _pattern(given["body"], where + ".body") if "body" in given else None
    max_latency = None
    if "max_latency" in given:
        max_latency = _number(given["max_latency"], where + ".max_latency", minimum=0)
    headers = _parse_headers(given, where)
    validate_certs = _boolean(given.get("validate_certs", True), where + ".validate_certs")
    return HttpCheck(url=url, method=method.upper(), status=codes, body=body, request_timeout=request_timeout,
                     max_latency=max_latency, headers=headers, validate_certs=validate_certs)


def _query(given, key, where):
    return parse_query(given.get(key), "%s.%s" % (where, key))


def parse_query(query, where):
    """A PromQL expression: a non-empty string without NUL bytes."""
    if not isinstance(query, str) or not query.strip():
        raise HealthInputError("%s: %s is not a PromQL query (a non-empty string)" % (where, _show(query)))
    if "\x00" in query:
        raise HealthInputError("%s: %s holds a NUL byte; give the PromQL expression as text" % (where, _show(query)))
    return query.strip()


def _parse_prometheus(given, where, request_timeout):
    url = _parse_url(given, where, "prometheus")
    if "query" not in given:
        raise HealthInputError("%s.query: required for a prometheus check (a PromQL query)" % where)
    query = _query(given, "query", where)
    high = _number(given["max"], where + ".max") if "max" in given else None
    low = _number(given["min"], where + ".min") if "min" in given else None
    if high is not None and low is not None and low > high:
        raise HealthInputError("%s.min: %s is above max %s; nothing could pass" % (where, _show(given["min"]),
                                                                                   _show(given["max"])))
    baseline_query = _query(given, "baseline_query", where) if "baseline_query" in given else None
    max_ratio = _number(given["max_ratio"], where + ".max_ratio", minimum=0) if "max_ratio" in given else None
    if (baseline_query is None) != (max_ratio is None):
        raise HealthInputError("%s.%s: a baseline ratio needs both baseline_query and max_ratio" % (
            where, "baseline_query" if baseline_query is None else "max_ratio"))
    if high is None and low is None and max_ratio is None:
        raise HealthInputError("%s: a prometheus check needs a threshold (max and/or min) or a baseline ratio "
                               "(baseline_query and max_ratio)" % where)
    on_empty = given.get("on_empty", "fail")
    if on_empty not in ON_EMPTY:
        raise HealthInputError("%s.on_empty: %s is not one of %s" % (where, _show(on_empty), ", ".join(ON_EMPTY)))
    return PrometheusCheck(url=url, query=query, max=high, min=low, baseline_query=baseline_query,
                           max_ratio=max_ratio, on_empty=on_empty, headers=_parse_headers(given, where),
                           validate_certs=_boolean(given.get("validate_certs", True), where + ".validate_certs"),
                           request_timeout=request_timeout)


def parse_checks(raw, where):
    if not isinstance(raw, (list, tuple)) or not raw:
        raise HealthInputError("%s: %s is not a non-empty list of checks" % (where, _show(raw)))
    return [parse_check(item, "%s[%d]" % (where, index)) for index, item in enumerate(raw)]


def parse_targets(checks=None, targets=None, name="local"):
    """The targets to poll: `checks` (one target called `name`) or `targets` (a list of {name, checks})."""
    if checks is not None and targets is not None:
        raise HealthInputError("checks, targets: mutually exclusive; give checks for one target "
                               "or targets for several")
    if checks is None and targets is None:
        raise HealthInputError("checks, targets: one of them is required")
    if checks is not None:
        if not isinstance(name, str) or not name:
            raise HealthInputError("name: %s is not a non-empty string" % _show(name))
        return [Target(name, parse_checks(checks, "checks"))]
    if not isinstance(targets, (list, tuple)) or not targets:
        raise HealthInputError("targets: %s is not a non-empty list of {name, checks}" % _show(targets))
    parsed, seen = [], set()
    for index, raw in enumerate(targets):
        where = "targets[%d]" % index
        if not isinstance(raw, dict):
            raise HealthInputError("%s: %s is not a dictionary with name and checks" % (where, _show(raw)))
        unknown = sorted(k for k, v in raw.items() if k not in ("name", "checks") and v is not None)
        if unknown:
            raise HealthInputError("%s.%s: unknown option (a target takes name and checks)" % (where, unknown[0]))
        target_name = raw.get("name")
        if not isinstance(target_name, str) or not target_name:
            raise HealthInputError("%s.name: %s is not a non-empty string" % (where, _show(target_name)))
        if target_name in seen:
            raise HealthInputError("%s.name: %s names more than one target" % (where, _show(target_name)))
        seen.add(target_name)
        target_checks = raw.get("checks")
        if target_checks is None or (isinstance(target_checks, (list, tuple)) and not target_checks):
            raise HealthInputError("%s.checks: target %s has no checks; give it a non-empty list"
                                   % (where, _show(target_name)))
        parsed.append(Target(target_name, parse_checks(target_checks, where + ".checks")))
    return parsed


# --------------------------------------------------------------------------------------------
# Policy state machine
# --------------------------------------------------------------------------------------------

class Streak:
    """Consecutive round counting: `successes` passes in a row is healthy, `failures + 1` fails in a
    row is unhealthy. Pure: no clock, no I/O."""

    def __init__(self, successes, failures):
        self.successes = successes
        self.failures = failures
        self.passes = 0
        self.fails = 0
        self.verdict = None

    def record(self, ok):
        """Count one round; return the verdict once there is one (then it never changes)."""
        if self.verdict is not None:
            return self.verdict
        if ok:
            self.passes += 1
            self.fails = 0
            if self.passes >= self.successes:
                self.verdict = HEALTHY
        else:
            self.fails += 1
            self.passes = 0
            if self.fails > self.failures:
                self.verdict = UNHEALTHY
        return self.verdict


# --------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------

def run_round(checks, start, deadline, clock=time.monotonic):
    """Run every check of one target once, in order; the round passes when every check does."""
    began = clock()
    results = []
    for check in checks:
        results.append(check.run(deadline - clock(), clock=clock))
    ended = clock()
    return {
        "t": _r(began - start),
        "ok": all(r["ok"] for r in results),
        "latency": _r(ended - began),
        "checks": results,
        "_ended": ended,
    }


class _Run:
    """The state of one target while it is polled."""

    def __init__(self, target, policy, start):
        self.target = target
        self.streak = Streak(policy.successes, policy.failures)
        self.index = 0          # grid slot of the next round: start + index * interval
        self.due = start        # when the next round may start
        self.busy = False
        self.submitted = None   # when the round in flight was started
        self.verdict = None
        self.seconds = None
        self.rounds = 0
        self.passed = 0
        self.last_error = None
        self.samples = collections.deque(maxlen=SAMPLES_KEPT)

    def record(self, rnd, start, interval):
        ended = rnd.pop("_ended")
        self.busy = False
        self.rounds += 1
        if rnd["ok"]:
            self.passed += 1
        else:
            self.last_error = "; ".join(c["error"] for c in rnd["checks"] if not c["ok"])
        self.samples.append(rnd)
        verdict = self.streak.record(rnd["ok"])
        if verdict is not None:
            self.verdict = verdict
            self.seconds = ended - start
            return
        # Next grid slot; a round that overran its slot is followed at once (not in a burst of
        # catch-up rounds: the grid index jumps to the slot the clock is in).
        self.index += 1
        if start + self.index * interval < ended:
            self.index = max(self.index, int((ended - start) // interval))
        self.due = max(start + self.index * interval, ended)

    def report(self):
        return {
            "verdict": self.verdict,
            "seconds": _r(self.seconds, 3),
            "rounds": self.rounds,
            "passed_rounds": self.passed,
            "last_error": self.last_error,
            "samples": list(self.samples),
        }


def _safe_round(checks, start, deadline, clock):
    try:
        return run_round(checks, start, deadline, clock)
    except Exception as err:  # pylint: disable=broad-except
        now = clock()
        return {"t": _r(now - start), "ok": False, "latency": 0.0, "_ended": now,
                "checks": [{"type": "internal", "ok": False, "latency": 0.0,
                            "error": "internal error: %s: %s" % (type(err).__name__, err)}]}


def poll(targets, policy, max_workers=MAX_WORKERS, clock=time.monotonic):
    """Poll every target until each has a verdict or the deadline passes; return the report.

    One loop owns all state. It hands each target's due round to a thread pool (bounded by
    `max_workers`, every round a short job, so all targets keep their schedule), then waits on a
    condition until the next round is due, a round finishes, or the deadline: no fixed sleeps.
    """
    start = clock()
    deadline = start + policy.timeout
    runs = [_Run(target, policy, start) for target in targets]
    cond = threading.Condition()
    finished = []

    def work(run):
        rnd = _safe_round(run.target.checks, start, deadline, clock)
        with cond:
            finished.append((run, rnd))
            cond.notify()

    undecided = len(runs)
    pool = WorkerPool(max(1, min(max_workers, len(runs))), "health_gate")
    try:
        with cond:
            while True:
                for run, rnd in finished:
                    if run.verdict is None and rnd["_ended"] <= deadline:
                        run.record(rnd, start, policy.interval)
                        if run.verdict is not None:
                            undecided -= 1
                    else:
                        run.busy = False
                finished.clear()
                if undecided == 0:
                    break
                now = clock()
                if now >= deadline:
                    for run in runs:
                        if run.verdict is None:
                            run.verdict = TIMEOUT
                            run.seconds = policy.timeout
                            if run.busy:
                                # Its round never came back: say so, or a target stuck on one request has no error.
                                error = "no answer before the deadline: round %d was still running after %ss" % (
                                    run.rounds + 1, _r(now - run.submitted, 1))
                                run.last_error = error if run.last_error is None else "%s; before that: %s" % (
                                    error, run.last_error)
                    break
                wake = deadline
                for run in runs:
                    if run.verdict is not None or run.busy:
                        continue
                    if run.due <= now:
                        run.busy = True
                        run.submitted = now
                        pool.submit(work, run)
                    elif run.due < wake:
                        wake = run.due
                if not finished:
                    cond.wait(max(0.0, wake - now))
    finally:
        # Rounds still in flight at the deadline (or at a SIGTERM) are abandoned, their commands killed.
        pool.shutdown()
    return build_report(runs)


def build_report(runs):
    reports = {run.target.name: run.report() for run in runs}
    healthy = [run.target.name for run in runs if run.verdict == HEALTHY]
    unhealthy = [run.target.name for run in runs if run.verdict != HEALTHY]
    verdict = max((run.verdict for run in runs), key=VERDICT_RANK.__getitem__)
    seconds = max(run.seconds for run in runs)
    return {
        "verdict": verdict,
        "seconds": _r(seconds, 3),
        "healthy_targets": healthy,
        "unhealthy_targets": unhealthy,
        "targets": reports,
    }


def failure_message(report, limit=50):
    """One line naming every target that is not healthy, with its verdict and last error."""
    bad = report["unhealthy_targets"]
    parts = []
    for name in bad[:limit]:
        info = report["targets"][name]
        error = info["last_error"] or "no failing sample"
        parts.append("%s (%s after %s rounds: %s)" % (name, info["verdict"], info["rounds"], error))
    if len(bad) > limit:
        parts.append("and %d more (see unhealthy_targets)" % (len(bad) - limit))
    return "health gate verdict %s: %d of %d targets not healthy: %s" % (
        report["verdict"], len(bad), len(report["targets"]), "; ".join(parts))
