# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running user-given check commands as argv lists (never through a shell).

What a command prints goes into results and failure messages, and a validator may well echo the candidate file
(passwords included): every word of output that leaves here is redacted first (see _redact.redact_output)."""

from __future__ import annotations

import shlex
import subprocess

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_output, redact_text

VALIDATE_TIMEOUT = 120
OUTPUT_LIMIT = 500


def command_output(stdout=None, stderr=None, limit=OUTPUT_LIMIT):
    """What a command printed, fit for a message: stdout then stderr (so the tail, which a limit keeps, holds the
    error), each redacted whole before the cut."""
    parts = [redact_output(stdout), redact_output(stderr)]
    text = "\n".join(part for part in parts if part)
    if limit is not None and len(text) > limit:
        text = "..." + text[-limit:]
    return text


def show_command(command):
    """A command (a string or an argv list) as a message may show it: secrets in its words redacted."""
    if isinstance(command, (list, tuple)):
        command = " ".join(shlex.quote(str(part)) for part in command)
    return redact_text(str(command))


def run_validate(command, path, timeout=VALIDATE_TIMEOUT):
    """Run `command` with every %s replaced by `path`; return None when it passes, else what went wrong (redacted)."""
    try:
        argv = [part.replace("%s", path) for part in shlex.split(command)]
    except ValueError as err:
        return "cannot be split into words (%s); fix its quoting" % err
    if not argv:
        return "is empty; give a command with %s"
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timed out after %s seconds" % timeout
    except OSError as err:
        # Not str(err): it repeats the argv, and a secret given on the command line with it.
        return "could not run %s: %s" % (show_command(argv[0]), err.strerror or type(err).__name__)
    if proc.returncode != 0:
        return "exit code %d: %s" % (proc.returncode, command_output(proc.stdout, proc.stderr) or "no output")
    return None
