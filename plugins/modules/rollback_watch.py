#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback_watch
short_description: Watch a fleet's signals after a deploy and decide whether to roll back
version_added: 0.1.0
author:
  - fleetops maintainers (@fleetops)
description:
  - Measures signals in rounds for up to O(window) seconds and rules on them with the decision matrix of the
    P(fleetops.rollback.rollback_decision#filter) filter, which gives V(immediate), V(standard), V(partial) or
    V(none) and the reason.
  - Each round runs every PromQL query of O(queries) against the Prometheus server at O(prometheus_url) (one
    signal each), runs the health checks of every target of O(targets) once (the checks of
    P(fleetops.rollback.health_gate#module)), adds the fixed O(signals), and decides.
  - A V(k8s_rollout) check in O(targets) makes a Kubernetes workload a target. It fails while the workload's rollout
    is incomplete, past its progress deadline, or has a crash-looping pod, so a bad rollout counts as a failing
    host.
  - From the health checks come the signals C(health_failures) (targets whose checks failed more than O(failures)
    rounds in a row), C(health_failure_ratio), C(unavailable_seconds) (the longest current run of failing rounds of
    a target) and C(hosts).
  - The watch ends at the first round whose decision is not V(none), so a bad deploy is caught as soon as a rule
    matches; otherwise when no further round fits in the window, with the decision of the last round (V(none)).
  - Rounds start every O(interval) seconds from the start (a round that overruns is followed at once); the wait
    between rounds is bounded by the next round and the end of the window, never a fixed sleep.
  - The module only observes, so it never reports a change. The guard playbook of this collection
    (C(playbooks/guard.yml)) runs it and starts the matching rollback.
options:
  queries:
    description:
      - Signal name to PromQL query. Each query must give one value (a scalar, or a vector of one series;
        aggregate with C(sum), C(max) or C(avg)).
      - The names are those of the decision matrix, for example C(error_rate), C(baseline_error_rate),
        C(latency_p95), C(baseline_latency_p95) (see the filter's documentation), or a signal a rule of O(matrix)
        introduces.
      - A query that fails, returns several series or a value out of range for its signal leaves the signal
        unmeasured for that round and says why in RV(query_errors).
    type: dict
    default: {}
  prometheus_url:
    description:
      - The Prometheus server, for example V(http://prometheus:9090). Required with O(queries).
    type: str
  prometheus_headers:
    description:
      - Request headers for Prometheus (an C(Authorization) header, say). Treated as secrets.
    type: dict
  validate_certs:
    description: Whether to verify the TLS certificate of an V(https://) Prometheus.
    type: bool
    default: true
  on_empty:
    description:
      - What a query that returns no data (no series, or NaN as 0/0 gives) means.
      - V(skip) leaves the signal unmeasured for the round (its rules are not evaluated); V(zero) counts it as 0.
      - To count "no errors yet" as 0 for one query only, append "or vector(0)" to it instead.
    type: str
    choices: [skip, zero]
    default: skip
  targets:
    description:
      - The hosts to health-check every round, each with a name and its checks (the checks of the
        P(fleetops.rollback.health_gate#module) module).
  failures:
    description:
      - Failing health rounds in a row a target may have before it counts as failing. The default 2 makes a target
        fail on its third failing round in a row.
    type: int
    default: 2
  signals:
    description:
      - Fixed signals added to every round, for example C(critical_vulnerabilities) from a scan of the release,
        C(test_pass_rate) from the post-deploy tests, or baselines measured before the deploy.
    type: dict
    default: {}
  matrix:
    description:
      - Rules that change or extend the default decision matrix, as for the filter's O(fleetops.rollback.rollback_decision#filter:matrix).
    type: raw
  matrix_replace:
    description: Use only the rules of O(matrix), not the defaults.
    type: bool
    default: false
  window:
    description: Seconds to watch. Must be greater than 0 and at most 604800 (a week).
    type: float
    default: 300
  interval:
    description: Seconds between the starts of two rounds. Must be greater than 0 and at most 604800 (a week).
    type: float
    default: 5
  request_timeout:
    description: Seconds one query or one health check may take. Greater than 0, at most 3600.
    type: float
    default: 5
extends_documentation_fragment:
  - fleetops.rollback.health_checks
  - fleetops.rollback.attributes
  - fleetops.rollback.attributes.observer
  - fleetops.rollback.attributes.platform
attributes:
  check_mode:
    details: The module only observes, so check mode watches as usual.
notes:
  - Run it once for the fleet from the controller (C(run_once), C(delegate_to=localhost)); the guard playbook does.
  - Bad input (an unknown signal, a bad rule, a check without its required options, a O(prometheus_url) that is not
    an http(s) URL with a host or that carries credentials) fails before anything is measured, with a message naming
    the option and the value (a password is hidden).
  - A SIGTERM stops the watch at once with a message saying so; commands of checks still running are killed.
seealso:
  - plugin: fleetops.rollback.rollback_decision
    plugin_type: filter
  - module: fleetops.rollback.health_gate
"""

EXAMPLES = r"""
- name: Watch the web tier for ten minutes after the deploy
  fleetops.rollback.rollback_watch:
    prometheus_url: http://prometheus:9090
    queries:
      error_rate: >-
        (sum(rate(http_requests_total{job="web",code=~"5.."}[1m])) or vector(0))
        / sum(rate(http_requests_total{job="web"}[1m]))
      baseline_error_rate: >-
        (sum(rate(http_requests_total{job="web",code=~"5.."}[1h] offset 1h)) or vector(0))
        / sum(rate(http_requests_total{job="web"}[1h] offset 1h))
      latency_p95: histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="web"}[1m])))
      baseline_latency_p95: >-
        histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="web"}[1h] offset 1h)))
    targets: "{{ dict(ansible_play_batch | zip(ansible_play_batch | map('extract', hostvars, 'health_gate_checks')))
                 | dict2items(key_name='name', value_name='checks') }}"
    signals:
      critical_vulnerabilities: "{{ scan.critical | default(omit) }}"
    window: 600
    interval: 10
  run_once: true
  delegate_to: localhost
  register: watch

- name: Say what it found
  ansible.builtin.debug:
    msg: "{{ watch.decision }}: {{ watch.reason }}"
"""

RETURN = r"""
decision:
  description: V(immediate), V(standard), V(partial) or V(none), from the last round.
  returned: always
  type: str
  sample: immediate
reason:
  description: The sentence naming the signal, its value and the threshold (or why nothing matched).
  returned: always
  type: str
  sample: "immediate rollback: error_rate 0.3 is above the threshold 0.05 (rule error-rate-high)"
matched_rule:
  description: The id of the rule behind the decision, or null.
  returned: always
  type: str
  sample: error-rate-high
matched:
  description: Every matching rule of the last round, most severe first (C(rule), C(decision), C(reason)).
  returned: always
  type: list
  elements: dict
not_evaluated:
  description: The ids of the rules whose signals were not measured in the last round.
  returned: always
  type: list
  elements: str
signals:
  description: The signals of the last round (measured ones only), the input of the decision.
  returned: always
  type: dict
  sample: {error_rate: 0.3, hosts: 3, health_failures: 0, health_failure_ratio: 0.0, unavailable_seconds: 0.0}
detected:
  description: Whether a round called for a rollback (the decision is not V(none)).
  returned: always
  type: bool
detected_after:
  description: Seconds from the start of the watch to the start of the round that called for a rollback, or null.
  returned: always
  type: float
  sample: 4.01
rounds:
  description: The number of rounds run.
  returned: always
  type: int
seconds:
  description: Seconds the watch took.
  returned: always
  type: float
window:
  description: The window watched, in seconds.
  returned: always
  type: float
started_at:
  description: When the watch started, seconds since the epoch.
  returned: always
  type: float
ended_at:
  description: When the watch ended, seconds since the epoch.
  returned: always
  type: float
query_errors:
  description: Signal name to the error of its query in the last round (no answer, several series, out of range).
  returned: always
  type: dict
failing_hosts:
  description: The targets failing their health checks at the end.
  returned: always
  type: list
  elements: str
health:
  description: Per target, C(failing), C(failed_rounds_in_a_row) and C(last_error).
  returned: always
  type: dict
history:
  description: The last 20 rounds, oldest first, each with C(t) (seconds from the start), C(decision),
    C(matched_rule), C(signals) and C(errors).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError, url_credentials
from ansible_collections.fleetops.rollback.plugins.module_utils._guard.watch import ON_EMPTY, Watch, WatchInputError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.schema import CHECK_OPTIONS


class RollbackWatch(ModuleBase):
    uses_store = False
    argument_spec = dict(
        queries=dict(type="dict", default={}),
        prometheus_url=dict(type="str"),
        prometheus_headers=dict(type="dict", no_log=True),
        validate_certs=dict(type="bool", default=True),
        on_empty=dict(type="str", default="skip", choices=list(ON_EMPTY)),
        targets=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            checks=dict(type="list", elements="dict", required=True, options=CHECK_OPTIONS),
        )),
        failures=dict(type="int", default=2),
        signals=dict(type="dict", default={}),
        matrix=dict(type="raw"),
        matrix_replace=dict(type="bool", default=False),
        window=dict(type="float", default=300.0),
        interval=dict(type="float", default=5.0),
        request_timeout=dict(type="float", default=5.0),
    )

    def run(self):
        p = self.params
        urls = {"prometheus_url": p["prometheus_url"], "targets": p["targets"]}
        self.module.no_log_values.update(url_credentials(urls))
        try:
            watch = Watch(queries=p["queries"], prometheus_url=p["prometheus_url"],
                          prometheus_headers=p["prometheus_headers"], validate_certs=p["validate_certs"],
                          targets=p["targets"], signals=p["signals"], window=p["window"], interval=p["interval"],
                          failures=p["failures"], matrix=p["matrix"], matrix_replace=p["matrix_replace"],
                          request_timeout=p["request_timeout"], on_empty=p["on_empty"])
        except WatchInputError as err:
            raise RollbackError(str(err)) from None
        self.progress.at("watching the signals (no decision yet)")
        report = watch.run()
        for name, error in sorted(report["query_errors"].items()):
            self.module.warn("rollback_watch: signal %s was not measured in the last round: %s" % (name, error))
        return dict(changed=False, **report)


def main():
    RollbackWatch().main()


if __name__ == "__main__":
    main()
