# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store lock: one capture or rollback at a time per store.

Mutual exclusion is a kernel flock on the `lock` file, so a holder that dies releases it by itself.
The file also records who holds it (owner, pid, host, start time) so a refused run can say who is in
the way. A record left behind by a holder that died without releasing is a *stale* lock: it is
detected and reported.

The kernel's lock is trusted over the record: when /proc/locks shows a live process on this machine holding the
flock, the store is locked whatever the record says (a recorded pid may be dead while a child that inherited the
open file still holds it). `force_unlock` replaces the lock file only when the kernel lock is held by nobody this
machine can see and the record names a holder on this host that is gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import threading
import time
from datetime import datetime, timezone

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import describe_path

POLL_SECONDS = 0.05


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def _proc_start(pid):
    """The process start time in clock ticks: tells a live holder from a reused pid."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as stream:
            return int(stream.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def kernel_holders(path):
    """Pids that /proc/locks says hold a lock on this file (its device and inode), alive ones only."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return []
    wanted_inode = str(st.st_ino)
    wanted_dev = "%02x:%02x" % (os.major(st.st_dev), os.minor(st.st_dev))
    exact, by_inode = [], []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF" (blocked waiters carry "->" and are not holders)
        if len(fields) < 6 or "->" in fields[1]:
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].rsplit(":", 2)
        except ValueError:
            continue
        if inode != wanted_inode or pid <= 0 or not pid_alive(pid):
            continue
        by_inode.append(pid)
        if "%s:%s" % (major, minor) == wanted_dev:
            exact.append(pid)
    return sorted(set(exact or by_inode))


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as stream:
            return " ".join(stream.read().decode("utf-8", "replace").split())[:120]
    except OSError:
        return "?"


class StoreLock:
    def __init__(self, path, owner="", timeout=0.0, force=False):
        self.path = path
        self.owner = owner or "unknown"
        self.timeout = max(0.0, float(timeout or 0.0))
        self.force = force
        self.fd = None
        self.stale = None   # the record of a dead holder this run recovered from
        self.broken = None  # the record of a holder whose lock force_unlock replaced

    def describe(self, info):
        if not info:
            return "an unknown holder"
        return "%s (pid %s on %s, since %s)" % (info.get("owner"), info.get("pid"), info.get("host"), info.get("started_at"))

    def read_holder(self):
        try:
            with open(self.path, encoding="utf-8") as stream:
                text = stream.read().strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def holder_is_gone(self, info):
        if not info:
            return False  # the kernel lock is held by someone who has not written their record yet
        if info.get("host") != socket.gethostname():
            return False  # cannot see another host's processes: not provably gone
        pid = info.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            return True
        return info.get("proc_start") is not None and _proc_start(pid) != info.get("proc_start")

    def _try_once(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as err:
            if err.errno in (errno.EISDIR, errno.ELOOP, errno.ENXIO, errno.ENOTDIR):
                raise RollbackError("the store's lock file %s is %s, not a lock file; nothing was changed; move it "
                                    "aside by hand once you know no run is using this store"
                                    % (self.path, describe_path(self.path)))
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RollbackError("the store's lock file %s is not a regular file; nothing was changed; move it aside "
                                "by hand once you know no run is using this store" % self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        # The file may have been replaced (force_unlock elsewhere) between open and flock.
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        self.fd = fd
        return True

    def acquire(self):
        deadline = time.monotonic() + self.timeout
        waiter = threading.Event()
        while True:
            got = self._try_once()
            if got:
                break
            if got is None:
                continue
            holder = self.read_holder()
            live = kernel_holders(self.path)
            if self.force and not live and self.holder_is_gone(holder):
                self.broken = holder
                os.unlink(self.path)
                continue
            if time.monotonic() >= deadline:
                if live:
                    # The record may name a dead pid while a live process (a child that inherited the file, or
                    # a run that has not written its record yet) holds the flock: the kernel is right.
                    hint = ("it is alive: the kernel shows it held by %s; wait for it to finish or stop it%s"
                            % (", ".join("pid %d (%s)" % (pid, _cmdline(pid)) for pid in live),
                               "; force_unlock never breaks a lock a live process holds" if self.force else ""))
                elif self.holder_is_gone(holder):
                    hint = "its process is gone: rerun with force_unlock=true"
                else:
                    hint = "it is alive: wait for it to finish or stop it"
                raise RollbackError(
                    "the restore point store %s is locked by %s; %s"
                    % (os.path.dirname(self.path), self.describe(holder), hint),
                    lock=holder or {}, lock_holders=live)
            waiter.wait(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        previous = self.read_holder()
        if previous:
            # A record with the kernel lock free means its holder died without releasing.
            self.stale = previous
        record = {
            "owner": self.owner,
            "pid": os.getpid(),
            "proc_start": _proc_start(os.getpid()),
            "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(record, sort_keys=True).encode("utf-8"), 0)
        os.fsync(self.fd)
        return self

    def release(self):
        if self.fd is None:
            return
        try:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass  # a store gone read-only or full: the record stays, and the next run finds it stale
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
