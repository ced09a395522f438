# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback decision: measured signals -> immediate, standard, partial or none, with the reason.

Private to the collection and standard library only, so both the `rollback_decision` filter (on the
controller) and the `rollback_watch` module import it.

A *matrix* is an ordered list of rules. A rule compares one signal with a fixed threshold, or with a
factor times another signal (its baseline), and names the decision it calls for. Every rule whose
signals were measured is evaluated; the most severe decision among the rules that match wins
(immediate > standard > partial), the first such rule in matrix order names the reason. A rule whose
signal (or baseline) was not measured is not evaluated and is listed as such: a missing measurement
never counts as healthy evidence or as a failure.

`DEFAULT_MATRIX` encodes the triggers and decision matrices of the runbooks the collection was
written from (../shared/seeds/ in the project; see docs in the filter and README "Automatic
rollback"). Where the runbooks disagree, the choice and the alternative are noted on the rule, and
a user matrix can change any rule by its id.
"""

from __future__ import annotations

import math
import re

IMMEDIATE = "immediate"
STANDARD = "standard"
PARTIAL = "partial"
NONE = "none"
DECISIONS = (IMMEDIATE, STANDARD, PARTIAL)
# How severe a decision is: the most severe matching rule wins.
SEVERITY = {NONE: 0, PARTIAL: 1, STANDARD: 2, IMMEDIATE: 3}

# Signal kinds decide what a valid value is:
#   ratio    a fraction between 0 and 1 (0.05 is 5%)
#   seconds  a duration, 0 or more
#   count    a number of things, 0 or more
#   flag     a count or a boolean (true is 1)
#   number   any finite number (an increase can be negative)
SIGNALS = {
    "error_rate": ("ratio", "fraction of requests that failed (0.05 is 5%)"),
    "baseline_error_rate": ("ratio", "error_rate of the known good state"),
    "latency_p95": ("seconds", "95th percentile response time"),
    "baseline_latency_p95": ("seconds", "latency_p95 of the known good state"),
    "latency_p99": ("seconds", "99th percentile response time"),
    "baseline_latency_p99": ("seconds", "latency_p99 of the known good state"),
    "health_failures": ("count", "hosts failing their health checks"),
    "health_failure_ratio": ("ratio", "fraction of the hosts failing their health checks"),
    "unavailable_seconds": ("seconds", "longest time a host has been failing its health checks without a break"),
    "hosts": ("count", "hosts watched (context; no default rule reads it)"),
    "critical_vulnerabilities": ("count", "critical vulnerabilities found by a security scan of the release"),
    "test_pass_rate": ("ratio", "fraction of the post-deploy test suite that passed"),
    "memory_increase": ("number", "memory use against the known good state (0.3 is 30% more)"),
    "memory_growth_rate": ("number", "memory growth per hour (0.1 is 10% an hour)"),
    "data_corruption": ("flag", "data integrity problems found (a count, or true/false)"),
}

OPS = {
    ">": (lambda a, b: a > b, "above"),
    ">=": (lambda a, b: a >= b, "at or above"),
    "<": (lambda a, b: a < b, "below"),
    "<=": (lambda a, b: a <= b, "at or below"),
    "==": (lambda a, b: a == b, "equal to"),
    "!=": (lambda a, b: a != b, "not equal to"),
}
OP_ALIASES = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}

RULE_KEYS = ("id", "signal", "op", "threshold", "baseline", "factor", "min_value", "decision", "enabled",
             "description", "source")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Runbooks, as cited in the `source` of each rule (files in ../shared/seeds/ of the project):
#   000  "Rollback Procedures and Emergency Response Protocols" (security changes; triggers and impact matrix)
#   001  "Rollback & Recovery Procedures" (ROLLBACK_TRIGGERS table; manual decision matrix)
#   002  "Rollback Procedures - Emergency Recovery and Feature Rollback Guide" (when to roll back / disable a flag)
#   003  "Rollback Procedures" (production rollback strategy: when to roll back, health-based automatic rollback)
#   004  "Rollback Procedures" (CloudWatch-alarm automatic rollback)
DEFAULT_MATRIX = (
    # ------------------------------------------------------------------ immediate: minutes count
    {"id": "critical-vulnerability", "signal": "critical_vulnerabilities", "op": ">", "threshold": 0,
     "decision": IMMEDIATE,
     "source": "001 ROLLBACK_TRIGGERS security_issues (critical vulns > 0: CRITICAL, immediate); "
               "000 decision matrix Critical/Security (auto, immediate); 002 'security vulnerability "
               "introduced'; 003 'security vulnerabilities discovered post-deployment'"},
    {"id": "data-corruption", "signal": "data_corruption", "op": ">", "threshold": 0,
     "decision": IMMEDIATE,
     "source": "000 immediate rollback trigger 'data corruption detected'; 001 manual matrix 'data "
               "corruption risk: yes, immediate action'; 002 and 003 'data corruption detected'"},
    {"id": "error-rate-high", "signal": "error_rate", "op": ">", "threshold": 0.05,
     "decision": IMMEDIATE,
     "source": "003 when to roll back 'high error rates > 5% of total requests'; 004 automatic rollback "
               "on an error rate over 5% in production (traffic back to the previous version in minutes)"},
    {"id": "error-rate-spike", "signal": "error_rate", "op": ">", "baseline": "baseline_error_rate",
     "factor": 3, "min_value": 0.01, "decision": IMMEDIATE,
     "source": "001 ROLLBACK_TRIGGERS error_rate_spike (rate > 3 x baseline: HIGH, immediate). "
               "min_value 0.01 is the collection's: with a baseline of 0 a single error would be a spike"},
    {"id": "health-failing", "signal": "health_failures", "op": ">=", "threshold": 1,
     "decision": IMMEDIATE,
     "source": "003 health-based automatic rollback (3 failed health checks in a row: roll back at once; "
               "rollback_watch counts a host after `failures` + 1 = 3 failing rounds in a row); 000 immediate "
               "trigger 'system crash or instability'"},
    {"id": "health-failing-ratio", "signal": "health_failure_ratio", "op": ">", "threshold": 0,
     "decision": IMMEDIATE,
     "source": "as health-failing, for callers that measure the failing share of the fleet"},
    {"id": "service-unavailable", "signal": "unavailable_seconds", "op": ">", "threshold": 300,
     "decision": IMMEDIATE,
     "source": "003 when to roll back 'service unavailability > 5 minutes'"},
    # ------------------------------------------------------------------ standard: degraded but serving
    {"id": "error-rate-increase", "signal": "error_rate", "op": ">", "baseline": "baseline_error_rate",
     "factor": 1.1, "min_value": 0.01, "decision": STANDARD,
     "source": "000 automatic trigger 'error rate increase > 10%' (read as relative to the baseline: an "
               "absolute 10% is already error-rate-high), impact High -> rollback within 30 minutes"},
    {"id": "latency-p95-degraded", "signal": "latency_p95", "op": ">", "baseline": "baseline_latency_p95",
     "factor": 1.5, "decision": STANDARD,
     "source": "001 performance_degradation (response time > 1.5 x baseline: HIGH, gradual rollback); 003 "
               "'performance degradation > 50% from baseline'; 000 decision matrix High/Performance (auto, < 30 "
               "min); docs/choosing-a-rollback.md. 002 calls > 50% immediate: override the decision for that"},
    {"id": "latency-p99-degraded", "signal": "latency_p99", "op": ">", "baseline": "baseline_latency_p99",
     "factor": 1.5, "decision": STANDARD,
     "source": "as latency-p95-degraded, on the 99th percentile"},
    {"id": "tests-failing", "signal": "test_pass_rate", "op": "<", "threshold": 0.95,
     "decision": STANDARD,
     "source": "000 automatic trigger 'test suite failure rate > 5%' and standard rollback trigger 'test "
               "suite failures'; 001 test_failures (pass rate < 0.95) says immediate: override the decision "
               "for that"},
    {"id": "memory-increase", "signal": "memory_increase", "op": ">", "threshold": 0.3,
     "decision": STANDARD,
     "source": "000 automatic trigger 'memory usage increase > 30%'"},
    {"id": "memory-leak", "signal": "memory_growth_rate", "op": ">", "threshold": 0.1,
     "decision": STANDARD,
     "source": "001 ROLLBACK_TRIGGERS memory_leak (growth > 10% an hour: MEDIUM, scheduled rollback; the "
               "planned, batched path is the standard rollback)"},
    # ------------------------------------------------------------------ partial: one thing is wrong
    {"id": "latency-p95-minor", "signal": "latency_p95", "op": ">", "baseline": "baseline_latency_p95",
     "factor": 1.25, "decision": PARTIAL,
     "source": "000 automatic trigger 'response time degradation > 25%'; 002 minor performance impact: turn "
               "the one feature off (its config) instead of rolling everything back; from 1.5 x it is "
               "latency-p95-degraded"},
    {"id": "latency-p99-minor", "signal": "latency_p99", "op": ">", "baseline": "baseline_latency_p99",
     "factor": 1.25, "decision": PARTIAL,
     "source": "as latency-p95-minor, on the 99th percentile"},
)


class DecisionError(ValueError):
    """Bad input: the message names the signal, rule or option and the bad value."""


def _show(value, limit=120):
    """A value for a message: quoted, control characters escaped, a very long one cut."""
    text = "'%s'" % value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fmt(number):
    """A number as people write it: 0.05, 3, 0.3333."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return "%.4g" % number


def _finite(value, where):
    """A float from a number or numeric string; DecisionError naming `where` and the value otherwise."""
    if isinstance(value, bool):
        raise DecisionError("%s: %s is not a number" % (where, _show(value)))
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf  # an integer too large for a float
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise DecisionError("%s: %s is not a number" % (where, _show(value))) from None
    else:
        raise DecisionError("%s: %s is not a number (it is a %s)" % (where, _show(value), type(value).__name__))
    if math.isnan(number) or math.isinf(number):
        raise DecisionError("%s: %s is not a finite number (an empty or 0/0 measurement is no measurement: "
                            "leave the signal out or set it to null)" % (where, _show(value)))
    return number


# --------------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------------

def _check_rule(rule, where, signals):
    """Validate one complete rule (after merging); return it normalised."""
    for key in sorted(rule):
        if key not in RULE_KEYS:
            raise DecisionError("%s.%s: unknown rule option (a rule takes %s)" % (where, key, ", ".join(RULE_KEYS)))
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
        raise DecisionError("%s.id: %s is not a rule id (letters, digits, '-', '_' and '.')" % (where, _show(rule_id)))
    where = "%s (rule %s)" % (where, rule_id)
    out = {"id": rule_id}
    signal = rule.get("signal")
    if not isinstance(signal, str) or not _NAME_RE.match(signal):
        raise DecisionError("%s.signal: %s is not a signal name" % (where, _show(signal)))
    out["signal"] = signal
    op = rule.get("op", ">")
    op = OP_ALIASES.get(op, op) if isinstance(op, str) else None
    if op not in OPS:
        raise DecisionError("%s.op: %s is not one of %s" % (where, _show(rule.get("op")),
                                                            ", ".join(list(OPS) + list(OP_ALIASES))))
    out["op"] = op
    has_threshold = rule.get("threshold") is not None
    has_baseline = rule.get("baseline") is not None
    if has_threshold == has_baseline:
        raise DecisionError("%s: give either threshold (a number) or baseline (a signal name, with factor); "
                            "it has %s" % (where, "both" if has_threshold else "neither"))
    if has_threshold:
        out["threshold"] = _finite(rule["threshold"], where + ".threshold")
        if rule.get("factor") is not None:
            raise DecisionError("%s.factor: only a baseline rule takes a factor (this rule has a threshold)" % where)
    else:
        baseline = rule["baseline"]
        if not isinstance(baseline, str) or not _NAME_RE.match(baseline):
            raise DecisionError("%s.baseline: %s is not a signal name" % (where, _show(baseline)))
        out["baseline"] = baseline
        out["factor"] = _finite(rule.get("factor", 1), where + ".factor")
    if rule.get("min_value") is not None:
        out["min_value"] = _finite(rule["min_value"], where + ".min_value")
    decision = rule.get("decision")
    if decision not in DECISIONS:
        raise DecisionError("%s.decision: %s is not one of %s (to turn a rule off, set enabled: false)"
                            % (where, _show(decision), ", ".join(DECISIONS)))
    out["decision"] = decision
    enabled = rule.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DecisionError("%s.enabled: %s is not a boolean" % (where, _show(enabled)))
    out["enabled"] = enabled
    for key in ("description", "source"):
        if rule.get(key) is not None:
            out[key] = str(rule[key])
    signals.add(out["signal"])
    if "baseline" in out:
        signals.add(out["baseline"])
    return out


def _user_rules(matrix):
    """The user's rules as a list of dicts with ids; a dict of id -> rule is accepted too."""
    if matrix is None:
        return []
    if isinstance(matrix, dict):
        rules = []
        for rule_id, rule in matrix.items():
            if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
                raise DecisionError("matrix: %s is not a rule id (letters, digits, '-', '_' and '.')" % _show(rule_id))
            if rule is None:
                rule = {}
            if not isinstance(rule, dict):
                raise DecisionError("matrix.%s: %s is not a rule (a dictionary)" % (rule_id, _show(rule)))
            if "id" in rule and rule["id"] != rule_id:
                raise DecisionError("matrix.%s.id: %s differs from its key" % (rule_id, _show(rule["id"])))
            rules.append(dict(rule, id=rule_id))
        return rules
    if not isinstance(matrix, (list, tuple)):
        raise DecisionError("matrix: %s is not a list of rules (or a dictionary of rule id -> rule)" % _show(matrix))
    for index, rule in enumerate(matrix):
        if not isinstance(rule, dict):
            raise DecisionError("matrix[%d]: %s is not a rule (a dictionary)" % (index, _show(rule)))
        if "id" not in rule:
            raise DecisionError("matrix[%d].id: required (an existing id changes that rule, a new id adds one)"
                                % index)
        if not isinstance(rule["id"], str):  # checked in full later; a list or dict id cannot even be looked up
            raise DecisionError("matrix[%d].id: %s is not a rule id (letters, digits, '-', '_' and '.')"
                                % (index, _show(rule["id"])))
    return list(matrix)


def build_matrix(matrix=None, replace=False):
    """(rules, signal kinds) of the effective matrix.

    Without `replace`, the user's rules are laid over DEFAULT_MATRIX: a rule with the id of a default
    rule changes only the options it gives (threshold, decision, enabled...), a new id is added after
    the defaults. With `replace`, only the user's rules count.
    """
    if not isinstance(replace, bool):
        raise DecisionError("replace: %s is not a boolean" % _show(replace))
    user = _user_rules(matrix)
    merged = [] if replace else [dict(rule) for rule in DEFAULT_MATRIX]
    index_of = {rule["id"]: i for i, rule in enumerate(merged)}
    seen = set()
    for position, rule in enumerate(user):
        rule_id = rule["id"]
        if rule_id in seen:
            raise DecisionError("matrix[%d].id: %s is given more than once" % (position, _show(rule_id)))
        seen.add(rule_id)
        if rule_id in index_of:
            merged[index_of[rule_id]].update(rule)
            # A user rule that switches to a baseline drops the default's threshold, and the other way round.
            if "baseline" in rule and "threshold" not in rule:
                merged[index_of[rule_id]].pop("threshold", None)
            if "threshold" in rule and "baseline" not in rule:
                merged[index_of[rule_id]].pop("baseline", None)
                merged[index_of[rule_id]].pop("factor", None)
        else:
            index_of[rule_id] = len(merged)
            merged.append(dict(rule))
    names = set()
    rules = []
    for position, rule in enumerate(merged):
        where = "matrix[%d]" % position
        rules.append(_check_rule(rule, where, names))
    kinds = {name: kind for name, (kind, unused) in SIGNALS.items()}
    for name in names:
        kinds.setdefault(name, "number")
    return rules, kinds


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------

def normalize_signals(signals, kinds):
    """{name: float} of the measured signals (None means not measured); DecisionError on bad input."""
    if signals is None:
        return {}
    if not isinstance(signals, dict):
        raise DecisionError("signals: %s is not a dictionary of signal name -> measured value" % _show(signals))
    out = {}
    for name in sorted(signals, key=str):
        value = signals[name]
        if not isinstance(name, str) or name not in kinds:
            raise DecisionError("signals: unknown signal %s (value %s); known signals: %s; a matrix rule can "
                                "introduce a new one" % (_show(name), _show(value), ", ".join(sorted(kinds))))
        if value is None:
            continue
        kind = kinds[name]
        where = "signals.%s" % name
        if kind == "flag" and isinstance(value, bool):
            out[name] = 1.0 if value else 0.0
            continue
        number = _finite(value, where)
        if kind == "ratio" and not 0.0 <= number <= 1.0:
            raise DecisionError("%s: %s is not a fraction between 0 and 1 (give 5%% as 0.05)" % (where, _show(value)))
        if kind in ("seconds", "count", "flag") and number < 0:
            raise DecisionError("%s: %s is negative (a %s is 0 or more)" % (
                where, _show(value), "duration" if kind == "seconds" else "count"))
        out[name] = number
    return out


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def _evaluate(rule, values):
    """(matched, reason) of one rule, or None when its signals were not measured."""
    value = values.get(rule["signal"])
    if value is None:
        return None
    compare, words = OPS[rule["op"]]
    if "threshold" in rule:
        limit = rule["threshold"]
        against = "the threshold %s" % fmt(limit)
    else:
        base = values.get(rule["baseline"])
        if base is None:
            return None
        limit = rule["factor"] * base
        against = "%s x %s %s = %s" % (fmt(rule["factor"]), rule["baseline"], fmt(base), fmt(limit))
    matched = compare(value, limit)
    floor = rule.get("min_value")
    if matched and floor is not None and value < floor:
        return False, "%s %s is %s %s, but under the rule's min_value %s" % (
            rule["signal"], fmt(value), words, against, fmt(floor))
    if matched:
        return True, "%s %s is %s %s" % (rule["signal"], fmt(value), words, against)
    return False, "%s %s is not %s %s" % (rule["signal"], fmt(value), words, against)


def decide(signals, matrix=None, replace=False):
    """The decision for these signals under the default matrix (changed by `matrix`) or only `matrix`.

    Returns {decision, reason, matched_rule, matched, not_evaluated, signals}:
    `matched` lists every matching rule (most severe first) with its decision and reason;
    `not_evaluated` the ids of enabled rules whose signal or baseline was not measured.
    """
    rules, kinds = build_matrix(matrix, replace)
    values = normalize_signals(signals, kinds)
    matched, not_evaluated, checked = [], [], 0
    for order, rule in enumerate(rules):
        if not rule["enabled"]:
            continue
        outcome = _evaluate(rule, values)
        if outcome is None:
            not_evaluated.append(rule["id"])
            continue
        checked += 1
        if outcome[0]:
            matched.append((-SEVERITY[rule["decision"]], order, {
                "rule": rule["id"], "decision": rule["decision"], "reason": outcome[1]}))
    matched = [item for unused, unused, item in sorted(matched, key=lambda m: (m[0], m[1]))]
    result = {"matched": matched, "not_evaluated": not_evaluated, "signals": values}
    if matched:
        top = matched[0]
        reason = "%s rollback: %s (rule %s)" % (top["decision"], top["reason"], top["rule"])
        if len(matched) > 1:
            reason += "; also matched: %s" % ", ".join(m["rule"] for m in matched[1:])
        result.update(decision=top["decision"], reason=reason, matched_rule=top["rule"])
    else:
        if values:
            shown = ", ".join("%s=%s" % (name, fmt(value)) for name, value in sorted(values.items()))
            reason = "no rollback: no rule matched (%d rules checked against %s)" % (checked, shown)
        else:
            reason = "no rollback: no signal was measured, so no rule could be checked"
        if not_evaluated:
            reason += "; %d rules not evaluated for want of a measurement" % len(not_evaluated)
        result.update(decision=NONE, reason=reason, matched_rule=None)
    return result
