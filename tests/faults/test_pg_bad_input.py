"""Bad input for pg_dump, pg_restore and the `database` component of restore_point, each through a real module
process against the suite's own PostgreSQL: a clear message naming the value and what to do, no password
anywhere, nothing changed in the test's whole directory nor in the database."""
from __future__ import annotations

import json
import os

import pytest

from pg_support import PASSWORD, new_database, refused
from harness import run_module
from postgres.fixtures import pg_cluster  # noqa: F401  pylint: disable=unused-import

SHELL_DB = "x; rm -rf /"


@pytest.fixture(scope="module")
def shared_db(pg_cluster):  # noqa: F811  pylint: disable=redefined-outer-name
    """One pgbench database for the whole module: every case must leave it as it was."""
    db = new_database(pg_cluster, "bad")
    yield db
    pg_cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db.name)


@pytest.fixture(scope="module")
def good_dump(shared_db, tmp_path_factory):  # pylint: disable=redefined-outer-name
    """A dump of shared_db written by pg_dump (the src of the pg_restore cases)."""
    path = str(tmp_path_factory.mktemp("good") / "good.dump")
    run = run_module("pg_dump", shared_db.login(dest=path, format="custom"))
    assert not run.failed, run.msg
    return path


def _write(path, data=b"someone else's data\n"):
    with open(path, "wb") as stream:
        stream.write(data)
    return path


# Each builder gets the test directory and returns the options to merge into a valid pg_dump call.
def foreign_file(tmp):
    return {"dest": _write(os.path.join(tmp, "report.dump"))}


def foreign_dir(tmp):
    path = os.path.join(tmp, "exports")
    os.mkdir(path)
    for name in ("a", "b", "c"):
        _write(os.path.join(path, name))
    return {"dest": path, "format": "directory"}


def symlink_to_file(tmp):
    target = _write(os.path.join(tmp, "target.txt"))
    os.symlink(target, os.path.join(tmp, "link.dump"))
    return {"dest": os.path.join(tmp, "link.dump")}


def symlink_to_dir(tmp):
    os.mkdir(os.path.join(tmp, "real"))
    os.symlink("real", os.path.join(tmp, "link.dir"))
    return {"dest": os.path.join(tmp, "link.dir"), "format": "directory"}


def dangling(tmp):
    os.symlink("/nonexistent/elsewhere", os.path.join(tmp, "gone.dump"))
    return {"dest": os.path.join(tmp, "gone.dump")}


def fifo(tmp):
    os.mkfifo(os.path.join(tmp, "pipe.dump"))
    return {"dest": os.path.join(tmp, "pipe.dump")}


def device(_tmp):
    return {"dest": "/dev/null"}


def missing_parent(tmp):
    return {"dest": os.path.join(tmp, "no", "such", "x.dump")}


def parent_is_file(tmp):
    return {"dest": os.path.join(_write(os.path.join(tmp, "plain")), "x.dump")}


def foreign_sidecar(tmp):
    _write(os.path.join(tmp, "x.dump.sha256"), b"not ours\n")
    return {"dest": os.path.join(tmp, "x.dump")}


def fifo_sidecar(tmp):
    os.mkfifo(os.path.join(tmp, "x.dump.meta.json"))
    return {"dest": os.path.join(tmp, "x.dump")}


def dir_for_custom(tmp):
    path = os.path.join(tmp, "holder")
    os.mkdir(path)
    _write(os.path.join(path, "keep.txt"))
    return {"dest": path}


DEST_CASES = [
    ("empty", lambda tmp: {"dest": ""}, ["dest"]),
    ("relative", lambda tmp: {"dest": "backups/x.dump"}, ["dest", "not an absolute path"]),
    ("nul", lambda tmp: {"dest": os.path.join(tmp, "x\x00y.dump")}, ["dest", "NUL"]),
    ("dotdot", lambda tmp: {"dest": os.path.join(tmp, "..", "x.dump")}, ["dest", "'..'"]),
    ("foreign-file", foreign_file, ["dest", "report.dump", "did not write"]),
    ("foreign-dir", foreign_dir, ["dest", "3 entries (a, b, c)", "did not write", "empty directory"]),
    ("dir-for-custom", dir_for_custom, ["dest", "1 entry (keep.txt)"]),
    ("symlink-file", symlink_to_file, ["dest", "symbolic link", "target.txt"]),
    ("symlink-dir", symlink_to_dir, ["dest", "symbolic link", "real"]),
    ("dangling", dangling, ["dest", "dangling"]),
    ("fifo", fifo, ["dest", "FIFO"]),
    ("device", device, ["dest", "/dev/null", "character device"]),
    ("missing-parent", missing_parent, ["dest", "does not exist", "create it first"]),
    ("parent-is-file", parent_is_file, ["dest", "not a directory"]),
    ("foreign-sidecar", foreign_sidecar, ["dest", "x.dump.sha256", "did not write"]),
    ("fifo-sidecar", fifo_sidecar, ["dest", "x.dump.meta.json", "FIFO"]),
]

OPTION_CASES = [
    ("format-tar", {"format": "tar"}, ["format", "tar"]),
    ("jobs-huge", {"jobs": 10 ** 9, "format": "directory"}, ["jobs", "1000000000", "1-256"]),
    ("jobs-zero", {"jobs": 0}, ["jobs", "0"]),
    ("jobs-custom", {"jobs": 4}, ["jobs", "format=directory"]),
    ("jobs-text", {"jobs": "many"}, ["jobs"]),
    ("compress-99", {"compress": 99}, ["compress", "99", "0-9"]),
    ("compress-negative", {"compress": -1}, ["compress", "-1"]),
    ("port-70000", {"port": 70000}, ["port", "70000", "1-65535"]),
    ("port-zero", {"port": 0}, ["port", "0"]),
    ("timeout-negative", {"connect_timeout": -5}, ["connect_timeout", "-5"]),
    ("db-empty", {"db": ""}, ["db", "empty"]),
    ("db-nul", {"db": "app\x00x"}, ["db", "NUL"]),
    ("db-shell", {"db": SHELL_DB}, [SHELL_DB, "does not exist"]),
    ("db-too-long", {"db": "\u00e9" * 40}, ["db", "80 bytes", "63"]),
    ("table-injection", {"tables": ['"; DROP TABLE']}, ['"; DROP TABLE', "no matching"]),
    ("table-empty", {"tables": [""]}, ["tables", "not a pattern"]),
    ("schema-nul", {"schemas": ["pub\x00lic"]}, ["schemas", "NUL"]),
    ("user-nul", {"login_user": "fleet\x00"}, ["login_user", "NUL"]),
    ("host-space", {"login_host": "127.0.0.1 ; id"}, ["login_host", "127.0.0.1 ; id"]),
    ("socket-relative", {"login_unix_socket": "run/postgresql"}, ["login_unix_socket", "absolute"]),
    ("socket-dotdot", {"login_unix_socket": "/run/../tmp"}, ["login_unix_socket", "'..'"]),
    ("bin-dir-missing", {"bin_dir": "/nonexistent/pg/bin"}, ["bin_dir", "/nonexistent/pg/bin"]),
    ("password-nul", {"login_password": PASSWORD + "\x00"}, ["login_password", "not shown"]),
]


@pytest.mark.bad_input("pg_dump")
@pytest.mark.parametrize("name, build, mentions", DEST_CASES, ids=[case[0] for case in DEST_CASES])
def test_pg_dump_dest_is_refused(shared_db, tmp_path, name, build, mentions):  # pylint: disable=redefined-outer-name
    args = shared_db.login(format="custom")
    args.update(build(str(tmp_path)))
    for check in (True, False):
        refused(tmp_path, "pg_dump", args, *mentions, db=shared_db, check=check)


@pytest.mark.bad_input("pg_dump")
@pytest.mark.parametrize("name, extra, mentions", OPTION_CASES, ids=[case[0] for case in OPTION_CASES])
def test_pg_dump_option_is_refused(shared_db, tmp_path, name, extra, mentions):  # pylint: disable=redefined-outer-name
    args = shared_db.login(dest=str(tmp_path / "x.dump"), format="custom")
    args.update(extra)
    refused(tmp_path, "pg_dump", args, *mentions, db=shared_db)
    assert not os.path.lexists(tmp_path / "x.dump")


def src_fifo(tmp, _good):
    os.mkfifo(os.path.join(tmp, "in.dump"))
    return {"src": os.path.join(tmp, "in.dump")}


def src_link(tmp, good):
    os.symlink(good, os.path.join(tmp, "in.dump"))
    return {"src": os.path.join(tmp, "in.dump")}


def src_foreign(tmp, _good):
    return {"src": _write(os.path.join(tmp, "in.dump"), b"PGDMP not really")}


def src_fifo_meta(tmp, _good):
    # Reading this FIFO would block for ever: it must be refused without being opened.
    _write(os.path.join(tmp, "in.dump"), b"PGDMP")
    os.mkfifo(os.path.join(tmp, "in.dump.meta.json"))
    return {"src": os.path.join(tmp, "in.dump")}


def safety_foreign(tmp, good):
    return {"src": good, "safety_dest": _write(os.path.join(tmp, "notes.txt"), b"my notes\n")}


def safety_dangling(tmp, good):
    os.symlink("/nonexistent/safety.dump", os.path.join(tmp, "safety.dump"))
    return {"src": good, "safety_dest": os.path.join(tmp, "safety.dump")}


def safety_foreign_dir(tmp, good):
    os.mkdir(os.path.join(tmp, "keep"))
    _write(os.path.join(tmp, "keep", "one"))
    _write(os.path.join(tmp, "keep", "two"))
    return {"src": good, "safety_dest": os.path.join(tmp, "keep")}


RESTORE_CASES = [
    ("src-missing", lambda tmp, good: {"src": os.path.join(tmp, "none.dump")}, ["src", "does not exist"]),
    ("src-relative", lambda tmp, good: {"src": "dumps/x.dump"}, ["src", "not an absolute path"]),
    ("src-dotdot", lambda tmp, good: {"src": os.path.join(tmp, "..", "x.dump")}, ["src", "'..'"]),
    ("src-fifo", src_fifo, ["src", "FIFO"]),
    ("src-symlink", src_link, ["src", "symbolic link"]),
    ("src-foreign", src_foreign, ["src", "no metadata file"]),
    ("src-fifo-meta", src_fifo_meta, ["src", "in.dump.meta.json", "FIFO"]),
    ("safety-foreign-file", safety_foreign, ["safety_dest", "notes.txt", "did not write"]),
    ("safety-dangling", safety_dangling, ["safety_dest", "dangling"]),
    ("safety-foreign-dir", safety_foreign_dir, ["safety_dest", "2 entries (one, two)"]),
    ("safety-is-src", lambda tmp, good: {"src": good, "safety_dest": good}, ["safety_dest", "being restored"]),
    ("sha-short", lambda tmp, good: {"src": good, "expected_sha256": "abc"}, ["expected_sha256", "'abc'"]),
    ("jobs-huge", lambda tmp, good: {"src": good, "jobs": 10 ** 9}, ["jobs", "1000000000"]),
    ("mode-merge", lambda tmp, good: {"src": good, "mode": "merge"}, ["mode", "merge"]),
    ("port-70000", lambda tmp, good: {"src": good, "port": 70000}, ["port", "70000"]),
    ("db-shell", lambda tmp, good: {"src": good, "db": SHELL_DB, "mode": "clean"}, [SHELL_DB, "does not exist"]),
]


@pytest.mark.bad_input("pg_restore")
@pytest.mark.parametrize("name, build, mentions", RESTORE_CASES, ids=[case[0] for case in RESTORE_CASES])
def test_pg_restore_input_is_refused(shared_db, good_dump, tmp_path, name, build,  # pylint: disable=redefined-outer-name
                                     mentions):
    shared_db.sql("INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 7)")  # differs from the dump
    try:
        args = shared_db.login()
        args.update(build(str(tmp_path), good_dump))
        dumps = sorted(os.listdir(os.path.dirname(good_dump)))
        for check in (True, False):
            refused(tmp_path, "pg_restore", args, *mentions, db=shared_db, check=check)
        assert sorted(os.listdir(os.path.dirname(good_dump))) == dumps, "a file was written beside the dump"
    finally:
        shared_db.sql("DELETE FROM pgbench_history WHERE delta = 7")


COMPONENT_CASES = [
    ("jobs-custom", {"jobs": 2}, ["components.database.jobs", "format=directory"]),
    ("port-text", {"port": "abc"}, ["components.database.port", "'abc'"]),
    ("port-bool", {"port": True}, ["components.database.port", "True"]),
    ("port-70000", {"port": 70000}, ["components.database.port", "70000"]),
    ("db-nul", {"db": "app\x00"}, ["components.database.db", "NUL"]),
    ("db-list", {"db": ["app"]}, ["components.database.db", "['app']"]),
    ("jobs-huge", {"jobs": 10 ** 9, "format": "directory"}, ["components.database.jobs", "1000000000"]),
    ("compress-99", {"compress": 99}, ["components.database.compress", "99"]),
    ("format-tar", {"format": "tar"}, ["components.database.format", "'tar'"]),
    ("bin-dir-relative", {"bin_dir": "usr/lib/postgresql"}, ["components.database.bin_dir", "absolute"]),
    ("socket-dotdot", {"login_unix_socket": "/run/../x"}, ["components.database.login_unix_socket", "'..'"]),
    ("tables-nul", {"tables": ["a\x00"]}, ["components.database.tables", "NUL"]),
    ("password-newline", {"login_password": "pw\nx"}, ["components.database.login_password", "not shown"]),
]


@pytest.mark.bad_input("restore_point")
@pytest.mark.parametrize("name, extra, mentions", COMPONENT_CASES, ids=[case[0] for case in COMPONENT_CASES])
def test_database_component_spec_is_refused(shared_db, tmp_path, name, extra,  # pylint: disable=redefined-outer-name
                                            mentions):
    spec = shared_db.login()
    spec.update(extra)
    store = tmp_path / "store"
    run = refused(tmp_path, "restore_point", {"store_path": str(store), "components": {"database": spec}}, *mentions,
                  db=shared_db, exclude=[str(store)])
    dumps = store / "dumps"
    assert not dumps.exists() or os.listdir(dumps) == [], "a dump was left in the store"
    assert "pw\nx" not in json.dumps(run.result)


@pytest.mark.bad_input("restore_point")
def test_database_component_table_pattern_that_matches_nothing(shared_db, tmp_path):  # pylint: disable=redefined-outer-name
    """A shell/SQL metacharacter pattern reaches pg_dump as one argv item, matches nothing and is named."""
    spec = shared_db.login(tables=['"; DROP TABLE pgbench_accounts; --'])
    store = tmp_path / "store"
    before = shared_db.state()
    run = run_module("restore_point", {"store_path": str(store), "components": {"database": spec}})
    assert run.failed and "no matching tables" in run.msg and "DROP TABLE pgbench_accounts" in run.msg, run.msg
    assert shared_db.state() == before
    assert PASSWORD not in run.everything
    dumps = store / "dumps"
    assert not dumps.exists() or os.listdir(dumps) == [], "a partial dump was left in the store"
