#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore
short_description: Restore a verified PostgreSQL dump safely, with a safety dump, verification and automatic revert
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Restores a dump written by M(fleetops.rollback.pg_dump) (or a restore point) into O(db).
  - "In order: refuses a dump whose sha256 does not match its C(.sha256) file (nothing is touched); plans; with
    O(block_writes) makes the database read-only and ends its other sessions; takes a safety dump of the database
    (O(safety_dump), on by default); restores; verifies every table's row count against the dump's metadata;
    lifts the write block (also on failure)."
  - If the restore or its verification fails, the safety dump is put back (and its row counts verified) and the
    module fails saying what happened and in which state the database is.
  - O(mode=clean) drops the dump's objects and restores them (C(pg_restore --clean --if-exists)); objects that are
    not in the dump are kept. With O(jobs=1) it runs in one transaction, so a failure changes nothing at all.
  - O(mode=recreate) builds the database anew from the dump under a scratch name, checks its row counts, then swaps
    it in place of O(db) (owner, encoding, locale, settings, privileges and comment carried over; both renames in
    one transaction) and drops the old one. A failure before the swap leaves O(db) untouched. Needs C(CREATEDB)
    and twice the space for a moment; the other sessions on O(db) are ended at the swap.
  - A restore whose target already holds what the dump holds is skipped (C(changed=false)); see the notes.
  - O(verify_only=true) restores into a scratch database instead, compares the row counts, drops it, and reports;
    O(db) is not touched.
options:
  src:
    description: The dump (file or directory) to restore. Its C(.sha256) and C(.meta.json) sidecars must be beside it.
    type: path
    required: true
  mode:
    description: C(clean) drops and restores the dump's objects in O(db); C(recreate) recreates O(db) from the dump.
    type: str
    choices: [clean, recreate]
    default: clean
  jobs:
    description: Parallel pg_restore workers (custom and directory formats). With O(mode=clean), 1 means one transaction.
    type: int
    default: 1
  block_writes:
    description:
      - While restoring, make O(db) read-only by default (C(ALTER DATABASE ... SET default_transaction_read_only))
        and end its other sessions, so no write lands between the safety dump and the end of the restore. Undone
        afterwards, also on failure (a previous value of the setting is put back).
      - Ending sessions needs superuser or C(pg_signal_backend) membership.
    type: bool
    default: false
  safety_dump:
    description: Dump O(db) before changing it. The path is returned as RV(safety_dump).
    type: bool
    default: true
  safety_dest:
    description:
      - Where to write the safety dump (custom format, with its sidecars). Like O(fleetops.rollback.pg_dump#module:dest),
        it must be new or a dump this collection wrote; anything else there is refused before the database is
        touched, and so is too little free space for it.
      - Default C(<directory of src>/<db>-safety-<UTC time>.dump).
    type: path
  expected_sha256:
    description: The sha256 the dump must have (for example from a restore point manifest), checked as well.
    type: str
  verify_only:
    description: Only verify the dump by a scratch restore and row count comparison; O(db) is not touched.
    type: bool
    default: false
extends_documentation_fragment: [fleetops.rollback.postgres, fleetops.rollback.attributes.platform]
attributes:
  check_mode:
    support: full
    description:
      - Checks the dump's sha256 and returns the plan (what would be dropped, kept and restored, how many sessions
        would be ended, where the safety dump would go) without writing anything.
  diff_mode:
    support: full
    description: Shows the relations of the database before and the tables with row counts the dump brings back.
  idempotent:
    support: full
    description: A second restore of the same dump reports C(changed=false) when nothing was written in between.
notes:
  - "How a restore knows it has nothing to do: right after a restore (and when the dump is taken) the state of the
    database is recorded: the server's system identifier, the database's oid, a fingerprint of its schema (objects,
    columns, indexes, constraints, functions, owners, privileges) and sequence positions, the snapshot's transaction
    horizon and every dumped table's row count. It is kept in C(SRC.restored.json) (and C(SRC.meta.json)). The next
    restore is skipped when all of it still holds and no row of a dumped table was written after that horizon (every
    INSERT and UPDATE stamps a new row version with its transaction id, so this is one early-exit scan per table,
    not a content comparison). Any doubt means the restore runs again."
  - "While it changes the database, a restore keeps a record in C(SRC.restoring.json). When a run is killed (even
    by SIGKILL), the next restore of the same dump into the same database reports in RV(interrupted) what state the
    database was left in (compared with the safety dump) and whether the safety dump is intact (its checksum is
    verified), and uses that safety dump (the database as it was before) instead of dumping a half-restored one.
    A SIGTERM stops pg_restore, then the failure is handled as any other (rolled back, or reverted to the safety
    dump)."
  - "With O(mode=clean) and O(block_writes=false), an application writing during the restore can make the final row
    count check fail, which reverts to the safety dump: block writes or stop the application first."
seealso:
  - module: fleetops.rollback.pg_dump
  - module: fleetops.rollback.restore_point
"""

EXAMPLES = r"""
- name: Put the database back as it was before the release (check mode first shows what would be dropped)
  fleetops.rollback.pg_restore:
    db: app
    login_host: 127.0.0.1
    login_user: app_admin
    login_password: "{{ vault_app_admin_password }}"
    src: /var/backups/app-before-release-42.dump
    mode: clean
    block_writes: true
  register: restored

- name: Rebuild the database from a directory dump with 4 workers
  fleetops.rollback.pg_restore:
    db: app
    login_unix_socket: /run/postgresql
    src: /var/backups/app-before-release-42
    mode: recreate
    jobs: 4
    safety_dest: /var/backups/app-safety.dump

- name: Check last night's dump is restorable
  fleetops.rollback.pg_restore:
    db: app
    src: /var/backups/nightly.dump
    verify_only: true
"""

RETURN = r"""
database:
  description: The database restored into.
  returned: always
  type: str
plan:
  description:
    - What the restore does or would do. C(changed) and C(reason) (why it is needed, or why not); C(drop), the
      relations dropped (all of them with O(mode=recreate)); C(keep), relations not in the dump that stay;
      C(restore), the dump's tables with their row counts; C(sessions), other sessions on the database.
  returned: always
  type: dict
safety_dump:
  description: Path of the safety dump taken before the restore (in check mode, where it would go).
  returned: always
  type: str
verified:
  description: After a restore, the number of tables and rows whose counts were checked against the dump.
  returned: when the database was restored
  type: dict
seconds:
  description: Timings of the steps (checksum, plan, safety_dump, restore, verify, total).
  returned: always
  type: dict
state:
  description: On failure, the state the database was left in (for example C(reverted to the safety dump)).
  returned: failure
  type: str
interrupted:
  description:
    - When an earlier restore of this dump into this database was killed, what it left (C(database_state),
      C(safety_dump), C(safety_dump_state), C(message)).
  returned: when an earlier restore was interrupted
  type: dict
notes:
  description: What this run noticed and dealt with (leftovers of interrupted runs, markers it could not write).
  returned: when there was something
  type: list
  elements: str
verify:
  description: With O(verify_only), the verification result (C(verified), C(tables), C(rows), C(mismatches), C(problem)).
  returned: when O(verify_only) is true
  type: dict
"""

import os

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import utc_now


def restore_diff(plan):
    before = "".join("%s\n" % item for item in plan.get("drop", []) + plan.get("keep", []))
    after = "".join("%s: %s rows\n" % (t, n) for t, n in sorted(plan["restore"]["tables"].items()))
    after += "".join("%s (kept)\n" % item for item in plan.get("keep", []))
    return {"before_header": "%s (now)" % plan["database"],
            "after_header": "%s (from %s)" % (plan["database"], plan["src"]),
            "before": before, "after": after}


class PgRestoreModule(ModuleBase):
    uses_store = False
    argument_spec = dict(
        _pg.CONNECTION_SPEC,
        src=dict(type="path", required=True),
        mode=dict(type="str", choices=list(_pg_ops.MODES), default="clean"),
        jobs=dict(type="int", default=1),
        block_writes=dict(type="bool", default=False),
        safety_dump=dict(type="bool", default=True),
        safety_dest=dict(type="path"),
        expected_sha256=dict(type="str"),
        verify_only=dict(type="bool", default=False),
    )

    def run(self):
        params = self.params
        _pg.check_connection(params)
        jobs = _pg_ops.check_jobs("jobs", params["jobs"])
        expected = _pg_ops.check_sha256("expected_sha256", params["expected_sha256"])
        conn = _pg.Conn(params)
        files = _pg_ops.check_input("src", params["src"])
        if params["verify_only"]:
            meta = _pg_ops.check_dump(files, expected)
            result = {"changed": False, "database": conn.db, "src": files.path}
            if self.check_mode:
                return result
            result["verify"] = _pg_ops.verify_dump(conn, files.path, meta, jobs)
            if not result["verify"]["verified"]:
                raise RollbackError("verify_only: the dump %s does not restore to its recorded row counts: %s"
                                    % (files.path, result["verify"]["problem"]), **result)
            return result
        safety = None
        if params["safety_dump"]:
            safety = params["safety_dest"] or os.path.join(os.path.dirname(files.path), "%s-safety-%s.dump" % (
                _pg_ops.safe_file_name(conn.db), utc_now().strftime("%Y%m%dT%H%M%S.%fZ")))
        result = _pg_ops.restore(conn, files, mode=params["mode"], jobs=jobs,
                                 block_writes=params["block_writes"], safety_dest=safety, check=self.check_mode,
                                 expected_sha=expected)
        if self.diff_mode and result["changed"]:
            result["diff"] = restore_diff(result["plan"])
        for note in result.get("notes", []):
            self.module.warn(note)
        return result


def main():
    PgRestoreModule().main()


if __name__ == "__main__":
    main()
