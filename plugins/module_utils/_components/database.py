# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `database` component: a PostgreSQL database dumped into the point's dumps/<id>/ and restored from it.

Capture runs pg_dump (custom or directory format) with its sha256 and per-table row counts; restore runs the
pg_restore flow (checksum, optional write block, restore, row count verification). The safety dump is the
safety point's own capture of this component, and a failed restore is reverted by the restore point
framework re-applying it (rebuilt with mode=recreate, so the revert is exact).

Passwords are never stored in a point: give login_password at capture (it is used and forgotten), and at
restore either through restore_point's `components: {database: {login_password: ...}}`, or on the host
(PGPASSWORD, PGPASSFILE, ~/.pgpass) or over a unix socket with peer authentication.
"""

from __future__ import annotations

import os
import re

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError

CONN_DEFAULTS = dict(login_host="", port=5432, login_user="postgres", login_unix_socket="", maintenance_db="postgres",
                     connect_timeout=10, bin_dir=None)
OPTION_DEFAULTS = dict(format="custom", jobs=1, compress=None, schemas=[], exclude_schemas=[], tables=[],
                       exclude_tables=[], mode="clean", block_writes=False)
LIST_KEYS = ("schemas", "exclude_schemas", "tables", "exclude_tables")
RECORD_KEYS = ("file", "sha256", "rows", "size", "server_version", "exact")
_PASSWORDS = {}


def _identity(spec):
    return (spec.get("login_host") or "", int(spec.get("port") or 5432), spec.get("login_user") or "postgres",
            spec.get("login_unix_socket") or "")


def remember_password(spec, password):
    """Keep a password for this run only (never in a record); None as spec means any database connection."""
    if password:
        _PASSWORDS[_identity(spec) if spec is not None else None] = password


def connection(record):
    params = {key: record.get(key, default) for key, default in CONN_DEFAULTS.items()}
    params["db"] = record["db"]
    params["login_password"] = _PASSWORDS.get(_identity(record)) or _PASSWORDS.get(None) or ""
    return _pg.Conn(params)


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


class DatabaseComponent:
    name = "database"

    # ---------------------------------------------------------------- spec
    def normalize(self, spec, where="components.database"):
        if not isinstance(spec, dict):
            raise RollbackError("%s: expected a dict such as {db: app, login_host: 127.0.0.1}, got %r" % (where, spec))
        allowed = set(CONN_DEFAULTS) | set(OPTION_DEFAULTS) | {"db", "login_password"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise RollbackError("%s: unknown option %s; known options: %s" % (where, ", ".join(unknown),
                                                                              ", ".join(sorted(allowed))))
        prefix = where + "."
        if spec.get("db") is None:
            raise RollbackError("%sdb: give the name of the database to capture, such as {db: app}" % prefix)
        out = {"db": spec["db"]}
        for key, default in list(CONN_DEFAULTS.items()) + list(OPTION_DEFAULTS.items()):
            value = spec.get(key, default)
            out[key] = list(default) if isinstance(default, list) and value is None else value
        for key in ("port", "jobs", "connect_timeout", "compress"):
            # Templated values arrive as strings ("5432"): plain ASCII digits are taken as the number.
            if isinstance(out[key], str) and re.match(r"^[0-9]{1,9}$", out[key].strip()):
                out[key] = int(out[key].strip())
        password = spec.get("login_password")
        if isinstance(password, int) and not isinstance(password, bool):
            password = str(password)
        _pg.check_connection(dict(out, login_password=password or ""), prefix)
        out.update(_pg_ops.check_dump_options(out, prefix))
        if out["mode"] not in _pg_ops.MODES:
            raise RollbackError("%smode: %r is not one of %s" % (prefix, out["mode"], ", ".join(_pg_ops.MODES)))
        if not isinstance(out["block_writes"], bool):
            raise RollbackError("%sblock_writes: %r is not true or false" % (prefix, out["block_writes"]))
        if out["bin_dir"] is not None:
            out["bin_dir"] = os.path.normpath(out["bin_dir"])
        remember_password(out, password)
        return out

    def runtime(self, extra, where="components.database"):
        """Options for this run only, given with restore_point state=restored: login_password."""
        unknown = sorted(set(extra) - {"login_password"})
        if unknown:
            raise RollbackError("%s: with state=restored only login_password can be given, not %s"
                                % (where, ", ".join(unknown)))
        remember_password(None, extra.get("login_password"))

    def check_capturable(self, spec):
        conn = connection(spec)
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
        conn = connection(spec)
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
        result = _pg_ops.restore(connection(record), files, mode=self._mode(record), check=True,
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
        _pg_ops.restore(connection(record), files, mode=self._mode(record), jobs=record["jobs"],
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
