# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `migrations` component: the schema revision of a migration tool (alembic, django, flyway...).

Capture runs the configured `current` command and records the revision it prints. Restore runs the
configured `downgrade` command with %s set to that revision (and, if it fails and an `upgrade` command is
configured, that one: a safety revert may have to go forward again), then checks the revision.
Commands are argv lists (a string is split like a shell would, but never run through one).
"""

from __future__ import annotations

import os
import re
import shlex

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path, check_program
from ansible_collections.fleetops.rollback.plugins.module_utils._components import migrations as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component
from ansible_collections.fleetops.rollback.plugins.module_utils._process import run as run_command, show_command
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_output

DEFAULT_REGEX = r"^(?P<revision>[0-9A-Za-z_][0-9A-Za-z_.\-]*)(?:\s+\(.*\))?\s*$"
DEFAULT_TIMEOUT = 600


def _argv(value, where, placeholder=False):
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int, float)) for v in value):
        raise RollbackError("%s: give a command as a string or an argv list, got %r" % (where, value))
    value = [str(v) for v in value]
    if any("\x00" in v for v in value):
        raise RollbackError("%s: %r holds a NUL byte" % (where, value))
    if placeholder and not any("%s" in v for v in value):
        raise RollbackError("%s: %r must contain %%s where the revision goes, for example 'alembic downgrade %%s'"
                            % (where, show_command(value)))
    return value


def _run(argv, record):
    """The finished command; one that could not run or gave no answer fails here."""
    done = run_command(argv, timeout=record.get("timeout") or DEFAULT_TIMEOUT, cwd=record.get("chdir") or None)
    if done.rc is None:
        raise RollbackError("migrations: %s" % done.failure(words=4))
    return done


def _failure(done):
    """Why a finished command failed (None when it exited 0), with its error output (else its output) redacted."""
    return done.failure(tail=redact_output(done.stderr or done.stdout, limit=800))


class MigrationsComponent(Component):
    name = "migrations"
    declaration = declaration
    previewable = True

    def check_spec(self, spec, where):
        out = {"current": _argv(spec["current"], where + ".current"),
               "downgrade": _argv(spec["downgrade"], where + ".downgrade", placeholder=True),
               "upgrade": _argv(spec["upgrade"], where + ".upgrade", placeholder=True) if spec.get("upgrade") else None,
               "chdir": spec.get("chdir"),
               # 0 is refused below, not read as "the default"
               "timeout": DEFAULT_TIMEOUT if spec.get("timeout") is None else spec["timeout"],
               "revision_regex": spec.get("revision_regex") or DEFAULT_REGEX, "base": spec.get("base") or "base"}
        if out["chdir"] is not None:
            out["chdir"] = check_path(where + ".chdir", out["chdir"])
        if not 0 < out["timeout"] <= 86400:
            raise RollbackError("%s.timeout: %r is not a number of seconds between 1 and 86400" % (where, out["timeout"]))
        try:
            pattern = re.compile(out["revision_regex"], re.MULTILINE)
        except re.error as err:
            raise RollbackError("%s.revision_regex: %r is not a regular expression (%s)"
                                % (where, out["revision_regex"], err))
        if "revision" not in pattern.groupindex:
            raise RollbackError("%s.revision_regex: %r needs a (?P<revision>...) group" % (where, out["revision_regex"]))
        return out

    def check_capturable(self, spec):
        if spec.get("chdir") and not os.path.isdir(spec["chdir"]):
            raise RollbackError("components.migrations.chdir: %s is not a directory" % spec["chdir"])
        self.current(spec)

    def scope(self, record, changes=None):  # pylint: disable=unused-argument
        return {key: record[key] for key in record if key not in ("revision", "exact")}

    def current(self, record):
        """The revision the current command reports (None: no revision, the base)."""
        done = _run(record["current"], record)
        if not done.ok:
            raise RollbackError("migrations: %s" % _failure(done))
        found = [m.group("revision") for m in re.finditer(record["revision_regex"], done.stdout, re.MULTILINE)]
        found = sorted(set(found))
        if len(found) > 1:
            raise RollbackError("migrations: %s reports several revisions (%s); a point holds one revision, merge the "
                                "heads first" % (show_command(record["current"]), ", ".join(found)))
        return found[0] if found else None

    def capture(self, store, spec, point_id=None):
        return dict(spec, revision=self.current(spec))

    def _command(self, record, key):
        target = record["revision"] or record["base"]
        return [part.replace("%s", target) for part in record[key]] if record.get(key) else None

    def plan(self, store, record, point_id=""):
        now = self.current(record)
        if now == record["revision"]:
            return []
        # The downgrade must be able to run before the safety point is taken and the schema is touched.
        check_program(record["downgrade"][0], "point %s: migrations.downgrade" % point_id)
        change = {"action": "downgrade", "path": record.get("chdir") or "", "from": {"revision": now},
                  "to": {"revision": record["revision"]}, "command": self._command(record, "downgrade")}
        if record.get("upgrade"):
            change["if_downgrade_fails"] = self._command(record, "upgrade")
        return [change]

    def apply(self, store, record, changes):
        if not changes:
            return
        problem = _failure(_run(self._command(record, "downgrade"), record))
        if problem and record.get("upgrade"):
            then = _failure(_run(self._command(record, "upgrade"), record))
            problem = None if then is None else "%s; then %s" % (problem, then)
        if problem:
            raise RollbackError("migrations: %s" % problem)
        now = self.current(record)
        if now != record["revision"]:
            raise RollbackError("migrations: after the migration command the revision is %s, not %s"
                                % (now, record["revision"]))

    def diff(self, store, record, changes):
        return [{"before_header": "migrations %s" % (c["path"] or ""), "after_header": "migrations %s" % (c["path"] or ""),
                 "before": "revision: %s\n" % (c["from"]["revision"] or "base"),
                 "after": "revision: %s\n" % (c["to"]["revision"] or "base")} for c in changes]
