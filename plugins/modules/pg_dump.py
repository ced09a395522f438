#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_dump
short_description: Take a verified PostgreSQL dump with checksums and per-table row counts
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Runs C(pg_dump) (custom or directory format) against O(db) and writes, next to O(dest), C(DEST.sha256) (the
    sha256 of the file, or of C(DEST.manifest), the sha256 list of every file of a directory dump) and
    C(DEST.meta.json) (server version, per-table row counts, size, seconds and a record of the database state).
  - The row counts are taken in the very snapshot pg_dump reads (C(--snapshot)), so they are exactly what the dump
    holds even while the application keeps writing.
  - The dump is written under a temporary name and moved into place only when it is complete (and verified, with
    O(verify)); an existing O(dest) stays as it was if anything fails.
  - When O(dest) already holds a dump of this database that checks out and the database has not changed since it
    was taken, nothing is dumped and the result is C(changed=false).
options:
  dest:
    description:
      - Absolute path of the dump, a file (O(format=custom)) or a directory (O(format=directory)). Its parent must
        exist.
      - It must be new, an empty directory, or a dump this module wrote (recognised by its C(DEST.meta.json)).
        Anything else there (a file or a non-empty directory of someone else, a symbolic link, a FIFO, a device)
        is refused and left as it is, and so are foreign files at the sidecar paths.
      - Before dumping, the free space at O(dest) is compared with an estimate of the dump's size (the selected
        tables' size on disk, halved when compressed, plus 10% and 1 MiB); too little is refused before anything
        is written. A dump that still fills the disk is removed.
      - A partial dump left by an interrupted run (in C(.DEST.fleetops-dump-*) beside O(dest)) is removed by the
        next run, or a move into place it had begun is completed; it is never taken for a dump.
    type: path
    required: true
  format:
    description:
      - C(custom) is one compressed file; C(directory) is one file per table and allows parallel O(jobs).
      - Always explicit; never guessed from the name of O(dest).
    type: str
    required: true
    choices: [custom, directory]
  jobs:
    description:
      - Parallel pg_dump workers (1-256). More than one only with O(format=directory); verification restores use
        it too.
    type: int
    default: 1
  verify:
    description:
      - Restore the dump into a scratch database (on the same server, through O(maintenance_db)), compare every
        table's row count with the dump's metadata, then drop the scratch database. Needs C(CREATEDB).
      - A dump that fails verification is discarded and the module fails.
      - With an up-to-date O(dest) (nothing dumped), the existing dump is verified.
    type: bool
    default: false
extends_documentation_fragment: [fleetops.rollback.postgres, fleetops.rollback.postgres.dump, fleetops.rollback.attributes.platform]
attributes:
  check_mode:
    support: full
    description: Connects, finds pg_dump and returns the tables with their estimated rows; writes nothing.
  diff_mode:
    support: none
    description: A dump changes nothing in the database; the result describes the dump (tables, row counts, sha256).
  idempotent:
    support: full
    description: A dump that is still up to date is not taken again (C(changed=false)).
notes:
  - The dump holds the database's data; it is written 0600 (directories 0700).
seealso:
  - module: fleetops.rollback.pg_restore
  - module: fleetops.rollback.restore_point
"""

EXAMPLES = r"""
- name: Dump the app database before a migration, verified by a scratch restore
  fleetops.rollback.pg_dump:
    db: app
    login_host: 127.0.0.1
    login_user: app_admin
    login_password: "{{ vault_app_admin_password }}"
    dest: /var/backups/app-before-release-42.dump
    format: custom
    compress: 1
    verify: true

- name: Large database, directory format with 4 workers, without the audit schema
  fleetops.rollback.pg_dump:
    db: app
    login_unix_socket: /run/postgresql
    dest: /var/backups/app-before-release-42
    format: directory
    jobs: 4
    exclude_schemas: [audit]
"""

RETURN = r"""
dest:
  description: Path of the dump.
  returned: success
  type: str
sha256:
  description: sha256 of the dump file, or of the manifest of a directory dump.
  returned: success and not check mode
  type: str
tables:
  description: Per table ("schema.table"), the rows in the dump.
  returned: success and not check mode
  type: dict
  sample: {public.pgbench_accounts: 2000000, public.pgbench_branches: 20}
size:
  description: Bytes of the dump.
  returned: success and not check mode
  type: int
seconds:
  description: Seconds pg_dump ran.
  returned: success and not check mode
  type: float
server_version:
  description: Version of the server dumped.
  returned: success
  type: str
meta_path:
  description: Path of the metadata JSON.
  returned: success and not check mode
  type: str
verify:
  description:
    - With O(verify), the verification result (C(verified), C(tables), C(rows), C(mismatches), C(problem),
      C(seconds)).
  returned: when O(verify) is true and not check mode
  type: dict
up_to_date:
  description: Why an existing dump was kept, or why it was replaced.
  returned: when O(dest) existed
  type: str
recovered:
  description:
    - "What this run did about what interrupted runs left beside O(dest) (in check mode, what it would do):
      a partial dump removed, or the move of a finished dump into place completed."
  returned: when there was something
  type: list
  elements: str
space:
  description: In check mode, the free bytes (C(free)) at O(dest) and the estimated size of the dump (C(estimate)).
  returned: check mode, when a dump would be taken
  type: dict
estimated_rows:
  description: In check mode, the tables of the database with their estimated rows.
  returned: check mode
  type: dict
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components import database as database_declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import argument_spec as spec_of
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops


class PgDumpModule(ModuleBase):
    uses_store = False
    argument_spec = dict(
        _pg.CONNECTION_SPEC,
        dest=dict(type="path", required=True),
        # The database component's dump options: a value is accepted or refused here as it is in a restore point.
        **dict(spec_of(database_declaration.DUMP_OPTIONS),
               # Here the format is always said, never defaulted (a file name must not decide it).
               format=dict(type="str", required=True, choices=list(database_declaration.FORMATS))),
        verify=dict(type="bool", default=False),
    )

    def run(self):
        params = self.params
        _pg.check_connection(params)
        options = _pg_ops.check_dump_options({k: params[k] for k in ("format", "jobs", "compress", "schemas",
                                                                     "exclude_schemas", "tables", "exclude_tables")})
        conn = _pg.Conn(params)
        files, notes = _pg_ops.prepare_output("dest", params["dest"], options["format"], check=self.check_mode)
        current = self.up_to_date(conn, files, options)
        if self.check_mode:
            result = dict(_pg_ops.dump_plan(conn, options), changed=current is None or current[0] is None, dest=files.path)
            if result["changed"]:
                result["space"] = _pg_ops.check_space(conn, files, options)
            if current is not None:
                result["up_to_date"] = current[1]
            if notes:
                result["recovered"] = notes
            return result
        if current is not None and current[0] is not None:
            meta = current[0]
            result = self.result(files, meta, changed=False)
            result["up_to_date"] = current[1]
            if notes:
                result["recovered"] = notes
            if params["verify"]:
                result["verify"] = _pg_ops.verify_dump(conn, files.path, meta, params["jobs"])
                if not result["verify"]["verified"]:
                    raise RollbackError("verify: the dump %s does not restore to its recorded row counts: %s"
                                        % (files.path, result["verify"]["problem"]), **result)
            return result
        meta = _pg_ops.dump(conn, files, options, verify=params["verify"])
        result = self.result(files, meta, changed=True)
        if current is not None:
            result["up_to_date"] = current[1]
        if notes:
            result["recovered"] = notes
        return result

    @staticmethod
    def up_to_date(conn, files, options):
        """None when dest does not exist; else (meta or None, why)."""
        if not files.exists():
            return None
        try:
            meta = _pg_ops.check_dump(files)
        except RollbackError as err:
            return None, "replaced: %s" % err.msg
        wanted = {k: list(options.get(k) or []) for k in ("schemas", "exclude_schemas", "tables", "exclude_tables")}
        if meta.get("format") != options["format"] or meta.get("filters") != wanted or meta.get("database") != conn.db:
            return None, "replaced: the existing dump was taken with other options"
        session = conn.connect(autocommit=False)
        try:
            session.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with session.cursor() as cur:
                why = _pg.changes_since(cur, dict(meta.get("source") or {}, counts=meta["tables"]),
                                        sorted(meta["tables"]))
        finally:
            session.rollback()
            session.close()
        if why:
            return None, "replaced: %s" % why
        return meta, "kept: the database has not changed since the dump was taken (%s)" % meta.get("created_at")

    @staticmethod
    def result(files, meta, changed):
        out = {"changed": changed, "dest": files.path, "sha256": meta["sha256"], "tables": meta["tables"],
               "size": meta["size"], "seconds": meta["seconds"], "server_version": meta["server_version"],
               "meta_path": files.meta, "format": meta["format"]}
        if "verify" in meta:
            out["verify"] = meta["verify"]
        return out


def main():
    PgDumpModule().main()


if __name__ == "__main__":
    main()
