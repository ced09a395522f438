# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified PostgreSQL dumps and safe restores (shared by pg_dump, pg_restore and the database component).

A dump at DEST (a file for format=custom, a directory for format=directory) has sidecars:

    DEST.sha256       sha256sum format: the dump file, or for a directory the DEST.manifest file
    DEST.manifest     directory format: sha256sum lines of every file in the directory
    DEST.meta.json    server version, per-table row counts, size, seconds, and the state record
                      (schema fingerprint, snapshot) that says whether a database still equals the dump
    DEST.restored.json  written by restores: per target database, its state right after the restore

Idempotence: a restore is skipped (changed=false) when the target database still holds exactly what the dump
holds. That is decided without reading the dump: the state recorded when the dump was taken (same server and
database only) or right after the last restore of this dump must still hold, i.e. the same schema
fingerprint and sequence positions, no row written after the recorded snapshot (every INSERT and UPDATE
writes a row version stamped with its transaction id), and the same row count in every dumped table.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time

from ansible_collections.fleetops.rollback.plugins.module_utils import _pg, _pg_toc
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import (
    atomic_write, sha256_bytes, sha256_file)
from ansible_collections.fleetops.rollback.plugins.module_utils._store import utc_now

FORMATS = ("custom", "directory")
MODES = ("clean", "recreate")
META_FORMAT = 1
TERMINATE_WAIT_MS = 5000
SESSION_DEADLINE = 30.0
_SHA_CACHE = {}


# ---------------------------------------------------------------------- files and checksums
class DumpFiles:
    def __init__(self, path):
        self.path = os.path.normpath(path)
        self.name = os.path.basename(self.path)
        self.sha = self.path + ".sha256"
        self.manifest = self.path + ".manifest"
        self.meta = self.path + ".meta.json"
        self.marker = self.path + ".restored.json"

    def exists(self):
        return os.path.lexists(self.path)

    def sidecars(self):
        return [self.sha, self.manifest, self.meta, self.marker]


def _walk_files(root):
    out = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(base, name)
            out.append((os.path.relpath(full, root), full))
    return sorted(out)


def _cached_sha(path):
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def directory_manifest(root, name):
    """sha256sum lines ("<sha>  <name>/<rel>") of every file under a directory-format dump."""
    return "".join("%s  %s/%s\n" % (_cached_sha(full), name, rel) for rel, full in _walk_files(root)).encode()


def dump_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(full) for _rel, full in _walk_files(path))
    return os.path.getsize(path)


def compute_checksum(path, fmt, name):
    """(sha256, manifest bytes or None): the file's sha256, or the sha256 of the directory's manifest."""
    if fmt == "directory":
        if not os.path.isdir(path):
            raise RollbackError("%s is not a directory, but the dump's format is directory" % path)
        manifest = directory_manifest(path, name)
        return sha256_bytes(manifest), manifest
    if not os.path.isfile(path):
        raise RollbackError("%s is not a file, but the dump's format is custom" % path)
    return _cached_sha(path), None


def read_meta(files):
    try:
        with open(files.meta, "rb") as stream:
            meta = json.loads(stream.read().decode("utf-8"))
    except FileNotFoundError:
        raise RollbackError("src: %s has no metadata file %s; only dumps written by fleetops.rollback.pg_dump (or a "
                            "restore point) can be restored and verified" % (files.path, files.meta), src=files.path)
    except (OSError, ValueError) as err:
        raise RollbackError("src: the metadata %s is unreadable (%s); nothing was changed" % (files.meta, err),
                            src=files.path)
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS or not isinstance(meta.get("tables"), dict):
        raise RollbackError("src: the metadata %s is not a fleetops dump description; nothing was changed"
                            % files.meta, src=files.path)
    return meta


def check_dump(files, expected_sha=None):
    """The dump's metadata once its checksum is proven; a RollbackError (nothing changed) otherwise."""
    if not files.exists():
        raise RollbackError("src: %s does not exist; nothing was changed" % files.path, src=files.path)
    meta = read_meta(files)
    try:
        with open(files.sha, encoding="utf-8") as stream:
            recorded = stream.read().split()[0]
    except (OSError, IndexError):
        raise RollbackError("src: %s has no readable checksum file %s; refusing to restore an unverifiable dump; "
                            "nothing was changed" % (files.path, files.sha), src=files.path)
    actual, manifest = compute_checksum(files.path, meta["format"], files.name)
    wanted = {recorded, meta.get("sha256")} | ({expected_sha} if expected_sha else set())
    if len(wanted) != 1 or actual != recorded:
        detail = "its sha256 is %s but %s records %s" % (actual, files.sha, recorded)
        if manifest is not None:
            try:
                with open(files.manifest, "rb") as stream:
                    stored = stream.read()
            except OSError:
                stored = b""
            bad = sorted(set(manifest.decode().splitlines()) ^ set(stored.decode("utf-8", "replace").splitlines()))
            detail += "; differing files: %s" % ", ".join(line.split("  ", 1)[-1] for line in bad[:5])
        if expected_sha and expected_sha != recorded:
            detail += "; the restore point records %s" % expected_sha
        raise RollbackError("src: the dump %s fails its checksum (%s); it is corrupt or was changed, refusing to "
                            "restore it; nothing was changed" % (files.path, detail), src=files.path,
                            sha256=actual, expected_sha256=recorded)
    return meta


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _sibling(path, tag):
    return os.path.join(os.path.dirname(path), ".%s.%s-%s" % (os.path.basename(path), tag, secrets.token_hex(3)))


# ---------------------------------------------------------------------- TOC
_TOC_LINE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.*)$")
TOC_KINDS = ("TABLE DATA", "MATERIALIZED VIEW", "FOREIGN TABLE", "TABLE", "VIEW", "SEQUENCE")


def read_toc(conn, major, path):
    rc, out, err = conn.run_tool([conn.tools(major)["pg_restore"], "-l", path], capture_stdout=True, timeout=600)
    if rc != 0:
        raise RollbackError("pg_restore -l cannot read the dump %s: %s" % (path, err.strip()[-800:]), src=path)
    return [m.group("rest") for m in (_TOC_LINE.match(line) for line in out.splitlines()) if m]


def toc_objects(toc, known):
    """{"TABLE DATA": [...], "TABLE": [...], ...}: TOC entries matched against known "schema.name" relations
    (names may hold spaces, so each entry is matched against the catalog rather than split)."""
    out = {kind: [] for kind in TOC_KINDS}
    for rest in toc:
        kind = next((k for k in TOC_KINDS if rest.startswith(k + " ")), None)
        if kind is None:
            continue
        tail = rest[len(kind) + 1:]
        for qualified in known:
            # "schema.name" keys: the schema and the name may hold dots themselves, so try every split.
            splits = [(qualified[:i], qualified[i + 1:]) for i, ch in enumerate(qualified) if ch == "."]
            if any(tail.startswith("%s %s " % pair) or tail == "%s %s" % pair for pair in splits):
                out[kind].append(qualified)
                break
    return {kind: sorted(set(names)) for kind, names in out.items()}


def dump_objects(conn, major, path, fmt, known):
    """toc_objects() of a dump: its TOC read in-process (_pg_toc), or by `pg_restore -l` for an archive that
    reader does not know."""
    try:
        entries = _pg_toc.read_entries(path, fmt)
    except _pg_toc.TocUnsupported:
        return toc_objects(read_toc(conn, major, path), known)
    out = {kind: set() for kind in TOC_KINDS}
    for desc, namespace, tag in entries:
        qualified = "%s.%s" % (namespace, tag)
        if desc in out and qualified in known:
            out[desc].add(qualified)
    return {kind: sorted(names) for kind, names in out.items()}


# ---------------------------------------------------------------------- dump
def _filters(options):
    argv = []
    for key, flag in (("schemas", "-n"), ("exclude_schemas", "-N"), ("tables", "-t"), ("exclude_tables", "-T")):
        for value in options.get(key) or []:
            argv += [flag, value]
    return argv


class _Counter(threading.Thread):
    """Row counts on the snapshot session in the background (the session is otherwise idle meanwhile)."""

    def __init__(self, cur, tables):
        super().__init__(name="fleetops-row-counts", daemon=True)
        self.cur = cur
        self.tables = tables
        self.counts = None
        self.error = None

    def run(self):
        try:
            # One backend, no parallel workers: pg_dump needs the CPU more.
            self.cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            # Only what this role may read (a table it may not read is not in a dump that succeeds).
            names = _pg.resolve_names(self.cur, self.tables)
            self.cur.execute("SELECT s || '.' || n FROM unnest(%s::text[], %s::text[]) AS t(s, n) "
                             "WHERE has_table_privilege(format('%%I.%%I', s, n), 'SELECT')",
                             ([names[t][0] for t in self.tables], [names[t][1] for t in self.tables]))
            self.counts = _pg.count_rows(self.cur, [row[0] for row in self.cur.fetchall()], names)
        except Exception as err:  # pylint: disable=broad-except
            self.error = err


def _open_snapshot(conn, db=None):
    """A REPEATABLE READ READ ONLY transaction whose snapshot pg_dump shares (--snapshot)."""
    session = conn.connect(db, autocommit=False)
    session.set_session(isolation_level="REPEATABLE READ", readonly=True)
    return session


def dump_plan(conn, options):
    """What a dump would hold (check mode): the tables and their estimated rows. Writes nothing."""
    session = conn.connect()
    try:
        with session.cursor() as cur:
            info = _pg.server_info(cur)
            tools = conn.tools(info["major"])
            cur.execute("SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND " + _pg.USER_SCHEMAS)
            estimates = dict(cur.fetchall())
    finally:
        session.close()
    return {"server_version": info["server_version"], "pg_dump": tools["pg_dump"],
            "estimated_rows": estimates, "filtered": bool(_filters(options))}


def dump(conn, dest, options, verify=False, overwrite=True):
    """Dump conn.db to dest with sidecars; returns the metadata (plus `verify` when asked). Atomic: the dump is
    written under a temporary name and moved into place only once complete (and verified)."""
    fmt = options.get("format") or "custom"
    jobs = int(options.get("jobs") or 1)
    files = DumpFiles(dest)
    if files.exists() and not overwrite:
        raise RollbackError("dest: %s exists; set overwrite=true to replace it" % files.path)
    parent = os.path.dirname(files.path)
    if not os.path.isdir(parent):
        raise RollbackError("dest: the directory %s does not exist; create it first" % parent, dest=files.path)
    started = time.monotonic()
    tmp = _sibling(files.path, "dumping")
    session = _open_snapshot(conn)
    try:
        with session.cursor() as cur:
            info = _pg.server_info(cur)
            cur.execute("SELECT pg_export_snapshot()")
            snapshot_id = cur.fetchone()[0]
            argv = conn.tool_argv("pg_dump", info["major"], dbname=conn.db)
            argv += ["-F", fmt[0], "-f", tmp, "--snapshot", snapshot_id]
            if fmt == "directory" and jobs > 1:
                argv += ["-j", str(jobs)]
            if options.get("compress") is not None:
                argv += ["-Z", str(options["compress"])]
            argv += _filters(options)
            # Count every table's rows in the same snapshot while pg_dump runs (the TOC says later which of
            # them the dump holds): the counts cost no time of their own.
            known = _pg.relations(cur)
            counter = _Counter(cur, [name for name, kind in known.items() if kind == "table"])
            counter.start()
            try:
                rc, _out, err = conn.run_tool(argv)
            finally:
                counter.join()
            # A failed count aborts the snapshot's transaction, which fails pg_dump with a message about the
            # snapshot: the count's own error is the one that says what went wrong.
            if counter.error is not None:
                raise RollbackError("counting the rows of %s failed: %s; nothing was written to %s"
                                    % (conn.where(), getattr(counter.error, "msg", None) or str(counter.error).strip(),
                                       files.path), dest=files.path)
            if rc != 0:
                raise RollbackError("pg_dump of %s failed (exit %s): %s; nothing was written to %s"
                                    % (conn.where(), rc, err.strip()[-1500:], files.path), dest=files.path)
            dumped_at = time.monotonic()
            objects = dump_objects(conn, info["major"], tmp, fmt, known)
            tables = objects["TABLE DATA"]
            state = _pg.describe_state(cur, tables, counter.counts)
            cur.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()")
            encoding = cur.fetchone()[0]
        session.rollback()
    except BaseException:
        _remove(tmp)
        raise
    finally:
        session.close()
    try:
        sha, manifest = compute_checksum(tmp, fmt, files.name)
        meta = {
            "format": fmt,
            "meta_format": META_FORMAT,
            "database": conn.db,
            "encoding": encoding,
            "server_version": info["server_version"],
            "server_version_num": info["server_version_num"],
            "pg_dump_major": conn.tools(info["major"])["major"],
            "created_at": utc_now().isoformat(timespec="milliseconds"),
            "jobs": jobs,
            "compress": options.get("compress"),
            "filters": {k: list(options.get(k) or []) for k in ("schemas", "exclude_schemas", "tables",
                                                                "exclude_tables")},
            "tables": state["counts"],
            "relations": sorted(set(objects["TABLE"] + objects["VIEW"] + objects["MATERIALIZED VIEW"] +
                                    objects["SEQUENCE"] + objects["FOREIGN TABLE"])),
            "size": dump_size(tmp),
            "seconds": round(dumped_at - started, 3),
            "sha256": sha,
            "source": {k: v for k, v in state.items() if k != "counts"},
        }
        meta["seconds_total"] = round(time.monotonic() - started, 3)
        if verify:
            meta["verify"] = verify_dump(conn, tmp, meta, jobs)
            if not meta["verify"]["verified"]:
                raise RollbackError("verify: the new dump of %s did not restore to the same row counts (%s); it was "
                                    "discarded and %s was left as it was"
                                    % (conn.where(), meta["verify"]["problem"], files.path), verify=meta["verify"])
        install(files, tmp, meta, manifest)
    except BaseException:
        _remove(tmp)
        raise
    return meta


def install(files, tmp, meta, manifest):
    """Move a finished dump into place with its sidecars. An older dump at the same path goes last."""
    old = None
    if files.exists():
        old = _sibling(files.path, "replaced")
        os.rename(files.path, old)
    for stale in files.sidecars():
        if os.path.lexists(stale):
            os.unlink(stale)
    os.rename(tmp, files.path)
    if os.path.isdir(files.path):
        os.chmod(files.path, 0o700)
        for _rel, full in _walk_files(files.path):
            os.chmod(full, 0o600)
    else:
        os.chmod(files.path, 0o600)
    if manifest is not None:
        atomic_write(files.manifest, manifest)
        atomic_write(files.sha, ("%s  %s\n" % (meta["sha256"], os.path.basename(files.manifest))).encode())
    else:
        atomic_write(files.sha, ("%s  %s\n" % (meta["sha256"], files.name)).encode())
    atomic_write(files.meta, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    if old:
        _remove(old)


def remove_dump(path):
    files = DumpFiles(path)
    for item in [files.path] + files.sidecars():
        _remove(item)


# ---------------------------------------------------------------------- databases
def _scratch_name(base, tag):
    return "%s_fleetops_%s_%s" % (base[:30], tag, secrets.token_hex(3))


def database_props(cur, db):
    cur.execute("""SELECT d.oid, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
                          d.datlocprovider, d.daticulocale, d.datconnlimit, t.spcname, d.datacl IS NOT NULL,
                          shobj_description(d.oid, 'pg_database')
                     FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s""", (db,))
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("oid", "owner", "encoding", "collate", "ctype", "provider", "icu_locale", "connlimit", "tablespace",
            "has_acl", "comment")
    props = dict(zip(keys, row))
    cur.execute("SELECT coalesce(pg_get_userbyid(NULLIF(setrole, 0)), ''), setconfig FROM pg_db_role_setting "
                "WHERE setdatabase = %s", (props["oid"],))
    props["settings"] = [(role, item) for role, config in cur.fetchall() for item in config or []]
    cur.execute("SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
                "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s", (props["oid"],))
    props["acl"] = cur.fetchall()
    return props


def create_like(cur, name, props, skip_settings=()):
    """CREATE DATABASE name with the owner, encoding, locale, settings, privileges and comment of props."""
    sql = _pg.pgsql
    if props is None:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(_pg.ident(name)))
        return
    parts = [sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {} "
                     "CONNECTION LIMIT {}").format(
        _pg.ident(name), _pg.ident(props["owner"]), sql.Literal(props["encoding"]), sql.Literal(props["collate"]),
        sql.Literal(props["ctype"]), sql.Literal(props["connlimit"]))]
    if props["tablespace"] != "pg_default":
        parts.append(sql.SQL(" TABLESPACE {}").format(_pg.ident(props["tablespace"])))
    if props.get("provider") == "i":
        parts.append(sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(props["icu_locale"])))
    cur.execute(sql.Composed(parts))
    for role, item in props["settings"]:
        key, _eq, value = item.partition("=")
        if key in skip_settings:
            continue
        target = (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(_pg.ident(role), _pg.ident(name)) if role else
                  sql.SQL("ALTER DATABASE {}").format(_pg.ident(name)))
        cur.execute(sql.SQL("{} SET {} TO {}").format(target, _pg.ident(key), sql.Literal(value)))
    if props["has_acl"]:
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC, {}").format(
            _pg.ident(name), _pg.ident(props["owner"])))
        for grantee, privilege, grantable in props["acl"]:
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else _pg.ident(grantee)
            cur.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege), _pg.ident(name), who, sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    if props.get("comment"):
        cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(_pg.ident(name), sql.Literal(props["comment"])))


def drop_database(cur, name):
    cur.execute(_pg.pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_pg.ident(name)))


def end_sessions(cur, db):
    """Terminate every other client session on db and wait (with a deadline) until they are gone."""
    deadline = time.monotonic() + SESSION_DEADLINE
    while True:
        try:
            cur.execute("SELECT count(*) FILTER (WHERE NOT pg_terminate_backend(pid, %s)) FROM pg_stat_activity "
                        "WHERE " + _pg.SESSIONS_OF, (TERMINATE_WAIT_MS, db))
        except _pg.psycopg2.Error as err:
            raise RollbackError("cannot end the other sessions on %s: %s; the login role needs to be a superuser or "
                                "a member of pg_signal_backend (and of the roles of those sessions)"
                                % (db, str(err).strip()))
        if not _pg.other_sessions(cur, db):
            return
        if time.monotonic() > deadline:
            raise RollbackError("sessions on %s did not end within %.0fs" % (db, SESSION_DEADLINE))


class WriteBlock:
    """block_writes: the database defaults to read-only transactions and its other sessions are ended; release()
    puts back the previous default, also on failure, and also on a database recreated under the same name."""

    SETTING = "default_transaction_read_only"

    def __init__(self, conn):
        self.conn = conn
        self.db = conn.db
        self.previous = None
        self.engaged = False

    def engage(self):
        admin = self.conn.admin()
        try:
            with admin.cursor() as cur:
                props = database_props(cur, self.db)
                if props is None:
                    return
                for role, item in props["settings"]:
                    key, _eq, value = item.partition("=")
                    if not role and key == self.SETTING:
                        self.previous = value
                cur.execute(_pg.pgsql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                    _pg.ident(self.db)))
                self.engaged = True
                end_sessions(cur, self.db)
        finally:
            admin.close()

    def release(self):
        if not self.engaged:
            return None
        admin = self.conn.admin()
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db,))
                if cur.fetchone() is None:
                    return None
                if self.previous is None:
                    cur.execute(_pg.pgsql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
                        _pg.ident(self.db)))
                else:
                    cur.execute(_pg.pgsql.SQL("ALTER DATABASE {} SET default_transaction_read_only TO {}").format(
                        _pg.ident(self.db), _pg.pgsql.Literal(self.previous)))
            self.engaged = False
            return None
        except (_pg.psycopg2.Error, RollbackError) as err:
            return "could not undo block_writes on %s (%s); run ALTER DATABASE %s RESET default_transaction_read_only" \
                % (self.db, getattr(err, "msg", str(err)).strip(), self.db)
        finally:
            admin.close()


def _restore_argv(conn, major, db, path, jobs, clean=False, single=False, no_owner=False):
    argv = conn.tool_argv("pg_restore", major, dbname=db) + ["--exit-on-error"]
    if clean:
        argv += ["--clean", "--if-exists"]
    if single:
        argv.append("--single-transaction")
    elif jobs > 1:
        argv += ["-j", str(jobs)]
    if no_owner:
        argv += ["--no-owner", "--no-privileges"]
    return argv + [path]


def _count_in(conn, db, tables):
    session = conn.connect(db)
    try:
        with session.cursor() as cur:
            return _pg.count_rows(cur, tables)
    finally:
        session.close()


def _state_in(conn, db, tables):
    session = _open_snapshot(conn, db)
    try:
        with session.cursor() as cur:
            return _pg.describe_state(cur, tables)
    finally:
        session.rollback()
        session.close()


def count_mismatches(expected, actual):
    return {t: {"dump": n, "database": actual.get(t)} for t, n in sorted(expected.items()) if actual.get(t) != n}


def verify_dump(conn, path, meta, jobs=1):
    """Restore the dump into a scratch database, compare every table's rows with the metadata, drop the scratch."""
    started = time.monotonic()
    scratch = _scratch_name(conn.db, "verify")
    result = {"verified": False, "database": scratch, "tables": len(meta["tables"]), "mismatches": {}, "problem": None}
    admin = conn.admin()
    try:
        with admin.cursor() as cur:
            cur.execute(_pg.pgsql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
                _pg.ident(scratch), _pg.pgsql.Literal(meta.get("encoding") or "UTF8")))
            try:
                major = meta["server_version_num"] // 10000
                rc, _out, err = conn.run_tool(_restore_argv(conn, major, scratch, path, jobs, no_owner=True))
                if rc != 0:
                    result["problem"] = "pg_restore into scratch database %s failed (exit %s): %s" % (
                        scratch, rc, err.strip()[-800:])
                else:
                    counts = _count_in(conn, scratch, list(meta["tables"]))
                    result["mismatches"] = count_mismatches(meta["tables"], counts)
                    if result["mismatches"]:
                        result["problem"] = "row counts differ: %s" % ", ".join(
                            "%s %s vs %s" % (t, m["database"], m["dump"]) for t, m in
                            list(result["mismatches"].items())[:5])
                    else:
                        result["verified"] = True
                        result["rows"] = sum(counts.values())
            except RollbackError as err:
                result["problem"] = err.msg
            finally:
                drop_database(cur, scratch)
    finally:
        admin.close()
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


# ---------------------------------------------------------------------- restore
def _markers(files):
    try:
        with open(files.marker, encoding="utf-8") as stream:
            data = json.load(stream)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _target_key(state):
    return "%s/%s" % (state.get("system_identifier"), state.get("datname"))


def write_marker(files, meta, state):
    """Record the target's state right after a restore, so a second restore can say changed=false."""
    data = _markers(files)
    data[_target_key(state)] = dict(state, dump_sha256=meta["sha256"], restored_at=utc_now().isoformat(
        timespec="milliseconds"))
    try:
        atomic_write(files.marker, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        return None
    except OSError as err:
        return "could not record the restored state in %s (%s): the next restore will run again" % (files.marker, err)


def inspect_target(conn, files, meta, mode):
    """Plan a restore: does the target already hold the dump, and what would be dropped, kept and restored."""
    admin = conn.admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (conn.db,))
            exists = cur.fetchone() is not None
            major = _pg.server_info(cur)["major"]
            conn.tools(major)
    finally:
        admin.close()
    tables = sorted(meta["tables"])
    plan = {"database": conn.db, "mode": mode, "exists": exists, "format": meta["format"], "src": files.path,
            "sha256": meta["sha256"], "dump_created_at": meta.get("created_at"),
            "restore": {"tables": meta["tables"], "relations": len(meta.get("relations", []))}, "major": major}
    if not exists:
        if mode == "clean":
            raise RollbackError("db: database %s does not exist on %s; mode=clean restores into an existing database, "
                                "use mode=recreate to create it; nothing was changed" % (conn.db, conn.where()))
        plan.update(changed=True, reason="the database does not exist", drop=[], keep=[], sessions=0)
        return plan
    session = conn.connect()
    try:
        with session.cursor() as cur:
            current = _pg.relations(cur)
            plan["sessions"] = _pg.other_sessions(cur, conn.db)
            reason = "no record of the database state"
            marker = _markers(files).get(_target_key(_pg.server_info(cur)))
            references = []
            if marker and marker.get("dump_sha256") == meta["sha256"]:
                references.append(("restored", marker))
            if meta.get("source"):
                references.append(("dumped", dict(meta["source"], counts=meta["tables"])))
            for label, reference in references:
                session.rollback()
                session.set_session(isolation_level="REPEATABLE READ", readonly=True)
                why = _pg.changes_since(cur, reference, tables)
                session.rollback()
                if why is None:
                    reason = None
                    plan["matches"] = "the database holds what it held when this dump was %s (%s)" % (
                        label, reference.get("restored_at") or meta.get("created_at"))
                    break
                if label == "restored" or reason == "no record of the database state":
                    reason = why
    finally:
        session.close()
    dumped = set(meta.get("relations", []))
    if mode == "recreate":
        plan["drop"] = sorted("%s (%s)" % (name, kind) for name, kind in current.items())
        plan["keep"] = []
    else:
        plan["drop"] = sorted("%s (%s)" % (name, kind) for name, kind in current.items() if name in dumped)
        plan["keep"] = sorted("%s (%s)" % (name, kind) for name, kind in current.items() if name not in dumped)
    plan["changed"] = reason is not None
    plan["reason"] = reason or plan["matches"]
    return plan


def rebuild(conn, path, meta, jobs, skip_settings=()):
    """Recreate conn.db from a dump: build it as a new database, verify its row counts, then swap it in (both
    renames in one transaction) and drop the old one. A failure before the swap leaves the original untouched.
    Returns the new database's state record."""
    major = meta["server_version_num"] // 10000
    tmp = _scratch_name(conn.db, "new")
    admin = conn.admin()
    swapped = False
    try:
        with admin.cursor() as cur:
            props = database_props(cur, conn.db)
            create_like(cur, tmp, props, skip_settings)
            try:
                rc, _out, err = conn.run_tool(_restore_argv(conn, major, tmp, path, jobs))
                if rc != 0:
                    raise RollbackError("pg_restore failed (exit %s): %s" % (rc, err.strip()[-1500:]))
                state = _state_in(conn, tmp, sorted(meta["tables"]))
                bad = count_mismatches(meta["tables"], state["counts"])
                if bad:
                    raise RollbackError("row counts after the restore differ from the dump: %s" % json.dumps(bad))
                _swap(admin, cur, conn.db, tmp, props is not None)
                swapped = True
            finally:
                if not swapped:
                    drop_database(cur, tmp)
    finally:
        admin.close()
    state["datname"] = conn.db
    return state


def _swap(admin, cur, db, tmp, exists):
    sql = _pg.pgsql
    if not exists:
        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_pg.ident(tmp), _pg.ident(db)))
        return
    old = _scratch_name(db, "old")
    cur.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(_pg.ident(db)))
    try:
        end_sessions(cur, db)
        admin.autocommit = False
        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_pg.ident(db), _pg.ident(old)))
        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_pg.ident(tmp), _pg.ident(db)))
        admin.commit()
    except BaseException:
        if not admin.autocommit:
            admin.rollback()
        admin.autocommit = True
        cur.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(_pg.ident(db)))
        raise
    admin.autocommit = True
    drop_database(cur, old)


def restore(conn, files, mode="clean", jobs=1, block_writes=False, safety_dest=None, check=False,
            expected_sha=None, exact=False, revert=True):
    """Restore a checked dump into conn.db. Returns the result dict; raises RollbackError with a report.

    safety_dest: where to dump the target first (None: no safety dump). revert: on failure put the safety dump
    back (the restore point framework reverts by itself and passes revert=False)."""
    started = time.monotonic()
    timings = {}
    meta = check_dump(files, expected_sha)
    timings["checksum"] = round(time.monotonic() - started, 3)
    if mode not in MODES:
        raise RollbackError("mode: %r is not one of %s" % (mode, ", ".join(MODES)))
    plan = inspect_target(conn, files, meta, mode)
    major = plan.pop("major")
    result = {"changed": plan["changed"], "plan": plan, "safety_dump": None, "database": conn.db, "mode": mode}
    if check or not plan["changed"]:
        if check and plan["changed"] and safety_dest and plan["exists"]:
            result["safety_dump"] = safety_dest
        timings["plan"] = round(time.monotonic() - started - timings["checksum"], 3)
        result["seconds"] = dict(timings, total=round(time.monotonic() - started, 3))
        return result
    tables = sorted(meta["tables"])
    blocker = WriteBlock(conn) if block_writes and plan["exists"] else None
    release_problem = None
    try:
        if blocker:
            blocker.engage()
        safety_meta = None
        if safety_dest and plan["exists"]:
            begun = time.monotonic()
            safety_meta = dump(conn, safety_dest, {"format": "custom", "compress": None})
            result["safety_dump"] = safety_dest
            timings["safety_dump"] = round(time.monotonic() - begun, 3)
        begun = time.monotonic()
        try:
            if mode == "recreate" or exact or not plan["exists"]:
                state = rebuild(conn, files.path, meta, jobs, skip_settings=(WriteBlock.SETTING,) if blocker else ())
                timings["restore"] = round(time.monotonic() - begun, 3)
            else:
                rc, _out, err = conn.run_tool(_restore_argv(conn, major, conn.db, files.path, jobs, clean=True,
                                                            single=jobs <= 1))
                timings["restore"] = round(time.monotonic() - begun, 3)
                if rc != 0:
                    raise RollbackError("pg_restore failed (exit %s): %s" % (rc, err.strip()[-1500:]))
                begun = time.monotonic()
                state = _state_in(conn, conn.db, tables)
                timings["verify"] = round(time.monotonic() - begun, 3)
                bad = count_mismatches(meta["tables"], state["counts"])
                if bad:
                    raise RollbackError("row counts after the restore differ from the dump: %s" % json.dumps(bad))
        except RollbackError as err:
            raise _failed(conn, err, mode, jobs, safety_meta, result, revert, blocker)
        result["verified"] = {"tables": len(tables), "rows": sum(state["counts"].values())}
        problem = write_marker(files, meta, state)
        if problem:
            result["warnings"] = [problem]
    finally:
        if blocker:
            release_problem = blocker.release()
    if release_problem:
        raise RollbackError("%s was restored, but %s" % (conn.db, release_problem), **result)
    result["seconds"] = dict(timings, total=round(time.monotonic() - started, 3))
    return result


def _failed(conn, err, mode, jobs, safety_meta, result, revert, blocker):
    """Decide what state the database is in after a failed restore, put the safety dump back if needed."""
    details = dict(result, error=err.msg)
    if mode == "recreate" or not result["plan"]["exists"]:
        details["state"] = "unchanged: the dump was restored into a new database that was dropped"
        return RollbackError("restore of %s into %s failed: %s; the database was not changed (the dump was "
                             "restored into a scratch database that was dropped)" % (
                                 result["plan"]["src"], conn.where(), err.msg), **details)
    if safety_meta is not None:
        session = conn.connect()
        try:
            with session.cursor() as cur:
                session.set_session(isolation_level="REPEATABLE READ", readonly=True)
                why = _pg.changes_since(cur, dict(safety_meta["source"], counts=safety_meta["tables"]),
                                        sorted(safety_meta["tables"]))
        finally:
            session.rollback()
            session.close()
        if why is None:
            details["state"] = "unchanged: the failed restore ran in one transaction and was rolled back"
            return RollbackError("restore of %s into %s failed: %s; the database was not changed (checked against "
                                 "the safety dump %s)" % (result["plan"]["src"], conn.where(), err.msg,
                                                          result["safety_dump"]), **details)
    if not revert or safety_meta is None:
        details["state"] = "UNKNOWN: partially restored"
        return RollbackError("restore of %s into %s failed midway: %s; the database is partially restored%s"
                             % (result["plan"]["src"], conn.where(), err.msg,
                                "" if safety_meta is None else "; safety dump: %s" % result["safety_dump"]),
                             **details)
    try:
        rebuild(conn, result["safety_dump"], safety_meta, jobs,
                skip_settings=(WriteBlock.SETTING,) if blocker else ())
    except RollbackError as revert_err:
        details["state"] = "UNKNOWN: partially restored, and restoring the safety dump failed"
        return RollbackError("restore of %s into %s failed midway (%s) and restoring the safety dump %s also failed "
                             "(%s); the database is partially restored: restore %s with mode=recreate once the cause "
                             "is fixed" % (result["plan"]["src"], conn.where(), err.msg, result["safety_dump"],
                                           revert_err.msg, result["safety_dump"]), **details)
    details["state"] = "reverted to the safety dump"
    return RollbackError("restore of %s into %s failed midway: %s; the safety dump %s was restored and its row counts "
                         "verified: the database is back as it was before" % (
                             result["plan"]["src"], conn.where(), err.msg, result["safety_dump"]), **details)
