#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: health_gate
short_description: Wait until a host or a whole fleet passes its health checks, without fixed sleeps
version_added: 0.1.0
author:
  - fleetops maintainers (@fleetops)
description:
  - Polls health checks in rounds until each target has a verdict, and returns the verdict, the time it
    took and the samples it was based on.
  - A check is an HTTP request, a TCP connection, a command, a PromQL query against a Prometheus server
    (a value against a threshold, or against a baseline query as a ratio), or the rollout of a Kubernetes
    workload (V(k8s_rollout), every replica updated and available and no crash-looping pod of its current
    revision).
  - A round runs every check of a target once, in order; the round passes only when every check passes.
  - A target is V(healthy) after O(successes) passing rounds in a row and V(unhealthy) as soon as it has
    O(failures) + 1 failing rounds in a row. A target with neither verdict when O(timeout) seconds have
    passed gets the verdict V(timeout).
  - Rounds are scheduled every O(interval) seconds from the start (a round that takes longer than
    O(interval) is followed by the next one at once). Waiting is bounded by the next due round and the
    deadline, so a verdict is returned as soon as it is known; the deadline also caps every request.
  - With O(targets), every target is polled concurrently (a bounded pool of threads serves all targets on
    schedule), which is the fast way to gate a whole fleet from the controller in one task.
  - The module only observes, so it never reports a change.
options:
  checks:
    description:
      - The checks of one target, the host the module runs on (named O(name)).
      - Mutually exclusive with O(targets); one of the two is required.
  name:
    description:
      - The name of the single target checked with O(checks), as it appears in the results.
    type: str
    default: local
  targets:
    description:
      - Several targets, polled concurrently, each with its own checks.
      - Mutually exclusive with O(checks); one of the two is required.
  interval:
    description:
      - Seconds between the starts of two rounds of a target. Must be greater than 0 and at most 604800 (a week).
    type: float
    default: 1.0
  timeout:
    description:
      - The overall deadline in seconds. Targets without a verdict by then get the verdict V(timeout).
      - Must be greater than 0 and at most 604800 (a week). It is kept on the monotonic clock, so a wall clock
        that jumps (NTP, a VM resumed) moves neither the deadline nor the rounds.
      - A round still waiting for an answer at the deadline is abandoned (its command killed); the target's last
        error says which round did not answer.
    type: float
    default: 60.0
  successes:
    description:
      - Passing rounds in a row needed for a V(healthy) verdict. At least 1.
    type: int
    default: 3
  failures:
    description:
      - Failing rounds in a row that are tolerated; one more gives an V(unhealthy) verdict at once.
      - V(0) means the first failing round is a verdict.
    type: int
    default: 3
  fail_on_unhealthy:
    description:
      - Fail the task when the overall verdict is not V(healthy), with a message naming every target that is
        not healthy and its last error. All the return values are returned with the failure too.
      - Set V(false) to register the verdict and decide later (the P(fleetops.rollback.health_gate#role) role
        does this to fail exactly the hosts that did not recover).
    type: bool
    default: true
extends_documentation_fragment:
  - fleetops.rollback.health_checks
  - fleetops.rollback.health_checks.checks
  - fleetops.rollback.attributes
  - fleetops.rollback.attributes.observer
  - fleetops.rollback.attributes.platform
attributes:
  check_mode:
    details: The module only observes, so check mode runs the checks as usual.
notes:
  - >-
    Input is validated before anything runs; a bad option fails with a message naming the option and
    the value, for example C(checks[1].type: 'htp' is not one of http, tcp, command, prometheus, k8s_rollout).
  - Each target keeps its last 20 rounds in its samples, to keep results small.
  - A SIGTERM stops the gate at once with the message C(stopped by SIGTERM while polling the health checks of N
    targets (no verdict yet)); commands of checks still running are killed.
  - The overall verdict is the worst of the targets' verdicts, V(unhealthy) being worse than V(timeout).
  - The P(fleetops.rollback.health_gate#role) role runs this module once from the controller over every host
    of the play and fails exactly the hosts that did not pass.
"""

EXAMPLES = r"""
- name: Wait until the application answers 200 with "ok" three times in a row
  fleetops.rollback.health_gate:
    checks:
      - type: http
        url: http://127.0.0.1:8080/health
        body: '"status":\s*"ok"'
        max_latency: 0.5
      - type: tcp
        port: 5432
    interval: 1
    successes: 3
    failures: 2
    timeout: 120

- name: Gate a service with a command check (an argv list, never a shell)
  fleetops.rollback.health_gate:
    checks:
      - type: command
        argv: [systemctl, is-active, nginx]
        stdout: '^active'

- name: Gate the whole fleet at once from the controller, then decide per host
  fleetops.rollback.health_gate:
    targets: "{{ dict(ansible_play_batch | zip(ansible_play_batch | map('extract', hostvars, 'app_checks')))
                 | dict2items(key_name='name', value_name='checks') }}"
    fail_on_unhealthy: false
    timeout: 300
  run_once: true
  delegate_to: localhost
  register: gate

- name: Hold the deploy until the fleet's error ratio is under 1% (no errors at all counts as 0)
  fleetops.rollback.health_gate:
    checks:
      - type: prometheus
        url: http://127.0.0.1:9090
        query: >-
          (sum(rate(app_requests_total{job="web",code=~"5.."}[1m])) or vector(0))
          / sum(rate(app_requests_total{job="web"}[1m]))
        max: 0.01
    successes: 5
    timeout: 300

- name: The p95 latency of the canary within 1.25 times that of the rest of the fleet
  fleetops.rollback.health_gate:
    checks:
      - type: prometheus
        url: http://127.0.0.1:9090
        query: histogram_quantile(0.95, sum by (le) (rate(app_request_duration_seconds_bucket{host="web1"}[1m])))
        baseline_query: >-
          histogram_quantile(0.95, sum by (le) (rate(app_request_duration_seconds_bucket{host!="web1"}[1m])))
        max_ratio: 1.25
        on_empty: fail

- name: Wait until the web Deployment has rolled out and none of its new pods crash-loops
  fleetops.rollback.health_gate:
    checks:
      - type: k8s_rollout
        kind: Deployment
        name: web
        namespace: prod
        context: prod-cluster
    interval: 2
    successes: 2
    failures: 0
    timeout: 300
  delegate_to: localhost

- name: Send a bearer token (header values never appear in results)
  fleetops.rollback.health_gate:
    checks:
      - type: http
        url: https://app.example.com/health
        headers:
          Authorization: "Bearer {{ health_token }}"
        status: [200, 204]
"""

RETURN = r"""
verdict:
  description:
    - The overall verdict, V(healthy) when every target is healthy, else the worst verdict of the targets
      (V(unhealthy) is worse than V(timeout)).
  returned: always
  type: str
  sample: healthy
seconds:
  description: Seconds from the start until the overall verdict.
  returned: always
  type: float
  sample: 3.012
healthy_targets:
  description: The names of the targets whose verdict is V(healthy).
  returned: always
  type: list
  elements: str
  sample: [web1, web2]
unhealthy_targets:
  description: The names of the targets whose verdict is not V(healthy) (V(unhealthy) or V(timeout)).
  returned: always
  type: list
  elements: str
  sample: [web3]
targets:
  description: Per target name, its verdict and how it got there.
  returned: always
  type: dict
  contains:
    verdict:
      description: V(healthy), V(unhealthy) or V(timeout).
      type: str
      returned: always
    seconds:
      description: Seconds from the start until this target's verdict.
      type: float
      returned: always
    rounds:
      description: The number of rounds run for this target.
      type: int
      returned: always
    passed_rounds:
      description: How many of those rounds passed.
      type: int
      returned: always
    last_error:
      description: The error of the most recent failing round (its failing checks joined with C(; )), or null.
      type: str
      returned: always
    samples:
      description: The target's last 20 rounds, like RV(samples).
      type: list
      elements: dict
      returned: always
  sample:
    web3:
      verdict: unhealthy
      seconds: 3.004
      rounds: 4
      passed_rounds: 0
      last_error: "GET http://web3:8080/health: status 500, expected 200"
      samples: []
samples:
  description:
    - The rounds of the single target checked with O(checks), the last 20 kept, oldest first.
  returned: when O(checks) is used
  type: list
  elements: dict
  contains:
    t:
      description: Seconds from the start to the start of the round.
      type: float
    ok:
      description: Whether every check of the round passed.
      type: bool
    latency:
      description: Seconds the whole round took.
      type: float
    checks:
      description:
        - One entry per check, in order, with C(type), C(ok), C(latency) (seconds), and C(detail) when it passed
          or C(error) when it failed.
        - V(http) checks add C(status) (the HTTP status, or null without an answer); V(command) checks add
          C(rc) (null when the command could not run or timed out); V(prometheus) checks add C(value) (the value
          compared, the worst series' when there are several, null without data), and with a baseline
          C(baseline) and C(ratio) (null when infinite), and C(series) when the query returned several;
          V(k8s_rollout) checks add C(state) (V(done), V(progressing) or V(failed), the worst of the workloads';
          null when none could be read) and C(workloads) (how many were judged).
      type: list
      elements: dict
  sample:
    - t: 0.0
      ok: true
      latency: 0.0031
      checks:
        - type: http
          ok: true
          status: 200
          latency: 0.0029
          detail: "GET http://127.0.0.1:8080/health: status 200 in 0.003s"
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError, url_credentials
from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import HealthInputError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import parse_targets
from ansible_collections.fleetops.rollback.plugins.module_utils._health.policy import parse_policy
from ansible_collections.fleetops.rollback.plugins.module_utils._health.poll import poll
from ansible_collections.fleetops.rollback.plugins.module_utils._health.schema import CHECK_OPTIONS
from ansible_collections.fleetops.rollback.plugins.module_utils._health.verdict import HEALTHY, failure_message


class HealthGate(ModuleBase):
    uses_store = False
    argument_spec = dict(
        checks=dict(type="list", elements="dict", options=CHECK_OPTIONS),
        name=dict(type="str", default="local"),
        targets=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            checks=dict(type="list", elements="dict", required=True, options=CHECK_OPTIONS),
        )),
        interval=dict(type="float", default=1.0),
        timeout=dict(type="float", default=60.0),
        successes=dict(type="int", default=3),
        failures=dict(type="int", default=3),
        fail_on_unhealthy=dict(type="bool", default=True),
    )
    module_kwargs = dict(
        mutually_exclusive=[("checks", "targets")],
        required_one_of=[("checks", "targets")],
    )

    def run(self):
        params = self.params
        # A password in a URL is refused below, but the task's arguments are echoed back: hide it there too.
        self.module.no_log_values.update(url_credentials([params["checks"], params["targets"]]))
        try:
            policy = parse_policy(interval=params["interval"], timeout=params["timeout"],
                                  successes=params["successes"], failures=params["failures"])
            targets = parse_targets(checks=params["checks"], targets=params["targets"], name=params["name"])
        except HealthInputError as err:
            raise RollbackError(str(err)) from None
        self.progress.at("polling the health checks of %d target%s (no verdict yet)"
                         % (len(targets), "" if len(targets) == 1 else "s"))
        report = poll(targets, policy)
        result = dict(changed=False, **report)
        if params["checks"] is not None:
            result["samples"] = report["targets"][params["name"]]["samples"]
        if params["fail_on_unhealthy"] and report["verdict"] != HEALTHY:
            raise RollbackError(failure_message(report), **result)
        return result


def main():
    HealthGate().main()


if __name__ == "__main__":
    main()
