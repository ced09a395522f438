"""The in-process TOC reader (_pg_toc) against `pg_restore -l` on real dumps of a real cluster: custom and
directory format, awkward names (dots, spaces, quotes, mixed case), views, materialized views, sequences and
a schema-filtered dump; damaged archives are refused so the caller falls back to `pg_restore -l`."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_toc as _pg_toc  # noqa: E402
from postgres.cluster import ROLE  # noqa: E402

AWKWARD = """
CREATE SCHEMA "odd.schema";
CREATE TABLE "odd.schema"."a table" (id int PRIMARY KEY, note text);
CREATE TABLE "odd.schema".plain (id serial PRIMARY KEY);
CREATE TABLE public."Mixed""Quote.dot" (v int);
CREATE VIEW public.balances AS SELECT aid, abalance FROM pgbench_accounts;
CREATE MATERIALIZED VIEW "odd.schema"."m view" AS SELECT count(*) AS n FROM pgbench_accounts;
CREATE SEQUENCE public.standalone_seq;
INSERT INTO "odd.schema"."a table" VALUES (1, 'x'), (2, 'y');
INSERT INTO public."Mixed""Quote.dot" VALUES (7);
ALTER SCHEMA "odd.schema" OWNER TO {role};
ALTER TABLE "odd.schema"."a table" OWNER TO {role};
ALTER TABLE "odd.schema".plain OWNER TO {role};
ALTER TABLE public."Mixed""Quote.dot" OWNER TO {role};
ALTER VIEW public.balances OWNER TO {role};
ALTER MATERIALIZED VIEW "odd.schema"."m view" OWNER TO {role};
ALTER SEQUENCE public.standalone_seq OWNER TO {role};
"""


def by_pg_restore(conn, major, path, known):
    return _pg_ops.toc_objects(_pg_ops.read_toc(conn, major, path), known)


@pytest.mark.parametrize("fmt, options", [
    ("custom", {}),
    ("directory", {"jobs": 2}),
    ("custom", {"schemas": ['"odd.schema"']}),  # a pg_dump pattern: quoted, the dot is part of the name
    ("directory", {"exclude_tables": ["public.pgbench_history"]}),
])
def test_reader_agrees_with_pg_restore_list(pg_database, tmp_path, fmt, options):
    pg_database.sql(AWKWARD.format(role=ROLE))
    conn = _pg.Conn(pg_database.login())
    dest = str(tmp_path / "dump")
    meta = _pg_ops.dump(conn, dest, dict(options, format=fmt))
    session = conn.connect()
    try:
        with session.cursor() as cur:
            known = _pg.relations(cur)
            major = _pg.server_info(cur)["major"]
    finally:
        session.close()
    expected = by_pg_restore(conn, major, dest, known)
    assert _pg_toc.read_entries(dest, fmt), "the in-process reader must read it (no pg_restore -l fallback)"
    assert _pg_ops.dump_objects(conn, major, dest, fmt, known) == expected
    # The dump's metadata came from the reader and names exactly the tables pg_restore lists as data.
    assert sorted(meta["tables"]) == expected["TABLE DATA"]
    if not options:
        assert 'public.Mixed"Quote.dot' in meta["tables"] and "odd.schema.a table" in meta["tables"]
        assert meta["tables"]["odd.schema.a table"] == 2
        assert {"public.balances", "odd.schema.m view", "public.standalone_seq"} <= set(meta["relations"])


def test_damaged_archives_are_refused_for_the_fallback(pg_database, tmp_path):
    conn = _pg.Conn(pg_database.login())
    dest = str(tmp_path / "dump")
    _pg_ops.dump(conn, dest, {"format": "custom"})
    with open(dest, "rb") as stream:
        data = stream.read()
    cases = {
        "not a dump": b"hello, world" * 10,
        "truncated in the TOC": data[:200],
        "unknown version": data[:5] + bytes([1, 99, 0]) + data[8:],
        "other format": data[:10] + bytes([3]) + data[11:],
    }
    for name, damaged in cases.items():
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(damaged)
        with pytest.raises(_pg_toc.TocUnsupported):
            _pg_toc.read_entries(str(path), "custom")
    with pytest.raises(_pg_toc.TocUnsupported):
        _pg_toc.read_entries(str(tmp_path / "missing"), "directory")
    # dump_objects then asks pg_restore, which names the damage.
    with pytest.raises(_pg_ops.RollbackError, match="pg_restore -l cannot read the dump"):
        _pg_ops.dump_objects(conn, pg_database.cluster.major, str(tmp_path / "not-a-dump"), "custom", {})
