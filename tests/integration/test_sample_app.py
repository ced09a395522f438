"""The sample application, its deploy script and appctl, as real processes on loopback ports."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sample_app import appctl, releases  # noqa: E402
from sample_app.deploy import current_release, deploy, paths  # noqa: E402

APPCTL = os.path.join(ROOT, "sample_app", "appctl.py")
DEPLOY = os.path.join(ROOT, "sample_app", "deploy.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port, path):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_answer(port, deadline=15.0):
    """Poll /health until the app answers at all (any status); returns (status, json body)."""
    end = time.monotonic() + deadline
    while True:
        try:
            code, body = get(port, "/health")
            return code, json.loads(body)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def ctl(*args):
    return subprocess.run([sys.executable, APPCTL, *args], capture_output=True, text=True, timeout=60, check=False)


def read_pid(root):
    with open(paths(root)["pidfile"], encoding="ascii") as stream:
        return int(stream.read())


@pytest.fixture
def host(tmp_path):
    """A host root with release 1 deployed and a free port; the app is always stopped afterwards."""
    root = str(tmp_path / "host")
    deploy(root, 1)
    port = free_port()
    yield root, port
    appctl.stop(root, timeout=5)


def test_deploy_writes_the_layout(tmp_path):
    root = str(tmp_path / "h")
    result = subprocess.run([sys.executable, DEPLOY, "--root", root, "--release", "1"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    p = paths(root)
    assert os.readlink(p["current"]) == "releases/1"
    with open(os.path.join(p["releases"], "1", "release.json"), encoding="utf-8") as stream:
        assert json.load(stream) == {"version": "1.0.0", "requires": list(releases.get(1).requires)}
    assert stat.S_IMODE(os.stat(p["app_env"]).st_mode) == 0o640
    with open(p["app_env"], encoding="utf-8") as stream:
        text = stream.read()
    assert "SECRET_KEY=" in text and "DB_PASSWORD=" in text and "LOG_LEVEL=info" in text
    assert sorted(os.listdir(p["conf_d"])) == ["10-features.env"]

    deploy(root, 2)
    assert current_release(root) == 2
    assert sorted(os.listdir(p["conf_d"])) == ["10-features.env", "20-tuning.env"]
    with open(p["app_env"], encoding="utf-8") as stream:
        text2 = stream.read()
    assert "LOG_LEVEL=debug" in text2 and "CACHE_URL" not in text2
    assert releases.get(1).config()["SECRET_KEY"] != releases.get(2).config()["SECRET_KEY"]

    # Staging only: current and config stay on release 2.
    result = subprocess.run([sys.executable, DEPLOY, "--root", root, "--release", "3", "--no-switch"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert current_release(root) == 2 and os.path.isdir(os.path.join(p["releases"], "3"))
    # Going back to release 1 removes release 2's extra conf.d file.
    deploy(root, 1)
    assert sorted(os.listdir(p["conf_d"])) == ["10-features.env"]
    assert not [n for n in os.listdir(p["app"]) if n.startswith(".current")]


def test_deploy_rejects_an_unknown_release(tmp_path):
    result = subprocess.run([sys.executable, DEPLOY, "--root", str(tmp_path), "--release", "9"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "unknown release 9" in result.stderr


def test_good_release_then_bad_release(host):
    root, port = host
    started = time.monotonic()
    result = ctl("start", "--root", root, "--port", str(port))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("started (pid ")
    assert time.monotonic() - started < 5, "start must not wait for the app"

    code, body = wait_answer(port)
    assert (code, body) == (200, {"status": "ok", "version": "1.0.0"})
    code, text = get(port, "/version")
    assert code == 200 and json.loads(text) == {"version": "1.0.0", "release": "1"}
    code, text = get(port, "/metrics")
    assert code == 200
    assert 'app_info{version="1.0.0"} 1' in text
    assert 'app_requests_total{code="200",handler="/health"} 1' in text
    assert 'app_requests_total{code="200",handler="/version"} 1' in text

    deploy(root, 2)
    old_pid = read_pid(root)
    result = ctl("restart", "--root", root, "--port", str(port))
    assert result.returncode == 0, result.stderr
    assert read_pid(root) != old_pid
    code, body = wait_answer(port)
    assert code == 503
    assert body["status"] == "fail" and body["reason"] == "missing config key CACHE_URL"
    code, text = get(port, "/version")
    assert json.loads(text) == {"version": "2.0.0", "release": "2"}
    code, text = get(port, "/metrics")
    assert 'app_requests_total{code="503",handler="/health"} 1' in text and 'app_info{version="2.0.0"} 1' in text

    # Secrets of any release never reach a response or the log.
    responses = "".join(get(port, path)[1] for path in ("/health", "/version", "/metrics", "/nope"))
    ctl("stop", "--root", root)
    with open(paths(root)["logfile"], encoding="utf-8") as stream:
        log = stream.read()
    assert "missing config key CACHE_URL" in log and "SECRET_KEY" in log  # key names are fine
    for secret in releases.ALL_SECRET_VALUES:
        assert secret not in log
        assert secret not in responses


def test_bad_workers_value_fails_health(host):
    root, port = host
    with open(os.path.join(paths(root)["conf_d"], "90-workers.env"), "w", encoding="utf-8") as stream:
        stream.write("# operator override\nWORKERS=zero\n")
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    code, body = wait_answer(port)
    assert code == 503 and "WORKERS must be a positive integer" in body["reason"]


def test_release_3_is_healthy(host):
    root, port = host
    deploy(root, 3)
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    assert wait_answer(port) == (200, {"status": "ok", "version": "3.0.0"})


def test_start_is_idempotent_and_stop_status_behave(host):
    root, port = host
    result = ctl("status", "--root", root)
    assert (result.returncode, result.stdout.strip()) == (3, "stopped")
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    pid = read_pid(root)
    again = ctl("start", "--root", root, "--port", str(port))
    assert again.returncode == 0 and again.stdout.strip() == f"already running (pid {pid})"
    result = ctl("status", "--root", root)
    assert (result.returncode, result.stdout.strip()) == (0, f"running (pid {pid})")
    wait_answer(port)

    result = ctl("stop", "--root", root)
    assert result.returncode == 0 and result.stdout.strip() == f"stopped (pid {pid})"
    assert not os.path.exists(paths(root)["pidfile"])
    assert not appctl.alive(pid)
    with pytest.raises(urllib.error.URLError):
        get(port, "/health")
    result = ctl("stop", "--root", root)
    assert (result.returncode, result.stdout.strip()) == (0, "not running")
    assert ctl("status", "--root", root).returncode == 3


def test_stale_pidfile_is_handled(host):
    root, port = host
    # A pid that is certainly dead: a child that already exited and was reaped.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # pylint: disable=consider-using-with
    dead.wait()
    with open(paths(root)["pidfile"], "w", encoding="ascii") as stream:
        stream.write(f"{dead.pid}\n")
    result = ctl("status", "--root", root)
    assert (result.returncode, result.stdout.strip()) == (3, "stopped (stale pidfile)")
    result = ctl("start", "--root", root, "--port", str(port))
    assert result.returncode == 0 and result.stdout.startswith("started"), result.stdout + result.stderr
    assert read_pid(root) != dead.pid
    assert wait_answer(port)[0] == 200

    # A live process that is not our app (pid reuse) is never signalled.
    appctl.stop(root)
    with open(paths(root)["pidfile"], "w", encoding="ascii") as stream:
        stream.write(f"{os.getpid()}\n")
    result = ctl("stop", "--root", root)
    assert (result.returncode, result.stdout.strip()) == (0, "not running (stale pidfile removed)")
    assert not os.path.exists(paths(root)["pidfile"])


def test_start_fails_clearly(tmp_path, host):
    root, port = host
    empty = tmp_path / "empty"
    empty.mkdir()
    result = ctl("start", "--root", str(empty), "--port", str(port))
    assert result.returncode == 1 and "no release deployed" in result.stderr
    result = ctl("start", "--root", str(tmp_path / "missing"), "--port", str(port))
    assert result.returncode == 2 and "does not exist" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = ctl("start", "--root", root, "--port", str(port))
    assert result.returncode == 1 and f"port 127.0.0.1:{port} is already in use" in result.stderr
    assert not os.path.exists(paths(root)["pidfile"])


def test_stop_kills_an_app_that_ignores_sigterm(host):
    root, port = host
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    wait_answer(port)
    pid = read_pid(root)
    # Freeze the app: a stopped process does not act on SIGTERM, so stop must escalate to SIGKILL.
    os.kill(pid, 19)  # SIGSTOP
    result = ctl("stop", "--root", root, "--timeout", "0.5")
    assert result.returncode == 0 and result.stdout.startswith(f"killed (pid {pid}"), result.stdout + result.stderr
    assert not appctl.alive(pid)


def metric(text, name):
    """{labels text: value} of one metric family's samples in Prometheus text format."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key[len(name):]] = float(value)
    return found


def test_release_4_fails_requests_but_not_health_and_the_metrics_show_it(host):
    root, port = host
    deploy(root, 4)
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    assert wait_answer(port) == (200, {"status": "ok", "version": "4.0.0"})
    codes = [get(port, "/")[0] for unused in range(20)]
    # ERROR_RATE=0.3 spread evenly: exactly 6 of 20 requests fail, never two in a row.
    assert codes.count(500) == 6 and codes.count(200) == 14
    assert all(not (a == b == 500) for a, b in zip(codes, codes[1:]))
    code, text = get(port, "/metrics")
    assert code == 200
    counts = metric(text, "app_requests_total")
    assert counts['{code="500",handler="/"}'] == 6 and counts['{code="200",handler="/"}'] == 14
    buckets = metric(text, "app_request_duration_seconds_bucket")
    assert buckets['{handler="/",le="+Inf"}'] == 20
    assert metric(text, "app_request_duration_seconds_count")['{handler="/"}'] == 20
    # Buckets are cumulative.
    bounds = [v for k, v in buckets.items() if k.startswith('{handler="/",')]
    assert bounds == sorted(bounds)
    assert "# TYPE app_request_duration_seconds histogram" in text
    # Unknown paths share one label value.
    get(port, "/a/b/c")
    assert metric(get(port, "/metrics")[1], "app_requests_total")['{code="404",handler="other"}'] == 1
    ctl("stop", "--root", root)


def test_injected_latency_shows_in_the_histogram(host):
    root, port = host
    deploy(root, 1)
    with open(os.path.join(paths(root)["conf_d"], "90-slow.env"), "w", encoding="utf-8") as stream:
        stream.write("LATENCY_MS=60\n")
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    assert wait_answer(port)[0] == 200
    for unused in range(3):
        assert get(port, "/")[0] == 200
    buckets = metric(get(port, "/metrics")[1], "app_request_duration_seconds_bucket")
    # Every request took at least 60 ms: none is in the buckets up to 0.05 s.
    assert buckets['{handler="/",le="0.05"}'] == 0 and buckets['{handler="/",le="+Inf"}'] == 3
    ctl("stop", "--root", root)


@pytest.mark.parametrize("line,reason", [
    ("ERROR_RATE=1.5", "config ERROR_RATE must be a fraction from 0 to 1, got '1.5'"),
    ("ERROR_RATE=lots", "config ERROR_RATE must be a fraction from 0 to 1, got 'lots'"),
    ("LATENCY_MS=-5", "config LATENCY_MS must be a whole number of milliseconds, got '-5'"),
])
def test_bad_injection_values_fail_health(host, line, reason):
    root, port = host
    deploy(root, 1)
    with open(os.path.join(paths(root)["conf_d"], "90-inject.env"), "w", encoding="utf-8") as stream:
        stream.write(line + "\n")
    assert ctl("start", "--root", root, "--port", str(port)).returncode == 0
    code, body = wait_answer(port)
    assert code == 503 and body["reason"] == reason
    ctl("stop", "--root", root)
