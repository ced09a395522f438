# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `database` component (the implementation is in component.py). Its connection and dump
options are also those of pg_dump and pg_restore, so the three accept and refuse the same values."""

from __future__ import annotations

NAME = "database"
SUMMARY = ("a PostgreSQL database dumped into the point's C(dumps/<id>/) with sha256 and per-table row counts, "
           "restored through the pg_restore flow (safety dump first, writes blocked, counts verified)")
CONNECTION_OPTIONS = dict(
    db=dict(type="str", required=True, aliases=["login_db"], description=[
        "The database to dump or restore into. At most 63 bytes (PostgreSQL would cut a longer name and reach "
        "another database); any characters, passed to the client tools as one argument, never through a shell."]),
    login_host=dict(type="str", default="", description=[
        "Host of the server. Empty means the default unix socket. O(login_unix_socket) wins over it."]),
    port=dict(type="int", default=5432, aliases=["login_port"], description=["Port of the server (1-65535)."]),
    login_user=dict(type="str", default="postgres", description=["The role to connect as."]),
    login_password=dict(type="str", default="", no_log=True, description=[
        "The password of O(login_user). It reaches psycopg2 directly and pg_dump/pg_restore through a temporary "
        "0600 passfile (E(PGPASSFILE)), never their command line, and never appears in results or errors.",
        "Without it, the usual libpq sources apply (E(PGPASSWORD), E(PGPASSFILE), C(~/.pgpass)).",
        "A password holding a NUL byte or a line break is refused (without showing it)."]),
    login_unix_socket=dict(type="str", default="", description=[
        "Absolute path of the directory of the server's unix socket (for peer or password login over the socket)."]),
    maintenance_db=dict(type="str", default="postgres", description=[
        "The database to connect to for C(CREATE DATABASE), C(DROP DATABASE) and renames (scratch databases for "
        "verification, C(mode=recreate) of pg_restore and reverts)."]),
    connect_timeout=dict(type="int", default=10, description=["Seconds to wait for a connection (1-3600)."]),
    bin_dir=dict(type="path", description=[
        "Absolute path of the directory holding C(pg_dump) and C(pg_restore).",
        "By default the first of E(PATH) and C(/usr/lib/postgresql/*/bin) whose major version matches the server's "
        "(or the closest newer one, as pg_dump reads older servers)."]),
)
FORMATS = ("custom", "directory")
DUMP_OPTIONS = dict(
    format=dict(type="str", default="custom", choices=list(FORMATS), description=[
        "C(custom) is one compressed file; C(directory) is one file per table and allows parallel O(jobs).",
        "Always explicit; never guessed from a file name."]),
    jobs=dict(type="int", default=1, description=[
        "Parallel pg_dump workers (1-256). More than one only with O(format=directory)."]),
    compress=dict(type="int", description=[
        "gzip level 0-9 passed to C(pg_dump -Z). Default is pg_dump's own (6). On small machines a low level is "
        "much faster (1 is often twice as fast as 6 for a few percent more bytes)."]),
    schemas=dict(type="list", elements="str", description=[
        "Dump only these schemas (C(pg_dump -n) patterns). Each pattern must match something (C(--strict-names))."]),
    exclude_schemas=dict(type="list", elements="str", description=["Do not dump these schemas (C(pg_dump -N) patterns)."]),
    tables=dict(type="list", elements="str", description=[
        "Dump only these tables (C(pg_dump -t) patterns). Each pattern must match something (C(--strict-names))."]),
    exclude_tables=dict(type="list", elements="str", description=["Do not dump these tables (C(pg_dump -T) patterns)."]),
)
MODES = ("clean", "recreate")
RESTORE_OPTIONS = dict(
    mode=dict(type="str", default="clean", choices=list(MODES), description=[
        "How a restore puts the dump back, as M(fleetops.rollback.pg_restore)'s O(fleetops.rollback.pg_restore#module:mode)."]),
    block_writes=dict(type="bool", default=False, description=[
        "Refuse new connections and end the others while a restore runs, as M(fleetops.rollback.pg_restore) does."]),
)
OPTIONS = dict(CONNECTION_OPTIONS, **dict(DUMP_OPTIONS, **RESTORE_OPTIONS))
RUNTIME_OPTIONS = dict(
    database_password=dict(type="str", no_log=True, description=[
        "With O(state=restored), the password of the O(components.database.login_user) that restores the database "
        "component, for this run only: points never store passwords.",
        "Without it, the usual libpq sources on the host apply (E(PGPASSWORD), E(PGPASSFILE), C(~/.pgpass)) or a unix "
        "socket with peer authentication."]),
)


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.database.component import (  # pylint: disable=import-outside-toplevel
        DatabaseComponent)
    return DatabaseComponent
