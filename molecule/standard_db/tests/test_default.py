"""Verify of the `standard_db` drill, on every host: release 1 serves again after the standard rollback,
the abandoned state is marked bad, the plan was saved, and PostgreSQL was not touched (same postmaster,
every order written after the snapshot still there)."""

from __future__ import annotations

import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tests"))

import drill_checks  # noqa: E402  pylint: disable=wrong-import-position

REASON = "molecule drill (standard_db)"


def psql(host, sql):
    return host.check_output("runuser -u postgres -- psql -v ON_ERROR_STOP=1 -At -d app -c %s", sql)


def test_release_1_serves_healthy(host):
    drill_checks.assert_release_1_serving(host)


def test_release_1_files_are_back(host):
    drill_checks.assert_release_1_files(host)


def test_store_is_private(host):
    drill_checks.assert_store_private(host)


def test_one_rollback_and_the_abandoned_state_is_bad(host):
    points, _event = drill_checks.assert_rolled_back_once(host, REASON, later_noops=False)
    before = [m for m in points.values() if (m.get("label") or "").startswith("before-rollback-")]
    # One comprehensive safety point from the standard path (the idempotence run did not take another),
    # holding the bad release, and marked bad so that nothing restores it automatically.
    assert len(before) == 1, before
    assert before[0]["status"] == "bad"
    assert before[0]["components"]["release"]["release"] == "2"


def test_no_secret_in_journal_or_manifests(host):
    drill_checks.assert_no_secret_in_records(host)


def test_database_untouched(host):
    baseline = json.loads(host.file("/root/drill-db-baseline.json").content_string)
    assert host.run("pg_isready -q -h /var/run/postgresql -p 5432 -d app").rc == 0
    # Same postmaster: the rollback restarted the app only, never the database.
    assert psql(host, "SELECT pg_postmaster_start_time()::text") == baseline["postmaster_start"]
    # Orders written after the snapshot survived the rollback of the app.
    assert int(psql(host, "SELECT count(*) FROM orders")) == baseline["orders"] == 525
    assert int(psql(host, "SELECT count(*) FROM orders WHERE item LIKE 'after-snapshot-%'")) == 25


def test_plan_saved_on_the_controller(host):
    reports = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "reports")
    plans = sorted(glob.glob(os.path.join(reports, "plan-*.json")))
    # One plan, from the one run that had hosts to roll back; the idempotence run planned nowhere.
    assert len(plans) == 1, plans
    assert os.stat(plans[0]).st_mode & 0o777 == 0o600
    with open(plans[0], encoding="utf-8") as stream:
        plan = json.load(stream)
    name = host.backend.get_hostname()
    entry = plan["hosts"][name]
    assert entry["changed"] is True
    assert entry["plan"]["release"]["changed"] is True
    assert entry["plan"]["config"]["changed"] is True
