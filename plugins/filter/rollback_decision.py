# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: rollback_decision
short_description: Decide from measured signals whether to roll back, and how
version_added: 0.1.0
author:
  - fleetops maintainers (@fleetops)
description:
  - Maps measured signals (error rate and latency against their baselines, failing health checks, critical
    vulnerabilities, test pass rate...) to a rollback decision, V(immediate), V(standard), V(partial) or
    V(none), with a sentence that names the signal, its value and the threshold it crossed.
  - The decision matrix is an ordered list of rules. Each rule compares one signal with a fixed O(matrix[].threshold)
    or with O(matrix[].factor) times another signal (O(matrix[].baseline)) and names a decision. Every rule whose
    signals were measured is checked; the most severe decision among the matching rules wins (V(immediate) over
    V(standard) over V(partial)), the first such rule in matrix order gives the reason.
  - A signal that is absent or null was not measured; the rules that need it are not evaluated (they are listed in
    RV(_value.not_evaluated)). A missing measurement is never taken as healthy or as failing.
  - The default matrix encodes the triggers of the runbooks this collection was written from; see the README section
    "Automatic rollback" for every rule, its threshold and the runbook row behind it. O(matrix) changes or extends it.
  - "Default rules, most severe first (C(id): condition -> decision):
    C(critical-vulnerability): critical_vulnerabilities > 0 -> immediate;
    C(data-corruption): data_corruption > 0 -> immediate;
    C(error-rate-high): error_rate > 0.05 -> immediate;
    C(error-rate-spike): error_rate > 3 x baseline_error_rate (and at least 0.01) -> immediate;
    C(health-failing): health_failures >= 1 -> immediate;
    C(health-failing-ratio): health_failure_ratio > 0 -> immediate;
    C(service-unavailable): unavailable_seconds > 300 -> immediate;
    C(error-rate-increase): error_rate > 1.1 x baseline_error_rate (and at least 0.01) -> standard;
    C(latency-p95-degraded) and C(latency-p99-degraded): latency > 1.5 x its baseline -> standard;
    C(tests-failing): test_pass_rate < 0.95 -> standard;
    C(memory-increase): memory_increase > 0.3 -> standard;
    C(memory-leak): memory_growth_rate > 0.1 -> standard;
    C(latency-p95-minor) and C(latency-p99-minor): latency > 1.25 x its baseline -> partial."
  - >-
    Bad input fails with a message naming the signal or rule and the value, for example
    C(signals: unknown signal 'eror_rate' ...) or C(signals.error_rate: 5 is not a fraction between 0 and 1 ...).
positional: _input
options:
  _input:
    description:
      - The measured signals, signal name to value. Numbers, numeric strings (as Prometheus returns them) or null
        (not measured).
      - "Known signals: V(error_rate), V(baseline_error_rate), V(health_failure_ratio) and V(test_pass_rate)
        (fractions from 0 to 1); V(latency_p95), V(baseline_latency_p95), V(latency_p99), V(baseline_latency_p99)
        and V(unavailable_seconds) (seconds); V(health_failures), V(hosts) and V(critical_vulnerabilities)
        (counts); V(memory_increase) and V(memory_growth_rate) (fractions, 0.3 is 30%); V(data_corruption)
        (a count, or a boolean)."
      - A signal named by a rule of O(matrix) is known too (any finite number).
      - An unknown name, a value that is not a finite number, a fraction outside 0-1 or a negative count fails.
    type: dict
    required: true
  matrix:
    description:
      - Rules that change or extend the default matrix, as a list of rules or a dictionary of rule id to rule.
      - A rule with the O(matrix[].id) of a default rule changes only the options it gives; a new id adds a rule
        after the defaults.
    type: raw
    suboptions:
      id:
        description: The rule's id; the id of a default rule changes that rule.
        type: str
        required: true
      signal:
        description: The signal the rule compares.
        type: str
      op:
        description: The comparison, V(>), V(>=), V(<), V(<=), V(==) or V(!=) (or V(gt), V(ge), V(lt), V(le), V(eq), V(ne)).
        type: str
        default: ">"
      threshold:
        description: A fixed number to compare the signal with. Exclusive with O(matrix[].baseline).
        type: float
      baseline:
        description:
          - Another signal (usually the value of the known good state); the signal is compared with
            O(matrix[].factor) times it. Exclusive with O(matrix[].threshold).
        type: str
      factor:
        description: The multiple of the baseline for a baseline rule.
        type: float
        default: 1
      min_value:
        description: The rule matches only when the signal is at least this (a floor, so a baseline of 0 does not make noise a trigger).
        type: float
      decision:
        description: What a match calls for, V(immediate), V(standard) or V(partial).
        type: str
      enabled:
        description: V(false) turns the rule off.
        type: bool
        default: true
      description:
        description: Free text for people.
        type: str
      source:
        description: Where the rule comes from (a runbook row, an incident).
        type: str
  replace:
    description: Use only the rules of O(matrix), not the defaults.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Decide from measured signals
  ansible.builtin.set_fact:
    decision: >-
      {{ {'error_rate': 0.12, 'baseline_error_rate': 0.01, 'latency_p95': 0.2, 'baseline_latency_p95': 0.18}
         | fleetops.rollback.rollback_decision }}
  # decision.decision == 'immediate'
  # decision.reason == 'immediate rollback: error_rate 0.12 is above the threshold 0.05 (rule error-rate-high);
  #                     also matched: error-rate-spike'

- name: Stricter error rate, critical vulnerabilities only reviewed, and a rule of our own
  ansible.builtin.set_fact:
    decision: >-
      {{ signals | fleetops.rollback.rollback_decision(matrix={
           'error-rate-high': {'threshold': 0.02},
           'critical-vulnerability': {'decision': 'standard'},
           'queue-backlog': {'signal': 'queue_depth', 'op': '>', 'threshold': 10000, 'decision': 'standard'}}) }}

- name: Only our own rules
  ansible.builtin.set_fact:
    decision: >-
      {{ signals | fleetops.rollback.rollback_decision(replace=true, matrix=[
           {'id': 'errors', 'signal': 'error_rate', 'op': '>', 'threshold': 0.1, 'decision': 'immediate'}]) }}
"""

RETURN = r"""
_value:
  description: The decision and why.
  type: dict
  contains:
    decision:
      description: V(immediate), V(standard), V(partial) or V(none).
      type: str
      sample: immediate
    reason:
      description: A sentence naming the rule's signal, its value and the threshold it crossed (or why nothing matched).
      type: str
      sample: "immediate rollback: error_rate 0.3 is above the threshold 0.05 (rule error-rate-high)"
    matched_rule:
      description: The id of the rule behind the decision, or null for V(none).
      type: str
      sample: error-rate-high
    matched:
      description: Every matching rule, most severe first, each with C(rule), C(decision) and C(reason).
      type: list
      elements: dict
    not_evaluated:
      description: The ids of the enabled rules whose signal or baseline was not measured.
      type: list
      elements: str
    signals:
      description: The measured signals as numbers (null ones left out).
      type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetops.rollback.plugins.module_utils._guard.decision import DecisionError, decide


def rollback_decision(signals, matrix=None, replace=False):
    """signals -> {decision, reason, matched_rule, matched, not_evaluated, signals}."""
    try:
        return decide(signals, matrix=matrix, replace=replace)
    except DecisionError as err:
        raise AnsibleFilterError("rollback_decision: %s" % err) from None


class FilterModule:
    """fleetops.rollback filters."""

    def filters(self):
        return {"rollback_decision": rollback_decision}
