import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_runner import local_inventory, run_playbook  # noqa: E402
# A PostgreSQL cluster started by the suite itself (one per xdist worker), for any test that asks for it.
from postgres.fixtures import pg_cluster, pg_database  # noqa: E402,F401


@pytest.fixture
def playbook():
    """Run a real ansible-playbook: playbook(text_or_path, inventory, **options) -> PlaybookRun."""
    return run_playbook


@pytest.fixture
def one_host(tmp_path):
    """An inventory with one local host named `target`."""
    return local_inventory(tmp_path / "inventory.ini", {"target": {}})


@pytest.fixture
def known_good_fleet(tmp_path):
    """known_good_fleet(hosts) -> a local fleet on release 1, captured known good (label release-1).
    Every fleet made is stopped at the end of the test."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)
    from tools import fleet as local_fleet  # pylint: disable=import-outside-toplevel

    made = []

    def make(hosts):
        fleet = local_fleet.create(str(tmp_path / ("fleet-%d" % len(made))), hosts=hosts, base_port=0)
        made.append(fleet)
        local_fleet.deploy(fleet, 1, action="restart")
        assert local_fleet.wait_healthy(fleet, timeout=60)[0]
        snap = run_playbook(os.path.join(root, "playbooks", "snapshot.yml"), fleet.inventory,
                            extra_vars={"restore_point_label": "release-1"})
        assert snap.rc == 0, snap.stdout[-3000:]
        return fleet

    yield make
    for fleet in made:
        local_fleet.stop(fleet)
