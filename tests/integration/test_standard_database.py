"""rollback_standard with the database selected: the snapshot dumps it, the comprehensive safety point dumps it
again before anything changes, and the rollback brings the data back. Real PostgreSQL, real local fleet."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store  # noqa: E402

PLAYBOOKS = os.path.join(ROOT, "playbooks")


def test_standard_rollback_restores_the_database_with_a_safety_dump_first(tmp_path, playbook, pg_database):
    fleet = local_fleet.create(str(tmp_path / "fleet"), hosts=1, base_port=0)
    try:
        local_fleet.deploy(fleet, 1, action="restart")
        assert local_fleet.wait_healthy(fleet, timeout=60)[0]
        database = pg_database.superuser_login()
        extra = {"rollback_database": database, "rollback_report_dir": str(tmp_path / "reports")}
        snap = playbook(os.path.join(PLAYBOOKS, "snapshot.yml"), fleet.inventory,
                        extra_vars=dict(extra, restore_point_label="release-1"))
        assert snap.rc == 0, snap.stdout[-3000:]
        good_balance = pg_database.abalance()

        local_fleet.deploy(fleet, 2, action="restart")
        pg_database.sql("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 1000")
        bad_balance = pg_database.abalance()
        assert bad_balance == good_balance + 7000

        run = playbook(os.path.join(PLAYBOOKS, "rollback_standard.yml"), fleet.inventory, limit=fleet.group,
                       extra_vars=dict(extra, rollback_serial=[1]))
        assert run.rc == 0, run.stdout[-4000:]
        assert pg_database.abalance() == good_balance
        assert local_fleet.status(fleet)[0]["version"] == "1.0.0"

        store = Store(os.path.join(fleet.hosts[0].root, "var/lib/fleetops/rollback"))
        points = {m["label"]: m for m in store.points()[0]}
        [abandoned] = [m for label, m in points.items() if label.startswith("before-rollback-")]
        assert abandoned["status"] == "bad" and "database" in abandoned["components"]
        # The abandoned state's dump holds the data the rollback replaced: nothing was lost.
        assert os.listdir(os.path.join(store.dumps_dir, abandoned["id"]))
        result = run.result("Restore the host to its restore point", fleet.hosts[0].name)
        assert result["plan"]["database"]["changed"] and result["safety_point"]
    finally:
        local_fleet.stop(fleet)
