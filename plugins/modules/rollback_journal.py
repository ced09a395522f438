#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_journal
short_description: Append an audit event to the journal of a host's restore point store
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Appends one event to C(journal.jsonl) of the store (the append-only audit trail that M(fleetops.rollback.restore_point)
    writes its captures, restores and marks to), with who acted and when.
  - The rollback playbooks use it when a run fails on a host after or before its restore (a lock held by another run,
    a health gate that did not pass, a service that did not start), so every run leaves an entry with its id, type,
    trigger and outcome on every host it touched.
  - Nothing secret is kept. The value of any field whose name looks secret (C(password), C(token), C(secret), ...) is
    replaced, and C(KEY=value) text, URL credentials and private keys inside strings are redacted.
  - The store lock is not taken, so an event can be written while another run holds it (for example to record that
    this run was refused). Lines are appended in one write each.
options:
  event:
    description: The kind of event, for example C(rollback). Printable text of 1 to 200 characters.
    type: str
    default: rollback
  outcome:
    description:
      - How it ended on this host, for example C(failed), C(recovered) or C(escalated).
      - Printable text of 1 to 200 characters, without a line break (one event is one line).
    type: str
    required: true
  run_id:
    description: The id of the rollback run; recorded as C(run). Printable text of 1 to 200 characters.
    type: str
  run_type:
    description: The kind of rollback run (C(immediate), C(standard), C(partial), C(failed_recovery), C(drill)); recorded as C(type).
    type: str
  reason:
    description: What triggered the run (an incident id, an alert); recorded as C(reason).
    type: str
  step:
    description: The step (task) where it ended, for a failure.
    type: str
  error:
    description: The error message, for a failure. Cut to 2000 characters.
    type: str
  details:
    description:
      - Any other JSON-serialisable fields to record (secret-looking keys are redacted).
      - C(ts), C(event) and C(actor) are set by the journal itself (when, what and who) and are refused here.
    type: dict
    default: {}
  secret_values:
    description:
      - Values to scrub from the event wherever they occur, for example the values of the play's password and token
        variables (an error message may quote one); strings, or lists and dicts whose every string is scrubbed.
        Hidden from all output. Values shorter than 4 characters are not scrubbed.
    type: raw
    default: []
  store_path:
    description:
      - The restore point store on the host (see M(fleetops.rollback.restore_point)), an absolute path.
      - A path that is a file, a FIFO, a device or a dangling link, or that lies under a file, is refused with a
        message saying what is there; nothing is written.
    type: path
    default: /var/lib/fleetops/rollback
  create:
    description:
      - Create the store when it does not exist yet. By default a host without a store gets no journal (and no
        store) and the result says so.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Writes nothing and returns the event that would be written.
  diff_mode:
    support: none
    description: An audit line has no diff.
  idempotent:
    support: none
    description:
      - Every call appends a new event; it is an audit record of this run, not state, so the result always says
        C(changed=false).
extends_documentation_fragment:
  - fleetops.rollback.attributes.platform
notes:
  - The journal is created 0600 in the store (0700).
seealso:
  - module: fleetops.rollback.restore_point
  - module: fleetops.rollback.restore_point_info
"""

EXAMPLES = r"""
- name: Record on the host why the rollback failed there
  fleetops.rollback.rollback_journal:
    store_path: /var/lib/fleetops/rollback
    outcome: failed
    run_id: "{{ rollback_run.id }}"
    run_type: "{{ rollback_run.type }}"
    reason: INC-1234
    step: "{{ ansible_failed_task.name }}"
    error: "{{ ansible_failed_result.msg }}"

- name: Read the newest journal events back
  fleetops.rollback.restore_point_info:
    journal: 5
"""

RETURN = r"""
event:
  description: The event as written (or as it would be written in check mode), secrets redacted.
  returned: when written or in check mode
  type: dict
  sample: {ts: "2026-11-22T03:15:00.123+00:00", event: rollback, actor: deploy, outcome: failed, run: 20261122T031500Z-1a2b,
           type: immediate, reason: INC-1234, step: Gate on health, error: "Health gate: web-01 did not pass."}
journaled:
  description: Whether an event was appended (false in check mode and when the host has no store).
  returned: always
  type: bool
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import (
    DEFAULT_STORE_PATH,
    ModuleBase,
    RollbackError,
    check_path,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import directory_problem
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_data, sanitize, secret_values
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store, actor, utc_now

ERROR_LIMIT = 2000
NAME_LIMIT = 200
# Fields the journal sets itself: who acted and when cannot be given in details.
RESERVED = ("ts", "event", "actor")


def _shown(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


class RollbackJournalModule(ModuleBase):
    uses_store = False  # no lock options: the journal is appended without the store lock
    argument_spec = dict(
        store_path=dict(type="path", default=DEFAULT_STORE_PATH),
        event=dict(type="str", default="rollback"),
        outcome=dict(type="str", required=True),
        run_id=dict(type="str"),
        run_type=dict(type="str"),
        reason=dict(type="str"),
        step=dict(type="str"),
        error=dict(type="str"),
        details=dict(type="dict", default={}),
        secret_values=dict(type="raw", default=[], no_log=True),
        create=dict(type="bool", default=False),
    )

    def check(self):
        """Refuse bad input before anything is written: each message names the option and the value."""
        params = self.params
        for option in ("event", "outcome", "run_id", "run_type"):
            value = params[option]
            if value is None and option in ("run_id", "run_type"):
                continue
            if not value or not value.strip() or not value.isprintable() or len(value) > NAME_LIMIT:
                raise RollbackError("%s: %s is not a name for the journal; give printable text of 1 to %d characters "
                                    "(for example %s)" % (option, _shown(value), NAME_LIMIT,
                                                          {"event": "rollback", "outcome": "failed"}.get(option, "an id")))
        for option in ("reason", "step"):
            if params[option] is not None and "\x00" in params[option]:
                raise RollbackError("%s: %s holds a NUL byte; give it as text" % (option, _shown(params[option])))
        for key in params["details"] or {}:
            if key in RESERVED:
                raise RollbackError("details.%s: set by the journal itself (when and who); give it another name" % key)
        path = check_path("store_path", params["store_path"])
        problem = directory_problem(path)
        if problem:
            raise RollbackError("store_path: %r: %s; give the store's directory" % (path, problem))
        return path

    def fields(self):
        fields = dict(self.params["details"] or {})
        named = {"outcome": self.params["outcome"], "run": self.params["run_id"], "type": self.params["run_type"],
                 "reason": self.params["reason"], "step": self.params["step"],
                 "error": (self.params["error"] or "")[:ERROR_LIMIT] or None}
        fields.update({key: value for key, value in named.items() if value})
        secrets = secret_values(self.params["secret_values"], inherited=True)
        return sanitize(fields, secrets) if secrets else fields

    def run(self):
        store = Store(self.check())
        fields = self.fields()
        if not store.exists() and not self.params["create"]:
            return {"changed": False, "journaled": False,
                    "msg": "no restore point store at %s: nothing journaled (create=true makes one)" % store.path}
        if self.check_mode:
            event = {"ts": utc_now().isoformat(timespec="milliseconds"), "event": self.params["event"], "actor": actor()}
            event.update(redact_data(fields))
            return {"changed": False, "journaled": False, "event": event}
        return {"changed": False, "journaled": True, "event": store.journal(self.params["event"], **fields)}


def main():
    RollbackJournalModule().main()


if __name__ == "__main__":
    main()
