"""restore_point with the database and migrations components: a real alembic project on the test cluster."""
import json
import os
import subprocess
import sys
import textwrap
from urllib.parse import quote

import plays
from postgres.cluster import PASSWORD, ROLE

ALEMBIC = os.path.join(os.path.dirname(sys.executable), "alembic")

REV1 = '''
from alembic import op
import sqlalchemy as sa
revision = "aaaa00000001"
down_revision = None

def upgrade():
    op.create_table("items", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text, nullable=False))

def downgrade():
    op.drop_table("items")
'''

REV2 = '''
from alembic import op
import sqlalchemy as sa
revision = "bbbb00000002"
down_revision = "aaaa00000001"

def upgrade():
    op.add_column("items", sa.Column("price", sa.Integer, server_default="0"))
    op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True), sa.Column("item_id", sa.Integer))

def downgrade():
    op.drop_table("orders")
    op.drop_column("items", "price")
'''

ENV = '''
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
engine = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
'''


def alembic_project(root, cluster, db):
    root.mkdir()
    (root / "versions").mkdir()
    (root / "env.py").write_text(ENV)
    (root / "script.py.mako").write_text("")
    (root / "versions" / "rev1.py").write_text(REV1)
    (root / "versions" / "rev2.py").write_text(REV2)
    url = "postgresql+psycopg2://%s:%s@127.0.0.1:%d/%s" % (ROLE, quote(PASSWORD, safe=""), cluster.port, db)
    (root / "alembic.ini").write_text(textwrap.dedent("""\
        [alembic]
        script_location = %s
        sqlalchemy.url = %s
        """) % (root, url.replace("%", "%%")))
    return str(root / "alembic.ini")


def alembic(ini, *args):
    proc = subprocess.run([ALEMBIC, "-c", ini] + list(args), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def play(task, args):
    return plays.play((task, "restore_point", args))


def app_state(db):
    return db.cluster.state(db.name)


def test_round_trip_database_and_migrations(pg_database, tmp_path, one_host, playbook):
    db = pg_database
    ini = alembic_project(tmp_path / "migrations", db.cluster, db.name)
    alembic(ini, "upgrade", "aaaa00000001")
    db.cluster.pgbench_run(db.name, transactions=50)
    store = str(tmp_path / "store")
    components = {
        "migrations": {"current": [ALEMBIC, "-c", ini, "current"], "downgrade": [ALEMBIC, "-c", ini, "downgrade", "%s"],
                       "upgrade": [ALEMBIC, "-c", ini, "upgrade", "%s"]},
        "database": db.login(format="directory", jobs=2),
    }
    capture = playbook(play("Capture", {"store_path": store, "label": "good", "status": "known_good",
                                        "components": components}), one_host)
    assert capture.rc == 0, capture.stdout + capture.stderr
    point = capture.result("Capture", "target")["point"]
    assert point["components"] == ["migrations", "database"]
    good = app_state(db)
    balance = db.abalance()
    assert PASSWORD not in capture.stdout + json.dumps(capture.results)
    with open(os.path.join(store, "points", point["id"], "manifest.json"), encoding="utf-8") as stream:
        manifest = json.load(stream)
    assert "login_password" not in json.dumps(manifest), "a password was stored in the point"
    assert manifest["components"]["migrations"]["revision"] == "aaaa00000001"
    assert os.path.isdir(os.path.join(store, "dumps", point["id"], manifest["components"]["database"]["file"]))

    # The same capture again changes nothing: the database still matches the point's dump.
    again = playbook(play("Capture", {"store_path": store, "label": "good", "status": "known_good",
                                      "components": components}), one_host)
    assert again.result("Capture", "target")["changed"] is False

    # A bad release: a schema migration plus writes.
    alembic(ini, "upgrade", "head")
    db.sql("INSERT INTO items (name, price) VALUES ('new', 3)")
    db.cluster.pgbench_run(db.name, transactions=100)
    bad = app_state(db)

    restore = {"store_path": store, "state": "restored", "reason": "test", "only": ["migrations", "database"],
               "database_password": PASSWORD}
    check = playbook(play("Restore", restore), one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    predicted = check.result("Restore", "target")
    migration = predicted["plan"]["migrations"]["changes"][0]
    assert migration["action"] == "downgrade" and migration["from"] == {"revision": "bbbb00000002"}
    assert migration["to"] == {"revision": "aaaa00000001"} and migration["command"][-2:] == ["downgrade", "aaaa00000001"]
    assert predicted["plan"]["database"]["changes"][0]["action"] == "restore"
    assert app_state(db) == bad, "check mode changed the database"
    assert "revision: bbbb00000002" in check.stdout and "revision: aaaa00000001" in check.stdout

    real = playbook(play("Restore", restore), one_host, diff=True)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert done["changed"] is True and done["safety_point"]
    for name in ("migrations", "database"):
        assert [(c["action"], c["from"], c["to"]) for c in done["plan"][name]["changes"]] == \
            [(c["action"], c["from"], c["to"]) for c in predicted["plan"][name]["changes"]]
    assert app_state(db) == good and db.abalance() == balance
    assert alembic(ini, "current").split()[0] == "aaaa00000001"
    assert PASSWORD not in real.stdout + real.stderr + json.dumps(real.results)

    second = playbook(play("Restore", restore), one_host)
    assert second.rc == 0, second.stdout
    assert second.result("Restore", "target")["changed"] is False

    # The safety point holds the bad release, schema revision and data: it restores too.
    back = playbook(play("Restore", dict(restore, point=done["safety_point"])), one_host)
    assert back.rc == 0, back.stdout + back.stderr
    assert app_state(db) == bad
    assert alembic(ini, "current").split()[0] == "bbbb00000002"

    # Pruning a point removes its dumps.
    later = playbook(play("Capture", {"store_path": store, "label": "later", "components": components}), one_host)
    later_id = later.result("Capture", "target")["point"]["id"]
    assert os.path.isdir(os.path.join(store, "dumps", later_id))
    pruned = playbook(play("Prune", {"store_path": store, "state": "absent", "point": later_id}), one_host)
    assert pruned.rc == 0, pruned.stdout
    assert not os.path.exists(os.path.join(store, "dumps", later_id))


def test_failed_database_restore_is_reverted_by_the_safety_point(pg_database, tmp_path, one_host, playbook):
    db = pg_database
    db.sql("CREATE INDEX accounts_bid ON pgbench_accounts (bid)")
    store = str(tmp_path / "store")
    components = {"database": db.superuser_login(format="directory", jobs=2)}
    capture = playbook(play("Capture", {"store_path": store, "status": "known_good", "components": components}),
                       one_host)
    assert capture.rc == 0, capture.stdout
    db.cluster.pgbench_run(db.name, transactions=100)
    db.sql("""CREATE FUNCTION public.no_indexes() RETURNS event_trigger LANGUAGE plpgsql AS
              $$ BEGIN RAISE EXCEPTION 'injected failure: no CREATE INDEX today'; END $$""")
    db.sql("CREATE EVENT TRIGGER no_indexes ON ddl_command_end WHEN TAG IN ('CREATE INDEX') "
           "EXECUTE FUNCTION public.no_indexes()")
    before = app_state(db)
    run = playbook(play("Restore", {"store_path": store, "state": "restored"}), one_host)
    assert run.rc != 0
    failed = run.result("Restore", "target")
    assert failed["failed_component"] == "database" and "injected failure" in failed["msg"]
    assert failed["component_state"] == {"database": "reverted to pre-rollback state"}
    assert app_state(db) == before
    assert not [d for d in db.cluster.databases() if "_fleetops_" in d]


def test_rollback_role_passes_the_database_password_and_never_shows_it(pg_database, tmp_path, one_host, playbook):
    # A point with a database reached over TCP with a password: the rollback role (as every rollback playbook
    # uses it) restores it with rollback_database_password, which shows up in no output, result or journal.
    db = pg_database
    store = str(tmp_path / "store")
    capture = playbook(play("Capture", {"store_path": store, "label": "good", "status": "known_good",
                                        "components": {"database": db.login()}}), one_host)
    assert capture.rc == 0, capture.stdout + capture.stderr
    good = app_state(db)
    db.cluster.pgbench_run(db.name, transactions=100)
    assert app_state(db) != good
    rollback = """
- hosts: all
  gather_facts: false
  roles:
    - role: fleetops.rollback.rollback
      vars:
        rollback_store_path: %s
        rollback_gate: false
        rollback_restart_services: false
""" % store
    without = playbook(rollback, one_host, env={"PGPASSWORD": ""})
    assert without.rc != 0, "the restore should need the password"
    run = playbook(rollback, one_host, extra_vars={"rollback_database_password": PASSWORD}, args=["-v"])
    assert run.rc == 0, run.stdout + run.stderr
    assert run.result("Restore the host to its restore point", "target")["changed"] is True
    assert app_state(db) == good
    with open(os.path.join(store, "journal.jsonl"), encoding="utf-8") as stream:
        journal = stream.read()
    assert PASSWORD not in run.stdout + run.stderr + json.dumps(run.results) + journal
