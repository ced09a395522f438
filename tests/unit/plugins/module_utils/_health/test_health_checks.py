"""http, tcp and command checks against real endpoints and programs on this machine."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

# The test servers shared with the integration tests live in tests/integration.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "integration"))

from health_endpoints import HealthEndpoints, Listener, closed_port  # noqa: E402

from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import parse_check  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with HealthEndpoints() as endpoints:
        yield endpoints


def check(**raw):
    return parse_check(raw, "checks[0]")


def test_http_ok_with_body_pattern(server):
    result = check(type="http", url=server.url("/ok"), body=r'"status":\s*"ok"').run(5)
    assert result["ok"] is True, result
    assert result["status"] == 200
    assert result["detail"].startswith("GET %s: status 200 in " % server.url("/ok"))
    assert "error" not in result


def test_http_status_not_expected(server):
    result = check(type="http", url=server.url("/status/500")).run(5)
    assert result["ok"] is False
    assert result["status"] == 500
    assert result["error"] == "GET %s: status 500, expected 200" % server.url("/status/500")


def test_http_other_expected_statuses(server):
    assert check(type="http", url=server.url("/status/503"), status=[200, 503]).run(5)["ok"] is True
    assert check(type="http", url=server.url("/status/404"), status=[404], method="HEAD").run(5)["ok"] is True


def test_http_body_mismatch_quotes_the_start_of_the_body(server):
    result = check(type="http", url=server.url("/ok"), body="^healthy$").run(5)
    assert result["ok"] is False
    assert "body does not match '^healthy$'" in result["error"]
    assert '"status": "ok"' in result["error"]


def test_http_slower_than_max_latency_fails_but_reports_the_status(server):
    result = check(type="http", url=server.url("/slow/300"), max_latency=0.1).run(5)
    assert result["ok"] is False
    assert result["status"] == 200
    assert "slow:" in result["error"] and "over max_latency 0.1s" in result["error"]
    assert result["latency"] >= 0.1


def test_http_request_timeout_is_capped_by_the_budget(server):
    started = time.monotonic()
    result = check(type="http", url=server.url("/slow/5000"), request_timeout=30).run(0.3)
    elapsed = time.monotonic() - started
    assert result["ok"] is False
    assert "timed out" in result["error"]
    assert elapsed < 3, elapsed  # the 0.3 s budget, not the 30 s request_timeout nor the 5 s answer


def test_http_connection_refused():
    url = "http://127.0.0.1:%d/" % closed_port()
    result = check(type="http", url=url).run(5)
    assert result["ok"] is False and result["status"] is None
    assert result["error"] == "GET %s: connection refused" % url


def test_http_headers_are_sent_but_never_reported(server):
    secret = "Bearer not-for-results-123"
    result = check(type="http", url=server.url("/echo-headers"), body="Authorization",
                   headers={"Authorization": secret}).run(5)
    assert result["ok"] is True, result
    assert secret not in repr(result)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An https endpoint with a self-signed certificate made here by openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                           "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                          capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a certificate here: %s" % made.stderr.decode(errors="replace"))
    with HealthEndpoints(tls=(cert, key)) as endpoints:
        yield endpoints


def test_https_self_signed_needs_validate_certs_false(tls_server):
    url = tls_server.url("/ok")
    verified = check(type="http", url=url).run(5)
    assert verified["ok"] is False and verified["status"] is None
    assert "certificate" in verified["error"].lower(), verified["error"]
    unverified = check(type="http", url=url, validate_certs=False, body="ok").run(5)
    assert unverified["ok"] is True, unverified
    assert unverified["status"] == 200


def test_tcp_open_and_closed():
    with Listener() as listener:
        result = check(type="tcp", port=listener.port).run(5)
    assert result["ok"] is True, result
    assert result["detail"].startswith("tcp 127.0.0.1:%d: connected in " % listener.port)
    port = closed_port()
    result = check(type="tcp", host="127.0.0.1", port=port).run(5)
    assert result == {"type": "tcp", "ok": False, "latency": result["latency"],
                      "error": "tcp 127.0.0.1:%d: connection refused" % port}


def test_command_rc_and_stdout():
    ok = check(type="command", argv=[sys.executable, "-c", "print('state: active')"], stdout="^state: active").run(5)
    assert ok["ok"] is True and ok["rc"] == 0, ok
    wrong_out = check(type="command", argv=[sys.executable, "-c", "print('state: failed')"], stdout="active").run(5)
    assert wrong_out["ok"] is False
    assert "stdout does not match 'active' (stdout ends 'state: failed')" in wrong_out["error"]
    expected_rc = check(type="command", argv=[sys.executable, "-c", "raise SystemExit(3)"], rc=3).run(5)
    assert expected_rc["ok"] is True


def test_command_failure_shows_rc_and_stderr_tail():
    result = check(type="command", argv=[sys.executable, "-c", "import sys; sys.stderr.write('db down'); sys.exit(2)"]
                   ).run(5)
    assert result["ok"] is False and result["rc"] == 2
    assert result["error"].endswith("rc 2, expected 0: db down")


def test_command_is_never_a_shell(tmp_path):
    marker = tmp_path / "marker"
    result = check(type="command", argv=["echo", "x; touch %s" % marker]).run(5)
    assert result["ok"] is True
    assert not marker.exists()


def test_command_not_found():
    result = check(type="command", argv=["/nonexistent/fleetops-health-probe"]).run(5)
    assert result["ok"] is False and result["rc"] is None
    assert "cannot run '/nonexistent/fleetops-health-probe'" in result["error"]


def test_command_timeout_kills_the_whole_process_group():
    # The child starts a grandchild that would hold the output pipe open for a minute.
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
             "time.sleep(60)"
    started = time.monotonic()
    result = check(type="command", argv=[sys.executable, "-c", script]).run(0.5)
    elapsed = time.monotonic() - started
    assert result["ok"] is False and "timed out after 0.5s" in result["error"]
    assert elapsed < 10, elapsed


def test_no_budget_left_means_not_run():
    result = check(type="command", argv=["true"]).run(0)
    assert result["ok"] is False
    assert "not run, the deadline was reached" in result["error"]
