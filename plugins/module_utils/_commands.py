# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate commands: a user-given command line with %s where the candidate file goes, run on that candidate.

It runs through _process (an argv list, never a shell). A validator may well echo the candidate file (passwords
included): what it printed reaches the message redacted whole, then cut (see _process.command_output)."""

from __future__ import annotations

import shlex

from ansible_collections.fleetops.rollback.plugins.module_utils._process import run, show_command

# show_command is imported from here by the config and release components.
__all__ = ("VALIDATE_TIMEOUT", "run_validate", "show_command")

VALIDATE_TIMEOUT = 120


def run_validate(command, path, timeout=VALIDATE_TIMEOUT):
    """Run `command` with every %s replaced by `path`; return None when it passes, else what went wrong (redacted).
    The caller names the command; this names its program only (the other words hold the candidate's path)."""
    try:
        argv = [part.replace("%s", path) for part in shlex.split(command)]
    except ValueError as err:
        return "cannot be split into words (%s); fix its quoting" % err
    if not argv:
        return "is empty; give a command with %s"
    done = run(argv, timeout=timeout)
    if done.rc is None:
        return done.failure(words=1)
    if done.rc != 0:
        return "exit code %d: %s" % (done.rc, done.output() or "no output")
    return None
