# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a program as a child of the module: the one place that starts one (the health checks' `command` type
and the PostgreSQL tools keep their own, for their threads and their passfiles).

A child never outlives the module and never waits on a person:
- it gets an argv list, never a shell, and /dev/null as stdin;
- it runs in its own process group, so that stopping it (at its deadline, or when SIGTERM raises Terminated in the
  module) stops what it started too: SIGTERM to the group, then SIGKILL once the grace is over;
- it gets SIGTERM from the kernel when the module dies, even by SIGKILL (PR_SET_PDEATHSIG), so that it can end
  its own children: a killed module leaves no apt-get or pip running for nobody;
- its output is kept up to a size cap, raw for the caller to parse; a message shows it redacted whole, then cut.

Every failure reads the same way (Result.failure): "<command> exited <rc>: <redacted tail>", "could not run
<command>: <reason>", "<command> gave no answer within <N> s"."""

from __future__ import annotations

import errno
import os
import select
import selectors
import shlex
import signal
import subprocess
import time

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_output, redact_text

# What a message shows of a command's output: its last characters.
OUTPUT_LIMIT = 500
# What is kept of each stream; the rest is read and dropped (a runaway command cannot fill the module's memory).
CAPTURE_LIMIT = 16 * 1024 * 1024
# How long a stopped command has to end on SIGTERM before its group gets SIGKILL.
STOP_GRACE = 5.0
# How long output is still read once the command itself has exited while something it started (a daemon that kept
# its stdout) holds the pipe: that process is left running, its output is not waited for.
LINGER = 2.0
# Without a pidfd (Python 3.8, old kernels) the exit of the command is noticed at this interval when its pipes
# stay open; output still wakes the loop at once.
TICK = 0.5
READ_SIZE = 65536
# The most a pipe holds (Linux: /proc/sys/fs/pipe-max-size).
PIPE_MAX = 1024 * 1024

# The C locale for a program whose output is parsed: untranslated messages, UTF-8 text (LANGUAGE would translate
# gettext messages even under LC_ALL).
PARSED_LOCALE = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
PARSED_UNSET = ("LANGUAGE",)

_PR_SET_PDEATHSIG = 1


def show_command(command):
    """A command (a string or an argv list) as a message may show it: secrets in its words redacted."""
    if isinstance(command, (list, tuple)):
        command = " ".join(shlex.quote(str(part)) for part in command)
    return redact_text(str(command))


def command_output(stdout=None, stderr=None, limit=OUTPUT_LIMIT):
    """What a command printed, fit for a message: stdout then stderr (so the tail, which a limit keeps, holds the
    error), each redacted whole before the cut."""
    parts = [redact_output(stdout), redact_output(stderr)]
    text = "\n".join(part for part in parts if part)
    if limit is not None and len(text) > limit:
        text = "..." + text[-limit:]
    return text


def child_environment(base=None, set_env=None, unset_env=()):
    """The environment of a child: `base` (the module's own by default) without the names in `unset_env` (a name
    ending in * is a prefix: PIP_*), plus `set_env`."""
    env = dict(os.environ if base is None else base)
    for name in unset_env:
        if name.endswith("*"):
            for key in [key for key in env if key.startswith(name[:-1])]:
                del env[key]
        else:
            env.pop(name, None)
    env.update(set_env or {})
    return env


def _seconds(value):
    return "%d" % value if float(value).is_integer() else "%g" % value


class Result:
    """How a command ended. `rc` is None when it did not end by itself: it could not be started (`error` says why)
    or gave no answer within `timeout` (`timed_out`). `stdout` and `stderr` are the raw text (for parsing; never
    for a message as they are: see output() and failure())."""

    def __init__(self, argv, timeout):
        self.argv = list(argv)
        self.timeout = timeout
        self.rc = None
        self.stdout = ""
        self.stderr = ""
        self.seconds = 0.0
        self.timed_out = False
        self.error = None
        self.truncated = False

    @property
    def ok(self):
        return self.rc == 0

    def shown(self, words=None):
        """The command as a message may show it; `words`: only its first words (the rest may be long or private)."""
        return show_command(self.argv[:words] if words else self.argv)

    def output(self, limit=OUTPUT_LIMIT):
        """What it printed, redacted whole and then cut to the last `limit` characters."""
        text = command_output(self.stdout, self.stderr, limit)
        if self.truncated:
            text += " (more output was not kept)"
        return text

    def failure(self, words=None, tail=None, limit=OUTPUT_LIMIT):
        """Why the command failed, as a message shows it (None when it exited 0). `tail` replaces its redacted
        output with what the caller picked from it (redacted by the caller)."""
        command = self.shown(words)
        if self.error is not None:
            return "could not run %s: %s" % (command, self.error)
        if self.timed_out:
            return "%s gave no answer within %s s" % (command, _seconds(self.timeout))
        if self.rc == 0:
            return None
        return "%s exited %s%s: %s" % (command, self.rc, _killed_by(self.rc),
                                       (self.output(limit) if tail is None else tail) or "no output")


def _killed_by(rc):
    try:
        return " (killed by %s)" % signal.Signals(-rc).name if rc < 0 else ""
    except ValueError:
        return ""


def _prctl():
    """libc's prctl, resolved before the fork (the child may only call it), or None off Linux."""
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):
        return None


def child_setup():
    """The preexec_fn of every child of the module (the PostgreSQL tools' too). Call it in the module, right before
    the fork: what the child runs is resolved here."""
    parent, prctl = os.getpid(), _prctl()

    def setup():
        # The module ignores SIGTERM once a first one arrived, and a child inherits that: it must still obey it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prctl is not None:
            # SIGTERM, not SIGKILL: the child can then end what it started itself.
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the module died before prctl took effect
            os._exit(1)  # pylint: disable=protected-access
    return setup


def _reason(err, argv, cwd):
    """An OSError from starting a command, in words: not str(err), which repeats the argv (a secret with it)."""
    text = err.strerror or type(err).__name__
    if cwd and err.filename == cwd:
        text += " (the working directory %s)" % cwd
    if err.errno in (errno.EACCES, errno.EPERM):
        text += ": run with become (root) or fix the owner and mode of %s" % (cwd if err.filename == cwd else argv[0])
    return text


class _Stream:
    """One output pipe: the first `limit` bytes kept, the rest read and dropped."""

    def __init__(self, pipe, limit):
        self.pipe = pipe
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def take(self, chunk):
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self):
        return bytes(self.data).decode("utf-8", "replace")


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass  # the group is gone already


def _wait_exit(proc, pidfd, seconds):
    """Wait up to `seconds` for the command itself to end; whether it did."""
    if proc.poll() is not None:
        return True
    if pidfd is not None:
        select.select([pidfd], [], [], max(0.0, seconds))
        return proc.poll() is not None
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _stop(proc, pidfd, grace):
    """End the command and its process group: SIGTERM, then SIGKILL to whatever is left after the grace."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        _wait_exit(proc, pidfd, grace)
    # Also when the command ended on SIGTERM: what it started may ignore SIGTERM.
    _signal_group(proc.pid, signal.SIGKILL)
    _wait_exit(proc, pidfd, grace)


def _drain(streams):
    """Read what is left in the pipes without waiting (after a stop, every writer in the group is gone), at most
    what a pipe can hold: something outside the group may still be writing."""
    for stream in streams:
        fd = stream.pipe.fileno()
        os.set_blocking(fd, False)
        try:
            for _chunk in range(PIPE_MAX // READ_SIZE):
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    break
                stream.take(chunk)
        except OSError:
            pass


def _pidfd(pid):
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


def run(argv, timeout, cwd=None, env=None, set_env=None, unset_env=(), parsed=False, capture_limit=CAPTURE_LIMIT,
        stop_grace=STOP_GRACE):
    """Run `argv` (a list; never through a shell) and return its Result once it ended or was stopped.

    `timeout`: seconds until it is stopped (rc None, timed_out). `env`: the base environment (the module's own by
    default), less `unset_env`, plus `set_env`; `parsed`: the caller parses the output, so it runs in the C locale.
    A BaseException while it runs (Terminated, raised by SIGTERM to the module) stops it and is raised again."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise TypeError("run() takes a non-empty argv list, not %r" % (argv,))
    argv = [str(part) for part in argv]
    if parsed:
        set_env = dict(PARSED_LOCALE, **(set_env or {}))
        unset_env = tuple(unset_env) + PARSED_UNSET
    result = Result(argv, timeout)
    begun = time.monotonic()
    try:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with,subprocess-popen-preexec-fn
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
            env=child_environment(env, set_env, unset_env), start_new_session=True,
            preexec_fn=child_setup())
    except OSError as err:
        result.error = _reason(err, argv, cwd)
        result.seconds = time.monotonic() - begun
        return result
    except subprocess.SubprocessError as err:  # the set-up in the child failed
        result.error = str(err)
        result.seconds = time.monotonic() - begun
        return result
    streams = [_Stream(proc.stdout, capture_limit), _Stream(proc.stderr, capture_limit)]
    pidfd = _pidfd(proc.pid)
    selector = selectors.DefaultSelector()
    try:
        try:
            result.timed_out = _collect(proc, pidfd, selector, streams, begun + timeout)
        except BaseException:
            _stop(proc, pidfd, stop_grace)
            raise
        if result.timed_out:
            _stop(proc, pidfd, stop_grace)
            _drain(streams)
        else:
            result.rc = proc.returncode
    finally:
        selector.close()
        for stream in streams:
            stream.pipe.close()
        if pidfd is not None:
            os.close(pidfd)
    result.stdout, result.stderr = streams[0].text(), streams[1].text()
    result.truncated = any(stream.dropped for stream in streams)
    result.seconds = time.monotonic() - begun
    return result


def _collect(proc, pidfd, selector, streams, deadline):
    """Read the output until the command exited and its pipes closed; whether the deadline came first. Once it
    exited, pipes that something it started keeps open are read for LINGER seconds more, then left."""
    for stream in streams:
        selector.register(stream.pipe, selectors.EVENT_READ, stream)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ, None)
    until, lingering = deadline, False
    while True:
        exited = proc.poll() is not None
        if exited and not lingering:
            until, lingering = min(deadline, time.monotonic() + LINGER), True
        open_pipes = [key for key in selector.get_map().values() if key.data is not None]
        if exited and not open_pipes:
            return False
        left = until - time.monotonic()
        if left <= 0:
            return not exited
        events = selector.select(left if pidfd is not None else min(left, TICK))
        for key, _mask in events:
            if key.data is None:
                selector.unregister(key.fileobj)  # the pidfd: the command exited (poll() above reaps it)
                continue
            chunk = os.read(key.fd, READ_SIZE)
            if chunk:
                key.data.take(chunk)
            else:
                selector.unregister(key.fileobj)
