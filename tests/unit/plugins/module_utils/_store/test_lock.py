"""Unit tests for module_utils/_lock.py, with real child processes holding the lock."""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._store import lock as _lock
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._store.lock import StoreLock
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store

ROOT = os.path.abspath(__file__).rsplit(os.sep + 'tests' + os.sep, 1)[0]
COLLECTIONS = os.path.join(ROOT, ".collections")

# A child that takes the lock with StoreLock, says so, then follows its mode:
#   wait      release when a line arrives on stdin
#   hold:S    release after S seconds
#   spawn     start a long-lived grandchild with close_fds=False, print its pid, then wait forever
HOLDER = r"""
import subprocess, sys, time
from ansible_collections.fleetops.rollback.plugins.module_utils._store.lock import StoreLock
path, owner, mode = sys.argv[1:4]
lock = StoreLock(path, owner=owner).acquire()
print("locked", flush=True)
if mode == "wait":
    sys.stdin.readline()
elif mode.startswith("hold:"):
    time.sleep(float(mode[5:]))
elif mode == "spawn":
    child = subprocess.Popen(["sleep", "60"], close_fds=False)
    print(child.pid, flush=True)
    time.sleep(60)
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""

# A child that holds a bare kernel flock on the file (no record written), until stdin says go.
RAW_FLOCK = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def spawn(script, *args):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = subprocess.Popen([sys.executable, "-c", script] + [str(a) for a in args], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "locked", "child did not take the lock: %r" % line
    return proc


def finish(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream:
            stream.close()


@pytest.fixture
def children():
    procs = []
    yield procs
    for proc in procs:
        finish(proc)


@pytest.fixture
def lock_path(tmp_path):
    return str(Store(str(tmp_path / "store")).ensure().lock_path)


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not _lock.pid_alive(proc.pid)
    return proc.pid


def record(path):
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    return json.loads(text) if text.strip() else None


# ---------------------------------------------------------------------------------------- basics


def test_acquire_writes_record_and_release_clears_it(lock_path):
    lock = StoreLock(lock_path, owner="alice:restore")
    with lock as held:
        assert held is lock and lock.fd is not None
        info = record(lock_path)
        assert info["owner"] == "alice:restore"
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()
        assert info["proc_start"] == _lock._proc_start(os.getpid())
        assert lock.stale is None and lock.broken is None
    assert lock.fd is None
    assert record(lock_path) is None  # a clean release leaves no record: the next run sees no stale lock
    lock.release()  # idempotent
    again = StoreLock(lock_path, owner="bob").acquire()
    try:
        assert again.stale is None
        assert record(lock_path)["owner"] == "bob"
    finally:
        again.release()


def test_store_lock_helper_uses_store_lock_file(tmp_path):
    store = Store(str(tmp_path / "s"))
    with pytest.raises(RollbackError) as err:
        store.lock(owner="x")  # only a capture makes a store
    assert "no restore point store" in err.value.msg and not os.path.exists(store.path)
    lock = store.lock(owner="x", create=True)
    assert lock.path == os.path.join(store.path, "lock")
    with lock:
        assert os.path.isfile(lock.path)


def test_second_acquire_in_same_process_is_refused(lock_path):
    with StoreLock(lock_path, owner="first"):
        with pytest.raises(RollbackError) as err:
            StoreLock(lock_path, owner="second").acquire()
        assert "first" in err.value.msg


# ---------------------------------------------------------------------------------------- other holders


def test_live_holder_in_other_process_fails_fast_naming_it(lock_path, children):
    proc = spawn(HOLDER, lock_path, "carol:capture", "wait")
    children.append(proc)
    started = time.monotonic()
    with pytest.raises(RollbackError) as err:
        StoreLock(lock_path, owner="me").acquire()
    assert time.monotonic() - started < 5  # no waiting with the default timeout of 0
    assert "carol:capture" in err.value.msg
    assert "pid %d" % proc.pid in err.value.msg
    assert "alive" in err.value.msg
    assert err.value.details["lock"]["pid"] == proc.pid
    # force_unlock never breaks the lock of a live holder.
    with pytest.raises(RollbackError):
        StoreLock(lock_path, owner="me", force=True).acquire()
    assert record(lock_path)["pid"] == proc.pid


def test_lock_timeout_waits_for_holder_to_release(lock_path, children):
    proc = spawn(HOLDER, lock_path, "dave", "hold:0.7")
    children.append(proc)
    lock = StoreLock(lock_path, owner="me", timeout=30).acquire()
    try:
        # The holder really released it (we did not steal it) and left no stale record.
        assert proc.stdout.readline().strip() == "released"
        assert lock.stale is None and lock.broken is None
        assert record(lock_path)["pid"] == os.getpid()
    finally:
        lock.release()


def test_lock_timeout_expires_while_holder_stays(lock_path, children):
    proc = spawn(HOLDER, lock_path, "erin", "wait")
    children.append(proc)
    with pytest.raises(RollbackError) as err:
        StoreLock(lock_path, owner="me", timeout=0.3).acquire()
    assert "erin" in err.value.msg
    assert record(lock_path)["pid"] == proc.pid


def test_dead_holder_is_recovered_as_stale(lock_path, children):
    proc = spawn(HOLDER, lock_path, "frank:restore", "wait")
    children.append(proc)
    holder = record(lock_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    lock = StoreLock(lock_path, owner="me").acquire()
    try:
        assert lock.stale == holder
        assert lock.stale["pid"] == proc.pid and lock.stale["owner"] == "frank:restore"
        assert lock.broken is None
        assert record(lock_path)["pid"] == os.getpid()
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------- force_unlock


def _simulate_dead_recorded_holder(lock_path, children):
    """A live process holds the kernel lock while the recorded holder is a dead pid on this host."""
    proc = spawn(RAW_FLOCK, lock_path)
    children.append(proc)
    fake = {"owner": "ghost:restore", "pid": dead_pid(), "proc_start": 12345, "host": socket.gethostname(),
            "started_at": "2026-03-01T12:00:00+00:00"}
    with open(lock_path, "w", encoding="utf-8") as stream:  # same inode, the child keeps its flock
        json.dump(fake, stream)
    return proc, fake


def test_force_unlock_refused_without_force(lock_path, children):
    _proc, fake = _simulate_dead_recorded_holder(lock_path, children)
    inode = os.stat(lock_path).st_ino
    with pytest.raises(RollbackError) as err:
        StoreLock(lock_path, owner="me", force=False).acquire()
    assert "ghost:restore" in err.value.msg
    assert "pid %d" % fake["pid"] in err.value.msg
    assert "force_unlock" in err.value.msg
    # Refusing changes nothing.
    assert os.stat(lock_path).st_ino == inode
    assert record(lock_path) == fake


def test_force_unlock_never_breaks_a_flock_the_kernel_shows_held(lock_path, children):
    """The record names a dead pid, but /proc/locks shows a live process holding the flock: the kernel wins."""
    proc, fake = _simulate_dead_recorded_holder(lock_path, children)
    inode = os.stat(lock_path).st_ino
    assert _lock.kernel_holders(lock_path) == [proc.pid]
    with pytest.raises(RollbackError) as err:
        StoreLock(lock_path, owner="me", force=True).acquire()
    assert "pid %d" % proc.pid in err.value.msg and "force_unlock never breaks" in err.value.msg
    assert err.value.details["lock_holders"] == [proc.pid]
    # Refusing changes nothing: same file, same record, and the holder still has its lock.
    assert os.stat(lock_path).st_ino == inode
    assert record(lock_path) == fake
    assert _lock.kernel_holders(lock_path) == [proc.pid]


def test_reused_pid_counts_as_gone(lock_path):
    """A recorded pid that is alive but started at another time belongs to someone else."""
    fake = {"owner": "ghost", "pid": os.getpid(), "proc_start": (_lock._proc_start(os.getpid()) or 0) + 1,
            "host": socket.gethostname(), "started_at": "x"}
    assert StoreLock(lock_path).holder_is_gone(fake)
    assert not StoreLock(lock_path).holder_is_gone(dict(fake, proc_start=_lock._proc_start(os.getpid())))


def test_lock_path_that_is_a_directory_is_refused_clearly(tmp_path):
    path = tmp_path / "lock"
    path.mkdir()
    with pytest.raises(RollbackError) as err:
        StoreLock(str(path), owner="me").acquire()
    assert str(path) in err.value.msg and "directory" in err.value.msg and path.is_dir()


def test_force_unlock_refuses_holder_on_another_host(lock_path, children):
    spawn_proc = spawn(RAW_FLOCK, lock_path)
    children.append(spawn_proc)
    fake = {"owner": "remote", "pid": dead_pid(), "host": socket.gethostname() + "-elsewhere", "started_at": "x"}
    with open(lock_path, "w", encoding="utf-8") as stream:
        json.dump(fake, stream)
    with pytest.raises(RollbackError) as err:
        StoreLock(lock_path, owner="me", force=True).acquire()
    assert "remote" in err.value.msg
    assert record(lock_path) == fake


# ---------------------------------------------------------------------------------------- inheritance


def _fds_pointing_at(pid, path):
    found = []
    fd_dir = "/proc/%d/fd" % pid
    for name in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, name)) == path:
                found.append(name)
        except OSError:
            pass
    return found


def test_lock_fd_is_not_inherited_by_child_processes(lock_path):
    lock = StoreLock(lock_path, owner="me").acquire()
    try:
        assert not os.get_inheritable(lock.fd)
        assert _fds_pointing_at(os.getpid(), lock_path)  # the check below can see the lock file
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
        try:
            assert _fds_pointing_at(child.pid, lock_path) == []
        finally:
            child.kill()
            child.wait()
    finally:
        lock.release()


def test_grandchild_of_dead_holder_does_not_keep_the_lock(lock_path, children):
    proc = spawn(HOLDER, lock_path, "gina", "spawn")
    children.append(proc)
    grandchild = int(proc.stdout.readline())
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _lock.pid_alive(grandchild)
        lock = StoreLock(lock_path, owner="me").acquire()
        try:
            assert lock.stale["owner"] == "gina"
        finally:
            lock.release()
    finally:
        os.kill(grandchild, signal.SIGKILL)


def test_bare_flock_holder_blocks_acquire(lock_path, children):
    """The kernel lock, not the record, is what excludes: an empty record with a held flock still refuses."""
    proc = spawn(RAW_FLOCK, lock_path)
    children.append(proc)
    with pytest.raises(RollbackError) as err:
        StoreLock(lock_path, owner="me").acquire()
    assert "unknown holder" in err.value.msg
    # The child really holds it at the kernel level.
    fd = os.open(lock_path, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
