"""Faults of pg_dump and pg_restore reproduced for real: module processes killed (SIGKILL, SIGTERM) while pg_dump or
pg_restore works, a real tmpfs too small or read-only, a server connection ended midway, a process killed while
it moves a finished dump into place. Each case checks what is left on disk, in the database and in /proc."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from pg_support import PASSWORD, ROLE, new_database, our_sessions, processes_with, tmpfs  # noqa: F401  pylint: disable=unused-import
from harness import (COLLECTIONS, assert_clear_failure, assert_no_secret, changed_entries, finish, kill,
                     run_module, start_module, tree_state, wait_for)
from postgres.fixtures import pg_cluster, pg_database  # noqa: F401  pylint: disable=unused-import

# pylint: disable=redefined-outer-name


@pytest.fixture(scope="module")
def big_db(pg_cluster):  # noqa: F811
    """A database whose dump takes seconds (about 70 MB of md5 text in one table): time to act midway."""
    db = new_database(pg_cluster, "big", scale=0)
    db.sql("SET ROLE %s; CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 3)::text) || "
           "md5((g * 5)::text) || md5((g * 7)::text) AS a, md5((g * 11)::text) || md5((g * 13)::text) AS b "
           "FROM generate_series(1, 300000) g" % ROLE)
    yield db
    pg_cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db.name)


def stagings(directory, name):
    return glob.glob(os.path.join(str(directory), ".%s.fleetops-dump-*" % name))


def partial_output(directory, name, least=1024 * 1024):
    """The staging directory once pg_dump has written `least` bytes into it (partial output), else None."""
    for staging in stagings(directory, name):
        written = 0
        for base, _dirs, files in os.walk(staging):
            for entry in files:
                try:
                    written += os.path.getsize(os.path.join(base, entry))
                except OSError:
                    pass
        if written >= least:
            return staging
    return None


def sha_of(path):
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def no_tool_left(tool, *needles):
    wait_for(lambda: not processes_with(tool, *needles), timeout=60, what="no %s process left" % tool)


def session_waiting_on_lock(db):
    return db.cluster.value("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = "
                            "'fleetops-rollback' AND wait_event_type = 'Lock'", (db.name,))


class TableLock:
    """A session of the test holding ACCESS SHARE on a table: pg_restore's DROP of it waits, deterministically
    midway through the restore, until the lock is released."""

    def __init__(self, db, table):
        self.conn = db.cluster.connect(db.name)
        self.conn.autocommit = False
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLE %s IN ACCESS SHARE MODE" % table)

    def release(self):
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------------------------------- pg_dump
@pytest.mark.fault("pg-dump-sigkill-midway")
def test_sigkill_while_pg_dump_writes(big_db, tmp_path):
    dest = tmp_path / "big.dump"
    proc = start_module("pg_dump", big_db.login(dest=str(dest), format="custom"))
    staging = wait_for(lambda: partial_output(tmp_path, "big.dump"), timeout=180, what="pg_dump's partial output")
    # The password reaches pg_dump through a 0600 passfile: neither its argv nor its environment holds it.
    tools = processes_with("pg_dump", staging)
    assert tools, "pg_dump is not running"
    for pid, cmdline in tools:
        with open("/proc/%d/environ" % pid, "rb") as stream:
            environ = stream.read().decode("utf-8", "replace").split("\0")
        assert PASSWORD not in cmdline and not [e for e in environ if PASSWORD in e]
        assert any(e.startswith("PGPASSFILE=") for e in environ)
    run = kill(proc, signal.SIGKILL)
    assert run.rc == -signal.SIGKILL
    # pg_dump gets the parent-death signal: it does not go on writing for nobody, and its sessions end.
    no_tool_left("pg_dump", staging)
    wait_for(lambda: our_sessions(big_db) == 0, timeout=60, what="the dump's sessions to end")
    # Only the staging directory is left: nothing at dest that could be taken for a dump.
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(staging)]
    refused = run_module("pg_restore", big_db.login(src=str(dest)))
    assert_clear_failure(refused, str(dest), "does not exist", secrets=(PASSWORD,))
    # The next run sees the abandoned staging (its lock is free), removes it, and dumps.
    preview = run_module("pg_dump", big_db.login(dest=str(dest), format="custom"), check=True)
    assert not preview.failed and "would remove the partial dump" in preview.result["recovered"][0]
    assert os.path.isdir(staging), "check mode removed something"
    again = run_module("pg_dump", big_db.login(dest=str(dest), format="custom"))
    assert not again.failed, again.msg
    assert "removed the partial dump %s" % staging in again.result["recovered"][0]
    assert again.result["tables"] == {"public.big": 300000}
    assert sorted(os.listdir(tmp_path)) == ["big.dump", "big.dump.meta.json", "big.dump.sha256"]
    with open(str(dest) + ".sha256", encoding="utf-8") as stream:
        assert stream.read().split()[0] == sha_of(str(dest)) == again.result["sha256"]


@pytest.mark.fault("pg-dump-sigterm-midway")
def test_sigterm_while_pg_dump_writes_keeps_the_old_dump(big_db, tmp_path):
    dest = tmp_path / "big.dump"
    first = run_module("pg_dump", big_db.login(dest=str(dest), format="custom", compress=1))
    assert not first.failed, first.msg
    big_db.sql("INSERT INTO big VALUES (0, 'new', 'row')")
    try:
        before = tree_state(str(tmp_path))
        proc = start_module("pg_dump", big_db.login(dest=str(dest), format="custom", compress=1))
        staging = wait_for(lambda: partial_output(tmp_path, "big.dump"), timeout=180,
                           what="pg_dump's partial output")
        run = kill(proc, signal.SIGTERM)
        assert_clear_failure(run, "stopped by SIGTERM", str(dest), "partial dump was removed", "not changed",
                             secrets=(PASSWORD,))
        no_tool_left("pg_dump", staging)
        wait_for(lambda: our_sessions(big_db) == 0, timeout=60, what="the dump's sessions to end")
        after = tree_state(str(tmp_path))
        assert after == before, "the old dump was touched: %s" % changed_entries(before, after)
        # The old dump is still a valid one: pg_restore checks and verifies it.
        verified = run_module("pg_restore", big_db.login(src=str(dest), verify_only=True))
        assert not verified.failed and verified.result["verify"]["verified"], verified.msg
    finally:
        big_db.sql("DELETE FROM big WHERE id = 0")


@pytest.mark.fault("pg-dump-concurrent-same-dest")
def test_second_dump_to_a_path_being_written_is_refused(big_db, tmp_path):
    dest = str(tmp_path / "big.dump")
    proc = start_module("pg_dump", big_db.login(dest=dest, format="custom"))
    staging = wait_for(lambda: partial_output(tmp_path, "big.dump"), timeout=180, what="pg_dump's partial output")
    second = run_module("pg_dump", big_db.login(dest=dest, format="custom"))
    assert_clear_failure(second, "another run is writing a dump to %s right now" % dest, staging, secrets=(PASSWORD,))
    first = finish(proc)
    assert not first.failed, first.msg
    assert sorted(os.listdir(tmp_path)) == ["big.dump", "big.dump.meta.json", "big.dump.sha256"]


@pytest.mark.fault("pg-dump-connection-lost")
def test_server_ends_pg_dumps_session_midway(big_db, tmp_path):
    dest = tmp_path / "big.dump"
    before = tree_state(str(tmp_path))
    proc = start_module("pg_dump", big_db.login(dest=str(dest), format="custom"))
    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY public.big %%'"
    pid = wait_for(lambda: big_db.cluster.value(query, (big_db.name,)), timeout=180, what="pg_dump's COPY")
    big_db.cluster.sql("SELECT pg_terminate_backend(%s)", (pid,))
    run = finish(proc)
    assert_clear_failure(run, "pg_dump of", "failed", "partial dump was removed", str(dest), secrets=(PASSWORD,))
    assert tree_state(str(tmp_path)) == before, "a partial dump was left"


@pytest.mark.fault("pg-dump-disk-too-small")
def test_dump_refused_early_on_a_too_small_filesystem(pg_database, tmpfs):  # noqa: F811
    small = tmpfs("4m")
    dest = os.path.join(small.path, "bench.dump")
    before = tree_state(small.path)
    for check in (True, False):
        run = run_module("pg_dump", pg_database.login(dest=dest, format="custom"), check=check)
        assert_clear_failure(run, "dest", "not enough free space", small.path, "free", "estimated", "4.0 MiB",
                             secrets=(PASSWORD,))
        assert run.result["free_bytes"] < run.result["estimated_bytes"]
        assert tree_state(small.path) == before


@pytest.mark.fault("pg-dump-enospc-midway")
def test_filesystem_fills_midway_leaves_no_partial_dump(pg_cluster, tmpfs):  # noqa: F811
    """Random bytes do not compress: the estimate lets the dump start, the disk fills midway."""
    db = new_database(pg_cluster, "noise", scale=0)
    try:
        db.sql("SET ROLE %s; CREATE TABLE noise AS SELECT g AS id, decode(string_agg(md5(random()::text), ''), 'hex') "
               "AS data FROM generate_series(1, 100) g, generate_series(1, 64) i GROUP BY g" % ROLE)
        small = tmpfs("8m")
        dest = os.path.join(small.path, "noise.dump")
        first = run_module("pg_dump", db.login(dest=dest, format="custom"))
        assert not first.failed, first.msg
        db.sql("INSERT INTO noise SELECT 100 + g, decode(string_agg(md5(random()::text), ''), 'hex') "
               "FROM generate_series(1, 10000) g, generate_series(1, 64) i GROUP BY g")
        before = tree_state(small.path)
        run = run_module("pg_dump", db.login(dest=dest, format="custom"))
        assert_clear_failure(run, "No space left on device", "ran full", "partial dump was removed", dest,
                             secrets=(PASSWORD,))
        after = tree_state(small.path)
        assert after == before, "something was left or changed: %s" % changed_entries(before, after)
        assert stagings(small.path, "noise.dump") == []
        verified = run_module("pg_restore", db.login(src=dest, verify_only=True))
        assert not verified.failed and verified.result["verify"]["rows"] == 100, verified.msg
    finally:
        pg_cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db.name)


@pytest.mark.fault("pg-dump-readonly-fs")
def test_read_only_filesystem_is_refused_before_anything(pg_database, tmpfs):  # noqa: F811
    fs = tmpfs("64m")
    dest = os.path.join(fs.path, "bench.dump")
    assert not run_module("pg_dump", pg_database.login(dest=dest, format="custom")).failed
    pg_database.sql("INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 5)")
    fs.remount("ro")
    before = tree_state(fs.path)
    run = run_module("pg_dump", pg_database.login(dest=dest, format="custom"))
    assert_clear_failure(run, "dest", fs.path, "read-only filesystem", "remount", secrets=(PASSWORD,))
    # pg_restore's safety dump on it: refused before the database is touched (block_writes included).
    state = pg_database.state()
    restore = run_module("pg_restore", pg_database.login(src=dest, block_writes=True,
                                                         safety_dest=os.path.join(fs.path, "safety.dump")))
    assert_clear_failure(restore, "safety_dest", "read-only filesystem", secrets=(PASSWORD,))
    assert pg_database.state() == state
    assert pg_database.cluster.value("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON "
                                     "d.oid = s.setdatabase WHERE d.datname = %s", (pg_database.name,)) == 0
    assert tree_state(fs.path) == before


@pytest.mark.fault("pg-dump-killed-while-installing")
def test_killed_while_moving_the_dump_into_place(pg_database, tmp_path):  # noqa: F811
    """A real process that dies by SIGKILL after the first rename of the move into place: the next restore refuses
    the half-moved dump, the next pg_dump completes the move."""
    dest = str(tmp_path / "bench.dump")
    first = run_module("pg_dump", pg_database.login(dest=dest, format="custom"))
    assert not first.failed, first.msg
    old_sha = first.result["sha256"]
    pg_database.sql("INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 9)")
    script = """
import json, os, signal, sys
sys.path.insert(0, %r)
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops
renames = []
real = os.rename
def rename(src, dst):
    real(src, dst)
    renames.append(dst)
    if dst == %r:  # the new dump is in place, its sidecars are not
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
params = json.loads(sys.argv[1])
_pg_ops.dump(_pg.Conn(params), %r, {"format": "custom"})
""" % (COLLECTIONS, dest, dest)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(pg_database.login())], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    staging = stagings(tmp_path, "bench.dump")
    assert len(staging) == 1
    with open(dest + ".sha256", encoding="utf-8") as stream:
        assert stream.read().split()[0] == old_sha != sha_of(dest), "expected the new dump beside the old sidecars"
    # Never taken for a valid dump: the checksum file beside it is still the old dump's.
    refused = run_module("pg_restore", pg_database.login(src=dest))
    assert_clear_failure(refused, "checksum", secrets=(PASSWORD,))
    again = run_module("pg_dump", pg_database.login(dest=dest, format="custom"))
    assert not again.failed, again.msg
    assert "completed moving the finished dump %s into place" % dest in again.result["recovered"][0]
    assert again.result["changed"] is False and again.result["sha256"] != old_sha, again.result
    assert sorted(os.listdir(tmp_path)) == ["bench.dump", "bench.dump.meta.json", "bench.dump.sha256"]
    assert again.result["tables"]["public.pgbench_history"] == 1
    assert sha_of(dest) == again.result["sha256"]


# ---------------------------------------------------------------------------------------------------- pg_restore
def _prepared(db, tmp_path):
    """A dump of the database, then pgbench transactions: (dump path, state at the dump, state now)."""
    dest = str(tmp_path / "bench.dump")
    run = run_module("pg_dump", db.login(dest=dest, format="custom"))
    assert not run.failed, run.msg
    dumped = db.state()
    db.cluster.pgbench_run(db.name, transactions=100)
    return dest, dumped, db.state()


@pytest.mark.fault("pg-restore-sigkill-after-safety-dump")
def test_sigkill_during_pg_restore_next_run_reports_and_finishes(pg_database, tmp_path):  # noqa: F811
    db = pg_database
    src, dumped, modified = _prepared(db, tmp_path)
    safety = str(tmp_path / "safety.dump")
    lock = TableLock(db, "pgbench_history")
    try:
        proc = start_module("pg_restore", db.login(src=src, safety_dest=safety))
        wait_for(lambda: session_waiting_on_lock(db), timeout=180, what="pg_restore midway (waiting on the lock)")
        assert os.path.exists(safety + ".meta.json"), "the safety dump is complete before pg_restore runs"
        run = kill(proc, signal.SIGKILL)
        assert run.rc == -signal.SIGKILL
        no_tool_left("pg_restore", src)
    finally:
        lock.release()
    wait_for(lambda: our_sessions(db) == 0, timeout=60, what="pg_restore's session to end")
    # pg_restore ran in one transaction: killed, it changed nothing.
    assert db.state() == modified
    assert os.path.exists(src + ".restoring.json")
    preview = run_module("pg_restore", db.login(src=src, safety_dest=str(tmp_path / "other.dump")), check=True)
    assert not preview.failed, preview.msg
    told = preview.result["interrupted"]
    assert told["database_state"].startswith("unchanged") and told["safety_dump"] == safety
    assert told["safety_dump_state"] == "intact (its checksum was verified)"
    assert "interrupted" in told["message"] and preview.result["safety_dump"] == safety
    verified = run_module("pg_restore", db.login(src=safety, verify_only=True))
    assert not verified.failed and verified.result["verify"]["verified"], verified.msg
    done = run_module("pg_restore", db.login(src=src, safety_dest=str(tmp_path / "other.dump")))
    assert not done.failed, done.msg
    assert done.result["safety_dump"] == safety, "the safety dump of before the interrupted run is kept in use"
    assert not os.path.exists(tmp_path / "other.dump")
    assert db.state() == dumped
    assert not os.path.exists(src + ".restoring.json")
    assert_no_secret(done, (PASSWORD,))


@pytest.mark.fault("pg-restore-sigkill-partial-restore")
def test_sigkill_midway_through_a_parallel_restore_leaves_a_known_partial_state(pg_database, tmp_path):  # noqa: F811
    db = pg_database
    src = str(tmp_path / "bench.dir")
    assert not run_module("pg_dump", db.login(dest=src, format="directory", jobs=2)).failed
    dumped = db.state()
    db.cluster.pgbench_run(db.name, transactions=100)
    modified = db.state()
    constraints = "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace " \
                  "WHERE n.nspname = 'public'"
    before = db.value(constraints)
    safety = str(tmp_path / "safety.dump")
    lock = TableLock(db, "pgbench_history")
    try:
        proc = start_module("pg_restore", db.login(src=src, safety_dest=safety, jobs=2))
        wait_for(lambda: session_waiting_on_lock(db), timeout=180, what="pg_restore midway (waiting on the lock)")
        kill(proc, signal.SIGKILL)
        no_tool_left("pg_restore", src)
    finally:
        lock.release()
    wait_for(lambda: our_sessions(db) == 0, timeout=60, what="pg_restore's session to end")
    assert db.value(constraints) < before, "nothing was dropped before the kill"
    done = run_module("pg_restore", db.login(src=src, jobs=2))
    assert not done.failed, done.msg
    told = done.result["interrupted"]
    assert told["database_state"].startswith("partially restored"), told
    assert told["safety_dump_state"] == "intact (its checksum was verified)"
    assert any("partially restored" in note for note in done.result["notes"])
    assert done.result["safety_dump"] == safety
    assert db.state() == dumped and db.value(constraints) == before
    # The safety dump still holds the database as it was before the interrupted restore.
    back = run_module("pg_restore", db.login(src=safety, safety_dump=False))
    assert not back.failed, back.msg
    assert db.state() == modified


@pytest.mark.fault("pg-restore-sigterm-midway")
def test_sigterm_during_pg_restore_stops_it_and_says_the_state(pg_database, tmp_path):  # noqa: F811
    db = pg_database
    src, _dumped, modified = _prepared(db, tmp_path)
    safety = str(tmp_path / "safety.dump")
    lock = TableLock(db, "pgbench_history")
    try:
        proc = start_module("pg_restore", db.login(src=src, safety_dest=safety))
        wait_for(lambda: session_waiting_on_lock(db), timeout=180, what="pg_restore midway (waiting on the lock)")
        run = kill(proc, signal.SIGTERM)
    finally:
        lock.release()
    assert_clear_failure(run, "stopped by SIGTERM", "the database was not changed", safety,
                         "intact (its checksum was verified)", secrets=(PASSWORD,))
    assert run.result["state"].startswith("unchanged")
    no_tool_left("pg_restore", src)
    wait_for(lambda: our_sessions(db) == 0, timeout=60, what="pg_restore's session to end")
    assert db.state() == modified
    assert not os.path.exists(src + ".restoring.json"), "a handled stop left the restore record"


@pytest.mark.fault("pg-restore-safety-dump-disk-too-small")
def test_safety_dump_that_cannot_fit_is_refused_before_the_database_is_touched(pg_database, tmp_path,  # noqa: F811
                                                                                tmpfs):
    db = pg_database
    src, _dumped, modified = _prepared(db, tmp_path)
    small = tmpfs("2m")
    before = tree_state(str(tmp_path))
    run = run_module("pg_restore", db.login(src=src, block_writes=True,
                                            safety_dest=os.path.join(small.path, "safety.dump")))
    assert_clear_failure(run, "safety_dest", "not enough free space", "estimated", secrets=(PASSWORD,))
    assert db.state() == modified
    assert db.cluster.value("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                            "WHERE d.datname = %s", (db.name,)) == 0, "block_writes was engaged"
    assert tree_state(str(tmp_path)) == before
