"""module_utils/_process.py with real child processes: deadlines, process groups, SIGTERM and death of the parent,
the output cap and redaction before every cut, the environment, and the failure messages."""

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._process import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(ROOT, ".collections")
SECRET = "s3cr3t-Value-8842"
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQDKq7Zh1Q2x8w\n"
       "-----END PRIVATE KEY-----\n")
PEM_BODY = ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "BKcwggSjAgEAAoIBAQDKq7Zh1Q2x8w")


def leaks(shown, secrets=(SECRET,) + PEM_BODY, width=6):
    """Whether any 6 characters in a row of a secret show."""
    return any(secret[i:i + width] in shown for secret in secrets for i in range(len(secret) - width + 1))


def alive(pid):
    """Whether a process exists and is not a zombie (an orphan's zombie waits for a reaper that may be slow)."""
    try:
        with open("/proc/%d/stat" % pid) as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within %d s: %s" % (timeout, what))
        time.sleep(0.05)


def assert_all_gone(pids):
    # The kernel delivers the kill at once; an orphan is reaped whenever its new parent gets to it.
    wait_until(lambda: not any(alive(pid) for pid in pids), "processes %s ended" % pids)


def print_argv(text, stream="stdout"):
    """A command that prints `text` exactly (to stdout or stderr) and exits 0."""
    return [sys.executable, "-c", "import sys; sys.%s.write(sys.argv[1])" % stream, text]


# ------------------------------------------------------------------------------------------------ results

def test_exit_status_and_raw_output():
    done = run(["sh", "-c", "echo out; echo DB_PASSWORD=%s >&2; exit 3" % SECRET], timeout=60)
    assert (done.rc, done.ok, done.timed_out, done.error) == (3, False, False, None)
    # Raw, for a caller that parses it; never shown as it is.
    assert done.stdout == "out\n" and done.stderr == "DB_PASSWORD=%s\n" % SECRET
    assert done.seconds >= 0
    message = done.failure()
    assert message.startswith("sh -c ") and " exited 3: out\nDB_PASSWORD=********" in message
    assert SECRET not in message, "neither the command nor its output may show the secret"
    assert done.failure(words=1) == "sh exited 3: out\nDB_PASSWORD=********"
    assert done.failure(words=1, tail="picked lines") == "sh exited 3: picked lines"


def test_success_and_silence():
    done = run(["true"], timeout=60)
    assert done.ok and done.failure() is None and done.output() == ""
    assert run(["false"], timeout=60).failure() == "false exited 1: no output"
    assert run(["sh", "-c", "kill -9 $$"], timeout=60).failure(words=1) == "sh exited -9 (killed by SIGKILL): no output"


def test_stdin_is_closed():
    # cat reads stdin to its end: /dev/null ends at once, a terminal or a pipe from the module would not.
    done = run(["cat"], timeout=60)
    assert done.rc == 0 and done.stdout == ""


def test_an_argv_list_only():
    for bad in ("echo hi", b"echo", []):
        with pytest.raises(TypeError):
            run(bad, timeout=60)
    # Never a shell: the words reach the program as they are.
    assert run(["echo", "$HOME; rm -rf /", "*"], timeout=60).stdout == "$HOME; rm -rf / *\n"


def test_a_missing_program_or_directory_says_so_without_the_arguments():
    done = run(["/nonexistent/fleetops-prog", "--password", SECRET], timeout=60)
    assert done.rc is None and not done.ok and done.timed_out is False
    assert done.failure() == "could not run /nonexistent/fleetops-prog --password ********: No such file or directory"
    assert run(["fleetops-no-such-program"], timeout=60).failure() == \
        "could not run fleetops-no-such-program: No such file or directory"
    assert run(["true"], timeout=60, cwd="/nonexistent/dir").failure() == \
        "could not run true: No such file or directory (the working directory /nonexistent/dir)"


def test_cwd():
    assert run(["pwd"], timeout=60, cwd="/tmp").stdout == "/tmp\n"


# ------------------------------------------------------------------------------------------------ deadline

def test_the_deadline_kills_the_child_and_its_grandchildren():
    # The grandchildren: one ends on SIGTERM, one ignores it and needs the SIGKILL after the grace.
    script = "sleep 300 & echo $!; (trap '' TERM; exec sleep 300) & echo $!; echo $$; wait"
    done = run(["sh", "-c", script], timeout=1, stop_grace=0.5)
    assert done.rc is None and done.timed_out and not done.ok
    assert done.failure() == "sh -c %s gave no answer within 1 s" % shlex.quote(script)
    assert done.failure(words=1) == "sh gave no answer within 1 s"
    pids = [int(word) for word in done.stdout.split()]
    assert len(pids) == 3, done.stdout
    assert_all_gone(pids)
    assert done.seconds < 120, "stopping took longer than the grace allows"


def test_a_fractional_deadline_is_shown_as_given():
    done = run(["sleep", "300"], timeout=0.5, stop_grace=0.5)
    assert done.failure() == "sleep 300 gave no answer within 0.5 s"


def test_output_written_before_the_deadline_is_kept():
    done = run(["sh", "-c", "echo waiting for the lock; exec sleep 300"], timeout=1, stop_grace=0.5)
    assert done.timed_out and done.stdout == "waiting for the lock\n"


def test_a_daemon_that_keeps_the_pipe_does_not_hold_the_command():
    """The command exits; something it started keeps stdout open: the command's exit status is the answer, and
    that process is left running (a restart command that starts a daemon meant it)."""
    done = run(["sh", "-c", "sleep 300 & echo $!; exit 4"], timeout=120)
    daemon = int(done.stdout.split()[0])
    try:
        assert (done.rc, done.timed_out) == (4, False)
        assert alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ output

def test_output_beyond_the_cap_is_read_and_dropped():
    # 8 MB through a 1000-byte cap: the child is never blocked on a full pipe, and ends by itself.
    done = run(["head", "-c", "8000000", "/dev/zero"], timeout=120, capture_limit=1000)
    assert done.rc == 0 and len(done.stdout) == 1000 and done.truncated
    assert "was not kept" in done.output()
    small = run(["echo", "hi"], timeout=60, capture_limit=1000)
    assert not small.truncated and "not kept" not in small.output()


def test_a_secret_straddling_the_message_cut_never_leaks():
    """Every cut position through a key=value pair and through a private key: the output is redacted whole
    first, so no cut leaves a value without the key that marks it."""
    text = "x" * 40 + "\nDB_PASSWORD=" + SECRET + "\n" + PEM + "tail line\n"
    done = run(print_argv(text), timeout=60)
    assert done.stdout == text
    for limit in range(1, len(text) + 2):
        for shown in (done.output(limit), done.failure(limit=limit) or ""):
            assert not leaks(shown), (limit, shown)
    assert done.output(None).endswith("tail line")


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_secret_straddling_the_capture_cap_never_leaks(stream):
    """The cap keeps the head of a stream: a value cut short keeps its key, a private key cut short its BEGIN
    line, so what is kept is still masked."""
    head = "x\nDB_PASSWORD="
    text = head + SECRET + "\n" + PEM
    for cap in list(range(len(head) - 3, len(head) + len(SECRET) + 2)) + \
            [text.index(body) + 5 for body in PEM_BODY]:
        done = run(print_argv(text, stream), timeout=60, capture_limit=cap)
        assert done.truncated
        shown = done.output(None)
        assert not leaks(shown, width=4), (cap, shown)


def test_utf8_output_cut_inside_a_character_is_replaced_not_an_error():
    done = run(print_argv("\u00e9" * 10), timeout=60, capture_limit=5)
    assert done.stdout == "\u00e9\u00e9\ufffd"


# ------------------------------------------------------------------------------------------------ environment

def environment_of(**kwargs):
    return json.loads(run([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                          timeout=60, **kwargs).stdout)


def test_environment_additions_and_removals():
    base = {"PATH": os.environ["PATH"], "PIP_INDEX_URL": "http://x", "PIP_NO_CACHE_DIR": "1", "PIPX_HOME": "/p",
            "PYTHONPATH": "/elsewhere", "KEEP": "kept", "LANGUAGE": "de"}
    env = environment_of(env=base, set_env={"ADDED": "1", "KEEP": "overridden"}, unset_env=("PIP_*", "PYTHONPATH"))
    assert env["ADDED"] == "1" and env["KEEP"] == "overridden" and env["PIPX_HOME"] == "/p"
    assert not any(name.startswith("PIP_") for name in env) and "PYTHONPATH" not in env
    assert env["LANGUAGE"] == "de" and "LC_ALL" not in env


def test_parsed_output_runs_in_the_c_locale():
    base = {"PATH": os.environ["PATH"], "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "LANGUAGE": "de:en"}
    env = environment_of(env=base, parsed=True, set_env={"DEBIAN_FRONTEND": "noninteractive"})
    assert (env["LC_ALL"], env["LANG"], env["DEBIAN_FRONTEND"]) == ("C.UTF-8", "C.UTF-8", "noninteractive")
    assert "LANGUAGE" not in env


def test_the_module_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("FLEETOPS_PROCESS_PROBE", "inherited")
    assert environment_of()["FLEETOPS_PROCESS_PROBE"] == "inherited"


def test_a_child_obeys_sigterm_though_the_module_ignores_it():
    # After a first SIGTERM the module ignores SIGTERM; a child would inherit that, and then outlive a stop.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        done = run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)"],
                   timeout=60)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert done.stdout.strip() == "True"


def test_the_child_runs_in_its_own_process_group():
    done = run([sys.executable, "-c", "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())"],
               timeout=60)
    assert done.stdout.split() == ["True", "True"]


# ------------------------------------------------------------------------------------------------ the module dies

PARENT = textwrap.dedent("""
    import signal, sys
    sys.path.insert(0, %(collections)r)
    from ansible_collections.fleetops.rollback.plugins.module_utils._common import Terminated
    from ansible_collections.fleetops.rollback.plugins.module_utils._process import run

    def terminate(signum, frame):
        # As ModuleBase does: ignore any further SIGTERM, raise where the run is.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, terminate)
    try:
        done = run(["sh", "-c", sys.argv[1]], timeout=600, stop_grace=2)
        print("ended", done.rc)
    except Terminated:
        print("terminated")
""")


def start_parent(tmp_path, script):
    path = tmp_path / "parent.py"
    path.write_text(PARENT % {"collections": COLLECTIONS})
    return subprocess.Popen([sys.executable, str(path), script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def read_pids(path, count):
    wait_until(lambda: os.path.exists(path), "the child wrote its pids")
    with open(path) as stream:
        pids = [int(word) for word in stream.read().split()]
    assert len(pids) == count, pids
    return pids


def test_sigterm_to_the_module_stops_the_child_and_its_group(tmp_path):
    pidfile = str(tmp_path / "pids")
    # The child (sh) and a grandchild that ignores SIGTERM; the pids are written whole, then the file is renamed.
    script = "(trap '' TERM; exec sleep 300) & echo $$ $! > %s.tmp && mv %s.tmp %s; wait" % ((pidfile,) * 3)
    parent = start_parent(tmp_path, script)
    try:
        pids = read_pids(pidfile, 2)
        parent.send_signal(signal.SIGTERM)
        out, err = parent.communicate(timeout=120)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 0 and out.strip() == "terminated", (out, err)
    assert_all_gone(pids)


def test_a_child_gets_sigterm_when_the_module_is_killed(tmp_path):
    """SIGKILL leaves the module no way to act: the kernel sends the child SIGTERM (PR_SET_PDEATHSIG)."""
    pidfile = str(tmp_path / "pids")
    parent = start_parent(tmp_path, "echo $$ > %s.tmp && mv %s.tmp %s; exec sleep 300" % ((pidfile,) * 3))
    try:
        (child,) = read_pids(pidfile, 1)
        wait_until(lambda: _comm(child) == "sleep", "the child became sleep")
        parent.kill()
        parent.wait(timeout=120)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert_all_gone([child])


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as stream:
            return stream.read().strip()
    except OSError:
        return None
