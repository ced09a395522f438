"""The rollback decision: every row of the default matrix, user overrides, bad input, and properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._guard.decision import (
    DEFAULT_MATRIX,
    SEVERITY,
    SIGNALS,
    DecisionError,
    build_matrix,
    decide,
)

# Each default rule: signals that make it the deciding rule, the decision, a sentence fragment of the reason,
# and signals just on the safe side of its threshold (the rule must not match them).
ROWS = {
    "critical-vulnerability": ({"critical_vulnerabilities": 1}, "immediate",
                               "critical_vulnerabilities 1 is above the threshold 0",
                               {"critical_vulnerabilities": 0}),
    "data-corruption": ({"data_corruption": True}, "immediate", "data_corruption 1 is above the threshold 0",
                        {"data_corruption": False}),
    "error-rate-high": ({"error_rate": 0.06}, "immediate", "error_rate 0.06 is above the threshold 0.05",
                        {"error_rate": 0.05, "baseline_error_rate": 0.05}),
    "error-rate-spike": ({"error_rate": 0.04, "baseline_error_rate": 0.01}, "immediate",
                         "error_rate 0.04 is above 3 x baseline_error_rate 0.01 = 0.03",
                         {"error_rate": 0.03, "baseline_error_rate": 0.01}),
    "health-failing": ({"health_failures": 1, "hosts": 20}, "immediate", "health_failures 1 is at or above the threshold 1",
                       {"health_failures": 0, "hosts": 20}),
    "health-failing-ratio": ({"health_failure_ratio": 0.05}, "immediate",
                             "health_failure_ratio 0.05 is above the threshold 0", {"health_failure_ratio": 0}),
    "service-unavailable": ({"unavailable_seconds": 301}, "immediate",
                            "unavailable_seconds 301 is above the threshold 300", {"unavailable_seconds": 300}),
    "error-rate-increase": ({"error_rate": 0.025, "baseline_error_rate": 0.02}, "standard",
                            "error_rate 0.025 is above 1.1 x baseline_error_rate 0.02 = 0.022",
                            {"error_rate": 0.022, "baseline_error_rate": 0.02}),
    "latency-p95-degraded": ({"latency_p95": 0.31, "baseline_latency_p95": 0.2}, "standard",
                             "latency_p95 0.31 is above 1.5 x baseline_latency_p95 0.2 = 0.3",
                             {"latency_p95": 0.24, "baseline_latency_p95": 0.2}),
    "latency-p99-degraded": ({"latency_p99": 1.6, "baseline_latency_p99": 1.0}, "standard",
                             "latency_p99 1.6 is above 1.5 x baseline_latency_p99 1 = 1.5",
                             {"latency_p99": 1.2, "baseline_latency_p99": 1.0}),
    "tests-failing": ({"test_pass_rate": 0.9}, "standard", "test_pass_rate 0.9 is below the threshold 0.95",
                      {"test_pass_rate": 0.95}),
    "memory-increase": ({"memory_increase": 0.35}, "standard", "memory_increase 0.35 is above the threshold 0.3",
                        {"memory_increase": 0.3}),
    "memory-leak": ({"memory_growth_rate": 0.15}, "standard", "memory_growth_rate 0.15 is above the threshold 0.1",
                    {"memory_growth_rate": 0.1}),
    "latency-p95-minor": ({"latency_p95": 0.26, "baseline_latency_p95": 0.2}, "partial",
                          "latency_p95 0.26 is above 1.25 x baseline_latency_p95 0.2 = 0.25",
                          {"latency_p95": 0.25, "baseline_latency_p95": 0.2}),
    "latency-p99-minor": ({"latency_p99": 1.3, "baseline_latency_p99": 1.0}, "partial",
                          "latency_p99 1.3 is above 1.25 x baseline_latency_p99 1 = 1.25",
                          {"latency_p99": 1.25, "baseline_latency_p99": 1.0}),
}

HEALTHY = {"error_rate": 0.001, "baseline_error_rate": 0.001, "latency_p95": 0.1, "baseline_latency_p95": 0.1,
           "latency_p99": 0.3, "baseline_latency_p99": 0.3, "health_failures": 0, "health_failure_ratio": 0,
           "unavailable_seconds": 0, "hosts": 20, "critical_vulnerabilities": 0, "test_pass_rate": 1.0,
           "memory_increase": 0.0, "memory_growth_rate": 0.0, "data_corruption": False}


def test_every_default_rule_has_a_row_and_a_source():
    assert sorted(ROWS) == sorted(rule["id"] for rule in DEFAULT_MATRIX)
    for rule in DEFAULT_MATRIX:
        assert rule["source"], rule["id"]
        assert rule["signal"] in SIGNALS and rule.get("baseline", "error_rate") in SIGNALS


@pytest.mark.parametrize("rule_id", sorted(ROWS))
def test_default_row_decides(rule_id):
    signals, decision, fragment, unused = ROWS[rule_id]
    result = decide(signals)
    assert result["decision"] == decision
    assert result["matched_rule"] == rule_id
    assert result["reason"].startswith("%s rollback: %s (rule %s)" % (decision, fragment, rule_id))


@pytest.mark.parametrize("rule_id", sorted(ROWS))
def test_default_row_is_quiet_at_its_threshold(rule_id):
    """On the safe side of the threshold the rule does not match (and the rest of a healthy fleet is healthy)."""
    safe = ROWS[rule_id][3]
    result = decide(dict(HEALTHY, **safe))
    assert rule_id not in [m["rule"] for m in result["matched"]]
    if rule_id == "error-rate-spike":
        # Three times the baseline is not yet a spike, but it is still an increase.
        assert result["matched_rule"] == "error-rate-increase"
    else:
        assert result["decision"] == "none", result


@pytest.mark.parametrize("rule_id", sorted(ROWS))
def test_default_row_wins_over_a_healthy_background(rule_id):
    signals, decision = ROWS[rule_id][:2]
    result = decide(dict(HEALTHY, **signals))
    assert result["decision"] == decision
    assert result["matched_rule"] == rule_id


def test_healthy_signals_decide_none_and_say_what_was_checked():
    result = decide(HEALTHY)
    assert result == {
        "decision": "none", "matched_rule": None, "matched": [], "not_evaluated": [],
        "signals": {k: float(v) for k, v in HEALTHY.items()},
        "reason": result["reason"]}
    assert result["reason"].startswith("no rollback: no rule matched (15 rules checked against baseline_error_rate=0.001,")


def test_no_signal_means_no_rule_can_be_checked():
    result = decide({})
    assert result["decision"] == "none"
    assert result["reason"] == ("no rollback: no signal was measured, so no rule could be checked; "
                                "15 rules not evaluated for want of a measurement")
    assert result["not_evaluated"] == [rule["id"] for rule in DEFAULT_MATRIX]
    assert decide(None)["decision"] == "none"


def test_null_signals_are_not_measured():
    result = decide({"error_rate": None, "latency_p95": 0.5, "baseline_latency_p95": None})
    assert result["decision"] == "none"
    assert "latency-p95-degraded" in result["not_evaluated"] and "error-rate-high" in result["not_evaluated"]
    assert result["signals"] == {"latency_p95": 0.5}


def test_most_severe_wins_and_the_others_are_listed():
    result = decide({"error_rate": 0.3, "baseline_error_rate": 0.01, "latency_p95": 0.5,
                     "baseline_latency_p95": 0.1, "test_pass_rate": 0.5})
    assert result["decision"] == "immediate"
    assert result["matched_rule"] == "error-rate-high"
    assert [m["rule"] for m in result["matched"]] == [
        "error-rate-high", "error-rate-spike", "error-rate-increase", "latency-p95-degraded", "tests-failing",
        "latency-p95-minor"]
    assert [m["decision"] for m in result["matched"]] == ["immediate"] * 2 + ["standard"] * 3 + ["partial"]
    assert result["reason"].endswith(
        "; also matched: error-rate-spike, error-rate-increase, latency-p95-degraded, tests-failing, latency-p95-minor")


def test_min_value_keeps_a_zero_baseline_from_turning_noise_into_a_spike():
    result = decide({"error_rate": 0.002, "baseline_error_rate": 0.0})
    assert result["decision"] == "none"
    assert decide({"error_rate": 0.02, "baseline_error_rate": 0.0})["matched_rule"] == "error-rate-spike"


def test_numeric_strings_as_prometheus_returns_them():
    result = decide({"error_rate": "0.3", "health_failures": "0"})
    assert result["decision"] == "immediate" and result["signals"] == {"error_rate": 0.3, "health_failures": 0.0}


# ---------------------------------------------------------------------------------------- overrides

def test_override_changes_only_what_it_gives():
    matrix = [{"id": "error-rate-high", "threshold": 0.5}]
    assert decide({"error_rate": 0.3}, matrix)["decision"] == "none"
    result = decide({"error_rate": 0.6}, matrix)
    assert result["matched_rule"] == "error-rate-high" and result["decision"] == "immediate"
    assert "above the threshold 0.5" in result["reason"]


def test_override_as_a_dictionary_of_ids():
    matrix = {"tests-failing": {"decision": "immediate"}, "critical-vulnerability": {"decision": "standard"}}
    assert decide({"test_pass_rate": 0.9}, matrix)["decision"] == "immediate"
    assert decide({"critical_vulnerabilities": 2}, matrix)["decision"] == "standard"


def test_override_disables_a_rule():
    matrix = [{"id": "health-failing", "enabled": False}]
    result = decide({"health_failures": 3}, matrix)
    assert result["decision"] == "none"
    assert "health-failing" not in result["not_evaluated"]


def test_override_switches_a_threshold_rule_to_a_baseline():
    matrix = [{"id": "error-rate-high", "baseline": "baseline_error_rate", "factor": 10}]
    rules, unused = build_matrix(matrix)
    rule = [r for r in rules if r["id"] == "error-rate-high"][0]
    assert "threshold" not in rule and rule["factor"] == 10
    assert decide({"error_rate": 0.06, "baseline_error_rate": 0.05}, [dict(matrix[0])] +
                  [{"id": "error-rate-spike", "enabled": False}, {"id": "error-rate-increase", "enabled": False}]
                  )["decision"] == "none"


def test_user_rule_extends_with_a_new_signal():
    matrix = [{"id": "queue-backlog", "signal": "queue_depth", "op": ">=", "threshold": 10000, "decision": "partial",
               "source": "INC-42"}]
    result = decide({"queue_depth": 12000, "error_rate": 0.0}, matrix)
    assert result["decision"] == "partial" and result["matched_rule"] == "queue-backlog"
    assert result["reason"] == ("partial rollback: queue_depth 12000 is at or above the threshold 10000 "
                                "(rule queue-backlog)")
    # Without the rule, the signal is unknown.
    with pytest.raises(DecisionError, match="unknown signal 'queue_depth' .value 12000."):
        decide({"queue_depth": 12000})


def test_user_rule_of_lower_severity_does_not_hide_a_default_immediate():
    matrix = [{"id": "p95-slow", "signal": "latency_p95", "threshold": 0.1, "decision": "partial"}]
    result = decide({"latency_p95": 0.4, "critical_vulnerabilities": 1}, matrix)
    assert result["decision"] == "immediate" and [m["rule"] for m in result["matched"]] == [
        "critical-vulnerability", "p95-slow"]


def test_replace_uses_only_the_given_rules():
    matrix = [{"id": "errors", "signal": "error_rate", "op": "gt", "threshold": 0.5, "decision": "standard"}]
    assert decide({"error_rate": 0.3, "critical_vulnerabilities": 4}, matrix, replace=True)["decision"] == "none"
    assert decide({"error_rate": 0.6}, matrix, replace=True)["decision"] == "standard"
    # Replacing leaves only the rules' signals and the catalogue known.
    assert decide({}, [], replace=True)["reason"] == "no rollback: no signal was measured, so no rule could be checked"


@pytest.mark.parametrize("op,value,matches", [
    (">", 1, False), (">=", 1, True), ("<", 1, False), ("<=", 1, True), ("==", 1, True), ("!=", 1, False),
    ("lt", 0.5, True), ("ne", 2, True), ("eq", 2, False), ("le", 2, False), ("ge", 0, False), ("gt", 2, True),
])
def test_every_comparison(op, value, matches):
    matrix = [{"id": "r", "signal": "x", "op": op, "threshold": 1, "decision": "standard"}]
    assert (decide({"x": value}, matrix, replace=True)["decision"] == "standard") is matches


# ---------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("signals,message", [
    ({"eror_rate": 0.3}, "signals: unknown signal 'eror_rate' (value 0.3); known signals: baseline_error_rate,"),
    ({"error_rate": "high"}, "signals.error_rate: 'high' is not a number"),
    ({"error_rate": True}, "signals.error_rate: True is not a number"),
    ({"error_rate": [0.1]}, "signals.error_rate: [0.1] is not a number (it is a list)"),
    ({"error_rate": "NaN"}, "signals.error_rate: 'NaN' is not a finite number"),
    ({"latency_p95": float("inf")}, "signals.latency_p95: inf is not a finite number"),
    ({"error_rate": 5}, "signals.error_rate: 5 is not a fraction between 0 and 1 (give 5% as 0.05)"),
    ({"health_failures": -1}, "signals.health_failures: -1 is negative (a count is 0 or more)"),
    ({"unavailable_seconds": -3}, "signals.unavailable_seconds: -3 is negative (a duration is 0 or more)"),
    ({1: 0.3}, "signals: unknown signal 1 (value 0.3)"),
    ("error_rate=0.3", "signals: 'error_rate=0.3' is not a dictionary"),
])
def test_bad_signals_name_the_value(signals, message):
    with pytest.raises(DecisionError) as err:
        decide(signals)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize("matrix,message", [
    ("error-rate-high", "matrix: 'error-rate-high' is not a list of rules"),
    ([{"signal": "x"}], "matrix[0].id: required"),
    (["x"], "matrix[0]: 'x' is not a rule"),
    ([{"id": "a", "signal": "x", "threshold": 1, "decision": "standard"}, {"id": "a"}],
     "matrix[1].id: 'a' is given more than once"),
    ([{"id": "new", "signal": "x", "threshold": 1, "decision": "rollback"}],
     "matrix[15] (rule new).decision: 'rollback' is not one of immediate, standard, partial"),
    ([{"id": "new", "signal": "x", "threshold": 1, "decision": "none"}], "to turn a rule off, set enabled: false"),
    ([{"id": "new", "signal": "x", "decision": "standard"}], "matrix[15] (rule new): give either threshold"),
    ([{"id": "new", "signal": "x", "threshold": 1, "baseline": "y", "decision": "standard"}], "it has both"),
    ([{"id": "new", "signal": "x", "threshold": "high", "decision": "standard"}],
     "matrix[15] (rule new).threshold: 'high' is not a number"),
    ([{"id": "new", "signal": "x", "threshold": 1, "factor": 2, "decision": "standard"}],
     "matrix[15] (rule new).factor: only a baseline rule takes a factor"),
    ([{"id": "new", "signal": "x", "op": "~", "threshold": 1, "decision": "standard"}],
     "matrix[15] (rule new).op: '~' is not one of >, >=, <, <=, ==, !="),
    ([{"id": "new", "signal": "x y", "threshold": 1, "decision": "standard"}], "signal: 'x y' is not a signal name"),
    ([{"id": "new", "signal": "x", "threshold": 1, "decision": "standard", "treshold": 2}],
     "matrix[15].treshold: unknown rule option"),
    ([{"id": "error-rate-high", "enabled": "no"}], "matrix[2] (rule error-rate-high).enabled: 'no' is not a boolean"),
    ([{"id": "bad id!", "signal": "x", "threshold": 1, "decision": "standard"}], "matrix[15].id: 'bad id!' is not a rule id"),
    ({"r": 3}, "matrix.r: 3 is not a rule"),
])
def test_bad_matrix_names_the_rule_and_value(matrix, message):
    with pytest.raises(DecisionError) as err:
        decide({}, matrix)
    assert message in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------- properties

ratio = st.floats(min_value=0, max_value=1, allow_nan=False)
seconds = st.floats(min_value=0, max_value=1e4, allow_nan=False)
signal_sets = st.fixed_dictionaries({}, optional={
    "error_rate": ratio, "baseline_error_rate": ratio, "latency_p95": seconds, "baseline_latency_p95": seconds,
    "latency_p99": seconds, "baseline_latency_p99": seconds, "health_failures": st.integers(0, 500),
    "test_pass_rate": ratio, "critical_vulnerabilities": st.integers(0, 5), "unavailable_seconds": seconds,
    "memory_increase": st.floats(-1, 5), "data_corruption": st.booleans(),
})


@settings(max_examples=300, deadline=None)
@given(signal_sets)
def test_decision_is_the_most_severe_match_and_the_reason_names_its_value(signals):
    result = decide(signals)
    severities = [SEVERITY[m["decision"]] for m in result["matched"]]
    assert severities == sorted(severities, reverse=True)
    if result["matched"]:
        top = result["matched"][0]
        assert result["decision"] == top["decision"] and result["matched_rule"] == top["rule"]
        rule = [r for r in DEFAULT_MATRIX if r["id"] == top["rule"]][0]
        assert rule["signal"] in result["reason"]
    else:
        assert result["decision"] == "none" and result["matched_rule"] is None


@settings(max_examples=200, deadline=None)
@given(signal_sets, st.floats(min_value=0, max_value=1, allow_nan=False))
def test_more_errors_never_make_the_decision_milder(signals, extra):
    """Raising the error rate (all else equal) never lowers the severity."""
    base = dict(signals, error_rate=signals.get("error_rate", 0.0))
    worse = dict(base, error_rate=min(1.0, base["error_rate"] + extra))
    assert SEVERITY[decide(worse)["decision"]] >= SEVERITY[decide(base)["decision"]]


@settings(max_examples=100, deadline=None)
@given(signal_sets)
def test_replacing_with_the_defaults_is_the_same_as_the_defaults(signals):
    assert decide(signals, [dict(r) for r in DEFAULT_MATRIX], replace=True) == decide(signals)
