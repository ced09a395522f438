"""pytest fixtures: one throwaway cluster per test process (xdist worker), a fresh database per test."""
from __future__ import annotations

import itertools

import pytest

from .cluster import PASSWORD, ROLE, PgCluster

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster():
    """A running cluster on a free loopback port; stopped and removed at the end of the session."""
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.stop()


class Database:
    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name

    def login(self, **extra):
        """Module options to reach this database as the password role over TCP."""
        return dict({"db": self.name, "login_host": "127.0.0.1", "port": self.cluster.port, "login_user": ROLE,
                     "login_password": PASSWORD}, **extra)

    def superuser_login(self, **extra):
        """Module options to reach this database as the superuser over the unix socket (trusted)."""
        return dict({"db": self.name, "login_unix_socket": self.cluster.socket_dir, "port": self.cluster.port,
                     "login_user": "postgres"}, **extra)

    def sql(self, statement, params=None):
        return self.cluster.sql(statement, params, db=self.name)

    def value(self, statement, params=None):
        return self.cluster.value(statement, params, db=self.name)

    def state(self):
        return self.cluster.state(self.name)

    def abalance(self):
        return self.value("SELECT sum(abalance) FROM pgbench_accounts")


@pytest.fixture
def pg_database(pg_cluster, request):
    """A new database owned by the password role, with pgbench tables at scale 1 (100,000 accounts)."""
    name = "t%d_%s" % (next(_names), request.node.name.lower()[:30].replace("[", "_").replace("]", "_"))
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    pg_cluster.create_database(name)
    pg_cluster.pgbench_init(name, scale=1)
    db = Database(pg_cluster, name)
    yield db
    pg_cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


__all__ = ["pg_cluster", "pg_database", "Database", "ROLE", "PASSWORD"]
