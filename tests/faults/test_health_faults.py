"""Faults and bad input around the restore: health_gate and rollback_watch as real module processes.

Every bad-input case runs the module on a real host tree and asserts: it failed, the message names the option and
the value, no traceback or "unexpected error", no secret anywhere, and nothing in the tree changed. The fault cases
use real endpoints on 127.0.0.1 that misbehave (never answer, drip bytes, reset, huge or non-UTF-8 bodies), a
SIGTERM sent to the running module, and a wall clock that jumps under the module.
"""
import os
import signal
import sys
import textwrap
import time

import pytest

from fault_host import SECRET
from harness import ROOT, assert_clear_failure, assert_no_secret, changed_entries, finish, kill, run_module, \
    start_module, wait_for

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from health_endpoints import HealthEndpoints, RawServer  # noqa: E402  pylint: disable=wrong-import-position

TOKEN = "hdr-tok-5e1f0a9c77"
URL_PASSWORD = "url-pw-83b2d6e4"


@pytest.fixture
def endpoints():
    with HealthEndpoints() as server:
        yield server


def http(url="http://127.0.0.1:9/ok", **extra):
    return dict({"type": "http", "url": url}, **extra)


def prom(**extra):
    return dict({"type": "prometheus", "url": "http://127.0.0.1:9", "query": "up", "max": 1}, **extra)


def gate(*checks, **policy):
    return dict({"checks": list(checks), "timeout": 30}, **policy)


def special_files(host):
    """A FIFO, a dangling link and a directory in the host tree, for a program path where a file is expected."""
    base = os.path.join(host.root, "special")
    os.makedirs(base, exist_ok=True)
    paths = {"fifo": os.path.join(base, "probe.fifo"), "dangling": os.path.join(base, "probe-link"),
             "dir": os.path.join(base, "probe.d")}
    if not os.path.lexists(paths["fifo"]):
        os.mkfifo(paths["fifo"])
        os.symlink("missing-probe", paths["dangling"])
        os.mkdir(paths["dir"])
    return paths


# (id, args or a function of the host's special files, mentions the message must hold)
GATE_BAD = [
    # the policy
    ("interval-zero", gate(http(), interval=0), ["interval", "0", "greater than 0"]),
    ("interval-negative", gate(http(), interval=-1), ["interval", "-1", "greater than 0"]),
    ("interval-huge", gate(http(), interval=1e12), ["interval", "1000000000000", "smaller number"]),
    ("timeout-zero", gate(http(), timeout=0), ["timeout", "0", "greater than 0"]),
    ("timeout-negative", gate(http(), timeout=-5), ["timeout", "-5", "greater than 0"]),
    ("timeout-huge", gate(http(), timeout=1e12), ["timeout", "1000000000000", "smaller number"]),
    ("timeout-nan", gate(http(), timeout=float("nan")), ["timeout", "nan", "not a finite number"]),
    ("timeout-word", gate(http(), timeout="soon"), ["timeout", "convert to float"]),
    ("successes-zero", gate(http(), successes=0), ["successes", "0", "greater than 0"]),
    ("successes-negative", gate(http(), successes=-2), ["successes", "-2"]),
    ("failures-negative", gate(http(), failures=-1), ["failures", "-1", "0 or more"]),
    ("failures-word", gate(http(), failures="many"), ["failures", "many", "int"]),
    ("fail-on-unhealthy-word", gate(http(), fail_on_unhealthy="perhaps"), ["fail_on_unhealthy", "perhaps"]),
    ("name-empty", gate(http(), name=""), ["name", "''", "non-empty"]),
    # any check
    ("checks-empty", {"checks": []}, ["checks", "[]", "non-empty list"]),
    ("type-postgres", gate({"type": "postgres", "port": 5432}), ["checks[0].type", "'postgres'", "http, tcp"]),
    ("type-empty", gate({"type": ""}), ["checks[0].type", "''", "one of"]),
    ("type-upper", gate({"type": "HTTP", "url": "http://127.0.0.1/"}), ["checks[0].type", "'HTTP'"]),
    ("option-of-another-type", gate(http(port=80)), ["checks[0].port", "not an option of a http check"]),
    ("request-timeout-zero", gate(http(request_timeout=0)), ["checks[0].request_timeout", "0", "greater than 0"]),
    ("request-timeout-negative", gate(http(request_timeout=-3)), ["checks[0].request_timeout", "-3"]),
    ("request-timeout-huge", gate(http(request_timeout=1e12)), ["checks[0].request_timeout", "1000000000000"]),
    # http
    ("url-no-colon", gate(http("http//x")), ["checks[0].url", "'http//x'", "http:// or https://"]),
    ("url-ftp", gate(http("ftp://127.0.0.1/health")), ["checks[0].url", "'ftp://127.0.0.1/health'"]),
    ("url-broken-ipv6", gate(http("http://[::1")), ["checks[0].url", "'http://[::1'", "not a valid URL"]),
    ("url-no-host", gate(http("http:///health")), ["checks[0].url", "'http:///health'", "with a host"]),
    ("url-port-70000", gate(http("http://127.0.0.1:70000/")), ["checks[0].url", "'http://127.0.0.1:70000/'",
                                                               "out of range"]),
    ("url-port-word", gate(http("http://127.0.0.1:abc/")), ["checks[0].url", "'http://127.0.0.1:abc/'"]),
    ("url-space", gate(http("http://127.0.0.1/a b")), ["checks[0].url", "'http://127.0.0.1/a b'", "space"]),
    ("url-nul", gate(http("http://127.0.0.1/a\x00b")), ["checks[0].url", "'http://127.0.0.1/a\\x00b'"]),
    ("url-empty", gate(http("")), ["checks[0].url", "''"]),
    ("url-unicode-path", gate(http("http://127.0.0.1/sant\u00e9")),
     ["checks[0].url", "non-ASCII", "percent-encode"]),
    ("method-with-space", gate(http(method="GET /x")), ["checks[0].method", "'GET /x'", "not an HTTP method"]),
    ("status-700", gate(http(status=[700])), ["checks[0].status[0]", "700", "100-599"]),
    ("status-empty", gate(http(status=[])), ["checks[0].status", "[]", "non-empty"]),
    ("status-word", gate(http(status=["ok"])), ["status", "ok", "int"]),
    ("body-bad-regex", gate(http(body="([a-z")), ["checks[0].body", "'([a-z'", "regular expression"]),
    ("max-latency-zero", gate(http(max_latency=0)), ["checks[0].max_latency", "0", "greater than 0"]),
    ("max-latency-negative", gate(http(max_latency=-0.5)), ["checks[0].max_latency", "-0.5"]),
    ("header-bad-name", gate(http(headers={"Bad Name": "x"})), ["checks[0].headers", "'Bad Name'",
                                                                "not a valid header name"]),
    ("validate-certs-word", gate(http(validate_certs="perhaps")), ["validate_certs", "perhaps"]),
    # tcp
    ("port-70000", gate({"type": "tcp", "port": 70000}), ["checks[0].port", "70000", "1-65535"]),
    ("port-zero", gate({"type": "tcp", "port": 0}), ["checks[0].port", "0", "1-65535"]),
    ("port-negative", gate({"type": "tcp", "port": -1}), ["checks[0].port", "-1", "1-65535"]),
    ("port-word", gate({"type": "tcp", "port": "ssh"}), ["port", "ssh", "int"]),
    ("port-missing", gate({"type": "tcp"}), ["checks[0].port", "required"]),
    ("host-with-port", gate({"type": "tcp", "host": "127.0.0.1:80", "port": 80}),
     ["checks[0].host", "'127.0.0.1:80'", "port in port"]),
    ("host-is-url", gate({"type": "tcp", "host": "http://127.0.0.1", "port": 80}),
     ["checks[0].host", "'http://127.0.0.1'", "not a URL"]),
    ("host-empty", gate({"type": "tcp", "host": "", "port": 80}), ["checks[0].host", "''"]),
    ("host-shell", gate({"type": "tcp", "host": "127.0.0.1;reboot", "port": 80}),
     ["checks[0].host", "'127.0.0.1;reboot'", "not a host name"]),
    ("host-bracketed-ipv6", gate({"type": "tcp", "host": "[::1]", "port": 80}),
     ["checks[0].host", "'[::1]'", "without brackets"]),
    ("host-unicode", gate({"type": "tcp", "host": "h\u00f4te local", "port": 80}),
     ["checks[0].host", "'h\u00f4te local'"]),
    # command
    ("argv-empty", gate({"type": "command", "argv": []}), ["checks[0].argv", "[]", "non-empty list"]),
    ("argv-missing", gate({"type": "command"}), ["checks[0].argv", "required"]),
    ("argv-shell-line", gate({"type": "command", "argv": "systemctl is-active nginx"}),
     ["checks[0].argv[0]", "'systemctl is-active nginx'", "separate items", "never run through a shell"]),
    ("argv-nul", gate({"type": "command", "argv": ["/bin/echo", "a\x00b"]}),
     ["checks[0].argv[1]", "'a\\x00b'", "NUL"]),
    ("argv-program-empty", gate({"type": "command", "argv": ["", "x"]}), ["checks[0].argv[0]", "empty"]),
    ("argv-program-fifo", lambda s: gate({"type": "command", "argv": [s["fifo"]]}),
     ["checks[0].argv[0]", "probe.fifo", "a FIFO", "not a program"]),
    ("argv-program-device", gate({"type": "command", "argv": ["/dev/null"]}),
     ["checks[0].argv[0]", "'/dev/null'", "a character device"]),
    ("argv-program-dangling-link", lambda s: gate({"type": "command", "argv": [s["dangling"]]}),
     ["checks[0].argv[0]", "probe-link", "'missing-probe', which does not exist"]),
    ("argv-program-directory", lambda s: gate({"type": "command", "argv": [s["dir"]]}),
     ["checks[0].argv[0]", "probe.d", "a directory"]),
    ("rc-huge", gate({"type": "command", "argv": ["/bin/true"], "rc": 10 ** 12}),
     ["checks[0].rc", "1000000000000", "exit status"]),
    ("rc-256", gate({"type": "command", "argv": ["/bin/true"], "rc": 256}), ["checks[0].rc", "256"]),
    ("stdout-bad-regex", gate({"type": "command", "argv": ["/bin/true"], "stdout": "*x"}),
     ["checks[0].stdout", "'*x'", "regular expression"]),
    # prometheus
    ("query-empty", gate(prom(query="")), ["checks[0].query", "''", "PromQL"]),
    ("query-nul", gate(prom(query="up\x00")), ["checks[0].query", "'up\\x00'", "NUL"]),
    ("query-missing", gate({"type": "prometheus", "url": "http://127.0.0.1:9", "max": 1}),
     ["checks[0].query", "required"]),
    ("no-threshold", gate(prom(max=None)), ["checks[0]", "needs a threshold"]),
    ("min-above-max", gate(prom(min=5, max=1)), ["checks[0].min", "5", "above max"]),
    ("max-ratio-alone", gate(prom(max=None, max_ratio=1.5)), ["checks[0].baseline_query", "needs both"]),
    ("max-ratio-negative", gate(prom(max=None, max_ratio=-1, baseline_query="up")),
     ["checks[0].max_ratio", "-1"]),
    ("max-nan", gate(prom(max=float("nan"))), ["checks[0].max", "nan", "finite"]),
    ("on-empty-word", gate(prom(on_empty="maybe")), ["on_empty", "maybe"]),
    ("prometheus-url-no-scheme", gate(prom(url="prometheus:9090")), ["checks[0].url", "'prometheus:9090'"]),
    # targets
    ("targets-duplicate", {"targets": [{"name": "web1", "checks": [http()]}, {"name": "web1", "checks": [http()]}]},
     ["targets[1].name", "'web1'", "more than one target"]),
    ("targets-name-empty", {"targets": [{"name": "", "checks": [http()]}]}, ["targets[0].name", "''"]),
    ("targets-no-checks", {"targets": [{"name": "web1", "checks": []}]}, ["targets[0].checks", "'web1'"]),
    ("checks-and-targets", {"checks": [http()], "targets": [{"name": "w", "checks": [http()]}]},
     ["checks", "targets", "mutually exclusive"]),
    ("neither-checks-nor-targets", {"timeout": 5}, ["checks", "targets"]),
]


@pytest.mark.bad_input("health_gate")
@pytest.mark.parametrize("args, mentions", [pytest.param(a, m, id=i) for i, a, m in GATE_BAD])
def test_health_gate_refuses_bad_input(fault_host, args, mentions):
    if callable(args):
        args = args(special_files(fault_host))
    before = fault_host.state()
    run = run_module("health_gate", args)
    assert_clear_failure(run, *mentions, secrets=(SECRET,))
    # Refused before anything ran: no verdict, no samples.
    assert "verdict" not in run.result
    assert not changed_entries(before, fault_host.state())


# Secrets given where they do not belong: refused, and the secret is nowhere in what the run printed.
GATE_SECRET_BAD = [
    ("url-credentials", gate(http("http://deploy:%s@127.0.0.1:8080/health" % URL_PASSWORD)),
     ["checks[0].url", "carries credentials", "'http://deploy:********@127.0.0.1:8080/health'"], URL_PASSWORD),
    ("url-credentials-broken-port", gate(http("http://deploy:%s@127.0.0.1:port/health" % URL_PASSWORD)),
     ["checks[0].url", "not a valid URL"], URL_PASSWORD),
    ("header-value-line-break", gate(http(headers={"Authorization": "Bearer %s\r\nX-Evil: 1" % TOKEN})),
     ["checks[0].headers", "'Authorization'", "line break"], TOKEN),
    ("header-value-not-latin1", gate(http(headers={"Authorization": "Bearer %s\u20ac" % TOKEN})),
     ["checks[0].headers", "'Authorization'", "Latin-1"], TOKEN),
    ("prometheus-url-credentials", gate(prom(url="http://admin:%s@127.0.0.1:9090" % URL_PASSWORD)),
     ["checks[0].url", "carries credentials"], URL_PASSWORD),
]


@pytest.mark.bad_input("health_gate")
@pytest.mark.parametrize("args, mentions, secret", [pytest.param(a, m, s, id=i) for i, a, m, s in GATE_SECRET_BAD])
def test_health_gate_refuses_misplaced_secrets_without_showing_them(fault_host, args, mentions, secret):
    before = fault_host.state()
    run = run_module("health_gate", args)
    assert_clear_failure(run, *mentions, secrets=(SECRET, secret))
    assert not changed_entries(before, fault_host.state())


WATCH_BAD = [
    ("window-zero", {"signals": {"error_rate": 0}, "window": 0}, ["window", "0", "greater than 0"]),
    ("window-negative", {"signals": {"error_rate": 0}, "window": -60}, ["window", "-60"]),
    ("window-huge", {"signals": {"error_rate": 0}, "window": 1e12}, ["window", "1000000000000", "smaller number"]),
    ("interval-zero", {"signals": {"error_rate": 0}, "interval": 0}, ["interval", "0", "greater than 0"]),
    ("request-timeout-huge", {"signals": {"error_rate": 0}, "request_timeout": 1e12},
     ["request_timeout", "1000000000000"]),
    ("failures-negative", {"signals": {"error_rate": 0}, "failures": -1}, ["failures", "-1"]),
    ("on-empty-word", {"signals": {"error_rate": 0}, "on_empty": "guess"}, ["on_empty", "guess"]),
    ("query-unknown-signal", {"queries": {"eror_rate": "up"}, "prometheus_url": "http://127.0.0.1:9"},
     ["queries", "'eror_rate'", "unknown signal"]),
    ("query-empty", {"queries": {"error_rate": " "}, "prometheus_url": "http://127.0.0.1:9"},
     ["queries.error_rate", "PromQL"]),
    ("query-nul", {"queries": {"error_rate": "rate(x[1m])\x00"}, "prometheus_url": "http://127.0.0.1:9"},
     ["queries.error_rate", "NUL"]),
    ("prometheus-url-broken", {"queries": {"error_rate": "up"}, "prometheus_url": "http://[::1"},
     ["prometheus_url", "'http://[::1'", "not a valid URL"]),
    ("prometheus-url-ftp", {"queries": {"error_rate": "up"}, "prometheus_url": "ftp://127.0.0.1:9090"},
     ["prometheus_url", "'ftp://127.0.0.1:9090'"]),
    ("prometheus-url-missing", {"queries": {"error_rate": "up"}}, ["prometheus_url", "required with queries"]),
    ("signal-not-a-fraction", {"signals": {"error_rate": 5}}, ["signals.error_rate", "5", "between 0 and 1"]),
    ("signal-word", {"signals": {"latency_p95": "slow"}}, ["signals.latency_p95", "'slow'", "not a number"]),
    ("matrix-bad-op", {"signals": {"error_rate": 0}, "matrix": [{"id": "x", "signal": "error_rate", "op": "~",
                                                                 "threshold": 1, "decision": "standard"}]},
     ["op", "'~'", "not one of"]),
    ("nothing-to-watch", {}, ["nothing to watch"]),
    ("target-host-is-url", {"targets": [{"name": "web1", "checks": [{"type": "tcp", "host": "http://x", "port": 80}]}]},
     ["targets[0].checks[0].host", "'http://x'"]),
]


@pytest.mark.bad_input("rollback_watch")
@pytest.mark.parametrize("args, mentions", [pytest.param(a, m, id=i) for i, a, m in WATCH_BAD])
def test_rollback_watch_refuses_bad_input(fault_host, args, mentions):
    before = fault_host.state()
    run = run_module("rollback_watch", args)
    assert_clear_failure(run, *mentions, secrets=(SECRET,))
    assert "decision" not in run.result
    assert not changed_entries(before, fault_host.state())


@pytest.mark.bad_input("rollback_watch")
def test_rollback_watch_hides_a_prometheus_password_and_bearer_token(fault_host):
    before = fault_host.state()
    run = run_module("rollback_watch", {"queries": {"error_rate": "up"},
                                        "prometheus_url": "http://ops:%s@127.0.0.1:9090" % URL_PASSWORD,
                                        "prometheus_headers": {"Authorization": "Bearer %s" % TOKEN}})
    assert_clear_failure(run, "prometheus_url", "carries credentials", secrets=(SECRET, URL_PASSWORD, TOKEN))
    assert not changed_entries(before, fault_host.state())


# ------------------------------------------------------------------------------------------ the command is argv
@pytest.mark.bad_input("health_gate")
def test_shell_metacharacters_in_a_command_check_are_passed_literally(fault_host):
    """`;`, `$(...)`, backquotes, `|` and `&&` reach the program as text: no shell ever reads them."""
    marker = os.path.join(fault_host.base, "pwned")
    words = ["a; touch %s" % marker, "$(touch %s)" % marker, "`touch %s`" % marker, "| touch %s" % marker,
             "&& touch %s" % marker]
    before = fault_host.state()
    run = run_module("health_gate", gate({"type": "command", "argv": ["/bin/echo"] + words,
                                          "stdout": r"^a; touch .*pwned \$\(touch .*pwned\) `touch .*pwned` "
                                                    r"\| touch .*pwned && touch .*pwned$"},
                                         successes=1, interval=0.1))
    assert run.result.get("verdict") == "healthy", run.msg
    assert not os.path.lexists(marker)
    assert not changed_entries(before, fault_host.state())


# ------------------------------------------------------------------------------------------ endpoints that misbehave
def _gate_over(url, timeout=3, **check):
    return {"checks": [http(url, **check)], "timeout": timeout, "interval": 0.2, "successes": 1, "failures": 100}


@pytest.mark.fault("health-endpoint-never-answers")
def test_an_endpoint_that_never_answers_ends_at_the_deadline(fault_host):
    before = fault_host.state()
    with RawServer("hang") as server:
        started = time.monotonic()
        run = run_module("health_gate", _gate_over(server.url("/health"), timeout=3, request_timeout=60),
                         timeout=120)
        took = time.monotonic() - started
        assert server.accepted >= 1
    assert_clear_failure(run, "verdict timeout", "local (timeout after 0 rounds: no answer before the deadline: "
                         "round 1 was still running after", secrets=(SECRET,))
    assert run.result["verdict"] == "timeout" and run.result["seconds"] == 3
    # The request's own 60 s timeout is cut by the 3 s deadline; the process does not wait for it.
    assert took < 45, took
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("health-endpoint-drips-bytes")
def test_an_endpoint_that_drips_its_answer_ends_at_the_deadline(fault_host):
    """One byte every 0.2 s keeps every read under the 2 s request timeout: only the deadline ends the round, and
    the module process exits then, not when the drip would end (hours later)."""
    before = fault_host.state()
    with RawServer("drip", pause=0.2) as server:
        started = time.monotonic()
        run = run_module("health_gate", _gate_over(server.url("/health"), timeout=3, request_timeout=2),
                         timeout=120)
        took = time.monotonic() - started
    assert_clear_failure(run, "verdict timeout", secrets=(SECRET,))
    assert run.result["verdict"] == "timeout"
    assert took < 45, took
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("health-endpoint-resets")
def test_an_endpoint_that_resets_the_connection_is_unhealthy_with_the_reason(fault_host):
    before = fault_host.state()
    with RawServer("reset") as server:
        args = _gate_over(server.url("/health"), timeout=20)
        args.update(failures=1)
        run = run_module("health_gate", args, timeout=120)
    assert_clear_failure(run, "verdict unhealthy", "local (unhealthy after 2 rounds", secrets=(SECRET,))
    error = run.result["targets"]["local"]["last_error"]
    assert "reset" in error.lower() or "closed" in error.lower() or "aborted" in error.lower(), error
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("health-endpoint-huge-body")
def test_a_huge_body_is_read_up_to_its_limit_and_reported_briefly(fault_host, endpoints):
    before = fault_host.state()
    run = run_module("health_gate", dict(_gate_over(endpoints.url("/huge/24"), timeout=20, body='"status"'),
                                         failures=0))
    assert_clear_failure(run, "body does not match", secrets=(SECRET,))
    # The body is quoted by its first 200 characters, never whole.
    assert len(run.msg) < 2000 and len(run.stdout) < 200000
    # The same endpoint as a Prometheus server: not the JSON of the HTTP API, said in one line.
    prom_run = run_module("health_gate", gate(prom(url=endpoints.url("/huge/24")), failures=0, timeout=20))
    assert_clear_failure(prom_run, "not the JSON of the HTTP API", secrets=(SECRET,))
    assert len(prom_run.msg) < 2000
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("health-endpoint-non-utf8-body")
def test_a_body_that_is_not_utf8_is_matched_and_quoted_without_breaking(fault_host, endpoints):
    before = fault_host.state()
    ok = run_module("health_gate", _gate_over(endpoints.url("/binary"), timeout=20, body="status .* ok"))
    assert ok.result.get("verdict") == "healthy", ok.msg
    bad = run_module("health_gate", dict(_gate_over(endpoints.url("/binary"), timeout=20, body="^healthy$"),
                                         failures=0))
    assert_clear_failure(bad, "body does not match '^healthy$'", secrets=(SECRET,))
    prom_run = run_module("health_gate", gate(prom(url=endpoints.url("/binary")), failures=0, timeout=20))
    assert_clear_failure(prom_run, "not the JSON of the HTTP API", secrets=(SECRET,))
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("health-check-token-on-failing-endpoint")
def test_a_bearer_token_sent_to_a_failing_endpoint_is_nowhere_in_the_output(fault_host, endpoints):
    before = fault_host.state()
    run = run_module("health_gate", {
        "checks": [http(endpoints.url("/status/500"), headers={"Authorization": "Bearer %s" % TOKEN}),
                   prom(url=endpoints.url("/status/503"), headers={"Authorization": "Bearer %s" % TOKEN})],
        "timeout": 20, "interval": 0.1, "failures": 1})
    assert_clear_failure(run, "verdict unhealthy", "status 500, expected 200", secrets=(SECRET, TOKEN))
    assert not changed_entries(before, fault_host.state())


# ------------------------------------------------------------------------------------------ SIGTERM
def _pids_running(argv_tail):
    """Pids of processes whose command line ends with these arguments."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as stream:
                args = stream.read().split(b"\0")[:-1]
        except OSError:
            continue
        if [a.decode(errors="replace") for a in args[-len(argv_tail):]] == argv_tail:
            found.append(int(pid))
    return found


@pytest.mark.fault("health-gate-sigterm")
def test_sigterm_ends_a_running_gate_at_once_with_a_clear_verdict_and_kills_its_command(fault_host):
    before = fault_host.state()
    marker = ["/bin/sleep", "417.25"]  # a duration no other process uses, to find the check's own child
    with RawServer("hang") as server:
        proc = start_module("health_gate", {
            "checks": [{"type": "command", "argv": marker, "request_timeout": 600}], "timeout": 900})
        wait_for(lambda: _pids_running(marker[1:]), timeout=60, what="the command check to run")
        started = time.monotonic()
        run = kill(proc, signal.SIGTERM)
        took = time.monotonic() - started
        assert server.accepted == 0
    assert_clear_failure(run, "stopped by SIGTERM while polling the health checks of 1 target (no verdict yet)",
                         "nothing on the host was changed", secrets=(SECRET,))
    assert took < 30, took
    # The check's command does not outlive the module.
    wait_for(lambda: not _pids_running(marker[1:]), timeout=30, what="the command check to be killed")
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("health-gate-sigterm-on-hanging-endpoint")
def test_sigterm_during_a_request_that_never_answers_ends_the_module_at_once(fault_host):
    before = fault_host.state()
    with RawServer("hang") as server:
        proc = start_module("health_gate", {"checks": [http(server.url("/health"), request_timeout=600)],
                                            "timeout": 900})
        wait_for(lambda: server.accepted >= 1, timeout=60, what="the gate's request")
        started = time.monotonic()
        run = kill(proc, signal.SIGTERM)
        took = time.monotonic() - started
    assert_clear_failure(run, "stopped by SIGTERM while polling", "no verdict yet", secrets=(SECRET,))
    assert took < 30, took
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("rollback-watch-sigterm")
def test_sigterm_ends_a_running_watch_with_a_clear_message(fault_host):
    before = fault_host.state()
    with RawServer("hang") as server:
        proc = start_module("rollback_watch", {
            "targets": [{"name": "web1", "checks": [{"type": "tcp", "port": server.port}]}],
            "window": 900, "interval": 0.2})
        # A few rounds in: the watch is polling or waiting for its next round.
        wait_for(lambda: server.accepted >= 3, timeout=60, what="three rounds of the watch")
        started = time.monotonic()
        run = kill(proc, signal.SIGTERM)
        took = time.monotonic() - started
    assert_clear_failure(run, "stopped by SIGTERM while watching the signals (no decision yet)",
                         "nothing on the host was changed", secrets=(SECRET,))
    assert took < 30, took
    assert not changed_entries(before, fault_host.state())


# ------------------------------------------------------------------------------------------ the wall clock jumps
JUMPING_CLOCK = '''
import time as _time

_real = _time.time
_calls = [0]


def _jumping():
    # Every call jumps: a year back, then a year ahead, and so on. A deadline kept on this clock would end
    # at once or never; the monotonic clock is untouched.
    _calls[0] += 1
    return _real() + (-1 if _calls[0] % 2 else 1) * 365 * 86400.0


_time.time = _jumping
'''


@pytest.fixture
def jumping_clock(tmp_path):
    directory = tmp_path / "jumping-clock"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(textwrap.dedent(JUMPING_CLOCK))
    return {"PYTHONPATH": str(directory) + os.pathsep + os.path.join(ROOT, ".collections")}


@pytest.mark.fault("health-gate-wall-clock-jumps")
def test_a_jumping_wall_clock_changes_neither_the_verdict_nor_the_deadline(fault_host, endpoints, jumping_clock):
    before = fault_host.state()
    # A target that recovers after two failing rounds: healthy after exactly 2 + 3 rounds.
    run = run_module("health_gate", {"checks": [http(endpoints.url("/recover/clock/2"))], "interval": 0.2,
                                     "successes": 3, "failures": 5, "timeout": 60}, env=jumping_clock)
    assert run.result.get("verdict") == "healthy", run.msg
    assert (run.result["targets"]["local"]["rounds"], run.result["targets"]["local"]["passed_rounds"]) == (5, 3)
    assert 0.0 < run.result["seconds"] < 60
    # A target that never passes: the deadline is the monotonic 2 s, not a year away nor already past.
    started = time.monotonic()
    late = run_module("health_gate", {"checks": [http(endpoints.url("/status/503"))], "interval": 0.2,
                                      "successes": 1, "failures": 10 ** 6, "timeout": 2}, env=jumping_clock)
    took = time.monotonic() - started
    assert late.result.get("verdict") == "timeout", late.msg
    assert late.result["seconds"] == 2 and late.result["targets"]["local"]["rounds"] >= 2
    assert 2 <= took < 60, took
    assert not changed_entries(before, fault_host.state())


def test_the_jumping_clock_is_really_in_force_in_the_module_process(jumping_clock):
    """The fixture's clock reaches the module process: two reads in a row differ by two years."""
    run = run_module("health_gate", gate({"type": "command", "argv": [
        sys.executable, "-c", "import time; a = time.time(); b = time.time(); print(round(abs(b - a) / 86400))"],
        "stdout": "^730$"}, successes=1, interval=0.1), env=jumping_clock)
    assert run.result.get("verdict") == "healthy", run.msg
    assert_no_secret(run, (SECRET,))


@pytest.mark.fault("health-gate-deadline-with-command-running")
def test_a_finished_module_leaves_no_process_behind(fault_host):
    """A gate that ended at its deadline with a command still running kills that command."""
    marker = ["/bin/sleep", "419.75"]
    run = finish(start_module("health_gate", {"checks": [{"type": "command", "argv": marker,
                                                          "request_timeout": 600}], "timeout": 1.5,
                                              "successes": 1}), timeout=120)
    assert run.result.get("verdict") == "timeout", run.msg
    wait_for(lambda: not _pids_running(marker[1:]), timeout=30, what="the command check to be killed")
