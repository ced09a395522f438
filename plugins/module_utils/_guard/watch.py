# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watch a fleet after a deploy: measure its signals in rounds and decide, until a rollback is called
for or the window ends. The logic behind the `rollback_watch` module (standard library only).

Each round, at most every `interval` seconds from the start (waits are bounded by the next round and
the end of the window, never a fixed sleep):

* every PromQL query of `queries` is run once (instant query, HTTP API) and gives its signal;
* every target's health checks run once (the checks of `health_gate`); a target whose checks fail more
  than `failures` rounds in a row is failing, which gives `health_failures`, `health_failure_ratio`,
  `unavailable_seconds` (the longest current run of failing rounds) and `hosts`;
* the static `signals` are added, and `decision.decide()` rules on the lot.

The watch ends at the first round whose decision is not `none`, or when no round fits in the window.
"""

from __future__ import annotations

import collections
import time

from ansible_collections.fleetops.rollback.plugins.module_utils._guard.decision import (
    NONE,
    DecisionError,
    build_matrix,
    decide,
    normalize_signals,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import (
    HealthInputError,
    number,
    parse_headers,
    parse_query,
    parse_url,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import parse_targets
from ansible_collections.fleetops.rollback.plugins.module_utils._health.policy import MAX_TIMEOUT
from ansible_collections.fleetops.rollback.plugins.module_utils._health.poll import MAX_WORKERS, run_round
from ansible_collections.fleetops.rollback.plugins.module_utils._health.prometheus import (
    PrometheusError,
    finite_values,
    prometheus_query,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.schema import (
    DEFAULT_REQUEST_TIMEOUT,
    MAX_REQUEST_TIMEOUT,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import show
from ansible_collections.fleetops.rollback.plugins.module_utils._health.workers import WorkerPool

HEALTH_SIGNALS = ("health_failures", "health_failure_ratio", "unavailable_seconds", "hosts")
ON_EMPTY = ("skip", "zero")
HISTORY_KEPT = 20
# A fraction measured a hair over 1 (rate() extrapolates each series on its own) is read as 1.
RATIO_SLACK = 0.05


class WatchInputError(ValueError):
    """Bad input: the message names the option and the value."""


def _r(seconds, digits=3):
    return round(seconds, digits)


def _seconds(value, where, maximum):
    try:
        return number(value, where, minimum=0, maximum=maximum, unit=" seconds")
    except HealthInputError as err:
        raise WatchInputError(str(err)) from None


class Watch:
    """A validated watch; `run()` watches and returns the report."""

    def __init__(self, queries=None, prometheus_url=None, prometheus_headers=None, validate_certs=True,
                 targets=None, signals=None, window=300.0, interval=5.0, failures=2, matrix=None,
                 matrix_replace=False, request_timeout=DEFAULT_REQUEST_TIMEOUT, on_empty="skip"):
        self.window = _seconds(window, "window", MAX_TIMEOUT)
        self.interval = _seconds(interval, "interval", MAX_TIMEOUT)
        self.request_timeout = _seconds(request_timeout, "request_timeout", MAX_REQUEST_TIMEOUT)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise WatchInputError("failures: %s is not a whole number, 0 or more" % show(failures))
        self.failures = failures
        if on_empty not in ON_EMPTY:
            raise WatchInputError("on_empty: %s is not one of %s" % (show(on_empty), ", ".join(ON_EMPTY)))
        self.on_empty = on_empty
        try:
            self.rules, self.kinds = build_matrix(matrix, matrix_replace)
        except DecisionError as err:
            raise WatchInputError(str(err)) from None
        self.matrix = matrix
        self.matrix_replace = matrix_replace

        queries = queries or {}
        if not isinstance(queries, dict):
            raise WatchInputError("queries: %s is not a dictionary of signal name -> PromQL query" % show(queries))
        self.queries = {}
        for name, query in queries.items():
            if name not in self.kinds:
                raise WatchInputError("queries: unknown signal %s; known signals: %s; a matrix rule can introduce "
                                      "a new one" % (show(name), ", ".join(sorted(self.kinds))))
            if name in HEALTH_SIGNALS and targets:
                raise WatchInputError("queries.%s: the health checks of targets measure this signal; do not query "
                                      "it too" % name)
            try:
                self.queries[name] = parse_query(query, "queries.%s" % name)
            except HealthInputError as err:
                raise WatchInputError(str(err)) from None
        self.prometheus_url = None
        self.headers = {}
        self.validate_certs = validate_certs
        if self.queries:
            if not prometheus_url:
                raise WatchInputError("prometheus_url: required with queries (the Prometheus server, for example "
                                      "http://prometheus:9090)")
            try:
                self.prometheus_url = parse_url(prometheus_url, "prometheus_url", "prometheus")
                self.headers = parse_headers({"headers": prometheus_headers or {}}, "prometheus_headers")
            except HealthInputError as err:
                raise WatchInputError(str(err)) from None

        self.targets = []
        if targets:
            try:
                self.targets = parse_targets(targets=targets)
            except HealthInputError as err:
                raise WatchInputError(str(err)) from None

        static = dict(signals or {}) if isinstance(signals, dict) else signals
        try:
            self.static = normalize_signals(static, self.kinds)
        except DecisionError as err:
            raise WatchInputError(str(err)) from None
        for name in self.static:
            if name in self.queries:
                raise WatchInputError("signals.%s: also given in queries; measure a signal one way" % name)
            if name in HEALTH_SIGNALS and self.targets:
                raise WatchInputError("signals.%s: the health checks of targets measure this signal; do not give "
                                      "it too" % name)
        if not self.queries and not self.targets and not self.static:
            raise WatchInputError("queries, targets, signals: give at least one; there is nothing to watch")

    # ---------------------------------------------------------------------------------------------

    def _query(self, name, query):
        """(value or None, error or None) of one signal's query."""
        try:
            values = finite_values(prometheus_query(self.prometheus_url, query, self.request_timeout,
                                                    self.headers, self.validate_certs))
        except PrometheusError as err:
            return None, str(err)
        if not values:
            return (0.0, None) if self.on_empty == "zero" else (None, None)
        if len(values) > 1:
            return None, "the query for %s returned %d series; a signal is one value: aggregate it (sum, max, avg)" \
                % (name, len(values))
        value = values[0][1]
        if self.kinds.get(name) == "ratio" and 1.0 < value <= 1.0 + RATIO_SLACK:
            value = 1.0
        try:
            return normalize_signals({name: value}, self.kinds)[name], None
        except DecisionError as err:
            return None, str(err)

    def run(self, clock=time.monotonic, wall=time.time, sleep=time.sleep):
        start = clock()
        started_at = wall()
        deadline = start + self.window
        health = {t.name: {"fails": 0, "since": None, "last_error": None} for t in self.targets}
        history = collections.deque(maxlen=HISTORY_KEPT)
        rounds, index = 0, 0
        result, errors, detected_after, round_t = None, {}, None, 0.0
        workers = max(1, min(MAX_WORKERS, len(self.queries) + len(self.targets)))
        pool = WorkerPool(workers, "rollback_watch")
        try:
            while True:
                began = clock()
                round_t = began - start
                # Each round gets its own time budget: the end of the window never cuts a check short.
                round_deadline = began + self.request_timeout
                query_jobs = {name: pool.submit(self._query, name, q) for name, q in self.queries.items()}
                health_jobs = {t.name: pool.submit(run_round, t.checks, start, round_deadline, clock)
                               for t in self.targets}
                measured, errors = {}, {}
                for name, job in query_jobs.items():
                    value, error = job.result()
                    measured[name] = value
                    if error:
                        errors[name] = error
                for name, job in health_jobs.items():
                    rnd = job.result()
                    state = health[name]
                    if rnd["ok"]:
                        state.update(fails=0, since=None)
                    else:
                        state["fails"] += 1
                        if state["since"] is None:
                            state["since"] = rnd["t"]
                        state["last_error"] = "; ".join(c["error"] for c in rnd["checks"] if not c["ok"])
                ended = clock()
                if self.targets:
                    failing = [n for n, s in health.items() if s["fails"] > self.failures]
                    measured["hosts"] = len(self.targets)
                    measured["health_failures"] = len(failing)
                    measured["health_failure_ratio"] = len(failing) / float(len(self.targets))
                    measured["unavailable_seconds"] = max(
                        [ended - start - s["since"] for s in health.values() if s["since"] is not None] or [0.0])
                signals = dict(self.static)
                signals.update(measured)
                result = decide(signals, self.matrix, self.matrix_replace)
                rounds += 1
                history.append({"t": _r(round_t), "decision": result["decision"],
                                "matched_rule": result["matched_rule"], "signals": result["signals"],
                                "errors": dict(errors)})
                if result["decision"] != NONE:
                    detected_after = round_t
                    break
                index += 1
                now = clock()
                due = start + index * self.interval
                if due < now:
                    # The round overran its slot: the next one starts at once, with no burst of catch-up rounds.
                    index = int((now - start) // self.interval) + 1
                    due = now
                if due >= deadline:
                    break
                sleep(max(0.0, due - clock()))
        finally:
            # Queries and rounds still in flight (a SIGTERM) are abandoned, their commands killed.
            pool.shutdown()
        ended = clock()
        report = dict(result)
        report.update(
            detected=detected_after is not None,
            detected_after=None if detected_after is None else _r(detected_after),
            rounds=rounds,
            seconds=_r(ended - start),
            window=self.window,
            started_at=_r(started_at, 3),
            ended_at=_r(started_at + (ended - start), 3),
            query_errors=errors,
            failing_hosts=sorted(n for n, s in health.items() if s["fails"] > self.failures),
            health={n: {"failing": s["fails"] > self.failures, "failed_rounds_in_a_row": s["fails"],
                        "last_error": s["last_error"]} for n, s in health.items()},
            history=list(history),
        )
        return report
