"""The built-in local fleet: CLI lifecycle, its inventory under real Ansible, and the services role."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from playbook_runner import BIN, ansible_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sample_app import appctl  # noqa: E402
from tools import fleet as fleetlib  # noqa: E402

CLI = os.path.join(ROOT, "tools", "local_fleet.py")
HOSTS = 5


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)


def pids(fleet):
    out = {}
    for host in fleet.hosts:
        pid, _stale = appctl.read_pid(host.root)
        out[host.name] = pid
    return out


@pytest.fixture
def fleet_dir(tmp_path):
    """A created (not started) 5-host fleet; every app is stopped and the fleet removed afterwards."""
    directory = str(tmp_path / "fleet")
    result = cli("create", "--dir", directory, "--hosts", str(HOSTS), "--base-port", "0")
    assert result.returncode == 0, result.stderr
    yield directory
    if os.path.exists(os.path.join(directory, fleetlib.STATE_FILE)):
        fleetlib.stop(fleetlib.load(directory))


@pytest.fixture
def running(fleet_dir):
    """The fleet on release 1, every app healthy."""
    result = cli("deploy", "--dir", fleet_dir, "--release", "1", "--start")
    assert result.returncode == 0, result.stdout + result.stderr
    result = cli("wait-healthy", "--dir", fleet_dir, "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    return fleetlib.load(fleet_dir)


def test_create_writes_hosts_and_inventory(fleet_dir):
    fleet = fleetlib.load(fleet_dir)
    assert [h.name for h in fleet.hosts] == [f"fleet-{i:03d}" for i in range(1, HOSTS + 1)]
    ports = [h.port for h in fleet.hosts]
    assert ports == list(range(ports[0], ports[0] + HOSTS))
    for host in fleet.hosts:
        assert host.root == os.path.join(fleet_dir, "hosts", host.name)
        assert os.path.isdir(os.path.join(host.root, "srv", "app", "releases"))
        assert os.path.isdir(os.path.join(host.root, "etc", "app", "conf.d"))
    with open(fleet.inventory, encoding="utf-8") as stream:
        text = stream.read()
    assert "[fleet]\n" in text and "[fleet:vars]\n" in text
    first = fleet.hosts[0]
    assert (f"fleet-001 ansible_connection=local ansible_python_interpreter={sys.executable} "
            f"fleet_root={first.root} app_port={first.port}\n") in text
    assert "rollback_store_path={{ fleet_root }}/var/lib/fleetops/rollback\n" in text
    assert 'rollback_config_paths=["{{ fleet_root }}/etc/app"]\n' in text
    assert "rollback_release_path={{ fleet_root }}/srv/app/current\n" in text
    assert ('health_gate_checks=[{"type": "http", "url": "http://127.0.0.1:{{ app_port }}/health", '
            '"status": [200]}]\n') in text


def test_free_ranges_avoid_ephemeral_ports_and_each_other():
    # Parallel workers each pick ranges; a claim keeps a picked range out of later picks while its
    # process lives, and the kernel's client-port range is never used (a probe could hold one).
    eph_low, eph_high = fleetlib.ephemeral_range()
    picked = [(fleetlib.find_free_base(50), 50) for _attempt in range(20)]
    for base, count in picked:
        assert base + count <= eph_low or base > eph_high
    spans = sorted(picked)
    for (base, count), (next_base, _next_count) in zip(spans, spans[1:]):
        assert base + count <= next_base


def test_create_refuses_busy_ports_and_foreign_dirs(tmp_path, fleet_dir):
    fleet = fleetlib.load(fleet_dir)
    # Port of the existing fleet's (stopped) host 3 held by a listener: a new fleet on that range fails.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", fleet.hosts[2].port))
        busy.listen()
        result = cli("create", "--dir", str(tmp_path / "other"), "--hosts", str(HOSTS),
                     "--base-port", str(fleet.hosts[0].port))
    assert result.returncode == 2
    assert f"1 of ports {fleet.hosts[0].port}-{fleet.hosts[-1].port} on 127.0.0.1 are in use" in result.stderr
    assert not os.path.exists(tmp_path / "other" / "inventory.ini")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    result = cli("create", "--dir", str(foreign))
    assert result.returncode == 2 and "is not a local fleet" in result.stderr
    assert (foreign / "keep.txt").read_text() == "mine"


def test_lifecycle_through_the_cli(running):
    fleet = running
    result = cli("status", "--dir", fleet.dir)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines == [f"{h.name} {h.port} 1.0.0 200" for h in fleet.hosts]

    # The bad release: every host answers 503 and status says so.
    result = cli("deploy", "--dir", fleet.dir, "--release", "2", "--restart")
    assert result.returncode == 0, result.stdout + result.stderr
    result = cli("wait-healthy", "--dir", fleet.dir, "--any-status", "--timeout", "60")
    assert result.returncode == 0 and f"all {HOSTS} hosts answering" in result.stdout, result.stdout + result.stderr
    result = cli("wait-healthy", "--dir", fleet.dir, "--timeout", "0.5")
    assert result.returncode == 1
    assert f"{HOSTS}/{HOSTS} hosts still not healthy" in result.stdout
    assert result.stderr.count("(missing config key CACHE_URL)") == HOSTS
    result = cli("status", "--dir", fleet.dir, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["healthy"] == 0 and report["hosts"] == HOSTS
    assert {(r["version"], r["health"], r["reason"]) for r in report["rows"]} == {
        ("2.0.0", 503, "missing config key CACHE_URL")}

    # Re-creating the fleet stops its apps first.
    before = pids(fleet)
    result = cli("create", "--dir", fleet.dir, "--hosts", "2", "--base-port", "0")
    assert result.returncode == 0, result.stderr
    assert not any(appctl.alive(pid) for pid in before.values())
    assert len(fleetlib.load(fleet.dir).hosts) == 2

    result = cli("destroy", "--dir", fleet.dir)
    assert result.returncode == 0 and not os.path.exists(fleet.dir)
    result = cli("destroy", "--dir", fleet.dir)
    assert result.returncode == 0 and "nothing to destroy" in result.stdout


def test_destroy_stops_every_app(running):
    before = pids(running)
    assert all(appctl.alive(pid) for pid in before.values())
    result = cli("destroy", "--dir", running.dir)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(running.dir)
    assert not any(appctl.alive(pid) for pid in before.values())


def test_inventory_parses_and_renders(fleet_dir, playbook):
    fleet = fleetlib.load(fleet_dir)
    proc = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", fleet.inventory, "--list"],
                          capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    assert inventory["fleet"]["hosts"] == [h.name for h in fleet.hosts]
    hostvars = inventory["_meta"]["hostvars"]["fleet-002"]
    assert hostvars["ansible_connection"] == "local"
    assert hostvars["ansible_python_interpreter"] == sys.executable
    assert hostvars["fleet_root"] == fleet.hosts[1].root
    assert hostvars["app_port"] == fleet.hosts[1].port
    assert hostvars["rollback_config_paths"] == ["{{ fleet_root }}/etc/app"]
    assert isinstance(hostvars["services_list"], list) and hostvars["services_list"][0]["name"] == "app"
    assert hostvars["health_gate_checks"][0]["status"] == [200]

    run = playbook("""
- name: Show the rendered fleet variables
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Render
      ansible.builtin.debug:
        msg:
          store: "{{ rollback_store_path }}"
          config_paths: "{{ rollback_config_paths }}"
          release: "{{ rollback_release_path }}"
          checks: "{{ health_gate_checks }}"
          services: "{{ services_list }}"
""", fleet.inventory)
    assert run.rc == 0, run.stdout + run.stderr
    for host in fleet.hosts:
        msg = run.result("Render", host.name)["msg"]
        assert msg["store"] == f"{host.root}/var/lib/fleetops/rollback"
        assert msg["config_paths"] == [f"{host.root}/etc/app"]
        assert msg["release"] == f"{host.root}/srv/app/current"
        assert msg["checks"] == [{"type": "http", "url": f"http://127.0.0.1:{host.port}/health", "status": [200]}]
        [service] = msg["services"]
        assert service["name"] == "app" and service["manager"] == "command"
        for action in ("start", "stop", "restart"):
            assert [str(a) for a in service[action]] == [
                sys.executable, fleetlib.APPCTL, action, "--root", host.root, "--port", str(host.port)]


CMD_TASK = "fleetops.rollback.services : Manage command services"
SYSTEMD_TASK = "fleetops.rollback.services : Manage systemd services"
SERVICES_PLAY = """
- name: Services
  hosts: fleet
  gather_facts: false
  roles:
    - role: fleetops.rollback.services
"""


def test_services_role_restarts_the_fleet(running, playbook):
    before = pids(running)
    run = playbook(SERVICES_PLAY, running.inventory)
    assert run.rc == 0, run.stdout + run.stderr
    after = pids(running)
    for host in running.hosts:
        assert run.status(CMD_TASK, host.name) == "changed"
        assert run.status(SYSTEMD_TASK, host.name) == "skipped"
        [item] = run.result(CMD_TASK, host.name)["results"]
        assert item["item"]["name"] == "app" and item["rc"] == 0
        assert item["stdout"].startswith(f"stopped (pid {before[host.name]}); started (pid ")
        assert after[host.name] and after[host.name] != before[host.name]
        assert not appctl.alive(before[host.name])
    ok, rows, _waited = fleetlib.wait_healthy(running, timeout=60)
    assert ok, rows


def _marker(name):
    """A command service that only appends `<action> <name>` to the host's order.log."""
    def argv(action):
        return ["{{ ansible_python_interpreter }}", "-c",
                "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')",
                "{{ fleet_root }}/order.log", f"{action} {name}"]
    return {"name": name, "start": argv("start"), "stop": argv("stop"), "restart": argv("restart")}


def test_services_role_keeps_declared_order(running, playbook):
    app = {"name": "app", "manager": "command",
           **{action: ["{{ ansible_python_interpreter }}", fleetlib.APPCTL, action, "--root", "{{ fleet_root }}",
                       "--port", "{{ app_port }}"] for action in ("start", "stop", "restart")}}
    services = [_marker("first"), app, _marker("last")]
    limit = "fleet-001:fleet-002"
    hosts = running.hosts[:2]

    run = playbook(SERVICES_PLAY, running.inventory, limit=limit,
                   extra_vars={"services_list": services, "services_action": "stop"})
    assert run.rc == 0, run.stdout + run.stderr
    for host in hosts:
        items = run.result(CMD_TASK, host.name)["results"]
        assert [i["item"]["name"] for i in items] == ["last", "app", "first"]
        assert [i["start"] for i in items] == sorted(i["start"] for i in items)
        assert not appctl.status(host.root)[0]

    run = playbook(SERVICES_PLAY, running.inventory, limit=limit,
                   extra_vars={"services_list": services, "services_action": "start"})
    assert run.rc == 0, run.stdout + run.stderr
    for host in hosts:
        items = run.result(CMD_TASK, host.name)["results"]
        assert [i["item"]["name"] for i in items] == ["first", "app", "last"]
        assert items[1]["stdout"].startswith("started (pid ")
        with open(os.path.join(host.root, "order.log"), encoding="utf-8") as stream:
            assert stream.read().splitlines() == ["stop last", "stop first", "start first", "start last"]

    run = playbook(SERVICES_PLAY, running.inventory, limit=limit,
                   extra_vars={"services_list": services, "services_only": ["last"]})
    assert run.rc == 0, run.stdout + run.stderr
    for host in hosts:
        items = run.result(CMD_TASK, host.name)["results"]
        assert [i["item"]["name"] for i in items] == ["last"]

    run = playbook(SERVICES_PLAY, running.inventory, limit="fleet-001",
                   extra_vars={"services_list": services, "services_only": ["lats"]})
    assert run.rc != 0
    assert "services_only names services that are not in services_list: lats" in run.stdout
    ok, rows, _waited = fleetlib.wait_healthy(running, timeout=60)
    assert ok, rows
