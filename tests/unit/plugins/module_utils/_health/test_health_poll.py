"""The poller: round scheduling, early verdicts, the deadline and many concurrent targets.

Timing assertions are loose on purpose (a loaded 2-core machine must not make them flake): they
compare against the timeout with wide margins rather than measuring exact intervals.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

# The test servers shared with the integration tests live in tests/integration.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "integration"))

from health_endpoints import HealthEndpoints, closed_port  # noqa: E402

from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import parse_targets  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._health.policy import parse_policy  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._health.poll import SAMPLES_KEPT, poll  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._health.verdict import HEALTHY, TIMEOUT, UNHEALTHY  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with HealthEndpoints() as endpoints:
        yield endpoints


def gate(checks=None, targets=None, **policy):
    return poll(parse_targets(checks=checks, targets=targets), parse_policy(**policy))


def http(url, **options):
    return dict(options, type="http", url=url)


def test_healthy_after_n_successes_on_the_interval_grid(server):
    started = time.monotonic()
    report = gate([http(server.url("/ok"))], interval=0.2, timeout=30, successes=3, failures=0)
    elapsed = time.monotonic() - started
    local = report["targets"]["local"]
    assert report["verdict"] == HEALTHY and local["verdict"] == HEALTHY
    assert local["rounds"] == 3 and local["passed_rounds"] == 3
    # Three rounds at 0, 0.2 and 0.4 s: the verdict comes after about 0.4 s, never the 30 s timeout.
    assert 0.35 <= report["seconds"] < 10
    assert elapsed < 10
    starts = [s["t"] for s in local["samples"]]
    assert starts == sorted(starts)
    assert starts[2] >= 0.39  # the grid is never run faster than the interval
    assert report["healthy_targets"] == ["local"] and report["unhealthy_targets"] == []


def test_unhealthy_as_soon_as_failures_plus_one_rounds_fail(server):
    report = gate([http(server.url("/status/500"))], interval=0.1, timeout=30, successes=2, failures=2)
    local = report["targets"]["local"]
    assert report["verdict"] == UNHEALTHY
    assert local["rounds"] == 3 and local["passed_rounds"] == 0
    assert local["last_error"] == "GET %s: status 500, expected 200" % server.url("/status/500")
    assert report["seconds"] < 10


def test_recovering_endpoint_becomes_healthy(server):
    report = gate([http(server.url("/recover/unit/2"))], interval=0.05, timeout=30, successes=2, failures=3)
    local = report["targets"]["local"]
    assert report["verdict"] == HEALTHY
    assert [s["ok"] for s in local["samples"]] == [False, False, True, True]
    assert "status 500" in local["last_error"]  # the last failing round is still on record


def test_flapping_endpoint_runs_into_the_timeout(server):
    report = gate([http(server.url("/flap/unit"))], interval=0.05, timeout=1.0, successes=2, failures=1)
    local = report["targets"]["local"]
    assert report["verdict"] == TIMEOUT and local["verdict"] == TIMEOUT
    assert report["seconds"] == 1.0
    assert local["rounds"] >= 3
    oks = [s["ok"] for s in local["samples"]]
    assert all(a != b for a, b in zip(oks, oks[1:]))  # it really alternated


def test_round_passes_only_when_every_check_passes(server):
    report = gate([http(server.url("/ok")), {"type": "tcp", "port": closed_port()}],
                  interval=0.05, timeout=30, successes=1, failures=0)
    (sample,) = report["targets"]["local"]["samples"]
    assert report["verdict"] == UNHEALTHY
    assert sample["ok"] is False
    assert [c["ok"] for c in sample["checks"]] == [True, False]
    assert report["targets"]["local"]["last_error"].endswith("connection refused")


def test_deadline_caps_a_slow_request(server):
    """A request_timeout far beyond the deadline still ends at the deadline with `timeout`."""
    started = time.monotonic()
    report = gate([http(server.url("/slow/10000"), request_timeout=60)], interval=0.1, timeout=0.5)
    elapsed = time.monotonic() - started
    assert report["verdict"] == TIMEOUT
    assert elapsed < 5, elapsed


def test_slow_round_is_followed_at_once_without_a_burst(server):
    """Rounds of ~0.25 s with a 0.05 s interval run back to back, not in catch-up bursts."""
    report = gate([http(server.url("/slow/250"), max_latency=10)], interval=0.05, timeout=30, successes=3)
    samples = report["targets"]["local"]["samples"]
    assert report["verdict"] == HEALTHY
    gaps = [b["t"] - a["t"] for a, b in zip(samples, samples[1:])]
    assert all(gap >= 0.2 for gap in gaps), gaps  # each started after the previous one ended


def test_samples_are_capped(server):
    report = gate([http(server.url("/ok"))], interval=0.01, timeout=30, successes=SAMPLES_KEPT + 5)
    local = report["targets"]["local"]
    assert local["rounds"] == SAMPLES_KEPT + 5
    assert len(local["samples"]) == SAMPLES_KEPT
    assert local["samples"][-1]["t"] > local["samples"][0]["t"]


def test_many_targets_concurrently_each_with_its_own_verdict(server):
    """200 targets (more than the 64 threads) are all polled; the bad ones are named."""
    bad = {"t%03d" % i for i in range(0, 200, 25)}
    for name in bad:
        server.host_status[name] = 500
    targets = [{"name": "t%03d" % i, "checks": [http(server.url("/host/t%03d" % i))]} for i in range(200)]
    started = time.monotonic()
    report = gate(targets=targets, interval=0.2, timeout=60, successes=2, failures=1)
    elapsed = time.monotonic() - started
    assert report["verdict"] == UNHEALTHY
    assert set(report["unhealthy_targets"]) == bad
    assert len(report["healthy_targets"]) == 200 - len(bad)
    assert all(report["targets"][n]["rounds"] == 2 for n in report["healthy_targets"])
    # Two rounds 0.2 s apart for every target: well under the 60 s timeout even when loaded.
    assert elapsed < 30, elapsed


def test_one_slow_target_does_not_hold_up_the_others(server):
    # The slow one answers after the gate's timeout; the timeout leaves a loaded machine ample time for the fast
    # one's two rounds, so its verdict (not a clock) shows it was not held up.
    targets = [{"name": "slow", "checks": [http(server.url("/slow/30000"), request_timeout=60)]},
               {"name": "fast", "checks": [http(server.url("/ok"))]}]
    report = gate(targets=targets, interval=0.05, timeout=5, successes=2)
    assert report["targets"]["fast"]["verdict"] == HEALTHY
    assert report["targets"]["fast"]["rounds"] == 2
    assert report["targets"]["slow"]["verdict"] == TIMEOUT
    assert report["verdict"] == TIMEOUT and report["unhealthy_targets"] == ["slow"]
