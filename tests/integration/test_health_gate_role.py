"""The fleetops.rollback.health_gate role on a local fleet, against real endpoints on 127.0.0.1."""
from __future__ import annotations

import re

import pytest

from playbook_runner import local_inventory
from health_endpoints import HealthEndpoints

GATE = "fleetops.rollback.health_gate : Wait until the hosts pass their health checks"
FAIL = "fleetops.rollback.health_gate : Fail the hosts that did not pass their health checks"

PLAY = """
- name: Gate the fleet
  hosts: all
  gather_facts: false
  roles:
    - role: fleetops.rollback.health_gate
      vars:
        health_gate_interval: 0.1
        health_gate_timeout: {timeout}
        health_gate_successes: 2
        health_gate_failures: 1
        health_gate_from_controller: {from_controller}
"""


@pytest.fixture(scope="module")
def server():
    with HealthEndpoints() as endpoints:
        yield endpoints


def per_host_checks(server, **options):
    """Checks templated per host: hostvars[h] renders inventory_hostname as h."""
    return [dict(options, type="http", url=server.url("/host/{{ inventory_hostname }}"))]


def recap(run):
    """{host: failed count} from the play recap."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:.*?failed=(\d+)", run.stdout, re.M)}


def test_controller_mode_gates_ten_hosts_in_one_run_and_fails_exactly_the_bad_ones(playbook, tmp_path, server):
    hosts = ["web%02d" % i for i in range(10)]
    # web08 answers in 1.5 s, over max_latency however fast the machine; the others must stay under it while ten
    # checks share a loaded machine, hence 1 s rather than a tight bound.
    server.host_status.update({"web03": 500, "web07": 503, "web08": "slow:1500"})
    inventory = local_inventory(tmp_path / "inventory.ini", {name: {} for name in hosts})
    run = playbook(PLAY.format(timeout=20, from_controller="true"), inventory,
                   extra_vars={"health_gate_checks": per_host_checks(server, max_latency=1.0)})
    assert run.rc == 2, run.stdout + run.stderr

    # One gate run for the whole fleet (run_once), every host polled.
    gate_runs = run.for_task(GATE)
    assert len(gate_runs) == 1, gate_runs
    gate = gate_runs[0]["result"]
    assert gate["verdict"] == "unhealthy"
    assert sorted(gate["unhealthy_targets"]) == ["web03", "web07", "web08"]
    assert sorted(gate["healthy_targets"]) == sorted(set(hosts) - {"web03", "web07", "web08"})
    assert set(gate["targets"]) == set(hosts)
    for name in hosts:
        assert server.hits("/host/%s" % name) >= 2

    # Exactly the bad hosts fail, each with its own verdict and error; the others skip the fail task.
    assert recap(run) == {name: int(name in ("web03", "web07", "web08")) for name in hosts}
    for name in hosts:
        status = run.status(FAIL, name)
        if name in ("web03", "web07", "web08"):
            assert status == "failed", name
            msg = run.result(FAIL, name)["msg"]
            assert msg.startswith("Health gate: %s did not pass. %s: unhealthy after 2 rounds (0 passed)" % (
                name, name)), msg
            others = {"web03", "web07", "web08"} - {name}
            assert not any(other in msg for other in others), msg
        else:
            assert status == "skipped", name
    assert "status 500, expected 200" in run.result(FAIL, "web03")["msg"]
    assert "status 503, expected 200" in run.result(FAIL, "web07")["msg"]
    assert "over max_latency 1.0s" in run.result(FAIL, "web08")["msg"]


def test_per_host_mode_each_host_gates_itself(playbook, tmp_path, server):
    server.host_status.update({"app2": 500})
    inventory = local_inventory(tmp_path / "inventory.ini", {name: {} for name in ("app1", "app2", "app3")})
    run = playbook(PLAY.format(timeout=20, from_controller="false"), inventory,
                   extra_vars={"health_gate_checks": per_host_checks(server)})
    assert run.rc == 2, run.stdout + run.stderr
    for name in ("app1", "app2", "app3"):
        gate = run.result(GATE, name)
        assert list(gate["targets"]) == [name]  # each host ran its own gate
        assert gate["verdict"] == ("unhealthy" if name == "app2" else "healthy")
        assert len(gate["samples"]) == 2
    assert recap(run) == {"app1": 0, "app2": 1, "app3": 0}
    assert "app2: unhealthy after 2 rounds" in run.result(FAIL, "app2")["msg"]


def test_healthy_fleet_passes_and_host_without_checks_is_named(playbook, tmp_path, server):
    inventory = local_inventory(tmp_path / "inventory.ini", {name: {} for name in ("ok1", "ok2")})
    run = playbook(PLAY.format(timeout=20, from_controller="true"), inventory,
                   extra_vars={"health_gate_checks": per_host_checks(server)})
    assert run.rc == 0, run.stdout + run.stderr
    (gate,) = run.for_task(GATE)
    assert gate["result"]["healthy_targets"] == ["ok1", "ok2"]
    # Nobody failed: one worker skipped the per-host fail task for the whole batch.
    assert [(r["host"], r["status"]) for r in run.for_task(FAIL)] == [("ok1", "skipped")]

    # A host of the batch without health_gate_checks: the gate fails with a message naming it.
    inventory = local_inventory(tmp_path / "inventory2.ini", {
        "ok1": {"health_gate_checks": "[{'type':'tcp','port':22}]"}, "nochecks": {}})
    run = playbook(PLAY.format(timeout=20, from_controller="true"), inventory)
    assert run.rc == 2
    (gate,) = run.for_task(GATE)  # run once, for whichever host came first
    assert gate["status"] == "failed"
    assert "target 'nochecks' has no checks" in gate["result"]["msg"]
    assert recap(run) == {"ok1": 1, "nochecks": 1}


def test_explicit_targets_fail_their_host_and_a_shared_target_fails_every_host(playbook, tmp_path, server):
    server.host_status.update({"api2": 500, "shared-db": 500})
    inventory = local_inventory(tmp_path / "inventory.ini", {name: {} for name in ("api1", "api2", "api3")})
    targets = [{"name": name, "checks": [{"type": "http", "url": server.url("/host/%s" % name)}]}
               for name in ("api1", "api2", "api3")]
    run = playbook(PLAY.format(timeout=20, from_controller="true"), inventory,
                   extra_vars={"health_gate_targets": targets})
    assert run.rc == 2, run.stdout + run.stderr
    assert recap(run) == {"api1": 0, "api2": 1, "api3": 0}
    assert run.result(FAIL, "api2")["msg"].startswith("Health gate: api2 did not pass.")

    # A target that is not a host of the play (a shared database, say) fails every host.
    run = playbook(PLAY.format(timeout=20, from_controller="true"), inventory, extra_vars={
        "health_gate_targets": targets[:1] + [{"name": "shared-db", "checks": [
            {"type": "http", "url": server.url("/host/shared-db")}]}]})
    assert run.rc == 2, run.stdout + run.stderr
    assert recap(run) == {"api1": 1, "api2": 1, "api3": 1}
    for name in ("api1", "api2", "api3"):
        assert run.result(FAIL, name)["msg"].startswith("Health gate: shared-db did not pass.")
