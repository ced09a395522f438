# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running user-given check commands as argv lists (never through a shell)."""

from __future__ import annotations

import shlex
import subprocess

VALIDATE_TIMEOUT = 120


def run_validate(command, path, timeout=VALIDATE_TIMEOUT):
    """Run `command` with every %s replaced by `path`; return None when it passes, else what went wrong."""
    argv = [part.replace("%s", path) for part in shlex.split(command)]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return "could not run: %s" % err
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()[-500:]
        return "exit code %d: %s" % (proc.returncode, output)
    return None
