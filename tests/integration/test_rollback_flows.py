"""Partial, failed-recovery and drill playbooks, and the immediate path's ordered stop/start and traffic
hooks, on small local fleets through real ansible-playbook runs."""
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store  # noqa: E402
from plays import break_fleet, versions  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = os.path.join(ROOT, "playbooks")


def path(name):
    return os.path.join(PLAYBOOKS, name)


def test_partial_release_only_leaves_config_untouched(fleet3, playbook):
    fleet = fleet3
    break_fleet(fleet)
    host = fleet.hosts[0]
    env = os.path.join(host.root, "etc/app/app.env")
    with open(env, encoding="utf-8") as stream:
        release2_env = stream.read()
    run = playbook(path("rollback_partial.yml"), fleet.inventory, limit=host.name,
                   extra_vars={"rollback_components": ["release"]})
    assert run.rc == 0, run.stdout[-3000:]
    assert os.readlink(os.path.join(host.root, "srv/app/current")).endswith("1")
    with open(env, encoding="utf-8") as stream:
        assert stream.read() == release2_env  # config untouched: still release 2's
    assert "%s: restored release (1 changed); untouched: config" % host.name in run.stdout
    result = run.result("Restore the host to its restore point", host.name)
    assert list(result["plan"]) == ["release"]


def test_partial_by_service_uses_the_state_it_declares(fleet3, playbook):
    fleet = fleet3
    break_fleet(fleet)
    run = playbook(path("rollback_partial.yml"), fleet.inventory, limit=fleet.hosts[1].name,
                   extra_vars={"rollback_services": ["app"]})
    assert run.rc == 0, run.stdout[-3000:]
    assert versions(fleet)[fleet.hosts[1].name] == ("1.0.0", 200)
    assert versions(fleet)[fleet.hosts[0].name][0] == "2.0.0"


def test_partial_select_one_config_root_and_bad_choices(fleet3, playbook):
    fleet = fleet3
    host = fleet.hosts[2]
    tuning = os.path.join(host.root, "etc/app/conf.d/20-tuning.env")
    break_fleet(fleet)
    assert os.path.exists(tuning)  # release 2 adds it
    run = playbook(path("rollback_partial.yml"), fleet.inventory, limit=host.name, check=True,
                   extra_vars={"rollback_select": {"config": [os.path.join(host.root, "etc/app")]}})
    assert run.rc == 0, run.stdout[-3000:]
    assert os.path.exists(tuning)  # check mode changed nothing
    assert "%s: would restore config (" % host.name in run.stdout and "untouched: release" in run.stdout

    nothing = playbook(path("rollback_partial.yml"), fleet.inventory, limit=host.name)
    assert nothing.rc != 0 and "Nothing chosen" in nothing.stdout
    typo = playbook(path("rollback_partial.yml"), fleet.inventory, limit=host.name,
                    extra_vars={"rollback_components": ["config"], "rollback_services": ["ap"]})
    assert typo.rc != 0 and "ap" in typo.stdout
    assert os.path.exists(tuning)  # bad input changed nothing


def test_failed_recovery_restores_the_last_safety_point(fleet3, playbook, tmp_path):
    fleet = fleet3
    break_fleet(fleet)
    host = fleet.hosts[0]
    # A rollback that leaves the host unhealthy: its known good release directory is broken on purpose.
    with open(os.path.join(host.root, "srv/app/releases/1/release.json"), "w", encoding="utf-8") as stream:
        stream.write("{not json")
    bad = playbook(path("rollback_immediate.yml"), fleet.inventory, limit=host.name,
                   extra_vars={"health_gate_timeout": 5})
    assert bad.rc != 0
    safety = bad.result("Restore the host to its restore point", host.name)["safety_point"]
    assert safety

    # Recovery with a fast gate puts back the pre-rollback state (release 2) and starts it.
    hook = tmp_path / "escalate.yml"
    hook.write_text("- name: Page the on-call\n  ansible.builtin.copy:\n    dest: %s\n    content: paged\n    mode: '0600'\n"
                    % (tmp_path / "paged"))
    run = playbook(path("rollback_failed_recovery.yml"), fleet.inventory, limit=host.name,
                   extra_vars={"recovery_gate_timeout": 20, "recovery_gate_successes": 2,
                               "recovery_gate_interval": 0.5, "recovery_escalation_tasks": str(hook)})
    # Release 2 is unhealthy by design, so the extended validation fails and escalation runs.
    assert run.rc != 0
    assert run.result("Restore the host to its restore point", host.name)["point"]["id"] == safety
    assert (tmp_path / "paged").read_text() == "paged"
    assert versions(fleet)[host.name][0] == "2.0.0"  # the safety point: the state just before the rollback

    # Naming an emergency point (release 1, repaired) recovers the host; no escalation.
    shutil.rmtree(os.path.join(host.root, "srv/app/releases/1"))
    local_fleet.deploy(fleet, 1, switch=False)
    (tmp_path / "paged").unlink()
    ok = playbook(path("rollback_failed_recovery.yml"), fleet.inventory, limit=host.name,
                  extra_vars={"emergency_point": "release-1", "recovery_gate_successes": 2,
                              "recovery_gate_interval": 0.5, "recovery_escalation_tasks": str(hook)})
    assert ok.rc == 0, ok.stdout[-3000:]
    assert versions(fleet)[host.name] == ("1.0.0", 200)
    assert not (tmp_path / "paged").exists()


def test_immediate_stop_start_order_and_traffic_hooks(fleet3, playbook, tmp_path):
    fleet = fleet3
    break_fleet(fleet)
    log = "{{ fleet_root }}/traffic.log"
    drain, undrain = tmp_path / "drain.yml", tmp_path / "undrain.yml"
    for hook, word in ((drain, "drained"), (undrain, "returned")):
        hook.write_text("- name: Traffic %s\n  ansible.builtin.lineinfile:\n    path: \"%s\"\n    line: %s\n"
                        "    create: true\n    mode: '0600'\n" % (word, log, word))
    run = playbook(path("rollback_immediate.yml"), fleet.inventory, limit=fleet.group,
                   extra_vars={"rollback_service_mode": "stop_start", "rollback_drain_tasks": str(drain),
                               "rollback_undrain_tasks": str(undrain)})
    assert run.rc == 0, run.stdout[-3000:]
    for host in fleet.hosts:
        assert versions(fleet)[host.name] == ("1.0.0", 200)
        with open(os.path.join(host.root, "traffic.log"), encoding="utf-8") as stream:
            assert stream.read().split() == ["drained", "returned"]
        stop = run.result("Manage command services", host.name)
        assert stop["results"][0]["stdout"].startswith("started")  # the last services run is the start
    # The restore ran with the service stopped: the journal shows no inline restart.
    journal = Store(os.path.join(fleet.hosts[0].root, "var/lib/fleetops/rollback")).read_journal()
    assert journal[-1]["event"] == "restore" and not journal[-1].get("restart_error")


def test_fleet_mode_runs_a_step_that_only_one_host_needs(fleet3, playbook, tmp_path):
    """rollback_immediate decides once for the batch which optional steps run; a hook and stop_start set in the
    inventory for the last host only must still run there, and nowhere else."""
    fleet = fleet3
    break_fleet(fleet)
    last = fleet.hosts[-1]
    log = "{{ fleet_root }}/traffic.log"
    drain, undrain = tmp_path / "drain.yml", tmp_path / "undrain.yml"
    for hook, word in ((drain, "drained"), (undrain, "returned")):
        hook.write_text("- name: Traffic %s\n  ansible.builtin.lineinfile:\n    path: \"%s\"\n    line: %s\n"
                        "    create: true\n    mode: '0600'\n" % (word, log, word))
    host_vars = os.path.join(os.path.dirname(fleet.inventory), "host_vars")
    os.makedirs(host_vars, exist_ok=True)
    with open(os.path.join(host_vars, last.name + ".yml"), "w", encoding="utf-8") as stream:
        json.dump({"rollback_service_mode": "stop_start", "rollback_drain_tasks": str(drain),
                   "rollback_undrain_tasks": str(undrain)}, stream)
    try:
        run = playbook(path("rollback_immediate.yml"), fleet.inventory, limit=fleet.group)
    finally:
        os.remove(os.path.join(host_vars, last.name + ".yml"))
    assert run.rc == 0, run.stdout[-3000:]
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    for host in fleet.hosts:
        traffic = os.path.join(host.root, "traffic.log")
        if host is last:
            with open(traffic, encoding="utf-8") as stream:
                assert stream.read().split() == ["drained", "returned"]
            assert run.result("Manage command services", host.name)["results"][0]["stdout"].startswith("started")
        else:
            assert not os.path.exists(traffic), host.name
            assert run.result("Restore the host to its restore point", host.name)["restarted"]


def test_fleet_mode_runs_the_services_role_where_only_one_host_needs_it(fleet3, playbook):
    """The services condition in fleet mode: the last host's inventory gives its service no restart argv, so its
    restore cannot restart it inline and the services role must restart it there. That role finds no argv to run
    and fails the host, by name: proof that the step ran there, although no other host of the batch needed it
    (they restart inline and skip it)."""
    fleet = fleet3
    break_fleet(fleet)
    last = fleet.hosts[-1]
    [service] = local_fleet.inventory_vars()[-1:]
    assert service[0] == "services_list"
    no_restart = [{key: value for key, value in item.items() if key != "restart"} for item in json.loads(service[1])]
    host_vars = os.path.join(os.path.dirname(fleet.inventory), "host_vars")
    os.makedirs(host_vars, exist_ok=True)
    with open(os.path.join(host_vars, last.name + ".yml"), "w", encoding="utf-8") as stream:
        json.dump({"services_list": no_restart}, stream)
    try:
        run = playbook(path("rollback_immediate.yml"), fleet.inventory, limit=fleet.group)
    finally:
        os.remove(os.path.join(host_vars, last.name + ".yml"))
    assert run.rc != 0, run.stdout[-3000:]
    for host in fleet.hosts:
        restore = run.result("Restore the host to its restore point", host.name)
        assert restore["changed"] and not restore.get("failed"), (host.name, restore)
        if host is last:
            assert not restore.get("restarted"), restore  # no restart_commands: nothing to run them with
            assert run.status("Manage command services", host.name) == "failed"
            assert "service app has no restart argv" in json.dumps(run.result("Manage command services", host.name))
        else:
            assert restore["restarted"] and not run.for_task("Manage command services", host.name), host.name
            assert versions(fleet)[host.name] == ("1.0.0", 200)


def test_drill_detects_the_fault_rolls_back_and_reports(fleet3, playbook, tmp_path):
    fleet = fleet3
    reports = tmp_path / "reports"
    run = playbook(path("rollback_drill.yml"), fleet.inventory, limit=fleet.group,
                   extra_vars={"drill_fault": "bad_config", "rollback_report_dir": str(reports),
                               "drill_bad_config": {"path": "{{ fleet_root }}/etc/app/conf.d/99-drill.env",
                                                    "content": "WORKERS=0\n"}})
    assert run.rc == 0, run.stdout[-4000:]
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    for host in fleet.hosts:
        assert not os.path.exists(os.path.join(host.root, "etc/app/conf.d/99-drill.env"))
    [report_file] = list(reports.glob("drill-*.json"))
    report = json.loads(report_file.read_text())
    assert report["fault"] == "bad_config" and report["hosts"] == 3 and report["recovered"] == 3
    assert 0 < report["time_to_detect_s"] < 60 and 0 < report["time_to_recover_s"] < 120
    assert "time to detect" in run.stdout

    # A fault the checks cannot see is the drill's finding: the run fails and says so.
    unseen = playbook(path("rollback_drill.yml"), fleet.inventory, limit=fleet.group,
                      extra_vars={"drill_fault": "bad_config", "drill_detect_timeout": 3,
                                  "rollback_report_dir": str(reports),
                                  "drill_bad_config": {"path": "{{ fleet_root }}/etc/app/conf.d/98-harmless.env",
                                                       "content": "LOG_LEVEL=info\n"}})
    assert unseen.rc != 0
    assert "did not see the bad_config fault" in unseen.stdout
