#!/usr/bin/env python
"""Start, stop, restart or query the sample app of one host root.

    appctl.py {start|stop|restart|status} --root HOST_ROOT [--port PORT]

`start` runs <root>/srv/app/current/app.py with this interpreter as a detached daemon (new
session, stdin from /dev/null, stdout and stderr appended to <root>/log/app.log, pid in
<root>/run/app.pid) and returns at once: it does not wait for health. Exit codes:

  start    0 started or already running; 1 cannot start (no release, port busy, ...)
  stop     0 stopped or not running; 1 the process would not die
  restart  0 restarted; 1 as for stop or start
  status   0 running; 3 stopped (LSB)
  any      2 bad usage
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sample_app.deploy import paths  # noqa: E402  pylint: disable=wrong-import-position

STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0
POLL = 0.02

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3


class AppctlError(Exception):
    """A failure with a one-line message for the operator."""


def _process_state(pid):
    """'running', 'zombie' or 'gone' for a pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            stat = stream.read()
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
    except OSError:
        # No /proc: fall back to signal 0.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            pass
        return "running"
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return "zombie" if state in (b"Z", b"X") else "running"


def _reap(pid):
    """Collect our own exited child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid):
    state = _process_state(pid)
    if state == "zombie":
        _reap(pid)
        return False
    return state == "running"


def _is_our_app(pid, root):
    """The pid runs app.py for this host root (guards against a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            argv = stream.read().split(b"\0")
    except OSError:
        return alive(pid)
    root_b = os.fsencode(root)
    has_app = any(arg.endswith(b"app.py") for arg in argv)
    has_root = any(argv[i] == b"--root" and i + 1 < len(argv) and argv[i + 1] == root_b for i in range(len(argv)))
    return has_app and has_root


def read_pid(root):
    """(pid or None, stale: bool). A stale pidfile names a dead or foreign process."""
    pidfile = paths(root)["pidfile"]
    try:
        with open(pidfile, encoding="ascii") as stream:
            pid = int(stream.read().strip() or "0")
    except FileNotFoundError:
        return None, False
    except (OSError, ValueError):
        return None, True
    if pid > 0 and alive(pid) and _is_our_app(pid, paths(root)["root"]):
        return pid, False
    return None, True


def _remove_pidfile(root):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths(root)["pidfile"])


def _write_pidfile(root, pid):
    pidfile = paths(root)["pidfile"]
    tmp = f"{pidfile}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as stream:
        stream.write(f"{pid}\n")
    os.replace(tmp, pidfile)


@contextlib.contextmanager
def _locked(root):
    """Serialise appctl runs on one host root."""
    run = paths(root)["run"]
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "appctl.lock"), "a", encoding="ascii") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def port_free(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _start(root, port, python):
    p = paths(root)
    pid, stale = read_pid(root)
    if pid:
        return f"already running (pid {pid})"
    if stale:
        _remove_pidfile(root)
    app = os.path.join(p["current"], "app.py")
    if not os.path.isfile(app):
        raise AppctlError(f"no release deployed: {app} does not exist (run deploy.py first)")
    if port is None:
        raise AppctlError("--port is required to start")
    if not port_free(port):
        raise AppctlError(f"port 127.0.0.1:{port} is already in use")
    os.makedirs(p["log"], exist_ok=True)
    with open(p["logfile"], "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [python, app, "--root", p["root"], "--port", str(port)],
            stdin=devnull, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
            start_new_session=True, cwd="/")
    _write_pidfile(root, proc.pid)
    # The daemon is meant to outlive this Popen object: mark it settled so it neither warns nor is
    # reaped behind our back (alive() reaps it if it exits while we still run).
    proc.returncode = 0
    return f"started (pid {proc.pid}, port {port})"


def _stop(root, timeout):
    pid, stale = read_pid(root)
    if not pid:
        _remove_pidfile(root)
        return "not running (stale pidfile removed)" if stale else "not running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        _remove_pidfile(root)
        return f"stopped (pid {pid})"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if _wait_gone(pid, KILL_TIMEOUT):
        _remove_pidfile(root)
        return f"killed (pid {pid} ignored SIGTERM for {timeout:g} s)"
    raise AppctlError(f"pid {pid} did not exit after SIGKILL")


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if not alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def start(root, port, python=None):
    """Start the app of this host root; returns a one-line message, raises AppctlError."""
    with _locked(root):
        return _start(root, port, python or sys.executable)


def stop(root, timeout=STOP_TIMEOUT):
    """Stop the app (SIGTERM, then SIGKILL after timeout); returns a one-line message."""
    with _locked(root):
        return _stop(root, timeout)


def restart(root, port, python=None, timeout=STOP_TIMEOUT):
    with _locked(root):
        stopped = _stop(root, timeout)
        started = _start(root, port, python or sys.executable)
    return f"{stopped}; {started}"


def status(root):
    """(running: bool, one-line message)."""
    pid, stale = read_pid(root)
    if pid:
        return True, f"running (pid {pid})"
    return False, "stopped (stale pidfile)" if stale else "stopped"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Control the sample app of one host root.")
    parser.add_argument("action", choices=("start", "stop", "restart", "status"))
    parser.add_argument("--root", required=True, help="host root")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (start and restart)")
    parser.add_argument("--timeout", type=float, default=STOP_TIMEOUT,
                        help="seconds to wait after SIGTERM before SIGKILL (default %(default)s)")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        print(f"appctl: host root {root} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.action == "status":
            running, message = status(root)
            print(message)
            return EXIT_OK if running else EXIT_STOPPED
        if args.action in ("start", "restart") and args.port is None:
            print(f"appctl: --port is required for {args.action}", file=sys.stderr)
            return EXIT_USAGE
        if args.action == "start":
            print(start(root, args.port))
        elif args.action == "stop":
            print(stop(root, args.timeout))
        else:
            print(restart(root, args.port, timeout=args.timeout))
    except AppctlError as exc:
        print(f"appctl {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:
        if exc.errno == errno.EACCES:
            print(f"appctl {args.action}: permission denied: {exc.filename}", file=sys.stderr)
        else:
            print(f"appctl {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
