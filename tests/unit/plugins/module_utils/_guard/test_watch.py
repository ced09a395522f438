"""rollback_watch's logic: input validation, and watches over real HTTP endpoints on this machine (the
Prometheus side runs against a real Prometheus in tests/integration/test_guard.py)."""
from __future__ import annotations

import os
import sys

import pytest

# The test servers shared with the integration tests live in tests/integration.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "integration"))

from health_endpoints import HealthEndpoints, closed_port  # noqa: E402

from ansible_collections.fleetops.rollback.plugins.module_utils._guard.watch import Watch, WatchInputError  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with HealthEndpoints() as endpoints:
        yield endpoints


def target(server, name, path):
    return {"name": name, "checks": [{"type": "http", "url": server.url(path), "request_timeout": 2}]}


class SteppedClock:
    """A monotonic clock that moves only when the watch sleeps: `Watch.run(clock=c, sleep=c.sleep)` keeps the real
    checks but takes the machine's speed out of the schedule, so rounds and times can be asserted exactly (with
    intervals that are binary fractions, 0.25 or 0.125, every sum of times is exact)."""

    def __init__(self):
        self.now = 1024.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_static_signals_decide_in_the_first_round():
    report = Watch(signals={"critical_vulnerabilities": 2}, window=30, interval=5).run()
    assert report["decision"] == "immediate" and report["matched_rule"] == "critical-vulnerability"
    # Decided by the first round (at its start, whatever the machine's speed), no second one.
    assert report["detected"] is True and report["rounds"] == 1
    assert report["detected_after"] == report["history"][0]["t"] <= report["seconds"]
    assert report["history"][0]["decision"] == "immediate"


def test_healthy_fleet_is_watched_for_the_whole_window(server):
    clock = SteppedClock()
    report = Watch(targets=[target(server, "a", "/ok"), target(server, "b", "/ok")], window=1.0, interval=0.25).run(
        clock=clock, sleep=clock.sleep)
    assert report["decision"] == "none" and report["detected"] is False and report["detected_after"] is None
    # A round on every slot of the 0.25 s grid in the 1 s window, none after it.
    assert [r["t"] for r in report["history"]] == [0.0, 0.25, 0.5, 0.75]
    assert report["rounds"] == 4 and report["seconds"] == 0.75
    assert report["signals"] == {"hosts": 2.0, "health_failures": 0.0, "health_failure_ratio": 0.0,
                                 "unavailable_seconds": 0.0}
    assert report["failing_hosts"] == [] and report["health"]["a"] == {
        "failing": False, "failed_rounds_in_a_row": 0, "last_error": None}
    assert report["reason"].startswith("no rollback: no rule matched")


def test_a_host_failing_three_rounds_in_a_row_calls_for_an_immediate_rollback(server):
    report = Watch(targets=[target(server, "good", "/ok"), target(server, "bad", "/status/503")],
                   window=20, interval=0.1, failures=2).run()
    assert report["decision"] == "immediate" and report["matched_rule"] == "health-failing"
    assert report["rounds"] == 3 and report["failing_hosts"] == ["bad"]
    assert report["signals"]["health_failures"] == 1 and report["signals"]["health_failure_ratio"] == 0.5
    assert "GET %s: status 503, expected 200" % server.url("/status/503") == report["health"]["bad"]["last_error"]
    assert report["health"]["bad"]["failed_rounds_in_a_row"] == 3
    # The first two failing rounds did not decide yet.
    assert [r["decision"] for r in report["history"]] == ["none", "none", "immediate"]
    # Detected at the third round, after the second: an order, not a bound on a busy machine's clock.
    times = [r["t"] for r in report["history"]]
    assert times == sorted(times) and report["detected_after"] == times[2]
    # Unavailable since the first failing round: at least the span from the second round to the third, at most the
    # whole watch (2 ms for the millisecond rounding of the times compared; the exact value is asserted below on a
    # clock that only the watch moves).
    unavailable = report["signals"]["unavailable_seconds"]
    assert times[2] - times[1] - 0.002 <= unavailable <= report["seconds"] + 0.001 and unavailable > 0


def test_rounds_and_unavailable_time_on_the_interval_grid(server):
    """The same failing host on a clock that moves only when the watch sleeps: the rounds start at 0, 0.125 and
    0.25 s, the third decides, and the host counts as unavailable from the start of the first failing round to the
    end of the third: 0.25 s."""
    clock = SteppedClock()
    report = Watch(targets=[target(server, "good", "/ok"), target(server, "bad", "/status/503")],
                   window=20, interval=0.125, failures=2).run(clock=clock, sleep=clock.sleep)
    assert report["decision"] == "immediate" and report["failing_hosts"] == ["bad"]
    assert [(r["t"], r["decision"]) for r in report["history"]] == [
        (0.0, "none"), (0.125, "none"), (0.25, "immediate")]
    assert report["detected_after"] == 0.25 and report["seconds"] == 0.25
    assert report["signals"]["unavailable_seconds"] == 0.25


def test_a_flapping_host_never_counts_as_failing(server):
    clock = SteppedClock()
    report = Watch(targets=[target(server, "f", "/flap/watch")], window=1.0, interval=0.125, failures=1).run(
        clock=clock, sleep=clock.sleep)
    # Eight rounds (every slot of the window), one request each: four of them failed, never two in a row.
    assert report["decision"] == "none" and report["rounds"] == 8 and server.hits("/flap/watch") == 8
    assert report["health"]["f"]["failing"] is False and report["health"]["f"]["failed_rounds_in_a_row"] == 1
    assert "status 500" in report["health"]["f"]["last_error"]


def test_matrix_override_reaches_the_decision(server):
    report = Watch(targets=[target(server, "bad", "/status/500")], window=10, interval=0.05, failures=0,
                   matrix={"health-failing": {"decision": "standard"}, "health-failing-ratio": {"enabled": False}}).run()
    assert report["decision"] == "standard" and report["rounds"] == 1


def test_an_unreachable_prometheus_leaves_the_signal_unmeasured_and_says_why():
    report = Watch(queries={"error_rate": "sum(rate(x[1m]))"}, prometheus_url="http://127.0.0.1:%d" % closed_port(),
                   signals={"test_pass_rate": 1.0}, window=0.3, interval=0.1, request_timeout=1).run()
    assert report["decision"] == "none"
    assert "error_rate" not in report["signals"] and "error-rate-high" in report["not_evaluated"]
    assert report["query_errors"]["error_rate"].endswith("connection refused")


def test_a_non_prometheus_answer_is_a_query_error(server):
    report = Watch(queries={"error_rate": "up"}, prometheus_url=server.url("/ok"), window=0.1, interval=0.1).run()
    assert "is not the JSON of the HTTP API" in report["query_errors"]["error_rate"]


@pytest.mark.parametrize("options,message", [
    ({}, "queries, targets, signals: give at least one; there is nothing to watch"),
    ({"signals": {"eror_rate": 0.1}}, "signals: unknown signal 'eror_rate' (value 0.1)"),
    ({"signals": {"error_rate": 10}}, "signals.error_rate: 10 is not a fraction between 0 and 1"),
    ({"queries": {"eror_rate": "up"}, "prometheus_url": "http://p:9090"}, "queries: unknown signal 'eror_rate'"),
    ({"queries": {"error_rate": ""}, "prometheus_url": "http://p:9090"}, "queries.error_rate: '' is not a PromQL query"),
    ({"queries": {"error_rate": "up"}}, "prometheus_url: required with queries"),
    ({"queries": {"error_rate": "up"}, "prometheus_url": "p:9090"}, "prometheus_url: 'p:9090' is not an http:// or https:// URL"),
    ({"queries": {"error_rate": "up"}, "prometheus_url": "http://p:9090", "signals": {"error_rate": 0.1}},
     "signals.error_rate: also given in queries"),
    ({"targets": [{"name": "a", "checks": [{"type": "tcp", "port": 1}]}], "signals": {"health_failures": 0}},
     "signals.health_failures: the health checks of targets measure this signal"),
    ({"targets": [{"name": "a", "checks": [{"type": "tcp", "port": 1}]}],
      "queries": {"hosts": "count(up)"}, "prometheus_url": "http://p:9090"},
     "queries.hosts: the health checks of targets measure this signal"),
    ({"targets": [{"name": "a", "checks": [{"type": "htp"}]}]}, "targets[0].checks[0].type: 'htp' is not one of"),
    ({"signals": {"hosts": 1}, "window": 0}, "window: 0 must be greater than 0"),
    ({"signals": {"hosts": 1}, "interval": "soon"}, "interval: 'soon' is not a number"),
    ({"signals": {"hosts": 1}, "failures": -1}, "failures: -1 is not a whole number, 0 or more"),
    ({"signals": {"hosts": 1}, "on_empty": "fail"}, "on_empty: 'fail' is not one of skip, zero"),
    ({"signals": {"hosts": 1}, "matrix": [{"id": "x", "signal": "y", "decision": "now"}]},
     "matrix[15] (rule x): give either threshold"),
])
def test_bad_input_names_the_option_and_value(options, message):
    with pytest.raises(WatchInputError) as err:
        Watch(**options)
    assert str(err.value).startswith(message), str(err.value)


def test_a_user_rule_signal_can_be_queried():
    watch = Watch(queries={"queue_depth": "sum(queue_depth)"}, prometheus_url="http://127.0.0.1:9",
                  matrix=[{"id": "backlog", "signal": "queue_depth", "threshold": 100, "decision": "partial"}])
    assert watch.queries == {"queue_depth": "sum(queue_depth)"}
