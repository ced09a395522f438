# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verdicts, and the report of a poll: every target's verdict, the overall one, and the failure message."""

from __future__ import annotations

from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import rounded

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
TIMEOUT = "timeout"
# How bad a verdict is, for the overall verdict of several targets: the worst one wins.
# `unhealthy` (proven broken) is worse than `timeout` (not proven healthy in time).
VERDICT_RANK = {HEALTHY: 0, TIMEOUT: 1, UNHEALTHY: 2}


def build_report(runs):
    """The report of a poll, from its runs (each with its target, verdict, seconds and `report()`)."""
    reports = {run.target.name: run.report() for run in runs}
    healthy = [run.target.name for run in runs if run.verdict == HEALTHY]
    unhealthy = [run.target.name for run in runs if run.verdict != HEALTHY]
    verdict = max((run.verdict for run in runs), key=VERDICT_RANK.__getitem__)
    seconds = max(run.seconds for run in runs)
    return {
        "verdict": verdict,
        "seconds": rounded(seconds, 3),
        "healthy_targets": healthy,
        "unhealthy_targets": unhealthy,
        "targets": reports,
    }


def failure_message(report, limit=50):
    """One line naming every target that is not healthy, with its verdict and last error."""
    bad = report["unhealthy_targets"]
    parts = []
    for name in bad[:limit]:
        info = report["targets"][name]
        error = info["last_error"] or "no failing sample"
        parts.append("%s (%s after %s rounds: %s)" % (name, info["verdict"], info["rounds"], error))
    if len(bad) > limit:
        parts.append("and %d more (see unhealthy_targets)" % (len(bad) - limit))
    return "health gate verdict %s: %d of %d targets not healthy: %s" % (
        report["verdict"], len(bad), len(report["targets"]), "; ".join(parts))
