"""pg_dump and pg_restore through real ansible-playbook runs against a PostgreSQL cluster the suite starts."""
import json
import os
import stat

import pytest

from plays import play
from postgres.cluster import PASSWORD, ROLE


def task_play(module, args, name="Step"):
    return play((name, module, args))


def files_under(path):
    out = {}
    for base, dirs, names in os.walk(path):
        for entry in dirs + names:
            full = os.path.join(base, entry)
            out[os.path.relpath(full, path)] = os.stat(full).st_mtime_ns
    return out


def assert_no_secret(run, *secrets):
    text = run.stdout + run.stderr + json.dumps(run.results)
    for secret in secrets:
        assert secret not in text, "a password leaked into the output"


def test_dump_pgbench_modify_restore(pg_database, tmp_path, one_host, playbook):
    """pgbench: dump, transactions, restore; the sum of abalance and every table's count come back."""
    db = pg_database
    dest = str(tmp_path / "bench.dump")
    check = playbook(task_play("pg_dump", db.login(dest=dest, format="custom", verify=True), "Dump"), one_host,
                     check=True)
    assert check.rc == 0, check.stdout
    assert check.result("Dump", "target")["changed"] is True
    assert not os.path.exists(dest), "check mode wrote a dump"

    run = playbook(task_play("pg_dump", db.login(dest=dest, format="custom", verify=True, compress=1), "Dump"),
                   one_host)
    assert run.rc == 0, run.stdout + run.stderr
    dumped = run.result("Dump", "target")
    at_dump = db.state()
    balance = db.abalance()
    assert dumped["tables"]["public.pgbench_accounts"] == 100000
    assert dumped["verify"]["verified"] is True and dumped["verify"]["rows"] == sum(dumped["tables"].values())
    assert db.name + "_fleetops" not in " ".join(db.cluster.databases()), "the scratch database was left behind"
    for path in (dest, dest + ".sha256", dest + ".meta.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(dest + ".sha256", encoding="utf-8") as stream:
        assert stream.read().split() == [dumped["sha256"], "bench.dump"]
    assert_no_secret(run, PASSWORD)

    again = playbook(task_play("pg_dump", db.login(dest=dest, format="custom"), "Dump"), one_host)
    assert again.result("Dump", "target")["changed"] is False, "an up-to-date dump was taken again"

    db.cluster.pgbench_run(db.name, transactions=300)
    modified = db.state()
    assert modified != at_dump and db.abalance() != balance

    restore_args = db.login(src=dest, mode="clean", safety_dest=str(tmp_path / "safety.dump"))
    predicted = playbook(task_play("pg_restore", restore_args, "Restore"), one_host, check=True, diff=True)
    assert predicted.rc == 0, predicted.stdout
    plan = predicted.result("Restore", "target")
    assert plan["changed"] is True and "written since" in plan["plan"]["reason"]
    assert "public.pgbench_accounts (table)" in plan["plan"]["drop"]
    assert plan["plan"]["restore"]["tables"] == dumped["tables"]
    assert plan["safety_dump"] == str(tmp_path / "safety.dump")
    assert db.state() == modified, "check mode changed the database"
    assert not os.path.exists(tmp_path / "safety.dump"), "check mode wrote a safety dump"
    assert "pgbench_accounts: 100000 rows" in predicted.stdout

    real = playbook(task_play("pg_restore", restore_args, "Restore"), one_host)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert done["changed"] is True
    assert {k: done["plan"][k] for k in ("drop", "keep", "restore")} == \
        {k: plan["plan"][k] for k in ("drop", "keep", "restore")}, "check mode did not predict the real run"
    assert done["verified"]["rows"] == sum(dumped["tables"].values())
    assert db.abalance() == balance
    assert db.state() == at_dump
    assert os.path.exists(done["safety_dump"]) and os.path.exists(done["safety_dump"] + ".sha256")
    assert_no_secret(real, PASSWORD)

    second = playbook(task_play("pg_restore", restore_args, "Restore"), one_host)
    assert second.rc == 0
    assert second.result("Restore", "target")["changed"] is False, "a second restore of the same dump changed"

    # The safety dump is itself a verified dump: restoring it brings the pgbench transactions back.
    back = playbook(task_play("pg_restore", db.login(src=done["safety_dump"], safety_dump=False), "Restore"), one_host)
    assert back.rc == 0, back.stdout
    assert db.state() == modified


def test_directory_format_two_jobs_recreate_with_write_block(pg_database, pg_cluster, tmp_path, one_host, playbook):
    db = pg_database
    db.sql("ALTER DATABASE %s SET work_mem = '12MB'" % db.name)
    pg_cluster.sql("DROP ROLE IF EXISTS reader; CREATE ROLE reader")
    db.sql("REVOKE CONNECT ON DATABASE %s FROM PUBLIC; GRANT CONNECT ON DATABASE %s TO reader" % (db.name, db.name))
    dest = str(tmp_path / "bench.dir")
    run = playbook(task_play("pg_dump", db.login(dest=dest, format="directory", jobs=2), "Dump"), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    dumped = run.result("Dump", "target")
    assert os.path.isdir(dest) and os.path.exists(dest + ".manifest")
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    at_dump = db.state()
    db.cluster.pgbench_run(db.name, transactions=200)
    writer = pg_cluster.connect(db.name, user=ROLE, password=PASSWORD)  # an application session to be ended
    with writer.cursor() as cur:
        cur.execute("CREATE TABLE added_later (id int)")
    args = db.login(src=dest, mode="recreate", jobs=2, block_writes=True)
    predicted = playbook(task_play("pg_restore", args, "Restore"), one_host, check=True)
    plan = predicted.result("Restore", "target")["plan"]
    assert "public.added_later (table)" in plan["drop"] and plan["sessions"] >= 1

    real = playbook(task_play("pg_restore", args, "Restore"), one_host)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert done["changed"] is True and done["verified"]["rows"] == sum(dumped["tables"].values())
    assert db.state() == at_dump, "recreate did not give back the dumped database (extra table included)"
    with pytest.raises(Exception):
        with writer.cursor() as cur:
            cur.execute("SELECT 1")
    # The database's own settings and privileges survived; the write block did not.
    settings = pg_cluster.value("SELECT setconfig::text FROM pg_db_role_setting s JOIN pg_database d "
                                "ON d.oid = s.setdatabase WHERE d.datname = %s", (db.name,))
    assert settings == "{work_mem=12MB}"
    acl = pg_cluster.value("SELECT datacl::text FROM pg_database WHERE datname = %s", (db.name,))
    assert "reader=c/" in acl and "=Tc/" not in acl.replace("reader=c/", "")
    assert pg_cluster.databases().count(db.name) == 1
    assert not [d for d in pg_cluster.databases() if "_fleetops_" in d], "a scratch database was left behind"
    again = playbook(task_play("pg_restore", args, "Restore"), one_host)
    assert again.result("Restore", "target")["changed"] is False


def test_corrupt_or_truncated_dump_changes_nothing(pg_database, pg_cluster, tmp_path, one_host, playbook):
    db = pg_database
    dest = str(tmp_path / "bench.dump")
    assert playbook(task_play("pg_dump", db.login(dest=dest, format="custom"), "Dump"), one_host).rc == 0
    db.cluster.pgbench_run(db.name, transactions=100)
    modified = db.state()
    databases = pg_cluster.databases()
    size = os.path.getsize(dest)

    # A flipped byte: refused on the checksum before anything is touched, check mode included.
    with open(dest, "r+b") as stream:
        stream.seek(size // 2)
        byte = stream.read(1)
        stream.seek(size // 2)
        stream.write(bytes([byte[0] ^ 0xFF]))
    for check in (True, False):
        run = playbook(task_play("pg_restore", db.login(src=dest, safety_dest=str(tmp_path / "s.dump")), "Restore"),
                       one_host, check=check)
        assert run.rc != 0
        assert "fails its checksum" in run.result("Restore", "target")["msg"]
    assert not os.path.exists(tmp_path / "s.dump")
    assert db.state() == modified and pg_cluster.databases() == databases

    # Truncated and re-checksummed (a dump that was bad when written): verify catches it in a scratch database.
    with open(dest, "r+b") as stream:
        stream.seek(size // 2)
        stream.write(byte)
        stream.truncate(size * 2 // 3)
    import hashlib
    with open(dest, "rb") as stream:
        sha = hashlib.sha256(stream.read()).hexdigest()
    with open(dest + ".sha256", "w", encoding="utf-8") as stream:
        stream.write("%s  bench.dump\n" % sha)
    with open(dest + ".meta.json", encoding="utf-8") as stream:
        meta = json.load(stream)
    meta["sha256"] = sha
    with open(dest + ".meta.json", "w", encoding="utf-8") as stream:
        json.dump(meta, stream)
    verify = playbook(task_play("pg_restore", db.login(src=dest, verify_only=True), "Verify"), one_host)
    assert verify.rc != 0
    result = verify.result("Verify", "target")
    assert result["verify"]["verified"] is False and result["verify"]["problem"]
    assert db.state() == modified and pg_cluster.databases() == databases

    # Restoring it anyway fails in its single transaction: nothing changed, and the result says so.
    run = playbook(task_play("pg_restore", db.login(src=dest, safety_dest=str(tmp_path / "s.dump")), "Restore"),
                   one_host)
    assert run.rc != 0
    failed = run.result("Restore", "target")
    assert failed["state"].startswith("unchanged"), failed
    assert db.state() == modified and pg_cluster.databases() == databases

    # A directory dump with one file changed names that file.
    ddest = str(tmp_path / "bench.dir")
    assert playbook(task_play("pg_dump", db.login(dest=ddest, format="directory"), "Dump"), one_host).rc == 0
    victim = sorted(n for n in os.listdir(ddest) if n.endswith(".dat.gz"))[0]
    with open(os.path.join(ddest, victim), "ab") as stream:
        stream.write(b"junk")
    run = playbook(task_play("pg_restore", db.login(src=ddest), "Restore"), one_host)
    assert run.rc != 0 and victim in run.result("Restore", "target")["msg"]
    assert db.state() == modified


def test_failure_midway_reverts_to_the_safety_dump(pg_database, pg_cluster, tmp_path, one_host, playbook):
    """An index build that fails after the tables were dropped and reloaded: the safety dump comes back."""
    db = pg_database
    db.sql("CREATE INDEX accounts_bid ON pgbench_accounts (bid)")
    dest = str(tmp_path / "bench.dump")
    login = db.superuser_login()
    assert playbook(task_play("pg_dump", dict(login, dest=dest, format="custom"), "Dump"), one_host).rc == 0
    db.cluster.pgbench_run(db.name, transactions=150)
    db.sql("""CREATE FUNCTION public.no_indexes() RETURNS event_trigger LANGUAGE plpgsql AS
              $$ BEGIN RAISE EXCEPTION 'injected failure: no CREATE INDEX today'; END $$""")
    db.sql("CREATE EVENT TRIGGER no_indexes ON ddl_command_end WHEN TAG IN ('CREATE INDEX') "
           "EXECUTE FUNCTION public.no_indexes()")
    before = db.state()
    balance = db.abalance()

    run = playbook(task_play("pg_restore", dict(login, src=dest, jobs=2, block_writes=True), "Restore"), one_host)
    assert run.rc != 0
    failed = run.result("Restore", "target")
    assert "injected failure" in failed["msg"] and failed["state"] == "reverted to the safety dump", failed
    assert os.path.exists(failed["safety_dump"])
    assert db.state() == before and db.abalance() == balance
    assert db.value("SELECT count(*) FROM pg_event_trigger") == 1
    assert pg_cluster.value("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                            "WHERE d.datname = %s", (db.name,)) == 0, "block_writes was not undone"
    assert not [d for d in pg_cluster.databases() if "_fleetops_" in d]


def test_wrong_password_or_host_is_clear_and_secret(pg_database, tmp_path, one_host, playbook):
    db = pg_database
    wrong = "not-the-Pa55word-1234"
    for module, extra in (("pg_dump", {"dest": str(tmp_path / "x.dump"), "format": "custom"}),
                          ("pg_restore", {"src": str(tmp_path / "x.dump")})):
        if module == "pg_restore":
            assert playbook(task_play("pg_dump", db.login(dest=str(tmp_path / "x.dump"), format="custom"), "Dump"),
                            one_host).rc == 0
        run = playbook(task_play(module, db.login(login_password=wrong, **extra), "Bad password"), one_host)
        assert run.rc != 0
        msg = run.result("Bad password", "target")["msg"]
        assert "password authentication failed" in msg and "login_password" in msg
        assert_no_secret(run, wrong, PASSWORD)
    run = playbook(task_play("pg_dump", db.login(login_host="127.0.0.1", port=1, dest=str(tmp_path / "y.dump"),
                                                 format="custom"), "Bad host"), one_host)
    assert run.rc != 0
    msg = run.result("Bad host", "target")["msg"]
    assert "cannot connect" in msg and "127.0.0.1:1" in msg
    assert_no_secret(run, PASSWORD)
    assert not os.path.exists(tmp_path / "y.dump")
