"""guard.yml and the prometheus check type against a real Prometheus (Debian's) scraping a local fleet's /metrics.

The `prometheus` fixture (conftest.py, prometheus_env.py) installs Prometheus when missing and runs it on 127.0.0.1
with a 1 s scrape interval. Users of the fleet are simulated by tools/fleet.py's Traffic (GET / on every host).
"""
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import parse_check  # noqa: E402

GUARD = os.path.join(ROOT, "playbooks", "guard.yml")
RATE = 4  # requests a second to every host


def error_rate(sel):
    return ('(sum(rate(app_requests_total{%s,handler="/",code=~"5.."}[10s])) or vector(0))'
            ' / sum(rate(app_requests_total{%s,handler="/"}[10s]))' % (sel, sel))


def p95(sel):
    return 'histogram_quantile(0.95, sum by (le) (rate(app_request_duration_seconds_bucket{%s,handler="/"}[10s])))' % sel


def versions(fleet):
    return [(row["health"], row["version"]) for row in local_fleet.status(fleet)]


def journal(host):
    path = os.path.join(host.root, "var/lib/fleetops/rollback/journal.jsonl")
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


@pytest.fixture
def watched(known_good_fleet, prometheus):
    """watched(hosts) -> (fleet on release 1 known good, its Prometheus label selector, traffic), Prometheus already
    measuring an error rate of 0 on it."""
    running = []

    def make(hosts):
        fleet = known_good_fleet(hosts)
        sel = prometheus.scrape(fleet)
        traffic = local_fleet.Traffic(fleet, rate=RATE).start()
        running.append(traffic)
        prometheus.wait_for(error_rate(sel), lambda values: values == [0.0])
        return fleet, sel, traffic

    yield make
    for traffic in running:
        traffic.stop()


def guard_vars(prometheus, sel, tmp_path, **extra):
    return dict({
        "guard_prometheus_url": prometheus.url,
        "guard_queries": {"error_rate": error_rate(sel), "latency_p95": p95(sel)},
        "guard_interval": 1,
        "guard_window": 90,
        "rollback_report_dir": str(tmp_path / "reports"),
        "guard_run_id": "guard-test",
    }, **extra)


def report_of(tmp_path):
    with open(tmp_path / "reports" / "guard-test.json", encoding="utf-8") as stream:
        return json.load(stream)


def health_hits(fleet):
    """How many /health requests the fleet's apps have answered (the guard's health checks among them)."""
    total = 0
    for host in fleet.hosts:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % host.port, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("app_requests_total{") and 'handler="/health"' in line:
                    total += int(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_injected_error_rate_starts_a_rollback_by_itself(watched, prometheus, playbook, tmp_path):
    fleet, sel, unused = watched(3)
    before = health_hits(fleet)
    with ThreadPoolExecutor(max_workers=1) as pool:
        guard = pool.submit(playbook, GUARD, fleet.inventory, extra_vars=guard_vars(prometheus, sel, tmp_path))
        # The guard is watching once its health checks reach the apps; then the deploy goes out.
        deadline = time.monotonic() + 300
        while health_hits(fleet) <= before:
            assert not guard.done(), guard.result().stdout[-5000:]
            assert time.monotonic() < deadline, "the guard never started watching"
            time.sleep(0.1)  # poll; the deadline bounds the wait
        injected = time.time()
        # The deploy: release 4 answers 30% of its requests with 500, while /health stays green.
        assert all(ok for unused, ok, unused in local_fleet.deploy(fleet, 4, action="restart"))
        run = guard.result()
    assert run.rc == 0, run.stdout[-5000:]

    report = report_of(tmp_path)
    assert report["decision"] == "immediate" and report["matched_rule"] == "error-rate-high"
    assert report["reason"].startswith("immediate rollback: error_rate ")
    assert "is above the threshold 0.05 (rule error-rate-high)" in report["reason"]
    assert report["signals"]["error_rate"] > 0.05 and report["signals"]["health_failures"] == 0
    assert report["rollback"] == "rollback_immediate.yml"
    assert report["hosts"] == [h.name for h in fleet.hosts] and report["failing_hosts"] == []
    assert sorted(report["outcome"]["recovered"]) == sorted(h.name for h in fleet.hosts) and report["outcome"]["failed"] == []
    assert oct(os.stat(tmp_path / "reports" / "guard-test.json").st_mode & 0o777) == "0o600"
    # Rounds before the deploy saw a healthy fleet.
    assert report["history"][0]["decision"] == "none" and report["rounds"] >= 2

    # The guard started rollback_immediate by itself, and the fleet is healthy on release 1 again.
    for host in fleet.hosts:
        result = run.result("Restore the host to its restore point", host.name)
        assert result["changed"] and result["point"]["label"] == "release-1"
        assert not os.path.exists(os.path.join(host.root, "etc/app/conf.d/30-errors.env"))
        restores = [e for e in journal(host) if e["event"] == "restore"]
        assert restores[-1]["outcome"] == "restored" and restores[-1]["reason"].startswith("guard-test: immediate")
    assert versions(fleet) == [(200, "1.0.0")] * 3
    assert "hosts: 3, restored: 3, unchanged: 0, failed: 0" in run.stdout
    prometheus.wait_for('count(app_info{%s,version="1.0.0"})' % sel, lambda values: values == [3.0])

    detect = report["decided_at"] - injected
    recover = report["outcome"]["ended_at"] - injected
    print("\nguard: deploy at t=0; rollback decided and started at t=%.1f s (round %d of the watch); fleet restored "
          "and gated healthy by t=%.1f s" % (detect, report["rounds"], recover))


@pytest.mark.slow
def test_healthy_deploy_decides_none_and_changes_nothing(watched, prometheus, playbook, tmp_path):
    fleet, sel, traffic = watched(3)
    # A healthy deploy: release 3.
    assert all(ok for unused, ok, unused in local_fleet.deploy(fleet, 3, action="restart"))
    assert local_fleet.wait_healthy(fleet, timeout=60)[0]
    before = {h.name: len(journal(h)) for h in fleet.hosts}
    # rollback_hosts as an AWX survey passes it (an extra variable): the rollback plays then target the fleet, and
    # only the decision's condition keeps them from acting.
    run = playbook(GUARD, fleet.inventory, extra_vars=guard_vars(prometheus, sel, tmp_path, guard_window=8,
                                                                 rollback_hosts="fleet"))
    assert run.rc == 0, run.stdout[-5000:]

    report = report_of(tmp_path)
    assert report["decision"] == "none" and report["matched_rule"] is None and report["rollback"] is None
    assert report["reason"].startswith("no rollback: no rule matched")
    assert report["detected_after"] is None and "outcome" not in report
    # Watched the whole 8 s window: how many rounds fit depends on the machine's speed, but the watch ends only when
    # no slot of its 1 s grid is left (its last round started within the last two slots: after a round overruns its
    # slot, the next starts at once and the one after that on the slot after next) or the window is over.
    span = report["watch_ended_at"] - report["watch_started_at"]
    assert report["history"][-1]["t"] >= 8 - 2 * 1 or span >= 8 - 0.01, (report["history"], span)
    assert report["signals"]["hosts"] == 3 and report["signals"]["health_failures"] == 0
    assert report["query_errors"] == {}
    # Nothing changed: no task reported a change, no rollback play ran, the fleet stays on release 3.
    assert [r["task"] for r in run.results if r["result"].get("changed")] == []
    assert {r["status"] for r in run.for_task("Restore the host to its restore point")} <= {"skipped"}
    assert not [r for r in run.results if r["status"] == "failed"]
    assert versions(fleet) == [(200, "3.0.0")] * 3
    assert {h.name: len(journal(h)) for h in fleet.hosts} == before
    assert traffic.codes.get(500, 0) == 0


@pytest.mark.slow
def test_user_matrix_turns_the_decision_into_a_partial_config_rollback(watched, prometheus, playbook, tmp_path):
    """guard_matrix makes the error rate a partial matter: only config is restored (the release stays 4)."""
    fleet, sel, unused = watched(2)
    assert all(ok for unused, ok, unused in local_fleet.deploy(fleet, 4, action="restart"))
    extra = guard_vars(prometheus, sel, tmp_path,
                       guard_matrix={"error-rate-high": {"decision": "partial", "threshold": 0.1}})

    # Check mode decides the same and predicts the partial rollback, but changes nothing.
    check = playbook(GUARD, fleet.inventory, extra_vars=extra, check=True)
    assert check.rc == 0, check.stdout[-5000:]
    assert report_of(tmp_path)["decision"] == "partial" and report_of(tmp_path)["check_mode"] is True
    for host in fleet.hosts:
        planned = check.result("Restore the host to its restore point", host.name)
        assert planned["changed"] and set(planned["plan"]) == {"config"}
        assert os.path.exists(os.path.join(host.root, "etc/app/conf.d/30-errors.env"))
    assert versions(fleet) == [(200, "4.0.0")] * 2

    run = playbook(GUARD, fleet.inventory, extra_vars=extra)
    assert run.rc == 0, run.stdout[-5000:]
    report = report_of(tmp_path)
    assert report["decision"] == "partial" and report["rollback"] == "rollback_partial.yml"
    assert "above the threshold 0.1 (rule error-rate-high)" in report["reason"]
    assert report["matrix"] == {"error-rate-high": {"decision": "partial", "threshold": 0.1}}
    for host in fleet.hosts:
        result = run.result("Restore the host to its restore point", host.name)
        assert result["changed"] and set(result["plan"]) == {"config"}
        assert not os.path.exists(os.path.join(host.root, "etc/app/conf.d/30-errors.env"))
        assert os.readlink(os.path.join(host.root, "srv/app/current")) == "releases/4"
    assert versions(fleet) == [(200, "4.0.0")] * 2
    prometheus.wait_for(error_rate(sel).replace("[10s]", "[3s]"), lambda values: values == [0.0])


@pytest.mark.slow
def test_a_standard_decision_runs_the_standard_rollback(watched, prometheus, playbook, tmp_path):
    """Latency against a baseline: release 1 with LATENCY_MS=300 is far over 1.5 x the fleet's usual p95, so the
    guard runs rollback_standard.yml (plan saved under the guard's run id, canary then batches, bad point marked)."""
    fleet, sel, unused = watched(2)
    baseline = prometheus.query(p95(sel))[0][1]
    for host in fleet.hosts:
        with open(os.path.join(host.root, "etc/app/conf.d/90-slow.env"), "w", encoding="utf-8") as stream:
            stream.write("LATENCY_MS=300\n")
    assert all(ok for unused, ok, unused in local_fleet.restart(fleet))
    run = playbook(GUARD, fleet.inventory, extra_vars=guard_vars(
        prometheus, sel, tmp_path, guard_queries={"latency_p95": p95(sel)},
        guard_signals={"baseline_latency_p95": baseline}))
    assert run.rc == 0, run.stdout[-5000:]
    report = report_of(tmp_path)
    assert report["decision"] == "standard" and report["matched_rule"] == "latency-p95-degraded", report["reason"]
    assert report["signals"]["latency_p95"] > 0.25 and report["signals"]["baseline_latency_p95"] == baseline
    assert "latency_p95" in report["reason"] and "1.5 x baseline_latency_p95" in report["reason"]
    assert os.path.exists(tmp_path / "reports" / "plan-guard-test.json")
    for host in fleet.hosts:
        assert run.result("Restore the host to its restore point", host.name)["changed"]
        assert not os.path.exists(os.path.join(host.root, "etc/app/conf.d/90-slow.env"))
        marks = [e for e in journal(host) if e["event"] == "mark" and e["status"] == "bad"]
        assert marks, "the abandoned state of %s was not marked bad" % host.name
    assert versions(fleet) == [(200, "1.0.0")] * 2
    assert sorted(report["outcome"]["recovered"]) == sorted(h.name for h in fleet.hosts)


# ---------------------------------------------------------------------------- the prometheus check type

@pytest.fixture
def slow_host(watched, prometheus):
    """A 3-host fleet where the third host answers / in 300 ms more (LATENCY_MS=300); Prometheus has its p95."""
    fleet, sel, unused = watched(3)
    slow = fleet.hosts[2]
    with open(os.path.join(slow.root, "etc/app/conf.d/90-slow.env"), "w", encoding="utf-8") as stream:
        stream.write("LATENCY_MS=300\n")
    from sample_app import appctl  # pylint: disable=import-outside-toplevel
    appctl.restart(slow.root, slow.port, fleet.python)
    assert local_fleet.wait_healthy(fleet, timeout=60)[0]
    slow_sel = '%s,host="%s"' % (sel, slow.name)
    prometheus.wait_for(p95(slow_sel), lambda values: values and values[0] > 0.25)
    return fleet, sel, slow


def test_prometheus_checks_threshold_and_baseline_ratio_pass_and_fail(slow_host, prometheus, playbook, one_host):
    fleet, sel, slow = slow_host
    fast_sel = '%s,host!="%s"' % (sel, slow.name)
    slow_sel = '%s,host="%s"' % (sel, slow.name)
    checks = {
        "threshold_pass": {"query": error_rate(sel), "max": 0.05},
        "threshold_fail": {"query": p95(slow_sel), "max": 0.1},
        "threshold_min_fail": {"query": 'sum(up{%s})' % sel, "min": 4},
        "series_fail": {"query": 'histogram_quantile(0.95, sum by (le, host) (rate('
                                 'app_request_duration_seconds_bucket{%s,handler="/"}[10s])))' % sel, "max": 0.1},
        "ratio_pass": {"query": p95(slow_sel), "baseline_query": p95(sel), "max_ratio": 1.5},
        "ratio_fail": {"query": p95(slow_sel), "baseline_query": p95(fast_sel), "max_ratio": 2},
    }
    tasks = "\n".join("""
    - name: {name}
      fleetops.rollback.health_gate:
        checks:
          - type: prometheus
            url: {url}
{options}
        successes: 1
        failures: 0
        timeout: 30
        fail_on_unhealthy: false
""".format(name=name, url=prometheus.url, options="\n".join(
        "            %s: %s" % (key, json.dumps(value)) for key, value in check.items()))
        for name, check in checks.items())
    run = playbook("- hosts: target\n  gather_facts: false\n  tasks:\n" + tasks, one_host)
    assert run.rc == 0, run.stdout[-4000:]

    def sample(name):
        result = run.result(name, "target")
        return result["verdict"], result["samples"][-1]["checks"][0]

    verdict, check = sample("threshold_pass")
    assert verdict == "healthy" and check["value"] == 0 and "value 0 within max 0.05" in check["detail"]
    verdict, check = sample("threshold_fail")
    assert verdict == "unhealthy" and check["value"] > 0.25
    assert "is above max 0.1" in check["error"] and check["error"].startswith("prometheus 'histogram_quantile")
    verdict, check = sample("threshold_min_fail")
    assert verdict == "unhealthy" and check["error"].endswith("value 3 is below min 4")
    verdict, check = sample("series_fail")
    assert verdict == "unhealthy" and check["series"] == 3
    assert '{host="%s"} value' % slow.name in check["error"] and check["error"].endswith("is above max 0.1")
    verdict, check = sample("ratio_pass")
    assert verdict == "healthy", check
    assert 0.9 < check["ratio"] <= 1.5 and check["baseline"] > 0.25 and "within max_ratio 1.5" in check["detail"]
    verdict, check = sample("ratio_fail")
    assert verdict == "unhealthy" and check["ratio"] > 2 and "is above max_ratio 2" in check["error"]


def test_prometheus_answers_a_check_must_handle(watched, prometheus):
    """Empty, NaN, scalar, range vector, a rejected query, a zero baseline and a server that is not Prometheus."""
    fleet, sel, unused = watched(1)

    def run(**raw):
        return parse_check(dict({"type": "prometheus", "url": prometheus.url}, **raw), "checks[0]").run(10)

    scalar = run(query="3", max=5)
    assert scalar["ok"] and scalar["value"] == 3.0 and scalar["detail"] == "prometheus '3': value 3 within max 5"
    missing = run(query="no_such_metric_anywhere", max=1)
    assert not missing["ok"] and missing["error"].endswith("the query returned no data (on_empty=fail)")
    assert run(query="no_such_metric_anywhere", max=1, on_empty="pass")["ok"]
    zero = run(query="no_such_metric_anywhere", min=1, on_empty="zero")
    assert not zero["ok"] and zero["error"].endswith(
        "the query returned no data, counted as 0 (on_empty=zero); value 0 is below min 1")
    nan = run(query="vector(0) / vector(0)", max=1)
    assert not nan["ok"] and "returned no data" in nan["error"]
    many = run(query='up{%s} + up{%s}' % (sel, sel), min=1)
    assert many["ok"] and many["detail"].endswith("value 2 within min 1")
    matrix = run(query='up{%s}[1m]' % sel, max=1)
    assert not matrix["ok"] and "returns a range vector; make it an instant value with a function" in matrix["error"]
    rejected = run(query="sum(rate(", max=1)
    assert not rejected["ok"] and "rejected the query 'sum(rate(': bad_data:" in rejected["error"]
    assert run(query="vector(0)", baseline_query="vector(0)", max_ratio=1)["ok"]
    infinite = run(query="vector(1)", baseline_query="vector(0)", max_ratio=100)
    assert not infinite["ok"] and infinite["ratio"] is None and "ratio infinite is above max_ratio 100" in infinite["error"]
    several = run(query='up{job="fleet"} or vector(1)', baseline_query="vector(1)", max_ratio=2)
    assert not several["ok"] and "a baseline ratio needs one value: aggregate it" in several["error"]
    not_prometheus = parse_check({"type": "prometheus", "url": "http://127.0.0.1:%d" % fleet.hosts[0].port,
                                  "query": "up", "max": 1}, "c").run(5)
    assert not not_prometheus["ok"] and "the answer is not the JSON of the HTTP API" in not_prometheus["error"]


def test_a_blind_guard_fails_instead_of_saying_none(playbook, one_host, tmp_path):
    """Prometheus unreachable: the report is written, but the run fails rather than call the deploy healthy."""
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    run = playbook(GUARD, one_host, extra_vars={
        "guard_prometheus_url": "http://127.0.0.1:%d" % closed, "guard_queries": {"error_rate": "vector(0)"},
        "guard_health": False, "guard_window": 2, "guard_interval": 1,
        "rollback_report_dir": str(tmp_path / "reports"), "guard_run_id": "guard-test"})
    assert run.rc != 0
    failed = run.result("Fail when no query could be measured (a blind guard's `none` is no evidence of health)",
                        "target")
    assert "none of the 1 queries could be measured" in failed["msg"] and "connection refused" in failed["msg"]
    report = report_of(tmp_path)
    assert report["decision"] == "none" and report["query_errors"]["error_rate"].endswith("connection refused")
    assert not run.for_task("Restore the host to its restore point")
