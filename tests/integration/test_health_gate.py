"""fleetops.rollback.health_gate through real ansible-playbook runs against real endpoints on 127.0.0.1."""
from __future__ import annotations

import json
import sys

import pytest

from health_endpoints import HealthEndpoints, Listener, closed_port


@pytest.fixture(scope="module")
def server():
    with HealthEndpoints() as endpoints:
        yield endpoints


def play(tasks):
    return "- name: Health gate\n  hosts: all\n  gather_facts: false\n  tasks:\n" + "\n".join(
        "    " + line for line in tasks.strip("\n").splitlines()) + "\n"


def test_verdicts_for_healthy_failing_flapping_slow_tcp_and_command(playbook, one_host, server):
    secret = "Bearer do-not-echo-7f3a9"
    with Listener() as listener:
        run = playbook(play(f"""
- name: Healthy
  fleetops.rollback.health_gate:
    checks:
      - type: http
        url: {server.url('/ok')}
        body: '"status":\\s*"ok"'
        headers:
          Authorization: "{secret}"
    interval: 0.1
    successes: 3
    timeout: 20
- name: Failing
  fleetops.rollback.health_gate:
    checks: [{{type: http, url: "{server.url('/status/500')}"}}]
    interval: 0.1
    failures: 2
    timeout: 20
    fail_on_unhealthy: false
- name: Flapping
  fleetops.rollback.health_gate:
    checks: [{{type: http, url: "{server.url('/flap/module')}"}}]
    interval: 0.05
    successes: 2
    failures: 1
    timeout: 1.5
    fail_on_unhealthy: false
- name: Slow
  fleetops.rollback.health_gate:
    checks: [{{type: http, url: "{server.url('/slow/400')}", max_latency: 0.2}}]
    interval: 0.1
    failures: 1
    timeout: 20
    fail_on_unhealthy: false
- name: Tcp
  fleetops.rollback.health_gate:
    name: db
    checks:
      - {{type: tcp, port: {listener.port}}}
      - {{type: tcp, host: 127.0.0.1, port: {closed_port()}}}
    interval: 0.1
    failures: 0
    timeout: 20
    fail_on_unhealthy: false
- name: Command
  fleetops.rollback.health_gate:
    checks:
      - type: command
        argv: ["{sys.executable}", "-c", "print('state: active')"]
        stdout: '^state: active'
    interval: 0.1
    successes: 2
    timeout: 20
- name: Command failing
  fleetops.rollback.health_gate:
    checks: [{{type: command, argv: [/bin/sh, -c, "exit 3"]}}]
    interval: 0.1
    failures: 0
    timeout: 20
    fail_on_unhealthy: false
- name: Check mode
  fleetops.rollback.health_gate:
    checks: [{{type: http, url: "{server.url('/ok')}"}}]
    interval: 0.05
    successes: 1
  check_mode: true
"""), one_host)
    assert run.rc == 0, run.stdout + run.stderr

    healthy = run.result("Healthy", "target")
    assert healthy["verdict"] == "healthy" and healthy["changed"] is False
    assert healthy["healthy_targets"] == ["local"] and healthy["unhealthy_targets"] == []
    assert len(healthy["samples"]) == 3 and all(s["ok"] for s in healthy["samples"])
    assert healthy["samples"][0]["checks"][0]["status"] == 200
    assert healthy["targets"]["local"]["rounds"] == 3
    assert healthy["seconds"] < 15  # about 0.2 s: successes * interval, not the 20 s timeout

    failing = run.result("Failing", "target")
    assert failing["verdict"] == "unhealthy"
    assert failing["targets"]["local"]["rounds"] == 3  # failures + 1
    assert failing["targets"]["local"]["last_error"] == "GET %s: status 500, expected 200" % server.url("/status/500")
    assert run.status("Failing", "target") == "ok"  # fail_on_unhealthy: false

    flapping = run.result("Flapping", "target")
    assert flapping["verdict"] == "timeout"
    oks = [s["ok"] for s in flapping["samples"]]
    assert len(oks) >= 3 and all(a != b for a, b in zip(oks, oks[1:]))

    slow = run.result("Slow", "target")
    assert slow["verdict"] == "unhealthy"
    assert slow["samples"][-1]["checks"][0]["status"] == 200
    assert "over max_latency 0.2s" in slow["targets"]["local"]["last_error"]

    tcp = run.result("Tcp", "target")
    assert tcp["verdict"] == "unhealthy" and tcp["unhealthy_targets"] == ["db"]
    checks = tcp["samples"][0]["checks"]
    assert [c["ok"] for c in checks] == [True, False]
    assert checks[1]["error"].endswith("connection refused")

    assert run.result("Command", "target")["verdict"] == "healthy"
    command_failing = run.result("Command failing", "target")
    assert command_failing["verdict"] == "unhealthy"
    assert "rc 3, expected 0" in command_failing["targets"]["local"]["last_error"]

    checked = run.result("Check mode", "target")
    assert checked["verdict"] == "healthy" and checked["changed"] is False

    # The header value never shows: not in any result, not in the output.
    assert secret not in json.dumps(run.results) and secret not in run.stdout + run.stderr


def test_fail_on_unhealthy_names_targets_and_errors(playbook, one_host, server):
    server.host_status.update({"bad1": 500, "bad2": "slow:3000"})
    run = playbook(play(f"""
- name: Single target fails
  fleetops.rollback.health_gate:
    checks: [{{type: http, url: "{server.url('/status/503')}"}}]
    name: app
    interval: 0.05
    failures: 1
    timeout: 20
  ignore_errors: true
- name: Several targets
  fleetops.rollback.health_gate:
    targets:
      - {{name: good1, checks: [{{type: http, url: "{server.url('/host/good1')}"}}]}}
      - {{name: bad1, checks: [{{type: http, url: "{server.url('/host/bad1')}"}}]}}
      - {{name: good2, checks: [{{type: http, url: "{server.url('/host/good2')}"}}]}}
      - {{name: bad2, checks: [{{type: http, url: "{server.url('/host/bad2')}", request_timeout: 0.3}}]}}
    interval: 0.05
    successes: 2
    failures: 1
    timeout: 20
  ignore_errors: true
"""), one_host)
    assert run.rc == 0, run.stdout + run.stderr

    single = run.result("Single target fails", "target")
    assert run.status("Single target fails", "target") == "failed"
    assert single["msg"].startswith("health gate verdict unhealthy: 1 of 1 targets not healthy: app (unhealthy after 2")
    assert "status 503, expected 200" in single["msg"]
    assert single["verdict"] == "unhealthy" and len(single["samples"]) == 2  # the results come with the failure

    several = run.result("Several targets", "target")
    assert run.status("Several targets", "target") == "failed"
    assert several["healthy_targets"] == ["good1", "good2"]
    assert several["unhealthy_targets"] == ["bad1", "bad2"]
    assert "2 of 4 targets not healthy" in several["msg"]
    assert "bad1 (unhealthy after 2 rounds: GET %s: status 500, expected 200)" % server.url("/host/bad1") \
        in several["msg"]
    assert "bad2 (unhealthy after 2 rounds: GET %s: timed out" % server.url("/host/bad2") in several["msg"]
    assert "good1" not in several["msg"]
    assert several["targets"]["good2"]["verdict"] == "healthy"
    assert "samples" not in several  # only the single-target form has top-level samples


def test_bad_input_names_the_value_and_runs_nothing(playbook, one_host, server):
    run = playbook(play(f"""
- name: Unknown check type
  fleetops.rollback.health_gate:
    checks:
      - {{type: http, url: "{server.url('/host/never-polled')}"}}
      - {{type: htp, url: "{server.url('/host/never-polled')}"}}
  ignore_errors: true
- name: Missing url in a target
  fleetops.rollback.health_gate:
    targets:
      - {{name: a, checks: [{{type: tcp, port: 22}}]}}
      - {{name: b, checks: [{{type: http}}]}}
  ignore_errors: true
- name: Bad interval
  fleetops.rollback.health_gate:
    checks: [{{type: tcp, port: 22}}]
    interval: 0
  ignore_errors: true
- name: Negative failures
  fleetops.rollback.health_gate:
    checks: [{{type: tcp, port: 22}}]
    failures: -1
  ignore_errors: true
- name: Both checks and targets
  fleetops.rollback.health_gate:
    checks: [{{type: tcp, port: 22}}]
    targets: [{{name: a, checks: [{{type: tcp, port: 22}}]}}]
  ignore_errors: true
"""), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    expected = {
        "Unknown check type": "checks[1].type: 'htp' is not one of http, tcp, command",
        "Missing url in a target": "targets[1].checks[0].url: required for an http check",
        "Bad interval": "interval: 0.0 must be greater than 0",
        "Negative failures": "failures: -1 must be 0 or more",
        "Both checks and targets": "parameters are mutually exclusive: checks|targets",
    }
    for task, message in expected.items():
        assert run.status(task, "target") == "failed", task
        assert run.result(task, "target")["msg"].startswith(message), run.result(task, "target")["msg"]
    assert server.hits("/host/never-polled") == 0
