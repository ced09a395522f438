"""Debian packages the test suite, the benchmarks and the molecule images need, installed on demand.

Every caller on the machine (pytest-xdist workers, `make molecule`, benchmarks) goes through one file lock,
so two of them never run apt-get at once; apt's own locks (the lists lock is not covered by
DPkg::Lock::Timeout) are also polled with a deadline. Stdlib only: it runs before the venv has anything.

    from tools import system_packages
    system_packages.apt_install("postgresql", "postgresql-contrib")
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import time

APT_LOCK = os.path.join(tempfile.gettempdir(), "fleetops-apt.lock")
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
APT_OPTS = ["-o", "DPkg::Lock::Timeout=600", "-q", "-y"]
LOCK_DEADLINE = 600.0


class AptError(RuntimeError):
    """apt-get failed; the message holds the command and the tail of its output."""


@contextlib.contextmanager
def file_lock(path):
    """An exclusive flock on path (created when missing) for the duration of the block."""
    with open(path, "a+", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apt_get(*argv, deadline=LOCK_DEADLINE):
    """apt-get argv, retried while another apt holds a lock, until the deadline; returns the process."""
    give_up = time.monotonic() + deadline
    delay = 0.2
    while True:
        proc = subprocess.run(["apt-get"] + list(argv), env=APT_ENV, capture_output=True, text=True, check=False)
        if proc.returncode == 0 or "Could not get lock" not in proc.stderr or time.monotonic() > give_up:
            return proc
        time.sleep(delay)  # poll the other apt's lock; the deadline bounds the wait
        delay = min(delay * 2, 2.0)


def apt_install(*packages):
    """apt-get install --no-install-recommends, under the machine-wide lock; the package lists are refreshed
    once when the install fails (a fresh machine has none). Raises AptError naming the packages."""
    argv = ["install", "--no-install-recommends"] + APT_OPTS + list(packages)
    with file_lock(APT_LOCK):
        proc = apt_get(*argv)
        if proc.returncode != 0:
            apt_get("update", "-q")
            proc = apt_get(*argv)
    if proc.returncode != 0:
        raise AptError("apt-get install %s failed (exit %d):\n%s\n%s"
                       % (" ".join(packages), proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc
