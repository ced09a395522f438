# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks and the health gate, private to the collection and standard library only.

From the bottom up: text (how values show in messages), inputs (validation), schema (each check type's keys,
declared once; the argument spec derives from it), checks and prometheus (one sample each, bounded by a time
budget), parse (checks and targets from the input), workers (the thread pool and the commands it runs),
policy (`Streak`: rounds -> a verdict), verdict (the report), poll (the concurrent poller behind health_gate).
"""
