"""Fixtures shared by the unit tests of module_utils."""

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store


@pytest.fixture
def store(tmp_path):
    """A new, empty store in the test's own directory."""
    return Store(str(tmp_path / "store")).ensure()
