"""Unit tests for plugin_utils/_report.py, the logic of the rollback_report callback: what a run records, the
report built from it (outcomes, changes, safety points, time to recover), its markdown and SVG timeline, and that
no secret reaches any of them. Events are fed as the callback feeds them, with a clock the test moves."""

import json
import os
import stat
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.fleetops.rollback.plugins.plugin_utils._report import (
    RunRecorder, describe_change, render_markdown, render_svg, write_report)

SVG = "{http://www.w3.org/2000/svg}"
DB_PASSWORD = "Db-Pa55-unit-7391"
API_TOKEN = "tok-unit-8c1e02"
HOSTS = ["web-%02d" % i for i in range(1, 24)] + ["auth-01", "session-cache-01"]  # 25; two with secret-ish names
BROKEN = "web-03"     # its restore fails and is reverted
UNHEALTHY = "web-07"  # restored, then fails the gate


class Clock:
    def __init__(self):
        self.now = 1_790_000_000.0

    def __call__(self):
        return self.now

    def tick(self, seconds=0.01):
        self.now += seconds
        return self.now


def restore_result(host):
    return {"changed": True, "point": {"id": "p-good", "label": "release-1", "status": "known_good"},
            "safety_point": "s-%s" % host, "seconds": 0.4,
            "plan": {"config": {"changed": True, "seconds": 0.01, "changes": [
                {"path": "/etc/app/app.env", "action": "update", "from": {"type": "file", "sha256": "a" * 64},
                 "to": {"type": "file", "sha256": "b" * 64}},
                {"path": "/etc/app/conf.d/20-tuning.env", "action": "remove", "from": {"type": "file"},
                 "to": {"type": "absent"}}]},
                "release": {"changed": True, "seconds": 0.002, "changes": [
                    {"path": "/srv/app/current", "action": "switch", "from": {"target": "releases/2"},
                     "to": {"target": "releases/1"}}]}}}


def task(rec, clock, uuid, name, action, hosts, outcome, result=None, run_once=False, check=False, spend=0.2):
    rec.on_task(uuid, name, action=action, play="Roll back", run_once=run_once, check_mode=check)
    for host in (hosts[:1] if run_once else hosts):
        clock.tick()
        rec.on_host_start(uuid, host)
    clock.tick(spend)
    for host in (hosts[:1] if run_once else hosts):
        clock.tick()
        value = result(host) if callable(result) else result
        rec.on_result(uuid, host, outcome(host) if callable(outcome) else outcome, value)


@pytest.fixture
def recorded():
    return record_run()


def record_run():
    """A 25-host immediate rollback: one restore fails, one host fails its gate, the rest recover."""
    clock = Clock()
    rec = RunRecorder(clock=clock)
    rec.on_playbook("rollback_immediate.yml")
    rec.on_play("Roll back", HOSTS)
    rec.add_secrets({"db_password": DB_PASSWORD, "notify_webhooks": [{"url": "http://127.0.0.1:9/hook-secret-path"}],
                     "vault": {"api_token": API_TOKEN}})
    run = {"id": "20261122T031500Z-1a2b", "type": "immediate", "reason": "INC-42",
           "started": str(clock.now), "report_dir": "/nowhere"}
    task(rec, clock, "t1", "Name this rollback run", "ansible.builtin.set_fact", HOSTS, "ok",
         {"ansible_facts": {"rollback_run": run}, "changed": False}, run_once=True)
    task(rec, clock, "t2", "Load the database credentials", "ansible.builtin.set_fact", HOSTS, "ok",
         {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result"})
    task(rec, clock, "t3", "fleetops.rollback.rollback : Take the hosts out of traffic", "ansible.builtin.include_tasks",
         HOSTS, "skipped", {"skipped": True})
    task(rec, clock, "t4", "fleetops.rollback.rollback : Restore the host to its restore point",
         "fleetops.rollback.restore_point", HOSTS,
         lambda h: "failed" if h == BROKEN else "changed",
         lambda h: {"failed": True, "msg": "restore failed in release: login with %s refused" % DB_PASSWORD,
                    "failed_component": "release", "safety_point": "s-web-03",
                    "component_state": {"config": "reverted to pre-rollback state", "release": "untouched"},
                    "point": {"id": "p-good", "label": "release-1"}, "plan": restore_result(h)["plan"]}
         if h == BROKEN else restore_result(h), spend=2.0)
    alive = [h for h in HOSTS if h != BROKEN]
    gate_start = clock.now + 0.01
    task(rec, clock, "t5", "fleetops.rollback.health_gate : Wait until the hosts pass their health checks",
         "fleetops.rollback.health_gate", alive, "ok",
         {"changed": False, "verdict": "unhealthy", "targets": {
             h: {"verdict": "unhealthy" if h == UNHEALTHY else "healthy",
                 "seconds": 1.5 if h == "web-10" else 1.0} for h in alive}}, run_once=True, spend=1.6)
    task(rec, clock, "t6", "fleetops.rollback.health_gate : Fail the hosts that did not pass their health checks",
         "ansible.builtin.fail", alive, lambda h: "failed" if h == UNHEALTHY else "skipped",
         lambda h: {"msg": "Health gate: %s did not pass; api_token=%s" % (h, API_TOKEN)} if h == UNHEALTHY
         else {"skipped": True})
    clock.tick(0.5)
    stats = {h: {"ok": 3, "changed": 1, "failures": 1 if h in (BROKEN, UNHEALTHY) else 0, "unreachable": 0,
                 "skipped": 1, "rescued": 0, "ignored": 0} for h in HOSTS}
    rec.on_stats(stats)
    return rec, gate_start


def test_the_report_has_the_run_every_host_and_every_step(recorded):
    rec, unused = recorded
    report = rec.build()
    assert (report["rollback_id"], report["type"], report["trigger"]) == ("20261122T031500Z-1a2b", "immediate", "INC-42")
    assert report["playbook"] == "rollback_immediate.yml" and report["outcome"] == "failure"
    assert list(report["hosts"]) == HOSTS
    assert report["failed_hosts"] == [BROKEN, UNHEALTHY]
    assert report["counts"] == {"failed": 2, "restored": 23}
    assert [s["name"].split(" : ")[-1] for s in report["steps"]] == [
        "Name this rollback run", "Load the database credentials", "Take the hosts out of traffic",
        "Restore the host to its restore point", "Wait until the hosts pass their health checks",
        "Fail the hosts that did not pass their health checks"]
    assert report["steps"][0]["run_once"] and report["steps"][3]["outcomes"] == {"changed": 24, "failed": 1}
    web01 = report["hosts"]["web-01"]
    assert [(e["step"], e["outcome"]) for e in web01["steps"]] == [
        (0, "ok"), (1, "ok"), (2, "skipped"), (3, "changed"), (4, "ok"), (5, "skipped")]
    assert all(e["start_s"] <= e["end_s"] for e in web01["steps"])
    other = report["hosts"]["web-02"]["steps"]
    assert [e["step"] for e in other] == [1, 2, 3, 5]  # run-once steps ran "on" web-01 only


def test_what_changed_safety_points_and_failures(recorded):
    rec, unused = recorded
    report = rec.build()
    web01 = report["hosts"]["web-01"]
    assert web01["outcome"] == "restored" and web01["health"] == "healthy"
    assert web01["point"] == {"id": "p-good", "label": "release-1"} and web01["safety_points"] == ["s-web-01"]
    assert web01["changed"]["config"]["changes"] == 2 and web01["changed"]["config"]["items"] == [
        "update /etc/app/app.env: sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb",
        "remove /etc/app/conf.d/20-tuning.env: file -> absent"]
    assert web01["changed"]["release"]["items"] == ["switch /srv/app/current: releases/2 -> releases/1"]
    broken = report["hosts"][BROKEN]
    assert broken["outcome"] == "failed" and broken["failed_component"] == "release"
    assert broken["failure"]["step"].endswith("Restore the host to its restore point")
    assert broken["component_state"]["config"] == "reverted to pre-rollback state"
    assert broken["health"] is None and broken["recovered_s"] is None
    sick = report["hosts"][UNHEALTHY]
    assert sick["outcome"] == "failed" and sick["health"] == "unhealthy" and sick["recovered_s"] is None
    assert sick["failure"]["step"].endswith("Fail the hosts that did not pass their health checks")


def test_time_to_recover_runs_from_the_start_to_the_last_host_passing_its_gate(recorded):
    rec, gate_start = recorded
    report = rec.build()
    started = float(rec.run["started"])
    expected = round(gate_start + 1.5 - started, 3)  # web-10 took 1.5 s in the gate, the others 1.0 s
    assert report["time_to_recover_s"] == pytest.approx(expected, abs=0.02)
    assert report["hosts"]["web-10"]["recovered_s"] == pytest.approx(expected, abs=0.02)
    assert report["all_recovered"] is False  # web-07 never passed
    assert report["duration_s"] > report["time_to_recover_s"]


def test_a_gate_before_the_restore_is_not_a_recovery():
    """A drill gates the healthy fleet before it breaks it: that gate must not count as recovery."""
    clock = Clock()
    rec = RunRecorder(clock=clock)
    rec.on_play("Drill", ["a"])
    gate = {"targets": {"a": {"verdict": "healthy", "seconds": 0.5}}}
    task(rec, clock, "g1", "Gate before", "fleetops.rollback.health_gate", ["a"], "ok", gate, run_once=True)
    task(rec, clock, "r1", "Restore", "fleetops.rollback.restore_point", ["a"], "changed", restore_result("a"))
    assert rec.build()["time_to_recover_s"] is None
    task(rec, clock, "g2", "Gate after", "fleetops.rollback.health_gate", ["a"], "ok", gate, run_once=True)
    report = rec.build()
    assert report["time_to_recover_s"] is not None and report["all_recovered"] is True


def test_check_mode_plans_are_not_changes():
    clock = Clock()
    rec = RunRecorder(clock=clock)
    rec.on_playbook("rollback_standard.yml", check_mode=True)
    rec.on_play("Assess", ["a"])
    result = restore_result("a")
    del result["seconds"]
    task(rec, clock, "p1", "Plan the restore of each host", "fleetops.rollback.restore_point", ["a"], "changed",
         result, check=True)
    rec.on_stats({"a": {"ok": 1, "changed": 1, "failures": 0, "unreachable": 0}})
    report = rec.build()
    assert report["check_mode"] is True and report["hosts"]["a"]["outcome"] == "planned"
    assert report["hosts"]["a"]["planned_only"] and report["hosts"]["a"]["safety_points"] == []
    assert "(planned)" in render_markdown(report)


def test_captures_of_the_abandoned_state_are_safety_points():
    clock = Clock()
    rec = RunRecorder(clock=clock)
    rec.on_play("Capture", ["a"])
    task(rec, clock, "c1", "Capture a restore point", "fleetops.rollback.restore_point", ["a"], "changed",
         {"changed": True, "point": {"id": "before-1", "label": "before-rollback-x", "status": "candidate"}})
    task(rec, clock, "r1", "Restore", "fleetops.rollback.restore_point", ["a"], "changed", restore_result("a"))
    assert rec.build()["hosts"]["a"]["safety_points"] == ["s-a", "before-1"]


def test_unreachable_and_unreached_hosts():
    clock = Clock()
    rec = RunRecorder(clock=clock)
    rec.on_play("Roll back", ["a", "ghost", "later"])
    task(rec, clock, "r1", "Restore", "fleetops.rollback.restore_point", ["a", "ghost"],
         lambda h: "unreachable" if h == "ghost" else "changed",
         lambda h: {"msg": "ssh: connect refused", "unreachable": True} if h == "ghost" else restore_result(h))
    rec.on_stats({"a": {"ok": 1, "failures": 0, "unreachable": 0}, "ghost": {"ok": 0, "failures": 0, "unreachable": 1}})
    report = rec.build()
    assert report["hosts"]["ghost"]["outcome"] == "unreachable"
    assert report["hosts"]["ghost"]["failure"]["msg"] == "ssh: connect refused"
    assert report["hosts"]["later"]["outcome"] == "not reached"
    assert report["failed_hosts"] == ["ghost"]


def test_no_secret_in_any_rendering(recorded):
    rec, unused = recorded
    report = rec.build()
    texts = {"json": json.dumps(report), "md": render_markdown(report, "x.svg"), "svg": render_svg(report)}
    for kind, text in texts.items():
        for secret in (DB_PASSWORD, API_TOKEN, "hook-secret-path"):
            assert secret not in text, (kind, secret)
        assert "auth-01" in text and "session-cache-01" in text, kind  # hosts with secret-ish names stay visible
    broken = report["hosts"][BROKEN]["failure"]["msg"]
    assert broken == "restore failed in release: login with ******** refused"
    # A no_log task contributes its outcome and times, nothing else.
    assert report["steps"][1]["outcomes"] == {"ok": 25}


def test_markdown_holds_the_facts_and_every_host_and_step(recorded):
    rec, unused = recorded
    report = rec.build()
    md = render_markdown(report, "report-x.svg")
    assert md.startswith("# Rollback 20261122T031500Z-1a2b\n")
    for fact in ("| Type | immediate |", "| Trigger | INC-42 |", "| Outcome | **FAILURE** |", "Time to recover",
                 "![timeline: hosts by steps, coloured by outcome](report-x.svg)", "## Failures", "## What changed",
                 "- web-01 release: switch /srv/app/current: releases/2 -> releases/1"):
        assert fact in md
    for host in HOSTS:
        assert "| %s | restored |" % host in md or host in (BROKEN, UNHEALTHY)
        assert "| %s | 4 | fleetops.rollback.rollback : Restore the host to its restore point |" % host in md
    assert "- **web-03** (failed) in *fleetops.rollback.rollback : Restore the host to its restore point*" in md


def test_svg_timeline_is_valid_and_draws_every_host_and_step_that_ran(recorded):
    rec, unused = recorded
    report = rec.build()
    root = ET.fromstring(render_svg(report))
    assert root.tag == SVG + "svg"
    texts = [t.text for t in root.iter(SVG + "text")]
    for host in HOSTS:
        assert host in texts
    drawn = [t for t in texts if t and t[0].isdigit() and ". " in t]
    assert [t.split(". ")[0] for t in drawn] == ["1", "2", "4", "5", "6"]  # step 3 was skipped everywhere
    assert "1 step skipped on every host not drawn" in texts
    bars = [r for r in root.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    titles = [r.find(SVG + "title").text for r in bars]
    assert any(t.startswith("web-03 | 4. fleetops.rollback.rollback : Restore") and "| failed |" in t for t in titles)
    fills = {r.get("fill") for r in bars}
    assert {"#e53935", "#1e88e5", "#43a047"} <= fills  # failed, changed, ok
    assert any(t and t.startswith("recovered +") for t in texts)
    height = int(root.get("height"))
    assert height >= 18 * len(HOSTS)  # one readable row per host


def test_write_report_writes_three_private_files(recorded, tmp_path):
    rec, unused = recorded
    report = rec.build()
    paths = write_report(report, str(tmp_path / "reports" / "nested"))
    assert sorted(paths) == ["json", "md", "svg"]
    assert stat.S_IMODE(os.stat(tmp_path / "reports" / "nested").st_mode) == 0o700
    for path in paths.values():
        assert os.path.basename(path).startswith("report-20261122T031500Z-1a2b.")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(paths["json"], encoding="utf-8") as stream:
        assert json.load(stream) == json.loads(json.dumps(report))
    assert not [n for n in os.listdir(os.path.dirname(paths["json"])) if n.startswith(".report-")]


@pytest.mark.parametrize("change, line", [
    ({"action": "change", "name": "black", "from": {"version": "24.1"}, "to": {"version": "23.12"}},
     "change black: 24.1 -> 23.12"),
    ({"action": "retag", "ref": "app:latest", "from": {"image": "sha256:1"}, "to": {"image": "sha256:0"}},
     "retag app:latest: sha256:1 -> sha256:0"),
    ({"action": "attrs", "path": "/etc/x", "from": {"type": "file", "sha256": "a", "mode": "0644"},
      "to": {"type": "file", "sha256": "a", "mode": "0600"}}, "attrs /etc/x: mode 0644 -> 0600"),
    ({"action": "restore", "database": "app", "path": "/d"}, "restore /d"),
    ("odd", "odd"),
])
def test_describe_change(change, line):
    assert describe_change(change) == line
