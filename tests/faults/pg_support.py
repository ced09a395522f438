"""What the PostgreSQL fault and bad-input cases share: the suite's own cluster (tests/integration/postgres), a
check that a case changed nothing (whole test directory, and the database), and a /proc scan for client tools."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)

from postgres.cluster import PASSWORD, ROLE  # noqa: E402  pylint: disable=wrong-import-position
from postgres.fixtures import Database  # noqa: E402  pylint: disable=wrong-import-position

from harness import assert_clear_failure, changed_entries, run_module, tree_state  # noqa: E402

_names = itertools.count(1)


def new_database(cluster, tag, scale=1):
    name = "f%d_%s_%d" % (os.getpid(), tag, next(_names))
    cluster.create_database(name)
    if scale:
        cluster.pgbench_init(name, scale=scale)
    return Database(cluster, name)


def refused(root, module, args, *mentions, db=None, check=False, exclude=()):
    """Run a module that must refuse: a clear message naming each of `mentions`, no password anywhere, and
    nothing changed under root (the whole test directory, but `exclude`: a store) nor in the database."""
    before = tree_state(str(root), exclude=exclude)
    db_before = db.state() if db is not None else None
    run = run_module(module, args, check=check)
    assert_clear_failure(run, *mentions, secrets=(PASSWORD,))
    after = tree_state(str(root), exclude=exclude)
    assert after == before, "the refused run changed files: %s" % changed_entries(before, after)
    if db is not None:
        assert db.state() == db_before, "the refused run changed the database"
    return run


def processes_with(*needles):
    """Running processes (pid, cmdline) whose command line holds every needle: a /proc scan, no psutil."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as stream:
                cmdline = stream.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % entry, "rb") as stream:
                state = stream.read().decode("ascii", "replace").rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and all(needle in cmdline for needle in needles):
            out.append((int(entry), cmdline))
    return out


def our_sessions(db):
    """Sessions of this collection's tools and connections on the database."""
    return db.cluster.value("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = "
                            "'fleetops-rollback'", (db.name,))


class Tmpfs:
    """A real tmpfs of a chosen size mounted on a directory (root only); unmounted by the fixture."""

    def __init__(self, path, size):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", self.path], check=True,
                       capture_output=True)

    def remount(self, options):
        subprocess.run(["mount", "-o", "remount,%s" % options, self.path], check=True, capture_output=True)

    def unmount(self):
        subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size) -> a mounted Tmpfs under tmp_path; every one is unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def make(size, name="small"):
        fs = Tmpfs(tmp_path / name, size)
        mounted.append(fs)
        return fs
    try:
        yield make
    finally:
        for fs in mounted:
            fs.unmount()


__all__ = ["PASSWORD", "ROLE", "Database", "new_database", "refused", "processes_with", "our_sessions", "tmpfs",
           "Tmpfs"]
