# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus: one instant query against the HTTP API (/api/v1/query), used by the prometheus check and by the
rollback_watch module to read signals, and the prometheus check itself."""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.fleetops.rollback.plugins.module_utils._health.checks import BODY_LIMIT, Check, opener
from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import (
    number_text,
    os_error_text,
    redact_url,
    rounded,
    short,
    show,
    tail,
    timeout_text,
)


class PrometheusError(Exception):
    """A query that gave no usable answer: the message says why (no answer, an error from Prometheus...)."""


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
        raise PrometheusError("%s: %s is not a number" % (where, show(text))) from None


def prometheus_query(base_url, query, timeout, headers=None, validate_certs=True):
    """The values of one instant query: a list of (labels, float), [] when the result is empty.

    A scalar result is one value without labels. A range vector (matrix) or a string result, an error
    answer, a broken answer or no answer raises PrometheusError with a one-line message.
    """
    url = query_url(base_url, query)
    request = urllib.request.Request(url, headers=dict(headers or {}, Accept="application/json"))
    shown = redact_url(base_url)
    try:
        response = opener(validate_certs).open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        response = err  # 400/422/503 answers carry a JSON error body
    except urllib.error.URLError as err:
        reason = err.reason
        text = os_error_text(reason) if isinstance(reason, OSError) else str(reason)
        raise PrometheusError("Prometheus %s: %s" % (shown, text)) from None
    except socket.timeout:
        raise PrometheusError("Prometheus %s: %s" % (shown, timeout_text(timeout))) from None
    except (OSError, ValueError) as err:
        raise PrometheusError("Prometheus %s: %s" % (shown, os_error_text(err))) from None
    except Exception as err:  # pylint: disable=broad-except
        raise PrometheusError("Prometheus %s: bad answer: %s: %s" % (shown, type(err).__name__, err)) from None
    try:
        status = getattr(response, "status", None) or response.code
        try:
            data = response.read(BODY_LIMIT * 16)
        except socket.timeout:
            raise PrometheusError("Prometheus %s: status %s, then %s reading the answer"
                                  % (shown, status, timeout_text(timeout))) from None
        except Exception as err:  # pylint: disable=broad-except
            raise PrometheusError("Prometheus %s: status %s, then the answer broke off: %s"
                                  % (shown, status, os_error_text(err))) from None
    finally:
        response.close()
    try:
        answer = json.loads(data.decode("utf-8"))
        if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
            raise ValueError("not an answer of the Prometheus HTTP API")
    except (ValueError, UnicodeDecodeError):
        raise PrometheusError("Prometheus %s: status %s, the answer is not the JSON of the HTTP API (is %s a "
                              "Prometheus server?): %s" % (shown, status, shown, show(tail(data)))) from None
    if answer.get("status") != "success":
        raise PrometheusError("Prometheus %s rejected the query %s: %s: %s" % (
            shown, show(short(query)), answer.get("errorType", "status %s" % status), answer.get("error", "")))
    result = answer.get("data") or {}
    kind = result.get("resultType")
    if kind == "scalar":
        return [({}, _float((result.get("result") or [None, None])[1], "scalar result"))]
    if kind == "vector":
        return [(item.get("metric") or {}, _float((item.get("value") or [None, None])[1], _labels(item.get("metric"))))
                for item in result.get("result") or []]
    if kind == "matrix":
        raise PrometheusError("the query %s returns a range vector; make it an instant value with a function "
                              "such as rate(), avg_over_time() or max_over_time()" % show(short(query)))
    raise PrometheusError("the query %s returns a %s, not a number" % (show(short(query)), kind or "nothing"))


def finite_values(values):
    """The values that are numbers (NaN, from 0/0 such as an error ratio without traffic, counts as no data)."""
    return [(labels, value) for labels, value in values if not math.isnan(value)]


def json_number(value):
    """A float that JSON can carry (infinities become None)."""
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return rounded(value, 6)


class PrometheusCheck(Check):
    """A PromQL instant query against a threshold (`max`/`min`: every series must pass) or against a
    baseline query (`max_ratio`: one value each)."""

    type = "prometheus"

    def __init__(self, url, query, max, min, baseline_query, max_ratio,  # pylint: disable=redefined-builtin
                 on_empty, headers, validate_certs, request_timeout):
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
        return "prometheus %s" % show(short(self.query))

    def _read(self, query, budget, what, notes):
        """The query's values, or None when it returned no data and on_empty is fail or pass; a note in
        `notes` says how no data was handled."""
        values = finite_values(prometheus_query(self.url, query, budget, self.headers, self.validate_certs))
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
        extra = {"value": json_number(values[0][1])}
        if many:
            extra["series"] = len(values)

        # A threshold: every series must pass; the worst one is reported.
        if self.max is not None or self.min is not None:
            worst = None
            for labels, value in values:
                if self.max is not None and value > self.max:
                    miss, text = value - self.max, "is above max %s" % number_text(self.max)
                elif self.min is not None and value < self.min:
                    miss, text = self.min - value, "is below min %s" % number_text(self.min)
                else:
                    continue
                if worst is None or miss > worst[0]:
                    worst = (miss, labels, value, text)
            limits = ", ".join(part for part in (
                "max %s" % number_text(self.max) if self.max is not None else "",
                "min %s" % number_text(self.min) if self.min is not None else "") if part)
            if worst is not None:
                unused, labels, value, text = worst
                extra["value"] = json_number(value)
                series = "%s " % _labels(labels) if many and labels else ""
                return False, "; ".join(notes + ["%svalue %s %s" % (series, number_text(value), text)]), extra
            if many:
                notes.append("%d series, all within %s" % (len(values), limits))
            else:
                notes.append("value %s within %s" % (number_text(values[0][1]), limits))

        # A baseline ratio: one value each.
        if self.baseline_query is not None:
            if many:
                return False, "; ".join(notes + [
                    "the query returned %d series; a baseline ratio needs one value: aggregate it (sum, max, avg)"
                    % len(values)]), extra
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, "; ".join(notes + ["no time left for the baseline query (%s)"
                                                 % timeout_text(budget)]), extra
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
            extra.update(baseline=json_number(base), ratio=json_number(ratio))
            compared = "value %s, baseline %s, ratio %s" % (
                number_text(value), number_text(base), "infinite" if math.isinf(ratio) else number_text(ratio))
            if ratio > self.max_ratio:
                return False, "; ".join(notes + ["%s is above max_ratio %s" % (compared, number_text(self.max_ratio))]), extra
            notes.append("%s within max_ratio %s" % (compared, number_text(self.max_ratio)))
        return True, "; ".join(notes), extra
