# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The concurrent poller behind `health_gate`: one scheduler loop dispatches each target's due round to a bounded
pool of worker threads, waits on a condition bounded by the next due time or the deadline (never a fixed sleep)
and returns as soon as every target has a verdict."""

from __future__ import annotations

import collections
import threading
import time

from ansible_collections.fleetops.rollback.plugins.module_utils._health.policy import Streak
from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import rounded
from ansible_collections.fleetops.rollback.plugins.module_utils._health.verdict import TIMEOUT, build_report
from ansible_collections.fleetops.rollback.plugins.module_utils._health.workers import WorkerPool

MAX_WORKERS = 64
SAMPLES_KEPT = 20


def run_round(checks, start, deadline, clock=time.monotonic):
    """Run every check of one target once, in order; the round passes when every check does."""
    began = clock()
    results = []
    for check in checks:
        results.append(check.run(deadline - clock(), clock=clock))
    ended = clock()
    return {
        "t": rounded(began - start),
        "ok": all(r["ok"] for r in results),
        "latency": rounded(ended - began),
        "checks": results,
        "_ended": ended,
    }


class _Run:
    """The state of one target while it is polled."""

    def __init__(self, target, policy, start):
        self.target = target
        self.streak = Streak(policy.successes, policy.failures)
        self.index = 0          # grid slot of the next round: start + index * interval
        self.due = start        # when the next round may start
        self.busy = False
        self.submitted = None   # when the round in flight was started
        self.verdict = None
        self.seconds = None
        self.rounds = 0
        self.passed = 0
        self.last_error = None
        self.samples = collections.deque(maxlen=SAMPLES_KEPT)

    def record(self, rnd, start, interval):
        ended = rnd.pop("_ended")
        self.busy = False
        self.rounds += 1
        if rnd["ok"]:
            self.passed += 1
        else:
            self.last_error = "; ".join(c["error"] for c in rnd["checks"] if not c["ok"])
        self.samples.append(rnd)
        verdict = self.streak.record(rnd["ok"])
        if verdict is not None:
            self.verdict = verdict
            self.seconds = ended - start
            return
        # Next grid slot; a round that overran its slot is followed at once (not in a burst of
        # catch-up rounds: the grid index jumps to the slot the clock is in).
        self.index += 1
        if start + self.index * interval < ended:
            self.index = max(self.index, int((ended - start) // interval))
        self.due = max(start + self.index * interval, ended)

    def report(self):
        return {
            "verdict": self.verdict,
            "seconds": rounded(self.seconds, 3),
            "rounds": self.rounds,
            "passed_rounds": self.passed,
            "last_error": self.last_error,
            "samples": list(self.samples),
        }


def _safe_round(checks, start, deadline, clock):
    try:
        return run_round(checks, start, deadline, clock)
    except Exception as err:  # pylint: disable=broad-except
        now = clock()
        return {"t": rounded(now - start), "ok": False, "latency": 0.0, "_ended": now,
                "checks": [{"type": "internal", "ok": False, "latency": 0.0,
                            "error": "internal error: %s: %s" % (type(err).__name__, err)}]}


def poll(targets, policy, max_workers=MAX_WORKERS, clock=time.monotonic):
    """Poll every target until each has a verdict or the deadline passes; return the report.

    One loop owns all state. It hands each target's due round to a thread pool (bounded by
    `max_workers`, every round a short job, so all targets keep their schedule), then waits on a
    condition until the next round is due, a round finishes, or the deadline: no fixed sleeps.
    """
    start = clock()
    deadline = start + policy.timeout
    runs = [_Run(target, policy, start) for target in targets]
    cond = threading.Condition()
    finished = []

    def work(run):
        rnd = _safe_round(run.target.checks, start, deadline, clock)
        with cond:
            finished.append((run, rnd))
            cond.notify()

    undecided = len(runs)
    pool = WorkerPool(max(1, min(max_workers, len(runs))), "health_gate")
    try:
        with cond:
            while True:
                for run, rnd in finished:
                    if run.verdict is None and rnd["_ended"] <= deadline:
                        run.record(rnd, start, policy.interval)
                        if run.verdict is not None:
                            undecided -= 1
                    else:
                        run.busy = False
                finished.clear()
                if undecided == 0:
                    break
                now = clock()
                if now >= deadline:
                    for run in runs:
                        if run.verdict is None:
                            run.verdict = TIMEOUT
                            run.seconds = policy.timeout
                            if run.busy:
                                # Its round never came back: say so, or a target stuck on one request has no error.
                                error = "no answer before the deadline: round %d was still running after %ss" % (
                                    run.rounds + 1, rounded(now - run.submitted, 1))
                                run.last_error = error if run.last_error is None else "%s; before that: %s" % (
                                    error, run.last_error)
                    break
                wake = deadline
                for run in runs:
                    if run.verdict is not None or run.busy:
                        continue
                    if run.due <= now:
                        run.busy = True
                        run.submitted = now
                        pool.submit(work, run)
                    elif run.due < wake:
                        wake = run.due
                if not finished:
                    cond.wait(max(0.0, wake - now))
    finally:
        # Rounds still in flight at the deadline (or at a SIGTERM) are abandoned, their commands killed.
        pool.shutdown()
    return build_report(runs)
