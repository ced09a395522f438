"""Audit trail, reports and notifications of real rollback runs: real ansible-playbook against local fleets, the
rollback_report callback enabled, and a real HTTP receiver on 127.0.0.1 capturing every webhook post.

- webhooks hear start and success, or start and one failure, from rollback_immediate; escalation and failure
  from rollback_failed_recovery; a webhook that cannot be reached warns and the rollback goes on, unless required;
- every host's journal gets the run's id, type, reason and outcome;
- the report (markdown, JSON, SVG) of a 20-host run holds every host and every step;
- with a database password and an API token in the variables, a no_log task using them and a failure message
  quoting one, no report file, no webhook payload and no journal holds either.
"""
import glob
import json
import os
import shutil
import stat
import sys
import xml.etree.ElementTree as ET

import pytest

from health_endpoints import closed_port
from playbook_runner import ROOT
from plays import break_fleet, versions
from webhook_receiver import Receiver

sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store  # noqa: E402

PLAYBOOKS = os.path.join(ROOT, "playbooks")
IMMEDIATE = os.path.join(PLAYBOOKS, "rollback_immediate.yml")
RECOVERY = os.path.join(PLAYBOOKS, "rollback_failed_recovery.yml")
STANDARD = os.path.join(PLAYBOOKS, "rollback_standard.yml")
# The report callback next to the tests' result collector (ANSIBLE_CALLBACKS_ENABLED replaces ansible.cfg's list).
REPORTING = {"ANSIBLE_CALLBACKS_ENABLED": "result_collector,fleetops.rollback.rollback_report"}
SVG = "{http://www.w3.org/2000/svg}"
DB_PASSWORD = "Db-Pa55w0rd-it-5719"
API_TOKEN = "tok-it-3f9a7c21e8"
VAULT_SECRET = "vault-it-b0c4e7d2"


@pytest.fixture
def receiver():
    with Receiver() as served:
        yield served


def journal(host):
    return Store(os.path.join(host.root, "var/lib/fleetops/rollback")).read_journal()


def reports(directory):
    """{run id: {format: path}} of the report files in a directory."""
    found = {}
    for path in glob.glob(os.path.join(str(directory), "report-*.*")):
        base, fmt = os.path.basename(path)[len("report-"):].rsplit(".", 1)
        found.setdefault(base, {})[fmt] = path
    return found


def hooks(receiver, *extra):
    return [{"name": "test-receiver", "url": receiver.url("/hook"), "token": API_TOKEN}] + list(extra)


def test_webhooks_journal_and_report_of_success_failure_and_escalation(fleet3, playbook, receiver, tmp_path):
    fleet = fleet3
    report_dir = tmp_path / "reports"
    common = {"notify_webhooks": hooks(receiver), "rollback_report_dir": str(report_dir), "notify_backoff": 0.1}

    # A rollback that works: start, then success.
    break_fleet(fleet)
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group, env=REPORTING,
                   extra_vars=dict(common, rollback_reason="INC-100 bad release"))
    assert run.rc == 0, run.stdout[-3000:]
    bodies = receiver.bodies("/hook")
    assert [b["event"] for b in bodies] == ["start", "success"]
    start, success = bodies
    run_id = start["rollback_id"]
    assert run_id and success["rollback_id"] == run_id
    assert {b["type"] for b in bodies} == {"immediate"} and {b["reason"] for b in bodies} == {"INC-100 bad release"}
    assert start["hosts"] == sorted(h.name for h in fleet.hosts) and success["failed_hosts"] == []
    assert success["text"].startswith("Rollback %s succeeded (immediate) - INC-100 bad release: all 3 hosts" % run_id)
    assert success["attachments"][0]["color"] and success["duration_s"] > 0
    assert {p["headers"]["Authorization"] for p in receiver.posts} == {"Bearer " + API_TOKEN}
    for host in fleet.hosts:
        last = journal(host)[-1]
        assert (last["event"], last["outcome"], last["run"], last["type"], last["reason"]) == (
            "restore", "restored", run_id, "immediate", "INC-100 bad release")
    files = reports(report_dir)[run_id]
    report = json.loads(open(files["json"], encoding="utf-8").read())
    assert report["outcome"] == "success" and report["trigger"] == "INC-100 bad release"
    assert {h["outcome"] for h in report["hosts"].values()} == {"restored"}
    assert 0 < report["time_to_recover_s"] <= report["duration_s"]

    # One host's known good release is broken: it fails its gate, the others recover; one failure event at the end.
    sick = fleet.hosts[0]
    with open(os.path.join(sick.root, "srv/app/releases/1/release.json"), "w", encoding="utf-8") as stream:
        stream.write("{not json")
    break_fleet(fleet)
    seen = len(receiver.posts)
    # The gate's default timeout: the sick host fails by its verdict (503), the others need not race a clock.
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group, env=REPORTING, extra_vars=common)
    assert run.rc != 0
    bodies = receiver.bodies("/hook")[seen:]
    assert [b["event"] for b in bodies] == ["start", "failure"]
    failure = bodies[1]
    assert failure["failed_hosts"] == [sick.name] and failure["host_count"] == 3
    assert "health" in failure["failures"][0]["step"] and sick.name in failure["text"]
    entry = journal(sick)[-1]
    assert (entry["event"], entry["outcome"], entry["run"], entry["type"]) == (
        "rollback", "failed", failure["rollback_id"], "immediate")
    assert "health" in entry["step"] and "did not pass" in entry["error"]
    report = json.loads(open(reports(report_dir)[failure["rollback_id"]]["json"], encoding="utf-8").read())
    assert report["outcome"] == "failure" and report["failed_hosts"] == [sick.name]
    assert report["hosts"][sick.name]["health"] == "unhealthy" and not report["all_recovered"]

    # Recovering it to the safety point (release 2, unhealthy by design) fails: escalation, then failure.
    seen = len(receiver.posts)
    hook_file = tmp_path / "escalate.yml"
    hook_file.write_text("- name: Page the on-call\n  ansible.builtin.copy:\n    dest: %s\n    content: paged\n"
                         "    mode: '0600'\n" % (tmp_path / "paged"))
    run = playbook(RECOVERY, fleet.inventory, limit=sick.name, env=REPORTING,
                   extra_vars=dict(common, recovery_gate_timeout=8, recovery_gate_successes=2,
                                   recovery_gate_interval=0.5, recovery_escalation_tasks=str(hook_file)))
    assert run.rc != 0
    assert (tmp_path / "paged").read_text() == "paged"
    bodies = receiver.bodies("/hook")[seen:]
    assert [b["event"] for b in bodies] == ["start", "escalation", "failure"]
    assert {b["type"] for b in bodies} == {"failed_recovery"} and {b["reason"] for b in bodies} == {
        "failed-rollback recovery"}
    assert bodies[1]["failed_hosts"] == [sick.name] and "a human must act now" in bodies[1]["summary"]
    entries = journal(sick)
    assert entries[-2]["event"] == "restore" and entries[-2]["type"] == "failed_recovery"
    assert (entries[-1]["event"], entries[-1]["outcome"], entries[-1]["run"]) == (
        "rollback", "escalated", bodies[0]["rollback_id"])
    for files in reports(report_dir).values():
        assert sorted(files) == ["json", "md", "svg"]
        for path in files.values():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_webhook_that_cannot_be_reached_warns_unless_required(fleet3, playbook, receiver):
    fleet = fleet3
    gone = {"name": "gone", "url": "http://127.0.0.1:%d/hook" % closed_port()}
    extra = {"notify_webhooks": hooks(receiver, gone), "notify_retries": 1, "notify_backoff": 0.05}
    break_fleet(fleet)
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group, extra_vars=extra)
    assert run.rc == 0, run.stdout[-3000:]
    assert receiver.events("/hook") == ["start", "success"]  # the reachable webhook still got both
    for posted in run.for_task("Post the rollback event to the webhooks"):
        result = posted["result"]
        assert posted["status"] == "ok" and result["delivered"] == 1
        assert [(w["name"], w["ok"], w["attempts"]) for w in result["webhooks"]] == [
            ("test-receiver", True, 1), ("gone", False, 2)]
        [warning] = result["warnings"]
        assert "notification not delivered to gone (http://127.0.0.1:" in warning
        assert warning.endswith("after 2 attempts; the rollback goes on")
        assert API_TOKEN not in json.dumps(result) and receiver.url("/hook") not in json.dumps(result)
    assert {version for version, unused in versions(fleet).values()} == {"1.0.0"}

    # Required: the start notification fails the run before anything is rolled back.
    break_fleet(fleet)
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group, extra_vars=dict(extra, notify_required=True))
    assert run.rc != 0
    [posted] = run.for_task("Post the rollback event to the webhooks")
    assert posted["status"] == "failed" and "required=true" in posted["result"]["msg"]
    assert not run.for_task("Restore the host to its restore point")
    assert {r["version"] for r in local_fleet.status(fleet)} == {"2.0.0"}


def test_check_mode_and_standard_rollout_notify_and_report(fleet3, playbook, receiver, tmp_path):
    fleet = fleet3
    report_dir = tmp_path / "reports"
    extra = {"notify_webhooks": hooks(receiver), "rollback_report_dir": str(report_dir),
             "rollback_serial": [1, "100%"], "rollback_smoke_checks": ["http://127.0.0.1:{{ app_port }}/health"]}
    break_fleet(fleet)
    check = playbook(STANDARD, fleet.inventory, limit=fleet.group, env=REPORTING, check=True, extra_vars=extra)
    assert check.rc == 0, check.stdout[-3000:]
    assert receiver.posts == []  # a dry run posts nothing
    [planned] = [json.loads(open(f["json"], encoding="utf-8").read()) for f in reports(report_dir).values()]
    assert planned["check_mode"] and {h["outcome"] for h in planned["hosts"].values()} == {"planned"}

    run = playbook(STANDARD, fleet.inventory, limit=fleet.group, env=REPORTING, extra_vars=extra)
    assert run.rc == 0, run.stdout[-3000:]
    assert receiver.events("/hook") == ["start", "success"]
    run_id = receiver.bodies("/hook")[0]["rollback_id"]
    report = json.loads(open(reports(report_dir)[run_id]["json"], encoding="utf-8").read())
    assert report["type"] == "standard" and report["outcome"] == "success"
    for host in fleet.hosts:
        value = report["hosts"][host.name]
        assert value["outcome"] == "restored" and value["health"] == "healthy"
        # The restore's own safety point and the comprehensive capture of the abandoned state.
        assert len(value["safety_points"]) == 2
        labels = {e.get("label") for e in journal(host) if e.get("run") == run_id}
        assert "before-rollback-%s" % run_id in labels
        assert {e["event"] for e in journal(host) if e.get("run") == run_id} == {"capture", "mark", "restore"}
    # Two batches: the canary's restore and gate come before the rest's.
    restores = [s for s in report["steps"] if s["name"].endswith("Restore the host to its restore point")]
    assert [sum(s["outcomes"].values()) for s in restores] == [1, 2]


def test_partial_and_drill_runs_are_journaled_notified_and_reported(fleet3, playbook, receiver, tmp_path):
    fleet = fleet3
    report_dir = tmp_path / "reports"
    common = {"notify_webhooks": hooks(receiver), "rollback_report_dir": str(report_dir)}
    break_fleet(fleet)
    run = playbook(os.path.join(PLAYBOOKS, "rollback_partial.yml"), fleet.inventory, limit=fleet.group, env=REPORTING,
                   extra_vars=dict(common, rollback_components=["release"], rollback_reason="INC-31 bad code"))
    assert run.rc == 0, run.stdout[-3000:]
    assert receiver.events("/hook") == ["start", "success"]
    run_id = receiver.bodies("/hook")[0]["rollback_id"]
    assert {b["type"] for b in receiver.bodies("/hook")} == {"partial"}
    for host in fleet.hosts:
        last = journal(host)[-1]
        assert (last["event"], last["outcome"], last["run"], last["type"], last["reason"]) == (
            "restore", "restored", run_id, "partial", "INC-31 bad code")
    report = json.loads(open(reports(report_dir)[run_id]["json"], encoding="utf-8").read())
    assert report["type"] == "partial" and {set(h["changed"]) == {"release"} for h in report["hosts"].values()} == {True}

    # A drill is one run: its own id and type from the snapshot to the verification, one start and one success
    # (the rollback playbook it imports joins the run instead of announcing its own).
    seen = len(receiver.posts)
    local_fleet.deploy(fleet, 1, action="restart")
    local_fleet.wait_healthy(fleet, timeout=60)
    run = playbook(os.path.join(PLAYBOOKS, "rollback_drill.yml"), fleet.inventory, limit=fleet.group, env=REPORTING,
                   extra_vars=dict(common, drill_fault="bad_config",
                                   drill_bad_config={"path": "{{ fleet_root }}/etc/app/conf.d/99-drill.env",
                                                     "content": "WORKERS=0\n"}))
    assert run.rc == 0, run.stdout[-3000:]
    bodies = receiver.bodies("/hook")[seen:]
    assert [b["event"] for b in bodies] == ["start", "success"] and {b["type"] for b in bodies} == {"drill"}
    drill_id = bodies[0]["rollback_id"]
    assert drill_id.startswith("drill-") and bodies[0]["reason"] == "drill %s: bad_config fault, immediate rollback" \
        % drill_id
    for host in fleet.hosts:
        events = [(e["event"], e.get("outcome")) for e in journal(host) if e.get("run") == drill_id]
        assert events == [("capture", None), ("restore", "restored")]
        assert {e["type"] for e in journal(host) if e.get("run") == drill_id} == {"drill"}
    report = json.loads(open(reports(report_dir)[drill_id]["json"], encoding="utf-8").read())
    assert report["type"] == "drill" and report["outcome"] == "success"
    assert report["drill"]["fault"] == "bad_config" and int(report["drill"]["recovered"]) == 3
    assert len(report["plays"]) == 5  # snapshot, inject, detect, roll back, verify


@pytest.mark.slow
def test_the_report_of_a_20_host_run_has_every_host_and_step(known_good_fleet, playbook, tmp_path):
    fleet = known_good_fleet(20)
    break_fleet(fleet)
    report_dir = tmp_path / "reports"
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group, env=REPORTING,
                   extra_vars={"rollback_report_dir": str(report_dir), "rollback_reason": "INC-20 fleet-wide errors"})
    assert run.rc == 0, run.stdout[-3000:]
    assert "rollback report: %s" % report_dir in run.stdout
    [files] = list(reports(report_dir).values())
    report = json.loads(open(files["json"], encoding="utf-8").read())
    names = [h.name for h in fleet.hosts]
    assert sorted(report["hosts"]) == names and report["outcome"] == "success"
    assert report["type"] == "immediate" and report["trigger"] == "INC-20 fleet-wide errors"
    assert 0 < report["time_to_recover_s"] <= report["duration_s"] and report["all_recovered"]
    # Every step the run had is in the report, in order, and every host has its start, end and outcome for each
    # step it ran (the run-once steps ran "on" the first host).
    tasks = []
    for result in run.results:
        if result["task"] not in tasks:
            tasks.append(result["task"])
    assert [s["name"] for s in report["steps"]] == tasks
    for name in names:
        host = report["hosts"][name]
        assert host["outcome"] == "restored" and host["health"] == "healthy"
        assert host["safety_points"] and set(host["changed"]) == {"config", "release"}
        ran = {r["task"] for r in run.results if r["host"] == name}
        assert {report["steps"][e["step"]]["name"] for e in host["steps"]} == ran
        assert all(e["start_s"] is not None and e["end_s"] >= e["start_s"] and e["outcome"] for e in host["steps"])
    md = open(files["md"], encoding="utf-8").read()
    for name in names:
        assert "| %s | restored | healthy |" % name in md
    for step in report["steps"]:
        assert step["name"].replace("|", "\\|") in md
    svg = ET.parse(files["svg"]).getroot()
    texts = [t.text for t in svg.iter(SVG + "text")]
    assert all(name in texts for name in names)
    bars = [r.find(SVG + "title").text for r in svg.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    assert {b.split(" | ")[0] for b in bars} == set(names)
    assert any(t and t.startswith("recovered +") for t in texts)


def test_no_secret_in_reports_webhook_payloads_or_journals(fleet3, playbook, receiver, tmp_path):
    fleet = fleet3
    report_dir = tmp_path / "reports"
    # A vault-style secret in the inventory, the password and token as extra variables.
    with open(fleet.inventory, "a", encoding="utf-8") as stream:
        stream.write("vault_app_secret=%s\n" % VAULT_SECRET)
    drain = tmp_path / "drain.yml"
    victim = fleet.hosts[1].name
    drain.write_text("""\
- name: Log in to the load balancer with the database password
  ansible.builtin.set_fact:
    lb_session: "{{ db_password }}:{{ vault_app_secret }}"
  no_log: true

- name: Take the host out of the pool
  ansible.builtin.command:
    argv: [echo, "{{ lb_session }}", "{{ app_api_token }}"]
  changed_when: false
  no_log: true

- name: Refuse to drain one host
  ansible.builtin.fail:
    msg: "the load balancer refused {{ db_password }} and token {{ app_api_token }} ({{ vault_app_secret }})"
  when: inventory_hostname == '%s'
""" % victim)
    extra = {"db_password": DB_PASSWORD, "app_api_token": API_TOKEN, "notify_webhooks": hooks(receiver),
             "rollback_report_dir": str(report_dir), "rollback_drain_tasks": str(drain),
             "rollback_reason": "INC-7 leaked DB_PASSWORD=%s" % DB_PASSWORD}
    break_fleet(fleet)
    run = playbook(IMMEDIATE, fleet.inventory, limit=fleet.group, env=REPORTING, extra_vars=extra)
    assert run.rc != 0  # the victim failed; the other two recovered
    assert receiver.events("/hook") == ["start", "failure"]
    [files] = list(reports(report_dir).values())
    report = json.loads(open(files["json"], encoding="utf-8").read())
    assert report["failed_hosts"] == [victim]
    assert report["hosts"][victim]["failure"]["msg"].startswith("the load balancer refused ********")
    failure = receiver.bodies("/hook")[1]
    assert failure["failures"][0]["error"].startswith("the load balancer refused ********")

    everything = {"report " + fmt: open(path, encoding="utf-8").read() for fmt, path in files.items()}
    everything.update({"webhook post %d" % i: p["raw"].decode("utf-8") for i, p in enumerate(receiver.posts)})
    everything.update({"journal of " + h.name: open(os.path.join(h.root, "var/lib/fleetops/rollback/journal.jsonl"),
                                                    encoding="utf-8").read() for h in fleet.hosts})
    for where, text in everything.items():
        for secret in (DB_PASSWORD, API_TOKEN, VAULT_SECRET):
            assert secret not in text, "%s holds a secret" % where
    # The report still says what happened: the no_log tasks ran, with their outcome and times.
    [no_log] = [s for s in report["steps"] if s["name"].endswith("Log in to the load balancer with the database password")]
    assert no_log["outcomes"] == {"ok": 3}
    assert "INC-7 leaked DB_PASSWORD=********" == report["trigger"]


def test_callback_documentation_renders():
    import subprocess  # pylint: disable=import-outside-toplevel
    from playbook_runner import ansible_env  # pylint: disable=import-outside-toplevel
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", "callback", "--json",
                           "fleetops.rollback.rollback_report"], env=ansible_env(), capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["fleetops.rollback.rollback_report"]["doc"]
    assert doc["type"] == "aggregate"
    options = doc["options"]
    assert options["report_dir"]["env"] == [{"name": "FLEETOPS_ROLLBACK_REPORT_DIR"}]
    assert options["report_dir"]["ini"] == [{"section": "callback_rollback_report", "key": "report_dir"}]
    assert options["report_dir"]["vars"] == [{"name": "rollback_report_dir"}]
    assert set(options) == {"report_dir", "formats", "all_playbooks"}
    assert shutil.which("ansible-doc", path=os.path.dirname(sys.executable))
