"""A PostgreSQL cluster that test suites start themselves (see cluster.py and fixtures.py).

Use it from a conftest.py with `from postgres.fixtures import pg_cluster, pg_database  # noqa: F401`.
"""
