"""Fleet behaviour of the standard rollback on a 20-host local fleet: canary, batches, max_fail_percentage,
check mode, unreachable hosts and the per-host lock. Real ansible-playbook runs against real app processes."""
import glob
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store  # noqa: E402
from health_endpoints import closed_port  # noqa: E402  pylint: disable=wrong-import-position
from plays import break_fleet  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = os.path.join(ROOT, "playbooks")
STANDARD = os.path.join(PLAYBOOKS, "rollback_standard.yml")
IMMEDIATE = os.path.join(PLAYBOOKS, "rollback_immediate.yml")
SERIAL = [1, 5, "100%"]  # canary fleet-001, then fleet-002..006, then the other 14


def store_of(host):
    return Store(os.path.join(host.root, "var/lib/fleetops/rollback"))


def versions(fleet):
    return {row["name"]: row["version"] for row in local_fleet.status(fleet)}


@pytest.fixture
def broken_fleet(known_good_fleet):
    """20 hosts: release 1 captured as known good, then every host broken by release 2."""
    fleet = known_good_fleet(20)
    break_fleet(fleet)
    return fleet


def make_sick(fleet, playbook, host):
    """Capture release 2 as the host's known good point: its rollback then cannot pass the gate."""
    snap = playbook(os.path.join(PLAYBOOKS, "snapshot.yml"), fleet.inventory, limit=host.name,
                    extra_vars={"snapshot_gate": False, "restore_point_label": "bad-capture"})
    assert snap.rc == 0, snap.stdout[-2000:]


def standard(playbook, fleet, tmp_path, **extra):
    # The gate keeps its default timeout: a sick host fails by its verdict (503, unhealthy) and not by the clock,
    # while a batch of restarted apps on a loaded machine may need more than a few seconds to pass.
    extra = dict({"rollback_serial": SERIAL, "rollback_report_dir": str(tmp_path / "reports")}, **extra)
    return playbook(STANDARD, fleet.inventory, limit=fleet.group, extra_vars=extra)


@pytest.mark.slow
def test_a_failing_canary_stops_the_standard_rollback(broken_fleet, playbook, tmp_path):
    fleet = broken_fleet
    canary = fleet.hosts[0]
    make_sick(fleet, playbook, canary)
    run = standard(playbook, fleet, tmp_path)
    assert run.rc != 0
    assert run.status("Fail the hosts that did not pass their health checks", canary.name) == "failed"
    # Nobody after the canary was touched: still on release 2, no rollback (safety point) on their store.
    after = versions(fleet)
    for host in fleet.hosts[1:]:
        assert after[host.name] == "2.0.0"
        assert not [m for m in store_of(host).points()[0] if m["status"] == "safety"]
        assert not run.for_task("Restore the host to its restore point", host.name)


@pytest.mark.slow
@pytest.mark.parametrize("max_fail, continues", [(10, False), (25, True)])
def test_max_fail_percentage_is_honoured(broken_fleet, playbook, tmp_path, max_fail, continues):
    fleet = broken_fleet
    sick = fleet.hosts[2]  # in the second batch of 5: one failure there is 20 %
    make_sick(fleet, playbook, sick)
    run = standard(playbook, fleet, tmp_path, rollback_max_fail_percentage=max_fail)
    assert run.rc != 0
    assert run.status("Fail the hosts that did not pass their health checks", sick.name) == "failed"
    after = versions(fleet)
    first_two_batches = fleet.hosts[:6]
    assert [after[h.name] for h in first_two_batches if h is not sick] == ["1.0.0"] * 5
    last_batch = {after[h.name] for h in fleet.hosts[6:]}
    assert last_batch == ({"1.0.0"} if continues else {"2.0.0"})
    # The abandoned state of every host whose batch ran is marked bad; hosts never reached keep it candidate.
    # The sick host's known good point is its current state: nothing to abandon, so no point was captured.
    for index, host in enumerate(fleet.hosts):
        labels = {m["label"]: m["status"] for m in store_of(host).points()[0]}
        abandoned = [status for label, status in labels.items() if label.startswith("before-rollback-")]
        if host is sick:
            assert abandoned == []
        else:
            assert abandoned == ["bad" if index < 6 or continues else "candidate"], host.name


@pytest.mark.slow
def test_standard_check_mode_prints_and_saves_the_plan_and_changes_nothing(broken_fleet, playbook, tmp_path):
    fleet = broken_fleet
    points_before = {h.name: store_of(h).point_ids() for h in fleet.hosts}
    run = playbook(STANDARD, fleet.inventory, limit=fleet.group, check=True,
                   extra_vars={"rollback_serial": SERIAL, "rollback_report_dir": str(tmp_path / "reports")})
    assert run.rc == 0, run.stdout[-4000:]
    assert set(versions(fleet).values()) == {"2.0.0"}
    assert {h.name: store_of(h).point_ids() for h in fleet.hosts} == points_before
    for host in fleet.hosts:
        assert "%s: would restore config (" % host.name in run.stdout
    [plan_file] = glob.glob(str(tmp_path / "reports" / "plan-*.json"))
    assert oct(os.stat(plan_file).st_mode & 0o777) == "0o600"
    with open(plan_file, encoding="utf-8") as stream:
        plan = json.load(stream)
    assert sorted(plan["hosts"]) == sorted(h.name for h in fleet.hosts)
    assert all(p["changed"] and p["plan"]["release"]["changed"] for p in plan["hosts"].values())
    assert "db-pass" not in json.dumps(plan)  # the diff is not in the saved plan, secrets never are


@pytest.mark.slow
def test_an_unreachable_host_is_reported_while_the_others_complete(broken_fleet, playbook):
    fleet = broken_fleet
    with open(fleet.inventory, encoding="utf-8") as stream:
        text = stream.read()
    ghost = ("ghost-001 ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=%d ansible_user=nobody "
             "ansible_python_interpreter=/usr/bin/python3 "
             "ansible_ssh_common_args='-o ConnectTimeout=3 -o BatchMode=yes' fleet_root=/nonexistent app_port=1\n"
             % closed_port())
    with open(fleet.inventory, "w", encoding="utf-8") as stream:
        stream.write(text.replace("[%s]\n" % fleet.group, "[%s]\n%s" % (fleet.group, ghost), 1))
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group)
    assert run.rc != 0
    assert run.status("Restore the host to its restore point", "ghost-001") == "unreachable"
    assert "ghost-001: FAILED" in run.stdout
    assert "hosts: 21, restored: 20, unchanged: 0, failed: 1" in run.stdout
    assert set(versions(fleet).values()) == {"1.0.0"}


@pytest.mark.slow
def test_a_second_rollback_is_refused_per_host_while_one_holds_the_lock(broken_fleet, playbook):
    fleet = broken_fleet
    busy = fleet.hosts[:10]
    locks = [store_of(h).lock(owner="test:another rollback") for h in busy]
    for lock in locks:
        lock.acquire()
    try:
        run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group)
    finally:
        for lock in locks:
            lock.release()
    assert run.rc != 0
    after = versions(fleet)
    for host in busy:
        assert run.status("Restore the host to its restore point", host.name) == "failed"
        assert "another rollback" in run.result("Restore the host to its restore point", host.name)["msg"]
        assert after[host.name] == "2.0.0"
    assert {after[h.name] for h in fleet.hosts[10:]} == {"1.0.0"}
    # Once the other run is done, the refused hosts roll back.
    again = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group)
    assert again.rc == 0, again.stdout[-3000:]
    assert set(versions(fleet).values()) == {"1.0.0"}
