import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from playbook_runner import local_inventory, run_playbook  # noqa: E402
# A PostgreSQL cluster started by the suite itself (one per xdist worker), for any test that asks for it.
from postgres import fixtures as pg_fixtures  # noqa: E402
# The Kubernetes API test double (tests/k8s_api) and the real kubectl pointed at it.
from kube_env import Kube  # noqa: E402
from tests.k8s_api.fixture import k8s_api  # noqa: E402,F401  pylint: disable=unused-import

pg_cluster = pg_fixtures.pg_cluster
pg_database = pg_fixtures.pg_database


@pytest.fixture
def kube(k8s_api, tmp_path):  # pylint: disable=redefined-outer-name
    """kubectl against a fresh Kubernetes API test double (context fake, namespace default)."""
    return Kube(k8s_api, tmp_path)


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
        failed = [(h.name, msg) for h, ok, msg in local_fleet.deploy(fleet, 1, action="restart") if not ok]
        assert not failed, failed
        healthy, rows, _waited = local_fleet.wait_healthy(fleet, timeout=120)
        assert healthy, [r for r in rows if r["health"] != 200]
        snap = run_playbook(os.path.join(root, "playbooks", "snapshot.yml"), fleet.inventory,
                            extra_vars={"restore_point_label": "release-1"})
        assert snap.rc == 0, snap.stdout[-3000:]
        return fleet

    yield make
    for fleet in made:
        local_fleet.stop(fleet)


@pytest.fixture
def fleet3(known_good_fleet):
    """3 hosts on release 1, captured as known good (label release-1)."""
    return known_good_fleet(3)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory):
    """A real Prometheus from Debian (installed with apt-get when missing, under a file lock) running on 127.0.0.1
    with its own storage in a temporary directory and a 1 s scrape interval; `prometheus.scrape(fleet)` points it
    at a local fleet's /metrics. Stopped at the end of the session (see prometheus_env.py)."""
    import prometheus_env  # pylint: disable=import-outside-toplevel
    server = prometheus_env.Prometheus(tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_client():
    """A real Docker engine: docker.io installed and dockerd started when missing (see docker_env.py)."""
    import docker_env  # pylint: disable=import-outside-toplevel
    client = docker_env.ensure_engine()
    yield client
    client.close()


@pytest.fixture(scope="module")
def app_images(docker_client):
    """The test application built locally (no registry) under a repository unique to this test file and process.

    Returns {"repo": ..., "v1": id, "v2": id, "broken": id}; everything named after the repository goes at the end."""
    import docker_env  # pylint: disable=import-outside-toplevel
    repo = "fleetops-test-%d/app" % os.getpid()
    ids = docker_env.build_app_images(docker_client, repo)
    yield dict(ids, repo=repo)
    docker_env.cleanup(docker_client, "fleetops-test-%d" % os.getpid(), [repo])


@pytest.fixture
def scene(docker_client, app_images, tmp_path):
    """One test's own image repository, containers, network and volumes on the engine; all removed afterwards."""
    import docker_env  # pylint: disable=import-outside-toplevel
    one = docker_env.Scene(docker_client, app_images, tmp_path)
    yield one
    docker_env.cleanup(docker_client, one.prefix, one.repos)
