"""Unit tests for the PostgreSQL helpers that need no server: checksums, TOC parsing, specs, migrations."""
import json
import os
import stat
import sys

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.database.component import DatabaseComponent
from ansible_collections.fleetops.rollback.plugins.module_utils._components.migrations.component import MigrationsComponent


def test_passfile_and_conninfo_escaping():
    assert _pg.passfile_escape("a:b\\c") == "a\\:b\\\\c"
    assert _pg.quote_conninfo("it's\\x") == "'it\\'s\\\\x'"


def test_password_is_redacted_and_never_on_argv(tmp_path):
    conn = _pg.Conn({"db": "app", "login_password": "s3cret:pw", "login_host": "db.example", "port": 5433})
    assert conn.redact("FATAL: bad s3cret:pw") == "FATAL: bad ********"
    conn._tools = {"pg_dump": "/bin/pg_dump", "pg_restore": "/bin/pg_restore", "major": 15}
    argv = conn.tool_argv("pg_dump", 15, dbname="app")
    assert "s3cret:pw" not in " ".join(argv) and argv[-2:] == ["-d", "dbname='app'"]
    # The passfile the tool sees is 0600 and holds the escaped password; it is gone afterwards.
    script = tmp_path / "show"
    script.write_text("#!/bin/sh\nstat -c %a \"$PGPASSFILE\"\ncat \"$PGPASSFILE\"\necho \"pw=$PGPASSWORD\"\n")
    os.chmod(script, 0o755)
    rc, out, _err = conn.run_tool([str(script)], capture_stdout=True)
    assert rc == 0 and out.splitlines() == ["600", "*:*:*:*:s3cret\\:pw", "pw="]


def test_unix_socket_wins_over_host():
    conn = _pg.Conn({"db": "app", "login_host": "10.0.0.1", "login_unix_socket": "/run/postgresql"})
    assert conn.libpq_host == "/run/postgresql"


def test_find_tools_prefers_the_server_major(tmp_path):
    for major in (13, 15, 16):
        directory = tmp_path / str(major)
        directory.mkdir()
        for name in ("pg_dump", "pg_restore"):
            path = directory / name
            path.write_text("#!/bin/sh\necho '%s (PostgreSQL) %d.2'\n" % (name, major))
            os.chmod(path, 0o755)
    assert _pg.find_tools(str(tmp_path / "15"), 15)["major"] == 15
    with pytest.raises(RollbackError, match="no pg_dump/pg_restore of PostgreSQL 15"):
        _pg.find_tools(str(tmp_path / "13"), 15)
    assert _pg.find_tools(str(tmp_path / "16"), 15)["major"] == 16


def test_directory_checksum_names_the_changed_file(tmp_path):
    dump = tmp_path / "db.dir"
    files = _pg_ops.DumpFiles(str(dump))
    staging = _pg_ops.Staging(files)
    written = staging.path
    os.mkdir(written)
    with open(os.path.join(written, "toc.dat"), "wb") as stream:
        stream.write(b"toc")
    with open(os.path.join(written, "3001.dat.gz"), "wb") as stream:
        stream.write(b"rows")
    sha, manifest = _pg_ops.compute_checksum(written, "directory", "db.dir")
    assert manifest.decode().splitlines()[1].endswith("  db.dir/toc.dat")
    meta = {"format": "directory", "meta_format": 1, "tables": {}, "sha256": sha, "_manifest": manifest}
    _pg_ops.install(staging, meta)
    assert stat.S_IMODE(os.stat(dump).st_mode) == 0o700
    assert sorted(os.listdir(tmp_path)) == ["db.dir", "db.dir.manifest", "db.dir.meta.json", "db.dir.sha256"]
    assert _pg_ops.check_dump(files)["sha256"] == sha
    (dump / "3001.dat.gz").write_bytes(b"rows!")
    with pytest.raises(RollbackError, match="3001.dat.gz"):
        _pg_ops.check_dump(files)
    with pytest.raises(RollbackError, match="restore point records"):
        _pg_ops.check_dump(files, expected_sha="0" * 64)


def test_a_dump_without_metadata_is_refused(tmp_path):
    (tmp_path / "x.dump").write_bytes(b"PGDMP")
    with pytest.raises(RollbackError, match="no metadata file"):
        _pg_ops.check_dump(_pg_ops.DumpFiles(str(tmp_path / "x.dump")))
    (tmp_path / "x.dump.meta.json").write_text(json.dumps({"format": "tar"}))
    with pytest.raises(RollbackError, match="not a fleetops dump description"):
        _pg_ops.check_dump(_pg_ops.DumpFiles(str(tmp_path / "x.dump")))


def test_toc_entries_are_matched_against_the_catalog():
    # What read_toc keeps of `pg_restore -l` lines such as "3340; 0 16390 TABLE DATA public pgbench_accounts fleet".
    toc = ["TABLE public pgbench_accounts fleet",
           "TABLE DATA public pgbench_accounts fleet",
           "TABLE DATA my schema odd table name fleet",
           "SEQUENCE SET public items_id_seq fleet"]
    known = {"public.pgbench_accounts": "table", "my schema.odd table name": "table", "public.items_id_seq": "sequence"}
    objects = _pg_ops.toc_objects(toc, known)
    assert objects["TABLE DATA"] == ["my schema.odd table name", "public.pgbench_accounts"]
    assert objects["TABLE"] == ["public.pgbench_accounts"] and objects["SEQUENCE"] == []


def test_count_mismatches():
    assert _pg_ops.count_mismatches({"a": 1, "b": 2}, {"a": 1, "b": 3}) == {"b": {"dump": 2, "database": 3}}


@pytest.mark.parametrize("spec, message", [
    ({"login_host": "x"}, "components.database.db"),
    ({"db": "app", "format": "tar"}, "components.database.format: 'tar' is not one of custom, directory"),
    ({"db": "app", "mode": "merge"}, "components.database.mode: 'merge' is not one of clean, recreate"),
    ({"db": "app", "jobs": 0}, "jobs: 0"),
    ({"db": "app", "compress": 11}, "compress: 11"),
    ({"db": "app", "colour": "red"}, "unknown option 'colour'"),
    ({"db": "app", "tables": [""]}, "tables: '' is not a pattern"),
    ({"db": "app", "jobs": 2}, "jobs: 2 parallel workers need format=directory"),
])
def test_database_spec_errors_name_the_option(spec, message):
    with pytest.raises(RollbackError, match=message):
        DatabaseComponent().normalize(spec)


def test_database_password_is_not_kept_in_the_spec():
    component = DatabaseComponent()
    spec = component.normalize({"db": "app", "login_password": "pw-123", "login_user": "u1"})
    assert "login_password" not in spec and "pw-123" not in json.dumps(spec)
    # The password is this instance's, for this call: another instance (another call) knows nothing of it.
    assert component.connection(spec).password == "pw-123"
    assert DatabaseComponent().connection(spec).password == ""
    # A restore's database_password serves any connection of its call.
    assert DatabaseComponent({"database_password": "pw-9"}).connection(spec).password == "pw-9"


@pytest.fixture
def tool(tmp_path):
    """A real migration tool: a script that keeps its revision in a file."""
    state = tmp_path / "revision"
    state.write_text("r2\n")
    script = tmp_path / "migrate.py"
    script.write_text(
        "import sys\n"
        "path = %r\n"
        "cmd = sys.argv[1]\n"
        "rev = open(path).read().strip()\n"
        "if cmd == 'current':\n"
        "    print('INFO noise on stderr', file=sys.stderr)\n"
        "    print(rev + ' (head)' if rev else '')\n"
        "elif cmd == 'downgrade':\n"
        "    if sys.argv[2] > rev and sys.argv[2] != 'base':\n"
        "        sys.exit('cannot downgrade to a newer revision')\n"
        "    open(path, 'w').write('' if sys.argv[2] == 'base' else sys.argv[2])\n"
        "elif cmd == 'upgrade':\n"
        "    open(path, 'w').write(sys.argv[2])\n" % str(state))
    return {"current": [sys.executable, str(script), "current"],
            "downgrade": [sys.executable, str(script), "downgrade", "%s"],
            "upgrade": "%s %s upgrade %%s" % (sys.executable, script), "state": state}


def test_migrations_capture_plan_apply_and_forward_revert(tool):
    comp = MigrationsComponent()
    spec = comp.normalize({k: v for k, v in tool.items() if k != "state"})
    record = comp.capture(None, spec)
    assert record["revision"] == "r2"
    assert comp.plan(None, record) == []
    tool["state"].write_text("r5")
    changes = comp.plan(None, record)
    assert changes[0]["action"] == "downgrade" and changes[0]["from"] == {"revision": "r5"}
    assert changes[0]["command"][-2:] == ["downgrade", "r2"]
    comp.apply(None, record, changes)
    assert tool["state"].read_text() == "r2" and comp.plan(None, record) == []
    # A safety record newer than the current revision: downgrade refuses, upgrade goes forward.
    safety = dict(record, revision="r5")
    comp.apply(None, safety, comp.plan(None, safety))
    assert tool["state"].read_text() == "r5"
    # No revision at capture means the base.
    tool["state"].write_text("")
    base = comp.capture(None, spec)
    assert base["revision"] is None
    tool["state"].write_text("r1")
    comp.apply(None, base, comp.plan(None, base))
    assert tool["state"].read_text() == ""


def test_migrations_spec_errors():
    comp = MigrationsComponent()
    with pytest.raises(RollbackError, match="downgrade is required"):
        comp.normalize({"current": "alembic current"})
    with pytest.raises(RollbackError, match="must contain %s"):
        comp.normalize({"current": "alembic current", "downgrade": "alembic downgrade -1"})
    with pytest.raises(RollbackError, match="revision_regex"):
        comp.normalize({"current": "x", "downgrade": "y %s", "revision_regex": "(.*)"})


@pytest.mark.parametrize("pattern, expected", [
    ("orders", ("", "^(orders)$")),
    ("Public.Order*", ("^(public)$", "^(order.*)$")),
    ('"My Schema"."T?"', ("^(My\\ Schema)$", "^(T\\?)$")),
    ("db.app.t$x", ("^(app)$", "^(t\\$x)$")),
    ("a.b.c.d", None),
])
def test_dump_patterns_become_the_regexes_pg_dump_uses(pattern, expected):
    assert _pg_ops._pattern_regex(pattern) == expected


def test_an_own_dump_is_recognised_by_its_description_and_nothing_else(tmp_path):
    dest = tmp_path / "x.dump"
    dest.write_bytes(b"PGDMP")
    with pytest.raises(RollbackError, match="did not write"):
        _pg_ops.check_output("dest", str(dest), "custom")
    meta = {"format": "custom", "meta_format": 1, "sha256": "0" * 64, "tables": {}}
    (tmp_path / "x.dump.meta.json").write_text(json.dumps(meta))
    assert _pg_ops.check_output("dest", str(dest), "directory").path == str(dest)
    (tmp_path / "x.dump.meta.json").write_text(json.dumps(dict(meta, format="directory")))
    with pytest.raises(RollbackError, match="did not write"):
        _pg_ops.check_output("dest", str(dest), "custom")


def test_names_and_digests_are_checked():
    with pytest.raises(RollbackError, match="63 bytes"):
        _pg.check_name("db", "x" * 64)
    assert _pg.check_name("db", "x; rm -rf /") == "x; rm -rf /"
    assert _pg_ops.check_sha256("expected_sha256", "AB" * 32) == "ab" * 32
    with pytest.raises(RollbackError, match="not a sha256"):
        _pg_ops.check_sha256("expected_sha256", "g" * 64)
    assert _pg_ops.safe_file_name("../é x") == "___x" and _pg_ops.safe_file_name("..") == "db"
