"""A throwaway PostgreSQL cluster for tests and benchmarks.

    cluster = PgCluster.create()      # installs PostgreSQL from Debian if needed, initdb, start
    cluster.sql("CREATE TABLE ...", db="app")
    cluster.stop()                    # and remove the data directory

The cluster lives in its own temporary directory (data, unix socket, log), listens on a free loopback
port and runs as the `postgres` user when the tests run as root (the server refuses to run as root).
Local (unix socket) connections of the superuser are trusted; TCP connections use scram-sha-256, so a
password role (`ROLE`, password `PASSWORD`) gets a real password check over 127.0.0.1.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import sys
import time

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tools.system_packages import AptError, apt_install  # noqa: E402  pylint: disable=wrong-import-position

ROLE = "fleet"
PASSWORD = "fleet-Pa55:word\\with-specials"


class PgClusterError(RuntimeError):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_dirs():
    """PostgreSQL server bin directories, newest first."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))]
    return sorted(found, key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0, reverse=True)


def ensure_installed():
    """The PostgreSQL server (initdb, pg_ctl, pg_dump, pg_restore, pgbench): from Debian when missing."""
    if bin_dirs():
        return bin_dirs()[0]
    if os.geteuid() != 0:
        raise PgClusterError("PostgreSQL is not installed and the tests do not run as root to install it")
    try:
        apt_install("postgresql", "postgresql-contrib")
    except AptError as exc:
        raise PgClusterError(str(exc)) from None
    if not bin_dirs():
        raise PgClusterError("PostgreSQL was installed but no /usr/lib/postgresql/*/bin/initdb exists")
    return bin_dirs()[0]


class PgCluster:
    def __init__(self, base, bin_dir, port, user):
        self.base = base
        self.bin_dir = bin_dir
        self.port = port
        self.user = user
        self.data = os.path.join(base, "data")
        self.socket_dir = base
        self.log = os.path.join(base, "server.log")
        self.major = int(os.path.basename(os.path.dirname(bin_dir))) if os.path.basename(
            os.path.dirname(bin_dir)).isdigit() else None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, durable=False, settings=None):
        bin_dir = ensure_installed()
        as_root = os.geteuid() == 0
        user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
        base = tempfile.mkdtemp(prefix="fleetops-pg-")
        if as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chmod(base, 0o755)
        cluster = cls(base, bin_dir, free_port(), user)
        try:
            cluster._initdb()
            cluster._configure(durable, settings or {})
            cluster.start()
            cluster._bootstrap()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, argv, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            kwargs.setdefault("env", dict(os.environ, HOME=entry.pw_dir))
        kwargs.setdefault("cwd", self.base)
        return subprocess.run(argv, check=kwargs.pop("check", False), **kwargs)

    def _initdb(self):
        proc = self._run([os.path.join(self.bin_dir, "initdb"), "-D", self.data, "-U", "postgres",
                          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                          "--no-sync"])
        if proc.returncode != 0:
            raise PgClusterError("initdb failed: %s" % (proc.stderr or proc.stdout))

    def _configure(self, durable, settings):
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.socket_dir,
            "max_connections": "60",
            "password_encryption": "'scram-sha-256'",
        }
        if not durable:
            conf.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        conf.update(settings)
        with open(os.path.join(self.data, "postgresql.conf"), "a", encoding="utf-8") as stream:
            stream.write("\n# fleetops test cluster\n")
            for key, value in conf.items():
                stream.write("%s = %s\n" % (key, value))
        # Local superuser trusted; everyone else needs the password, over the socket too.
        with open(os.path.join(self.data, "pg_hba.conf"), "w", encoding="utf-8") as stream:
            stream.write("local all postgres trust\n"
                         "local all all scram-sha-256\n"
                         "host all all 127.0.0.1/32 scram-sha-256\n")

    def start(self):
        proc = self._run([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                          "-t", "60", "start"])
        if proc.returncode != 0:
            log = open(self.log, encoding="utf-8", errors="replace").read()[-3000:] if os.path.exists(self.log) else ""
            raise PgClusterError("pg_ctl start failed: %s\n%s" % (proc.stderr or proc.stdout, log))

    def stop(self):
        try:
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self._run([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _bootstrap(self):
        self.sql("CREATE ROLE %s LOGIN CREATEDB PASSWORD %%s" % ROLE, params=(PASSWORD,))
        self.sql("GRANT pg_signal_backend TO %s" % ROLE)

    # ------------------------------------------------------------------ access
    def connect(self, db="postgres", user="postgres", password=None):
        import psycopg2  # the test venv has it
        conn = psycopg2.connect(dbname=db, user=user, host=self.socket_dir if password is None else "127.0.0.1",
                                port=self.port, password=password, application_name="fleetops-tests")
        conn.autocommit = True
        return conn

    def sql(self, statement, params=None, db="postgres"):
        """Run one statement as the superuser; returns the rows, if any."""
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def value(self, statement, params=None, db="postgres"):
        rows = self.sql(statement, params, db)
        return rows[0][0] if rows else None

    def create_database(self, name, owner=ROLE):
        self.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        self.sql('CREATE DATABASE "%s" OWNER %s' % (name, owner))
        return name

    def databases(self):
        return sorted(r[0] for r in self.sql("SELECT datname FROM pg_database WHERE NOT datistemplate"))

    def tool(self, name, *args, user=ROLE, password=PASSWORD, check=True, env=None, timeout=1200):
        """Run a PostgreSQL client tool (pgbench, pg_dump...) against this cluster over TCP as `user`."""
        full_env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=user)
        if password:
            full_env["PGPASSWORD"] = password
        full_env.update(env or {})
        proc = subprocess.run([os.path.join(self.bin_dir, name)] + [str(a) for a in args], env=full_env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise PgClusterError("%s %s failed (%s): %s" % (name, " ".join(map(str, args)), proc.returncode,
                                                            proc.stderr[-2000:]))
        return proc

    def pgbench_init(self, db, scale=1):
        self.tool("pgbench", "-i", "-q", "-s", scale, "--foreign-keys", db)

    def pgbench_run(self, db, transactions=200, clients=2):
        self.tool("pgbench", "-n", "-c", clients, "-t", transactions, db)

    def state(self, db):
        """What a restore must bring back: every user table's row count and a content hash, plus the schema."""
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute("""SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2""")
                tables = cur.fetchall()
                out = {}
                for schema, table in tables:
                    cur.execute('SELECT count(*), md5(coalesce(string_agg(md5(t::text), \',\' ORDER BY md5(t::text)), \'\')) '
                                'FROM "%s"."%s" t' % (schema, table))
                    out["%s.%s" % (schema, table)] = cur.fetchone()
                cur.execute("""SELECT string_agg(format('%s.%s %s', n.nspname, c.relname, c.relkind), ' ' ORDER BY n.nspname, c.relname)
                               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                               AND n.nspname NOT LIKE 'pg_toast%'""")
                out["__relations__"] = cur.fetchone()[0]
                return out
        finally:
            conn.close()

    def wait_no_sessions(self, db, deadline=30.0):
        """Poll until no other session is connected to db."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not self.value("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                              (db,)):
                return
            time.sleep(0.05)
        raise PgClusterError("sessions still connected to %s after %.0fs" % (db, deadline))
