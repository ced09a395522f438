# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate's policy: when to sample, and when a run of samples is a verdict (`Streak`, pure: no clock, no I/O)."""

from __future__ import annotations

from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import integer, number
from ansible_collections.fleetops.rollback.plugins.module_utils._health.verdict import HEALTHY, UNHEALTHY

# Upper bound of the time options: past this a number is a typo (1e12), and the platform's timers overflow.
MAX_TIMEOUT = 7 * 24 * 3600.0


class Policy:
    """When to sample and when a run of samples is a verdict."""

    def __init__(self, interval=1.0, timeout=60.0, successes=3, failures=3):
        self.interval = interval
        self.timeout = timeout
        self.successes = successes
        self.failures = failures

    def __repr__(self):
        return "Policy(interval=%r, timeout=%r, successes=%r, failures=%r)" % (
            self.interval, self.timeout, self.successes, self.failures)


def parse_policy(interval=1.0, timeout=60.0, successes=3, failures=3):
    # A successes count that cannot fit in the timeout is allowed: the drill uses one to wait for "unhealthy".
    return Policy(
        interval=number(interval, "interval", minimum=0, maximum=MAX_TIMEOUT),
        timeout=number(timeout, "timeout", minimum=0, maximum=MAX_TIMEOUT),
        successes=integer(successes, "successes", minimum=1),
        failures=integer(failures, "failures", minimum=0),
    )


class Streak:
    """Consecutive round counting: `successes` passes in a row is healthy, `failures + 1` fails in a
    row is unhealthy. Pure: no clock, no I/O."""

    def __init__(self, successes, failures):
        self.successes = successes
        self.failures = failures
        self.passes = 0
        self.fails = 0
        self.verdict = None

    def record(self, ok):
        """Count one round; return the verdict once there is one (then it never changes)."""
        if self.verdict is not None:
            return self.verdict
        if ok:
            self.passes += 1
            self.fails = 0
            if self.passes >= self.successes:
                self.verdict = HEALTHY
        else:
            self.fails += 1
            self.passes = 0
            if self.fails > self.failures:
                self.verdict = UNHEALTHY
        return self.verdict
