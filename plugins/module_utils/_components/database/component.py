# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `database` component: a PostgreSQL database dumped into the point's dumps/<id>/ and restored from it.

Capture runs pg_dump (custom or directory format) with its sha256 and per-table row counts; restore runs the
pg_restore flow (checksum, optional write block, restore, row count verification). The safety dump is the
safety point's own capture of this component, and a failed restore is reverted by the restore point
framework re-applying it (rebuilt with mode=recreate, so the revert is exact).

Passwords are never stored in a point: give login_password at capture (it is used and forgotten), and at
restore either through restore_point's `database_password` (this run only), or on the host
(PGPASSWORD, PGPASSFILE, ~/.pgpass) or over a unix socket with peer authentication.
"""

from __future__ import annotations

import os

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components import database as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component

CONN_DEFAULTS = dict(login_host="", port=5432, login_user="postgres", login_unix_socket="", maintenance_db="postgres",
                     connect_timeout=10, bin_dir=None)
OPTION_DEFAULTS = dict(format="custom", jobs=1, compress=None, schemas=[], exclude_schemas=[], tables=[],
                       exclude_tables=[], mode="clean", block_writes=False)
LIST_KEYS = ("schemas", "exclude_schemas", "tables", "exclude_tables")
RECORD_KEYS = ("file", "sha256", "rows", "size", "server_version", "exact")


def _identity(spec):
    return (spec.get("login_host") or "", int(spec.get("port") or 5432), spec.get("login_user") or "postgres",
            spec.get("login_unix_socket") or "")


def _file_name(spec):
    base = _pg_ops.safe_file_name(spec["db"])
    return base + (".dump" if spec["format"] == "custom" else ".dir")


def _link_dump(src, dest):
    """Hard-link a finished dump and its sidecars (they are replaced by rename, never rewritten in place)."""
    source, target = _pg_ops.DumpFiles(src), _pg_ops.DumpFiles(dest)
    if os.path.isdir(source.path):
        for base, _dirs, names in os.walk(source.path):
            rel = os.path.relpath(base, source.path)
            os.makedirs(os.path.normpath(os.path.join(target.path, rel)), mode=0o700, exist_ok=True)
            for name in names:
                os.link(os.path.join(base, name), os.path.normpath(os.path.join(target.path, rel, name)))
    else:
        os.link(source.path, target.path)
    for a, b in zip(source.sidecars(), target.sidecars()):
        if os.path.exists(a):
            os.link(a, b)


class DatabaseComponent(Component):
    name = "database"
    declaration = declaration

    def __init__(self, runtime=None):
        super().__init__(runtime)
        # Passwords of this call only, never in a record: a capture's login_password for its server, and a
        # restore's database_password for any connection.
        self._passwords = {}
        if self.runtime.get("database_password"):
            self._passwords[None] = self.runtime["database_password"]

    def connection(self, record):
        params = {key: record.get(key, default) for key, default in CONN_DEFAULTS.items()}
        params["db"] = record["db"]
        params["login_password"] = self._passwords.get(_identity(record)) or self._passwords.get(None) or ""
        return _pg.Conn(params)

    # ---------------------------------------------------------------- spec
    def check_spec(self, spec, where):
        prefix = where + "."
        out = {"db": spec["db"]}
        for key, default in list(CONN_DEFAULTS.items()) + list(OPTION_DEFAULTS.items()):
            value = spec.get(key)
            out[key] = (list(default) if isinstance(default, list) else default) if value is None else value
        password = spec.get("login_password") or ""
        _pg.check_connection(dict(out, login_password=password), prefix)
        out.update(_pg_ops.check_dump_options(out, prefix))
        if out["bin_dir"] is not None:
            out["bin_dir"] = os.path.normpath(out["bin_dir"])
        if password:
            self._passwords[_identity(out)] = password
        return out

    def check_capturable(self, spec):
        conn = self.connection(spec)
        session = conn.connect()
        try:
            with session.cursor() as cur:
                conn.tools(_pg.server_info(cur)["major"])
        finally:
            session.close()

    def scope(self, record, changes=None):  # pylint: disable=unused-argument
        return {key: record[key] for key in record if key not in RECORD_KEYS}

    # ---------------------------------------------------------------- capture
    def capture(self, store, spec, point_id):
        conn = self.connection(spec)
        directory = store.point_dumps_dir(point_id)
        name = _file_name(spec)
        path = os.path.join(directory, name)
        meta = self._reuse(store, spec, conn, path) or _pg_ops.dump(conn, path, spec, option="components.database")
        record = dict(spec, file=name, sha256=meta["sha256"], rows=meta["tables"], size=meta["size"],
                      server_version=meta["server_version"])
        return record

    def _reuse(self, store, spec, conn, path):
        """The newest point whose dump of this database is still current: link its files instead of dumping."""
        for point_id in reversed(store.point_ids()):
            try:
                record = store.load(point_id)["components"].get(self.name)
            except RollbackError:
                continue
            if not record or self.scope(record) != spec or record.get("exact"):
                continue
            files = _pg_ops.DumpFiles(os.path.join(store.dumps_dir, point_id, record["file"]))
            try:
                result = _pg_ops.restore(conn, files, mode=spec["mode"], check=True, expected_sha=record["sha256"])
            except RollbackError:
                return None
            if result["changed"]:
                return None
            _link_dump(files.path, path)
            return _pg_ops.read_meta(_pg_ops.DumpFiles(path))
        return None

    # ---------------------------------------------------------------- plan / apply
    def _files(self, store, record, point_id):
        return _pg_ops.DumpFiles(os.path.join(store.dumps_dir, point_id, record["file"]))

    def plan(self, store, record, point_id=""):
        files = self._files(store, record, point_id)
        result = _pg_ops.restore(self.connection(record), files, mode=self._mode(record), check=True,
                                 expected_sha=record["sha256"])
        if not result["changed"]:
            return []
        plan = result["plan"]
        return [{"action": "restore", "path": files.path, "database": record["db"], "mode": self._mode(record),
                 "reason": plan["reason"], "drop": plan["drop"], "keep": plan["keep"],
                 "from": {"relations": len(plan["drop"]) + len(plan["keep"]), "sessions": plan["sessions"]},
                 "to": {"sha256": record["sha256"], "tables": record["rows"]}}]

    @staticmethod
    def _mode(record):
        # A safety record is put back whole: rebuilt, so objects the failed restore created go too.
        return "recreate" if record.get("exact") else record["mode"]

    def apply(self, store, record, changes):
        if not changes:
            return
        files = self._files(store, record, os.path.basename(os.path.dirname(changes[0]["path"])))
        _pg_ops.restore(self.connection(record), files, mode=self._mode(record), jobs=record["jobs"],
                        block_writes=record["block_writes"], safety_dest=None, expected_sha=record["sha256"],
                        revert=False)

    def diff(self, store, record, changes):
        out = []
        for change in changes:
            before = "".join("%s\n" % item for item in change["drop"] + change["keep"])
            after = "".join("%s: %s rows\n" % (t, n) for t, n in sorted(change["to"]["tables"].items()))
            after += "".join("%s (kept)\n" % item for item in change["keep"])
            out.append({"before_header": "database %s (now)" % change["database"],
                        "after_header": "database %s (%s)" % (change["database"], change["path"]),
                        "before": before, "after": after})
        return out
