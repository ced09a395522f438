"""The health gate's pure parts: the verdict state machine, input validation, the report."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import HealthInputError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import Target, parse_targets
from ansible_collections.fleetops.rollback.plugins.module_utils._health.policy import Streak, parse_policy
from ansible_collections.fleetops.rollback.plugins.module_utils._health.verdict import HEALTHY, TIMEOUT, UNHEALTHY, build_report, failure_message


def reference_verdict(rounds, successes, failures):
    """(verdict, index of the deciding round) straight from the definition, or (None, None)."""
    for end in range(len(rounds)):
        if end + 1 >= successes and all(rounds[end + 1 - successes:end + 1]):
            return HEALTHY, end
        if end + 1 >= failures + 1 and not any(rounds[end - failures:end + 1]):
            return UNHEALTHY, end
    return None, None


@settings(max_examples=300, deadline=None)
@given(rounds=st.lists(st.booleans(), max_size=40), successes=st.integers(1, 6), failures=st.integers(0, 6))
def test_streak_matches_the_definition(rounds, successes, failures):
    streak = Streak(successes, failures)
    expected, decided_at = reference_verdict(rounds, successes, failures)
    for index, ok in enumerate(rounds):
        verdict = streak.record(ok)
        if decided_at is None or index < decided_at:
            assert verdict is None
        else:
            # The verdict comes on the deciding round, never later, and then never changes.
            assert verdict == expected
    assert streak.verdict == expected


def test_streak_counts_only_consecutive_rounds():
    streak = Streak(successes=3, failures=1)
    for ok in (True, True, False, True, True):
        assert streak.record(ok) is None
    assert streak.record(True) == HEALTHY


def test_streak_zero_failures_means_first_failure_decides():
    assert Streak(successes=2, failures=0).record(False) == UNHEALTHY


def test_streak_flapping_never_decides():
    streak = Streak(successes=2, failures=1)
    for index in range(100):
        assert streak.record(index % 2 == 0) is None


def test_parse_policy_accepts_numbers_and_numeric_strings():
    policy = parse_policy(interval="0.5", timeout=10, successes=2, failures=0)
    assert (policy.interval, policy.timeout, policy.successes, policy.failures) == (0.5, 10.0, 2, 0)


@pytest.mark.parametrize("options, message", [
    (dict(interval=0), "interval: 0 must be greater than 0"),
    (dict(interval=-1.5), "interval: -1.5 must be greater than 0"),
    (dict(timeout=0), "timeout: 0 must be greater than 0"),
    (dict(timeout="soon"), "timeout: 'soon' is not a number"),
    (dict(successes=0), "successes: 0 must be greater than 0"),
    (dict(failures=-1), "failures: -1 must be 0 or more"),
    (dict(failures=1.5), "failures: 1.5 is not an integer"),
    (dict(interval=True), "interval: True is not a number"),
])
def test_parse_policy_names_the_option_and_value(options, message):
    with pytest.raises(HealthInputError) as err:
        parse_policy(**options)
    assert str(err.value).startswith(message)


HTTP = {"type": "http", "url": "http://127.0.0.1:1/health"}


@pytest.mark.parametrize("checks, message", [
    ([HTTP, {"type": "htp"}], "checks[1].type: 'htp' is not one of http, tcp, command"),
    ([{"url": "http://x"}], "checks[0].type: required, one of http, tcp, command"),
    ([{"type": "http"}], "checks[0].url: required for an http check"),
    ([{"type": "tcp"}], "checks[0].port: required for a tcp check"),
    ([{"type": "command"}], "checks[0].argv: required for a command check"),
    ([{"type": "command", "argv": "curl -f http://x"}], "checks[0].argv: 'curl -f http://x' is not a non-empty list"),
    ([{"type": "command", "argv": []}], "checks[0].argv: [] is not a non-empty list"),
    ([{"type": "tcp", "port": 70000}], "checks[0].port: 70000 is not a TCP port (1-65535)"),
    ([{"type": "tcp", "port": 0}], "checks[0].port: 0 is not a TCP port (1-65535)"),
    ([{"type": "tcp", "port": 80, "url": "http://x"}], "checks[0].url: not an option of a tcp check"),
    ([{"type": "tcp", "port": 80, "colour": "red"}], "checks[0].colour: unknown option"),
    ([dict(HTTP, url="ftp://x/")], "checks[0].url: 'ftp://x/' is not an http:// or https:// URL"),
    ([dict(HTTP, url="http://u:pw@h/")], "checks[0].url: 'http://u:********@h/' carries credentials"),
    ([dict(HTTP, status=[200, 999])], "checks[0].status[1]: 999 is not an HTTP status (100-599)"),
    ([dict(HTTP, status=[])], "checks[0].status: [] is not a non-empty list"),
    ([dict(HTTP, body="ok(")], "checks[0].body: 'ok(' is not a valid regular expression"),
    ([dict(HTTP, method="GET /")], "checks[0].method: 'GET /' is not an HTTP method"),
    ([dict(HTTP, request_timeout=0)], "checks[0].request_timeout: 0 must be greater than 0"),
    ([dict(HTTP, max_latency=-1)], "checks[0].max_latency: -1 must be greater than 0"),
    ([dict(HTTP, validate_certs="maybe")], "checks[0].validate_certs: 'maybe' is not a boolean"),
    ([dict(HTTP, headers={"Bad Name": "x"})], "checks[0].headers: 'Bad Name' is not a valid header name"),
    ([{"type": "command", "argv": ["true"], "stdout": "("}], "checks[0].stdout: '(' is not a valid regular"),
    (["http"], "checks[0]: 'http' is not a dictionary"),
    ([], "checks: [] is not a non-empty list of checks"),
])
def test_check_validation_names_the_option_and_value(checks, message):
    with pytest.raises(HealthInputError) as err:
        parse_targets(checks=checks)
    assert str(err.value).startswith(message), str(err.value)


def test_header_values_never_appear_in_validation_messages():
    with pytest.raises(HealthInputError) as err:
        parse_targets(checks=[dict(HTTP, headers={"Authorization": "Bearer s3cr3t\r\nX: y"})])
    assert "Authorization" in str(err.value)
    assert "s3cr3t" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(checks=[HTTP], targets=[{"name": "a", "checks": [HTTP]}]), "checks, targets: mutually exclusive"),
    (dict(), "checks, targets: one of them is required"),
    (dict(targets=[]), "targets: [] is not a non-empty list"),
    (dict(targets=[{"name": "a", "checks": [HTTP]}, {"name": "a", "checks": [HTTP]}]),
     "targets[1].name: 'a' names more than one target"),
    (dict(targets=[{"name": "", "checks": [HTTP]}]), "targets[0].name: '' is not a non-empty string"),
    (dict(targets=[{"name": "web3", "checks": []}]), "targets[0].checks: target 'web3' has no checks"),
    (dict(targets=[{"name": "a", "checks": [HTTP]}, {"name": "b", "checks": [{"type": "http"}]}]),
     "targets[1].checks[0].url: required for an http check"),
    (dict(targets=[{"name": "a", "checks": [HTTP], "extra": 1}]), "targets[0].extra: unknown option"),
])
def test_target_validation(kwargs, message):
    with pytest.raises(HealthInputError) as err:
        parse_targets(**kwargs)
    assert str(err.value).startswith(message), str(err.value)


def test_options_set_to_none_count_as_absent():
    """AnsibleModule fills every sub-option in; a tcp check must not trip over url=None and friends."""
    keys = ("url", "method", "status", "body", "max_latency", "headers", "validate_certs", "argv", "rc", "stdout")
    raw = dict({key: None for key in keys}, type="tcp", port=22, host=None, request_timeout=None)
    (target,) = parse_targets(checks=[raw], name="db1")
    (check,) = target.checks
    assert target.name == "db1"
    assert (check.type, check.host, check.port, check.request_timeout) == ("tcp", "127.0.0.1", 22, 5.0)


def test_http_defaults():
    (target,) = parse_targets(checks=[HTTP])
    check = target.checks[0]
    assert (check.method, check.status, check.body, check.max_latency, check.validate_certs) == (
        "GET", (200,), None, None, True)


class _FakeRun:
    def __init__(self, name, verdict, seconds, last_error=None):
        self.target = Target(name, [])
        self.verdict = verdict
        self.seconds = seconds
        self._error = last_error

    def report(self):
        return {"verdict": self.verdict, "seconds": self.seconds, "rounds": 4, "passed_rounds": 0,
                "last_error": self._error, "samples": []}


@pytest.mark.parametrize("verdicts, overall", [
    ([HEALTHY, HEALTHY], HEALTHY),
    ([HEALTHY, TIMEOUT], TIMEOUT),
    ([TIMEOUT, UNHEALTHY, HEALTHY], UNHEALTHY),
])
def test_report_takes_the_worst_verdict(verdicts, overall):
    runs = [_FakeRun("t%d" % i, v, 1.0 + i, last_error="boom %d" % i) for i, v in enumerate(verdicts)]
    report = build_report(runs)
    assert report["verdict"] == overall
    assert report["seconds"] == 1.0 + len(verdicts) - 1
    assert report["healthy_targets"] == ["t%d" % i for i, v in enumerate(verdicts) if v == HEALTHY]
    assert report["unhealthy_targets"] == ["t%d" % i for i, v in enumerate(verdicts) if v != HEALTHY]


def test_failure_message_names_each_unhealthy_target_and_its_error():
    runs = [_FakeRun("web1", HEALTHY, 1.0), _FakeRun("web2", UNHEALTHY, 2.0, "status 500, expected 200"),
            _FakeRun("web3", TIMEOUT, 3.0, "timed out after 5s")]
    message = failure_message(build_report(runs))
    assert "2 of 3 targets not healthy" in message
    assert "web2 (unhealthy after 4 rounds: status 500, expected 200)" in message
    assert "web3 (timeout after 4 rounds: timed out after 5s)" in message
    assert "web1" not in message


def test_failure_message_stays_bounded_for_a_large_fleet():
    runs = [_FakeRun("web%d" % i, UNHEALTHY, 1.0, "down") for i in range(120)]
    message = failure_message(build_report(runs), limit=50)
    assert "web49 " in message and "web50 " not in message
    assert "and 70 more (see unhealthy_targets)" in message
