# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by tools/sync_components.py from the component registry (plugins/module_utils/_components): do not edit.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  db:
    description:
      - The database to dump or restore into. At most 63 bytes (PostgreSQL would cut a longer name and reach another
        database); any characters, passed to the client tools as one argument, never through a shell.
    type: str
    required: true
    aliases:
      - login_db
  login_host:
    description:
      - Host of the server. Empty means the default unix socket. O(login_unix_socket) wins over it.
    type: str
    default: ''
  port:
    description:
      - Port of the server (1-65535).
    type: int
    default: 5432
    aliases:
      - login_port
  login_user:
    description:
      - The role to connect as.
    type: str
    default: postgres
  login_password:
    description:
      - The password of O(login_user). It reaches psycopg2 directly and pg_dump/pg_restore through a temporary 0600
        passfile (E(PGPASSFILE)), never their command line, and never appears in results or errors.
      - Without it, the usual libpq sources apply (E(PGPASSWORD), E(PGPASSFILE), C(~/.pgpass)).
      - A password holding a NUL byte or a line break is refused (without showing it).
    type: str
    default: ''
  login_unix_socket:
    description:
      - Absolute path of the directory of the server's unix socket (for peer or password login over the socket).
    type: str
    default: ''
  maintenance_db:
    description:
      - The database to connect to for C(CREATE DATABASE), C(DROP DATABASE) and renames (scratch databases for verification,
        C(mode=recreate) of pg_restore and reverts).
    type: str
    default: postgres
  connect_timeout:
    description:
      - Seconds to wait for a connection (1-3600).
    type: int
    default: 10
  bin_dir:
    description:
      - Absolute path of the directory holding C(pg_dump) and C(pg_restore).
      - By default the first of E(PATH) and C(/usr/lib/postgresql/*/bin) whose major version matches the server's
        (or the closest newer one, as pg_dump reads older servers).
    type: path
notes:
  - 'C(pg_dump) and C(pg_restore) run as children that do not outlive the module (on Linux): a SIGTERM to the module
    stops them before it reports, and they get SIGTERM from the kernel if the module is killed.'
  - What the client tools and the server print is shown with the password and anything that looks like a secret
    (C(password=...), credentials in URLs) redacted.
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI) for the Python that runs the module on the host
  - the PostgreSQL client binaries C(pg_dump) and C(pg_restore)
"""

    DUMP = r"""
options:
  compress:
    description:
      - gzip level 0-9 passed to C(pg_dump -Z). Default is pg_dump's own (6). On small machines a low level is much
        faster (1 is often twice as fast as 6 for a few percent more bytes).
    type: int
  schemas:
    description:
      - Dump only these schemas (C(pg_dump -n) patterns). Each pattern must match something (C(--strict-names)).
    type: list
    elements: str
  exclude_schemas:
    description:
      - Do not dump these schemas (C(pg_dump -N) patterns).
    type: list
    elements: str
  tables:
    description:
      - Dump only these tables (C(pg_dump -t) patterns). Each pattern must match something (C(--strict-names)).
    type: list
    elements: str
  exclude_tables:
    description:
      - Do not dump these tables (C(pg_dump -T) patterns).
    type: list
    elements: str
"""
