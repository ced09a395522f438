import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_runner import local_inventory, run_playbook  # noqa: E402


@pytest.fixture
def playbook():
    """Run a real ansible-playbook: playbook(text_or_path, inventory, **options) -> PlaybookRun."""
    return run_playbook


@pytest.fixture
def one_host(tmp_path):
    """An inventory with one local host named `target`."""
    return local_inventory(tmp_path / "inventory.ini", {"target": {}})


# A PostgreSQL cluster started by the suite itself (one per xdist worker), for any test that asks for it.
from postgres.fixtures import pg_cluster, pg_database  # noqa: E402,F401
