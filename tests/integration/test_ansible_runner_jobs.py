"""Every playbook run the way AWX / Automation Controller runs it: through ansible-runner with a private data dir laid
out as AWX lays it out (project/, inventory/hosts, env/extravars with the survey answers, env/envvars,
env/settings, env/cmdline for a dry run), on small local fleets. Each job's status, rc, job events and artifacts are
checked, and no artifact may contain the database password given in the extra vars."""
import json
import os
import sys

import ansible_runner
import pytest

from playbook_runner import BIN, ROOT, run_playbook
from plays import break_fleet, versions

sys.path.insert(0, ROOT)
from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = os.path.join(ROOT, "playbooks")


class Job:
    """One AWX-style job: its private data dir, ansible-runner's Runner and the events it recorded."""

    def __init__(self, pdd, runner):
        self.pdd = pdd
        self.runner = runner
        self.artifacts = os.path.join(pdd, "artifacts", runner.config.ident)
        self.events = list(runner.events)

    def host_events(self, event, task_suffix):
        return {e["event_data"]["host"]: e for e in self.events
                if e["event"] == event and e["event_data"].get("task", "").endswith(task_suffix)}

    def output(self):
        with open(os.path.join(self.artifacts, "stdout"), encoding="utf-8") as stream:
            return stream.read()[-4000:]

    def stats(self):
        [stats] = [e for e in self.events if e["event"] == "playbook_on_stats"]
        return stats["event_data"]

    def assert_artifacts(self):
        names = set(os.listdir(self.artifacts))
        assert {"job_events", "stdout", "status", "rc", "command"} <= names, names
        with open(os.path.join(self.artifacts, "status"), encoding="utf-8") as stream:
            assert stream.read().strip() == self.runner.status
        with open(os.path.join(self.artifacts, "rc"), encoding="utf-8") as stream:
            assert int(stream.read().strip()) == self.runner.rc
        event_files = os.listdir(os.path.join(self.artifacts, "job_events"))
        assert len(event_files) == len(self.events) > 0
        with open(os.path.join(self.artifacts, "stdout"), encoding="utf-8") as stream:
            assert "PLAY RECAP" in stream.read()

    def assert_no_secret(self, secret):
        """Not in any artifact file (events, stdout, command, facts...), raw or JSON-escaped, nor in the events."""
        forms = {secret.encode(), json.dumps(secret)[1:-1].encode()}
        with open(os.path.join(self.pdd, "env", "extravars"), "rb") as stream:
            given = stream.read()
        assert any(form in given for form in forms)  # it was given to the job
        found = []
        for root, _dirs, files in os.walk(self.artifacts):
            for name in files:
                with open(os.path.join(root, name), "rb") as stream:
                    data = stream.read()
                if any(form in data for form in forms):
                    found.append(os.path.relpath(os.path.join(root, name), self.artifacts))
        assert found == [], "secret found in %s" % found
        assert not any(form.decode() in json.dumps(self.events) for form in forms)


@pytest.fixture
def awx_job(tmp_path):
    """awx_job(playbook, fleet, extravars, dry_run=False, limit=None) -> Job, run through ansible_runner.run()."""
    count = [0]

    def run(playbook, fleet, extravars, dry_run=False, limit=None):
        count[0] += 1
        pdd = tmp_path / ("job-%d" % count[0])
        for sub in ("inventory", "env"):
            (pdd / sub).mkdir(parents=True)
        os.chmod(pdd, 0o700)
        # The project checkout (AWX syncs the repository; the collection itself comes from the EE, here .collections).
        os.symlink(ROOT, pdd / "project")
        with open(fleet.inventory, encoding="utf-8") as src:
            (pdd / "inventory" / "hosts").write_text(src.read(), encoding="utf-8")
        files = {
            "extravars": extravars,
            "envvars": {"ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".collections"),
                        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
                        "ANSIBLE_FORCE_COLOR": "false", "PATH": BIN + os.pathsep + os.environ.get("PATH", "")},
            "settings": {"job_timeout": 900, "idle_timeout": 600, "pexpect_timeout": 5,
                         "suppress_ansible_output": True},
        }
        if dry_run:  # AWX's job type "check" with diff mode
            files["cmdline"] = "--check --diff"
        for name, data in files.items():
            path = pdd / "env" / name
            path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1), encoding="utf-8")
            os.chmod(path, 0o600)
        runner = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident="job-%d" % count[0],
                                    limit=limit, quiet=True)
        job = Job(str(pdd), runner)
        job.assert_artifacts()
        return job

    return run


def capture_known_good(fleet, host, label):
    """Make `host`'s current (broken) state its known good point: its rollback then cannot pass the gate."""
    snap = run_playbook(os.path.join(PLAYBOOKS, "snapshot.yml"), fleet.inventory, limit=host.name,
                        extra_vars={"snapshot_gate": False, "restore_point_label": label})
    assert snap.rc == 0, snap.stdout[-2000:]


@pytest.fixture
def database_vars(pg_database):
    """rollback_database with the password of a real PostgreSQL role: the secret the artifacts must not show."""
    login = pg_database.login()
    return {"rollback_database": dict(login, format="custom")}, login["login_password"]


@pytest.mark.slow
def test_snapshot_job_captures_every_host_and_keeps_the_password_out(awx_job, database_vars, tmp_path):
    fleet = local_fleet.create(str(tmp_path / "fleet"), hosts=2, base_port=0)
    try:
        assert all(ok for unused, ok, unused in local_fleet.deploy(fleet, 1, action="restart"))
        assert local_fleet.wait_healthy(fleet, timeout=120)[0]
        extravars, secret = database_vars
        job = awx_job("playbooks/snapshot.yml", fleet, dict(extravars, rollback_hosts=fleet.group,
                                                            restore_point_label="release-1"))
        assert (job.runner.status, job.runner.rc) == ("successful", 0), job.output()
        captured = job.host_events("runner_on_ok", "Capture a restore point")
        assert sorted(captured) == sorted(h.name for h in fleet.hosts)
        for event in captured.values():
            point = event["event_data"]["res"]["point"]
            assert event["event_data"]["res"]["changed"] is True
            assert point["status"] == "known_good" and point["label"] == "release-1"
            assert "database" in point["components"]
        assert job.stats()["changed"] == {h.name: 1 for h in fleet.hosts}
        job.assert_no_secret(secret)
    finally:
        local_fleet.stop(fleet)


@pytest.mark.slow
def test_immediate_job_dry_run_then_real(awx_job, known_good_fleet):
    fleet = known_good_fleet(2)
    break_fleet(fleet)
    answers = {"rollback_hosts": fleet.group, "rollback_point": "known_good", "rollback_reason": "INC-AWX-1"}

    dry = awx_job("playbooks/rollback_immediate.yml", fleet, answers, dry_run=True)
    assert (dry.runner.status, dry.runner.rc) == ("successful", 0), dry.output()
    planned = dry.host_events("runner_on_ok", "Restore the host to its restore point")
    assert sorted(planned) == sorted(h.name for h in fleet.hosts)
    assert all(e["event_data"]["res"]["changed"] for e in planned.values())
    assert {v for v, unused in versions(fleet).values()} == {"2.0.0"}  # a dry run changes nothing

    real = awx_job("playbooks/rollback_immediate.yml", fleet, answers)
    assert (real.runner.status, real.runner.rc) == ("successful", 0), real.output()
    restored = real.host_events("runner_on_ok", "Restore the host to its restore point")
    assert sorted(restored) == sorted(h.name for h in fleet.hosts)
    assert all(e["event_data"]["res"]["changed"] for e in restored.values())
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    assert real.stats()["failures"] == {}


@pytest.mark.slow
def test_immediate_job_fails_naming_the_host_that_did_not_recover(awx_job, known_good_fleet):
    fleet = known_good_fleet(2)
    break_fleet(fleet)
    sick, well = fleet.hosts
    capture_known_good(fleet, sick, "bad-capture")
    # The gate's default timeout: the sick host fails by its verdict (503), the well one need not race a clock.
    job = awx_job("playbooks/rollback_immediate.yml", fleet,
                  {"rollback_hosts": fleet.group, "rollback_reason": "INC-AWX-2"})
    assert job.runner.status == "failed" and job.runner.rc != 0
    failed = job.host_events("runner_on_failed", "Fail the hosts that did not pass their health checks")
    assert sorted(failed) == [sick.name]
    assert job.stats()["failures"] == {sick.name: 1}
    assert versions(fleet)[well.name] == ("1.0.0", 200)


@pytest.mark.slow
def test_standard_job_with_a_database_safety_capture(awx_job, known_good_fleet, database_vars, tmp_path):
    fleet = known_good_fleet(3)
    break_fleet(fleet)
    extravars, secret = database_vars
    job = awx_job("playbooks/rollback_standard.yml", fleet, dict(
        extravars, rollback_hosts=fleet.group, rollback_point="release-1", rollback_components=["config", "release"],
        rollback_reason="INC-AWX-3", rollback_max_fail_percentage=0, rollback_serial=[1, "100%"],
        rollback_report_dir=str(tmp_path / "reports")))
    assert (job.runner.status, job.runner.rc) == ("successful", 0), job.output()
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    # The comprehensive safety point of the abandoned state holds the database, dumped with the secret password.
    safety = job.host_events("runner_on_ok", "Capture a restore point")
    assert sorted(safety) == sorted(h.name for h in fleet.hosts)
    assert all("database" in e["event_data"]["res"]["point"]["components"] for e in safety.values())
    # Canary first: its restore event comes before any other host's.
    restores = [e for e in job.events if e["event"] == "runner_on_ok"
                and e["event_data"]["task"].endswith("Restore the host to its restore point")]
    assert restores[0]["event_data"]["host"] == fleet.hosts[0].name
    job.assert_no_secret(secret)


@pytest.mark.slow
def test_rollback_job_with_type_partial_restores_only_the_chosen_component(awx_job, known_good_fleet):
    fleet = known_good_fleet(2)
    break_fleet(fleet)
    job = awx_job("playbooks/rollback.yml", fleet, {"rollback_type": "partial", "rollback_hosts": fleet.group,
                                                    "rollback_components": ["release"],
                                                    "rollback_reason": "INC-AWX-4"})
    assert (job.runner.status, job.runner.rc) == ("successful", 0), job.output()
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    restored = job.host_events("runner_on_ok", "Restore the host to its restore point")
    for event in restored.values():
        assert sorted(event["event_data"]["res"]["plan"]) == ["release"]


@pytest.mark.slow
def test_failed_recovery_job_restores_the_emergency_point(awx_job, known_good_fleet):
    fleet = known_good_fleet(2)
    break_fleet(fleet)
    job = awx_job("playbooks/rollback_failed_recovery.yml", fleet,
                  {"rollback_hosts": fleet.group, "emergency_point": "release-1", "rollback_reason": "INC-AWX-5"})
    assert (job.runner.status, job.runner.rc) == ("successful", 0), job.output()
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    assert job.stats()["failures"] == {}


@pytest.mark.slow
def test_drill_job_reports_detection_and_recovery(awx_job, known_good_fleet, database_vars, tmp_path):
    fleet = known_good_fleet(2)
    extravars, secret = database_vars
    reports = tmp_path / "reports"
    job = awx_job("playbooks/rollback_drill.yml", fleet, dict(
        extravars, rollback_hosts=fleet.group, drill_fault="bad_config", drill_rollback_type="immediate",
        drill_detect_timeout=60, rollback_report_dir=str(reports),
        # The drill's snapshot dumps the database with the password; the rollback restores what the fault touched.
        # (The rollback role has no way to hand login_password to a database restore: PGPASSWORD or ~/.pgpass.)
        rollback_components=["config", "release"],
        drill_bad_config={"path": "{{ fleet_root }}/etc/app/conf.d/99-drill.env", "content": "WORKERS=0\n"}))
    assert (job.runner.status, job.runner.rc) == ("successful", 0), job.output()
    assert set(versions(fleet).values()) == {("1.0.0", 200)}
    [report] = [json.loads(p.read_text(encoding="utf-8")) for p in reports.glob("drill-*.json")]
    assert report["recovered"] == report["hosts"] == 2
    assert "time to detect" in open(os.path.join(job.artifacts, "stdout"), encoding="utf-8").read()
    job.assert_no_secret(secret)
