"""The fault-injection harness: real module processes, a whole-tree fingerprint of the host, and the checks every
fault case shares (nothing outside the store changed; the message is clear and names the value; no secret leaked).

A module runs the way Ansible runs it on a host: `python plugins/modules/<name>.py <args.json>` in its own process,
with the collection importable. That is a real process a test can SIGKILL or SIGTERM at a chosen moment.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COLLECTIONS = os.path.join(ROOT, ".collections")
MODULES = os.path.join(ROOT, "plugins", "modules")

# What no user should ever read from this collection: a bug's wording, or a Python traceback.
UNCLEAR = ("unexpected error", "Traceback (most recent call last)", "NullResource")


@dataclass
class ModuleRun:
    rc: int
    result: dict
    stdout: str
    stderr: str

    @property
    def failed(self):
        return bool(self.result.get("failed"))

    @property
    def msg(self):
        return str(self.result.get("msg", ""))

    @property
    def everything(self):
        """All the text this run let out: result, stdout, stderr."""
        return json.dumps(self.result, default=str) + self.stdout + self.stderr


def _args_file(directory, name, args, check, diff):
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    payload.setdefault("_ansible_tmpdir", directory)
    payload.setdefault("_ansible_remote_tmp", directory)
    path = os.path.join(directory, "%s-args.json" % name)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, stream)
    return path


def module_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = COLLECTIONS + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def start_module(name, args, check=False, diff=False, env=None, wrapper=()):
    """A module process running in the background. `wrapper` is an argv the module's command line is appended to
    (for example ["unshare", "--uts", ...] to run it in namespaces of its own)."""
    directory = tempfile.mkdtemp(prefix="fleetops-fault-")
    path = _args_file(directory, name, args, check, diff)
    proc = subprocess.Popen(list(wrapper) + [sys.executable, os.path.join(MODULES, name + ".py"), path],
                            env=module_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc


def finish(proc, timeout=300):
    stdout, stderr = proc.communicate(timeout=timeout)
    try:
        result = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    except ValueError:
        result = {"failed": True, "msg": "module printed no JSON", "unparsed": stdout}
    if result.get("warnings"):
        # ansible-core 2.19 prints structured warnings from a module; the controller shows their message.
        result["warnings"] = [w.get("event", {}).get("msg", w) if isinstance(w, dict) else w
                              for w in result["warnings"]]
    return ModuleRun(proc.returncode, result, stdout, stderr)


def run_module(name, args, check=False, diff=False, env=None, timeout=300, wrapper=()):
    """Run one module to the end and return its result."""
    return finish(start_module(name, args, check=check, diff=diff, env=env, wrapper=wrapper), timeout=timeout)


def wait_for(predicate, timeout=60.0, what="the condition"):
    """Poll until predicate() is true, with a deadline (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.02)


def kill(proc, sig=signal.SIGKILL, group=False):
    """Send a signal to the module process (or, with group, to it and every child it started) and wait for it."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    return finish(proc, timeout=120)


@contextlib.contextmanager
def tmpfs(path, size):
    """A real tmpfs of `size` (mount's syntax: 2m, 640m) mounted at path for the block; unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def remount(path, mode):
    """Remount a tmpfs made by tmpfs() read-only ("ro") or read-write ("rw")."""
    subprocess.run(["mount", "-o", "remount,%s" % mode, path], check=True)


def free_bytes(path):
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


class Blocker:
    """A validate command that blocks the first time it runs, so a test can kill a module at that exact moment:
    it writes a marker, then waits on a FIFO. Later runs pass at once. `release()` lets a blocked one go."""

    SCRIPT = (
        "import os, sys\n"
        "mark, fifo = sys.argv[1], sys.argv[2]\n"
        "if os.path.exists(mark):\n"
        "    sys.exit(0)\n"
        "open(mark, 'w').close()\n"
        "os.read(os.open(fifo, os.O_RDONLY), 1)\n"
    )

    def __init__(self, directory):
        self.dir = str(directory)
        self.mark = os.path.join(self.dir, "blocked")
        self.fifo = os.path.join(self.dir, "go")
        self.script = os.path.join(self.dir, "blocker.py")
        with open(self.script, "w", encoding="utf-8") as stream:
            stream.write(self.SCRIPT)
        os.mkfifo(self.fifo)

    @property
    def command(self):
        return "%s %s %s %s %%s" % (sys.executable, self.script, self.mark, self.fifo)

    def blocked(self):
        return os.path.exists(self.mark)

    def release(self):
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # nobody is waiting
        os.write(fd, b"x")
        os.close(fd)


def tree_state(root, exclude=()):
    """A fingerprint of every entry under root: {rel: (type, mode, uid, gid, sha256 / link target / rdev)}.
    Paths in `exclude` (absolute), and everything under them, are left out: the store is allowed to change."""
    out = {}
    excluded = {os.path.normpath(p) for p in exclude}
    if not os.path.lexists(root):
        return out
    stack = [root]
    while stack:
        path = stack.pop()
        if path in excluded:
            continue
        st = os.lstat(path)
        rel = os.path.relpath(path, root)
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as stream:
                body = hashlib.sha256(stream.read()).hexdigest()
        elif stat.S_ISDIR(st.st_mode):
            body = None
            stack.extend(os.path.join(path, name) for name in os.listdir(path))
        else:
            body = st.st_rdev
        out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def changed_entries(before, after):
    """What differs between two tree_state() fingerprints, readable in an assertion message."""
    return sorted(set(before.items()) ^ set(after.items()))


def assert_clear_failure(run, *mentions, secrets=()):
    """The run failed with a message a person can act on: it names each of `mentions`, it is not a bug's wording
    or a traceback, and no secret appears anywhere in what the run printed."""
    assert run.failed, "expected a failure, got %s" % json.dumps(run.result, default=str)[:2000]
    for bad in UNCLEAR:
        assert bad not in run.everything, "%r reached the user: %s" % (bad, run.msg)
    for needle in mentions:
        assert str(needle) in run.msg, "the message does not name %r: %s" % (needle, run.msg)
    assert_no_secret(run, secrets)


def assert_no_secret(run, secrets=()):
    for secret in secrets:
        assert secret not in run.everything, "secret %r leaked: %s" % (secret, run.everything[:3000])


# Every fault case carries `@pytest.mark.fault("<kind>")` (one kind: "sigkill-during-config-staging",
# "store-fs-full-during-capture", ...) and every bad-input case `@pytest.mark.bad_input("<module>")`;
# tests/faults/test_catalogue.py counts them against the floor the suite promises.
