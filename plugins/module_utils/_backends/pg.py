# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL access for the pg_dump / pg_restore modules and the database component.

- Connections through psycopg2, with community.postgresql's parameter names.
- The pg_dump / pg_restore binaries found for the server's major version and run with argv lists.
  The password reaches them through a temporary 0600 passfile (PGPASSFILE), never argv; it is removed
  from every message this code produces.
- The queries that describe a database's state: per-table row counts, a fingerprint of the schema and
  the sequences, and whether any row is newer than a given snapshot (see `changes_since`).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path
from ansible_collections.fleetops.rollback.plugins.module_utils._components import database as database_declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import argument_spec as spec_of
from ansible_collections.fleetops.rollback.plugins.module_utils._process import child_setup
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_text

try:
    import psycopg2
    from psycopg2 import sql as pgsql
    HAS_PSYCOPG2 = True
except ImportError:  # reported when a connection is needed
    psycopg2 = None
    pgsql = None
    HAS_PSYCOPG2 = False

APP_NAME = "fleetops-rollback"
# Our own sessions must write even when block_writes made the database read-only by default.
WRITE_OPTIONS = "-c default_transaction_read_only=off"
USER_SCHEMAS = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
REDACTED = "********"

# The connection parameters, named as in community.postgresql (shared by both modules and the component).
# The database component's connection options are pg_dump's and pg_restore's too: one spec, accepted alike.
CONNECTION_SPEC = spec_of(database_declaration.CONNECTION_OPTIONS)
CONNECTION_KEYS = tuple(CONNECTION_SPEC)
# PostgreSQL cuts longer names to 63 bytes without a word: a longer name would reach another database.
NAME_BYTES = 63
MAX_CONNECT_TIMEOUT = 3600
# pg_dump / pg_restore open one connection per worker: more than this is a typo, not a plan.
MAX_JOBS = 256


def _show(value):
    """A value as a message shows it: repr() keeps NUL bytes, line breaks and odd unicode visible."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "...'"


def check_no_dotdot(option, value):
    if ".." in value.split("/"):
        raise RollbackError("%s: %s holds a '..' segment; give the path without '..' (the real directory)"
                            % (option, _show(value)))


def check_name(option, value, allow_empty=False):
    """A database or role name: a string, no NUL byte, at most 63 bytes (the server would cut it silently)."""
    if not isinstance(value, str):
        raise RollbackError("%s: %s is not a name; give a string" % (option, _show(value)))
    if not value.strip() and not (allow_empty and value == ""):
        raise RollbackError("%s: %s is empty; give the name" % (option, _show(value)))
    if "\x00" in value:
        raise RollbackError("%s: %s holds a NUL byte, which no PostgreSQL name can hold; give the real name"
                            % (option, _show(value)))
    if len(value.encode("utf-8")) > NAME_BYTES:
        raise RollbackError("%s: %s is %d bytes long; PostgreSQL names hold at most %d bytes (a longer one is cut "
                            "and would reach another object); give the exact name"
                            % (option, _show(value), len(value.encode("utf-8")), NAME_BYTES))
    return value


def check_int(option, value, low, high, what):
    """An integer option within [low, high]; bools and strings are refused (YAML `yes` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RollbackError("%s: %s is not a whole number; give %s (%d-%d)" % (option, _show(value), what, low, high))
    if not low <= value <= high:
        raise RollbackError("%s: %s is out of range; give %s (%d-%d)" % (option, _show(value), what, low, high))
    return value


def check_patterns(option, values):
    """pg_dump -n/-N/-t/-T patterns: a list of non-empty strings without NUL bytes."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise RollbackError("%s: %s is not a list; give a list of patterns such as [public.orders]"
                            % (option, _show(values)))
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise RollbackError("%s: %s is not a pattern; give non-empty names such as public.orders or 'app_*'"
                                % (option, _show(value)))
        if "\x00" in value:
            raise RollbackError("%s: %s holds a NUL byte; give the real name" % (option, _show(value)))
    return list(values)


def check_connection(params, prefix=""):
    """The connection options, refused with a message naming the option and the value (never the password's)."""
    check_name(prefix + "db", params.get("db"))
    check_name(prefix + "maintenance_db", params.get("maintenance_db", "postgres"))
    check_name(prefix + "login_user", params.get("login_user", "postgres"))
    host = params.get("login_host") or ""
    if not isinstance(host, str) or "\x00" in host or any(ch.isspace() for ch in host):
        raise RollbackError("%slogin_host: %s is not a host name or address; give one such as 127.0.0.1 or "
                            "db.example.org (or leave it empty for the default unix socket)" % (prefix, _show(host)))
    check_int(prefix + "port", params.get("port", 5432), 1, 65535, "a TCP port")
    check_int(prefix + "connect_timeout", params.get("connect_timeout", 10), 1, MAX_CONNECT_TIMEOUT, "seconds")
    password = params.get("login_password") or ""
    if not isinstance(password, str):
        raise RollbackError("%slogin_password: not a string (the value is not shown); give the password as a string"
                            % prefix)
    if "\x00" in password or "\n" in password or "\r" in password:
        raise RollbackError("%slogin_password: holds a NUL byte or a line break (the value is not shown), which "
                            "PostgreSQL's clients cannot pass on; check the variable it comes from" % prefix)
    socket_dir = params.get("login_unix_socket") or ""
    if socket_dir:
        check_path(prefix + "login_unix_socket", socket_dir)
        check_no_dotdot(prefix + "login_unix_socket", socket_dir)
    bin_dir = params.get("bin_dir")
    if bin_dir is not None:
        check_path(prefix + "bin_dir", bin_dir)
        check_no_dotdot(prefix + "bin_dir", bin_dir)
        if not os.path.isdir(bin_dir):
            raise RollbackError("%sbin_dir: %s is not a directory; give the directory holding pg_dump and pg_restore "
                                "(for example /usr/lib/postgresql/15/bin)" % (prefix, _show(bin_dir)))


def quote_conninfo(value):
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "\\'")


def passfile_escape(value):
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def ident(*parts):
    return pgsql.Identifier(*parts)


class Conn:
    """Where and as whom to connect. The password lives only in this object and the temporary passfile."""

    def __init__(self, params):
        self.db = params["db"]
        self.host = params.get("login_host") or ""
        self.port = int(params.get("port") or 5432)
        self.user = params.get("login_user") or "postgres"
        self.password = params.get("login_password") or ""
        self.unix_socket = params.get("login_unix_socket") or ""
        self.maintenance_db = params.get("maintenance_db") or "postgres"
        self.connect_timeout = int(params.get("connect_timeout") or 10)
        self.bin_dir = params.get("bin_dir") or None
        self._tools = None

    # ------------------------------------------------------------------ descriptions
    @property
    def libpq_host(self):
        """community.postgresql semantics: the unix socket directory wins over login_host."""
        return self.unix_socket or self.host or None

    def where(self, db=None):
        host = self.libpq_host or "the default unix socket"
        return "%s@%s:%s/%s" % (self.user, host, self.port, db or self.db)

    def redact(self, text):
        """Text from the server or a client tool as a message may show it: the password and anything that looks
        like a secret (password=..., URL credentials) replaced."""
        text = "" if text is None else str(text)
        if self.password:
            text = text.replace(self.password, REDACTED)
        return redact_text(text)

    # ------------------------------------------------------------------ psycopg2
    def connect(self, db=None, autocommit=True):
        if not HAS_PSYCOPG2:
            raise RollbackError("psycopg2 is not installed on the host; install psycopg2-binary (or psycopg2) for the "
                                "interpreter Ansible uses there")
        kwargs = dict(dbname=db or self.db, user=self.user, port=self.port, connect_timeout=self.connect_timeout,
                      application_name=APP_NAME, options=WRITE_OPTIONS)
        if self.libpq_host:
            kwargs["host"] = self.libpq_host
        if self.password:
            kwargs["password"] = self.password
        try:
            conn = psycopg2.connect(**kwargs)
        except psycopg2.Error as err:
            raise RollbackError("cannot connect to PostgreSQL as %s: %s; check login_host, port, login_user and "
                                "login_password (or login_unix_socket)"
                                % (self.where(db), self.redact(str(err).strip())), database=db or self.db)
        conn.autocommit = autocommit
        return conn

    def admin(self):
        """A session on the maintenance database, for CREATE / DROP / RENAME DATABASE."""
        return self.connect(self.maintenance_db)

    # ------------------------------------------------------------------ binaries
    def tools(self, server_major):
        if self._tools is None:
            self._tools = find_tools(self.bin_dir, server_major)
        return self._tools

    def tool_argv(self, tool, server_major, dbname=None):
        argv = [self.tools(server_major)[tool], "-w"]
        if self.libpq_host:
            argv += ["-h", self.libpq_host]
        argv += ["-p", str(self.port), "-U", self.user]
        if dbname is not None:
            argv += ["-d", "dbname=%s" % quote_conninfo(dbname)]
        return argv

    def run_tool(self, argv, timeout=None, capture_stdout=False):
        """Run a client tool with the password in a temporary 0600 passfile. Returns (rc, stdout, stderr)."""
        return self.start_tool(argv, capture_stdout=capture_stdout).wait(timeout)

    def start_tool(self, argv, capture_stdout=False):
        """A client tool started in the background (see ToolProcess); wait() it."""
        return ToolProcess(self, argv, capture_stdout)


STOP_WAIT = 30.0


class ToolProcess:
    """pg_dump / pg_restore running as a child that never outlives the module: it is stopped (SIGTERM, then
    SIGKILL) when waiting for it is interrupted (SIGTERM to the module raises Terminated) and gets SIGTERM from
    the kernel if the module is killed. Must be started while the module runs a single thread (preexec_fn)."""

    def __init__(self, conn, argv, capture_stdout=False):
        self.conn = conn
        self.argv = argv
        self.name = os.path.basename(argv[0])
        env = dict(os.environ)
        env.update(PGAPPNAME=APP_NAME, PGOPTIONS=WRITE_OPTIONS, PGCONNECT_TIMEOUT=str(conn.connect_timeout),
                   LC_MESSAGES="C")
        self.workdir = tempfile.mkdtemp(prefix="fleetops-pg-")
        self.proc = None
        try:
            os.chmod(self.workdir, 0o700)
            if conn.password:
                passfile = os.path.join(self.workdir, "pgpass")
                fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as stream:
                    stream.write("*:*:*:*:%s\n" % passfile_escape(conn.password))
                env["PGPASSFILE"] = passfile
                env.pop("PGPASSWORD", None)
            self.err_stream = open(os.path.join(self.workdir, "stderr"), "w+b")  # pylint: disable=consider-using-with
            try:
                self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                    argv, stdin=subprocess.DEVNULL, stderr=self.err_stream, env=env,
                    stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                    preexec_fn=child_setup())
            except OSError as err:
                raise RollbackError("cannot run %s: %s" % (argv[0], err.strerror or err))
        except BaseException:
            self._cleanup()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """End the tool (and, through its own SIGTERM handler, its workers and server queries)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def wait(self, timeout=None):
        """(rc, stdout, stderr with secrets redacted)."""
        try:
            try:
                stdout, _none = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise RollbackError("%s did not finish within %s seconds and was stopped" % (self.name, timeout))
            except BaseException:
                self.stop()
                raise
            self.err_stream.seek(0)
            stderr = self.err_stream.read().decode("utf-8", "replace")
            out = stdout.decode("utf-8", "replace") if stdout is not None else ""
            return self.proc.returncode, out, self.conn.redact(stderr)
        finally:
            self._cleanup()

    def _cleanup(self):
        stream = getattr(self, "err_stream", None)
        if stream is not None:
            stream.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------- binaries
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_major(path):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=30, check=False).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def candidate_dirs(bin_dir=None):
    if bin_dir:
        return [bin_dir]
    dirs = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and os.path.isfile(os.path.join(entry, "pg_dump")) and entry not in dirs:
            dirs.append(entry)

    def major_of(path):
        name = os.path.basename(os.path.dirname(path))
        return int(name) if name.isdigit() else 0
    for entry in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major_of, reverse=True):
        if entry not in dirs:
            dirs.append(entry)
    return dirs


def find_tools(bin_dir, server_major):
    """pg_dump and pg_restore of the server's major version (or the closest newer one: they read older servers).

    With bin_dir only that directory is used; otherwise PATH, then /usr/lib/postgresql/*/bin."""
    seen = []
    best = None
    for directory in candidate_dirs(bin_dir):
        paths = {name: os.path.join(directory, name) for name in ("pg_dump", "pg_restore")}
        if not all(os.path.isfile(p) and os.access(p, os.X_OK) for p in paths.values()):
            seen.append("%s (no pg_dump/pg_restore)" % directory)
            continue
        major = tool_major(paths["pg_dump"])
        seen.append("%s (%s)" % (directory, major))
        if major is None or server_major is None:
            continue
        if major == server_major:
            return dict(paths, major=major, dir=directory)
        if major > server_major and (best is None or major < best["major"]):
            best = dict(paths, major=major, dir=directory)
    if best:
        return best
    where = "bin_dir %s" % bin_dir if bin_dir else "PATH and /usr/lib/postgresql/*/bin"
    raise RollbackError("no pg_dump/pg_restore of PostgreSQL %s or newer found in %s (found: %s); install the "
                        "PostgreSQL %s client or set bin_dir" % (server_major, where, ", ".join(seen) or "none",
                                                                 server_major))


# ---------------------------------------------------------------------- state queries
def server_info(cur):
    cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                "current_database(), (SELECT oid FROM pg_database WHERE datname = current_database())")
    version, num, datname, oid = cur.fetchone()
    sysid = None
    savepoint = not cur.connection.autocommit
    if savepoint:
        cur.execute("SAVEPOINT fleetops_sysid")
    try:
        cur.execute("SELECT system_identifier::text FROM pg_control_system()")
        sysid = cur.fetchone()[0]
    except psycopg2.Error:  # not allowed for this role: the identity check then says "not the same server"
        if savepoint:
            cur.execute("ROLLBACK TO SAVEPOINT fleetops_sysid")
    else:
        if savepoint:
            cur.execute("RELEASE SAVEPOINT fleetops_sysid")
    return {"server_version": version, "server_version_num": num, "major": num // 10000,
            "datname": datname, "oid": int(oid), "system_identifier": sysid}


SCHEMA_FINGERPRINT = """
SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) FROM (
  SELECT format('ns %s %s %s', n.nspname, n.nspowner::regrole, n.nspacl) AS x
    FROM pg_namespace n WHERE {user}
  UNION ALL
  SELECT format('rel %s.%s %s %s %s %s', n.nspname, c.relname, c.relkind, c.relowner::regrole, c.relacl,
                c.relpersistence)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user}
  UNION ALL
  SELECT format('att %s.%s %s %s %s %s', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND {user}
  UNION ALL
  SELECT format('con %s %s %s %s', n.nspname, co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
    FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE {user}
  UNION ALL
  SELECT format('idx %s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user}
  UNION ALL
  SELECT format('trg %s %s', pg_get_triggerdef(t.oid), t.tgenabled)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal AND {user}
  UNION ALL
  SELECT format('fn %s.%s(%s) %s %s %s', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
                md5(coalesce(p.prosrc, '')), p.proowner::regrole, p.proacl)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user}
  UNION ALL
  SELECT format('view %s.%s %s', n.nspname, c.relname, md5(pg_get_viewdef(c.oid)))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {user}
  UNION ALL
  SELECT format('type %s.%s %s %s', n.nspname, t.typname, t.typtype,
                (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'c', 'r') AND {user}
  UNION ALL
  SELECT format('ext %s %s', extname, extversion) FROM pg_extension
  UNION ALL
  SELECT format('evt %s %s %s %s', evtname, evtevent, evtenabled, evttags) FROM pg_event_trigger
  UNION ALL
  SELECT format('pol %s %s %s', polrelid::regclass, polname, pg_get_expr(polqual, polrelid)) FROM pg_policy
) s
""".format(user=USER_SCHEMAS)

SEQUENCES = """
SELECT coalesce(string_agg(format('%s.%s %s', schemaname, sequencename, last_value), ',' ORDER BY schemaname, sequencename), '')
  FROM pg_sequences WHERE schemaname NOT LIKE 'pg\\_%' AND schemaname <> 'information_schema'
"""


def schema_state(cur):
    """A fingerprint of everything but the table rows: schema objects, owners, privileges, sequence positions."""
    cur.execute(SCHEMA_FINGERPRINT)
    schema = cur.fetchone()[0]
    cur.execute(SEQUENCES)
    return {"schema": schema, "sequences": cur.fetchone()[0]}


def snapshot(cur):
    """The current snapshot as {xmax, xip}: 32-bit xids. Rows written by xmax or later, or by a transaction in
    xip, were not visible to it."""
    cur.execute("SELECT pg_snapshot_xmax(s)::text::numeric % 4294967296, "
                "ARRAY(SELECT x::text::numeric % 4294967296 FROM pg_snapshot_xip(s) AS x ORDER BY 1) "
                "FROM pg_current_snapshot() AS s")
    xmax, xip = cur.fetchone()
    return {"xmax": int(xmax), "xip": [int(x) for x in xip]}


def relations(cur):
    """Every user relation: {"schema.name": kind} (tables, partitioned tables, views, matviews, sequences...)."""
    cur.execute("SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND " + USER_SCHEMAS +
                " ORDER BY 1, 2")
    kinds = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "S": "sequence",
             "f": "foreign table"}
    return {"%s.%s" % (schema, name): kinds[kind] for schema, name, kind in cur.fetchall()}


def split_name(qualified):
    schema, _dot, name = qualified.partition(".")
    return schema, name


def resolve_names(cur, qualified):
    """{"schema.name": (schema, name)} for the given names: "schema.name" is ambiguous when the schema or the
    relation holds a dot, so each is looked up in the catalog. A name no relation has is split at its first
    dot (the query on it then fails naming it); two relations with one qualified name fail here."""
    if not qualified:
        return {}
    cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname || '.' || c.relname = ANY(%s)", (list(qualified),))
    found = {}
    for schema, name in cur.fetchall():
        key = "%s.%s" % (schema, name)
        if key in found:
            raise RollbackError("relations %s and %s both read %r as schema.name; rename one of them so each "
                                "table is named unambiguously" % (ident(*found[key]).as_string(cur),
                                                                  ident(schema, name).as_string(cur), key))
        found[key] = (schema, name)
    return {key: found.get(key) or split_name(key) for key in qualified}


def count_rows(cur, tables, names=None):
    """Exact row counts of the given "schema.table" names, as COPY sees them (ONLY: children are separate).
    `names`: their resolve_names() when the caller already has it."""
    counts = {}
    names = names if names is not None else resolve_names(cur, tables)
    for table in tables:
        cur.execute(pgsql.SQL("SELECT count(*) FROM ONLY {}").format(ident(*names[table])))
        counts[table] = int(cur.fetchone()[0])
    return counts


def newer_rows(cur, tables, snap):
    """The first table holding a row written after snapshot `snap` (xmin at or after its xmax, or in its xip).

    Every INSERT or UPDATE writes a row version whose xmin is the writing transaction, so a committed write
    after the snapshot leaves such a row; deletes show in the row counts; frozen rows read as old."""
    names = resolve_names(cur, tables)
    for table in tables:
        cur.execute(pgsql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {} WHERE age(xmin) <= age(%s::text::xid) "
                              "OR xmin = ANY(%s::text[]::xid[]))").format(ident(*names[table])),
                    (str(snap["xmax"]), [str(x) for x in snap["xip"]]))
        if cur.fetchone()[0]:
            return table
    return None


def describe_state(cur, tables, counts=None):
    """The state record compared later by `changes_since`: identity, schema fingerprint, snapshot, row counts
    (`counts`, when already taken in the same snapshot)."""
    info = server_info(cur)
    state = {key: info[key] for key in ("system_identifier", "datname", "oid")}
    state.update(schema_state(cur))
    state["snapshot"] = snapshot(cur)
    counts = dict(counts or {})
    counts.update(count_rows(cur, [table for table in tables if table not in counts]))
    state["counts"] = {table: counts[table] for table in tables}
    return state


def changes_since(cur, reference, tables):
    """None when the database still holds exactly the state `reference` describes; else why not (a sentence).

    The check is cheap where it matters: identity and the schema fingerprint first, then one early-exit scan
    per table for a row newer than the reference snapshot, and row counts last."""
    if not reference:
        return "no record of the database state"
    info = server_info(cur)
    if info["system_identifier"] is None or reference.get("system_identifier") != info["system_identifier"]:
        return "not the same server as the recorded state"
    if (reference.get("datname"), reference.get("oid")) != (info["datname"], info["oid"]):
        return "the database was created anew since"
    now = schema_state(cur)
    if now["schema"] != reference.get("schema"):
        return "the schema (tables, columns, indexes, functions, owners or privileges) changed"
    if now["sequences"] != reference.get("sequences"):
        return "a sequence moved"
    existing = relations(cur)
    missing = [t for t in tables if t not in existing]
    if missing:
        return "table %s is missing" % missing[0]
    table = newer_rows(cur, tables, reference["snapshot"])
    if table:
        return "rows of %s were written since" % table
    counts = count_rows(cur, tables)
    for table in tables:
        if counts.get(table) != reference.get("counts", {}).get(table):
            return "%s holds %s rows, not %s" % (table, counts.get(table), reference.get("counts", {}).get(table))
    return None


# Other client sessions on a database (backend_type reads NULL for other roles' sessions; autovacuum has no user).
SESSIONS_OF = ("datname = %s AND pid <> pg_backend_pid() AND usesysid IS NOT NULL "
               "AND coalesce(backend_type, 'client backend') = 'client backend'")


def other_sessions(cur, db):
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE " + SESSIONS_OF, (db,))
    return int(cur.fetchone()[0])
