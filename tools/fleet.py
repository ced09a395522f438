"""A local fleet: N "hosts" on this machine, each a host root with the sample app on its own port.

Used by tools/local_fleet.py (the CLI), the integration tests and the benchmarks:

    from tools import fleet
    f = fleet.create("/tmp/fleet", hosts=5, base_port=0)   # 0: pick a free port range
    fleet.deploy(f, 1, action="start")
    ok, rows = fleet.wait_healthy(f, timeout=30)
    with fleet.Traffic(f, rate=5):                          # users: GET / on every host, 5 a second each
        ...
    fleet.destroy("/tmp/fleet")

A fleet directory holds `fleet.json` (hosts, ports, interpreter), `inventory.ini` and
`hosts/<name>/` host roots. Work on many hosts runs in a thread pool.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sample_app import appctl  # noqa: E402  pylint: disable=wrong-import-position
from sample_app import deploy as app_deploy  # noqa: E402  pylint: disable=wrong-import-position

APPCTL = os.path.join(ROOT, "sample_app", "appctl.py")
STATE_FILE = "fleet.json"
INVENTORY = "inventory.ini"
DEFAULT_HOSTS = 5
DEFAULT_BASE_PORT = 18100
DEFAULT_GROUP = "fleet"
MAX_WORKERS = 32


class FleetError(Exception):
    """A failure with a one-line message for the operator."""


@dataclass(frozen=True)
class Host:
    name: str
    root: str
    port: int


@dataclass
class Fleet:
    dir: str
    group: str
    python: str
    hosts: list

    @property
    def inventory(self):
        return os.path.join(self.dir, INVENTORY)

    def host(self, name):
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


def _pool_map(func, items):
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items))) as pool:
        return list(pool.map(func, items))


# --- ports --------------------------------------------------------------------------------------

def busy_ports(ports, host="127.0.0.1"):
    """The ports of this list that cannot be bound on host now."""
    return [port for port in ports if not appctl.port_free(port, host)]


def ephemeral_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """The kernel's range for outgoing connections' local ports; an app port inside it can be taken
    by any client connection (a probe, a PostgreSQL session) between choosing it and binding it."""
    try:
        with open(path, encoding="ascii") as stream:
            low, high = (int(x) for x in stream.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _claims_path():
    return os.path.join(tempfile.gettempdir(), "fleetops-fleet-ports.json")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_free_base(count, low=20000, high=None, attempts=400):
    """A base port whose `count` consecutive ports are free on 127.0.0.1, outside the ephemeral range,
    and not claimed by another live process on this machine.

    The claim (in a small JSON file under the temp dir, updated under flock) lasts while the calling
    process lives, so parallel test workers never pick overlapping ranges, even while one of them
    has its apps stopped for a restart.
    """
    eph_low, eph_high = ephemeral_range()
    windows = [(low, min(high or 65535, eph_low)), (max(low, eph_high + 1), high or 65535)]
    windows = [(a, b) for a, b in windows if b - a > count]
    if not windows:
        raise FleetError(f"no room for {count} ports between {low} and {high or 65535} "
                         f"outside the ephemeral range {eph_low}-{eph_high}")
    rng = random.Random()
    with open(_claims_path(), "a+", encoding="utf-8") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        stream.seek(0)
        try:
            claims = json.loads(stream.read() or "[]")
        except ValueError:
            claims = []
        claims = [c for c in claims if _pid_alive(c["pid"])]
        for _attempt in range(attempts):
            win_low, win_high = rng.choice(windows)
            base = rng.randrange(win_low, win_high - count)
            overlaps = any(base < c["base"] + c["count"] and c["base"] < base + count for c in claims)
            if not overlaps and not busy_ports(range(base, base + count)):
                claims.append({"pid": os.getpid(), "base": base, "count": count})
                stream.seek(0)
                stream.truncate()
                stream.write(json.dumps(claims))
                stream.flush()
                return base
    raise FleetError(f"found no {count} consecutive free ports between {low} and {high or 65535}")


# --- state --------------------------------------------------------------------------------------

def load(directory):
    """The fleet in this directory, from its fleet.json."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as stream:
            state = json.load(stream)
    except FileNotFoundError:
        raise FleetError(f"{directory} is not a local fleet (no {STATE_FILE}); run `create` first") from None
    except ValueError as exc:
        raise FleetError(f"{path} is not valid JSON: {exc}") from None
    return Fleet(dir=directory, group=state["group"], python=state["python"],
                 hosts=[Host(**h) for h in state["hosts"]])


def _save(fleet):
    state = {"group": fleet.group, "python": fleet.python, "hosts": [asdict(h) for h in fleet.hosts]}
    _write_text(os.path.join(fleet.dir, STATE_FILE), json.dumps(state, indent=1) + "\n")


def _write_text(path, text):
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def inventory_vars():
    """The [group:vars] the rollback roles read, as (name, INI value) pairs."""
    appctl_argv = {
        action: ["{{ ansible_python_interpreter }}", APPCTL, action,
                 "--root", "{{ fleet_root }}", "--port", "{{ app_port }}"]
        for action in ("start", "stop", "restart")
    }
    # `state`: what rollback_partial.yml restores when this service alone is chosen (rollback_services).
    service = {"name": "app", "manager": "command", "state": {"config": "all", "release": "all"}, **appctl_argv}
    check = {"type": "http", "url": "http://127.0.0.1:{{ app_port }}/health", "status": [200]}
    return [
        ("rollback_store_path", "{{ fleet_root }}/var/lib/fleetops/rollback"),
        ("rollback_config_paths", json.dumps(["{{ fleet_root }}/etc/app"])),
        ("rollback_release_path", "{{ fleet_root }}/srv/app/current"),
        ("health_gate_checks", json.dumps([check])),
        ("services_list", json.dumps([service])),
    ]


def _ini_value(value):
    """A host-line value: INI host lines are split like a shell command line."""
    text = str(value)
    if text and all(c.isalnum() or c in "/._-+:@,=" for c in text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def render_inventory(fleet):
    lines = [
        "# Local fleet written by tools/local_fleet.py; `create` rewrites it.",
        f"[{fleet.group}]",
    ]
    for host in fleet.hosts:
        lines.append(" ".join([
            host.name,
            "ansible_connection=local",
            f"ansible_python_interpreter={_ini_value(fleet.python)}",
            f"fleet_root={_ini_value(host.root)}",
            f"app_port={host.port}",
        ]))
    lines += ["", f"[{fleet.group}:vars]"]
    lines += [f"{name}={value}" for name, value in inventory_vars()]
    return "\n".join(lines) + "\n"


def host_names(count):
    width = max(3, len(str(count)))
    return [f"fleet-{i:0{width}d}" for i in range(1, count + 1)]


# --- lifecycle ----------------------------------------------------------------------------------

def create(directory, hosts=DEFAULT_HOSTS, base_port=DEFAULT_BASE_PORT, group=DEFAULT_GROUP, python=None):
    """Make a fleet of `hosts` host roots and its inventory. base_port 0 picks a free range.

    On an existing fleet directory the old fleet's apps are stopped and its hosts removed first.
    """
    if hosts < 1:
        raise FleetError(f"--hosts must be at least 1, got {hosts}")
    if not group.replace("_", "").isalnum() or group[0].isdigit():
        raise FleetError(f"group name {group!r} is not a valid Ansible group name")
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, STATE_FILE)):
        stop(load(directory))
        shutil.rmtree(os.path.join(directory, "hosts"), ignore_errors=True)
    elif os.path.isdir(directory) and os.listdir(directory):
        raise FleetError(f"{directory} exists, is not empty and is not a local fleet; choose another --dir")
    if base_port == 0:
        base_port = find_free_base(hosts)
    ports = list(range(base_port, base_port + hosts))
    if ports[-1] > 65535 or base_port < 1024:
        raise FleetError(f"ports {ports[0]}-{ports[-1]} are outside 1024-65535")
    busy = busy_ports(ports)
    if busy:
        shown = ", ".join(str(p) for p in busy[:10]) + (" ..." if len(busy) > 10 else "")
        raise FleetError(f"{len(busy)} of ports {ports[0]}-{ports[-1]} on 127.0.0.1 are in use ({shown}); "
                         "choose another --base-port")
    os.makedirs(os.path.join(directory, "hosts"), exist_ok=True)
    fleet = Fleet(dir=directory, group=group, python=os.path.abspath(python or sys.executable),
                  hosts=[Host(name, os.path.join(directory, "hosts", name), port)
                         for name, port in zip(host_names(hosts), ports)])
    _pool_map(lambda h: app_deploy.make_layout(h.root), fleet.hosts)
    _save(fleet)
    _write_text(fleet.inventory, render_inventory(fleet))
    return fleet


def deploy(fleet, release, action=None, switch=True):
    """Deploy a release to every host; action None, 'start' or 'restart' the apps afterwards."""
    def one(host):
        app_deploy.deploy(host.root, release, switch_current=switch)
        if action == "start":
            return appctl.start(host.root, host.port, fleet.python)
        if action == "restart":
            return appctl.restart(host.root, host.port, fleet.python)
        return "deployed"
    return _collect(fleet, one)


def start(fleet):
    return _collect(fleet, lambda h: appctl.start(h.root, h.port, fleet.python))


def restart(fleet):
    return _collect(fleet, lambda h: appctl.restart(h.root, h.port, fleet.python))


def stop(fleet):
    return _collect(fleet, lambda h: appctl.stop(h.root))


def _collect(fleet, func):
    """[(host, ok, message)] of func over every host, in host order."""
    def guarded(host):
        try:
            return host, True, func(host)
        except (appctl.AppctlError, OSError, ValueError) as exc:
            return host, False, str(exc)
    return _pool_map(guarded, fleet.hosts)


def destroy(directory):
    """Stop the fleet's apps and remove its directory. False when there was nothing to remove."""
    directory = os.path.abspath(directory)
    if not os.path.exists(directory):
        return False
    fleet = load(directory)
    failed = [(h.name, msg) for h, ok, msg in stop(fleet) if not ok]
    if failed:
        raise FleetError("could not stop " + "; ".join(f"{n}: {m}" for n, m in failed))
    shutil.rmtree(directory)
    return True


# --- probing ------------------------------------------------------------------------------------

def _get(port, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        return response.status, payload
    finally:
        conn.close()


def probe(host, timeout=2.0, version=True):
    """One host's state: {name, port, running, health, reason, version, release}."""
    row = {"name": host.name, "port": host.port, "health": None, "reason": None, "version": None, "release": None}
    try:
        code, payload = _get(host.port, "/health", timeout)
        row["health"] = code
        row["reason"] = payload.get("reason")
        if version:
            code, payload = _get(host.port, "/version", timeout)
            if code == 200:
                row["version"] = payload.get("version")
                row["release"] = payload.get("release")
    except (OSError, http.client.HTTPException) as exc:
        row["reason"] = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
    return row


def status(fleet, timeout=2.0):
    """[probe row] for every host, in host order."""
    return _pool_map(lambda h: probe(h, timeout), fleet.hosts)


def wait_healthy(fleet, timeout=60.0, interval=0.1):
    """Poll /health on every host until all answer 200 or the deadline passes.

    Returns (all healthy, rows, seconds waited); rows hold each host's last answer.
    """
    return _wait(fleet, lambda code: code == 200, timeout, interval)


def wait_answering(fleet, timeout=60.0, interval=0.1):
    """Poll /health until every host answers with any HTTP status (a bad release's 503 counts).

    Use it after deploying a release that is expected to be unhealthy, instead of guessing a delay.
    Returns (all answering, rows, seconds waited).
    """
    return _wait(fleet, lambda code: code is not None, timeout, interval)


def _wait(fleet, done, timeout, interval):
    started = time.monotonic()
    deadline = started + timeout
    pending = list(fleet.hosts)
    last = {}
    while True:
        rows = _pool_map(lambda h: probe(h, timeout=max(0.2, min(2.0, deadline - time.monotonic())),
                                         version=False), pending)
        for row in rows:
            last[row["name"]] = row
        pending = [h for h in pending if not done(last[h.name]["health"])]
        now = time.monotonic()
        if not pending or now >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - now)))
    return not pending, [last[h.name] for h in fleet.hosts], time.monotonic() - started


# --- traffic ------------------------------------------------------------------------------------

class Traffic:
    """Users of the fleet: a background thread that sends GET / to every host `rate` times a second,
    so the apps' request counters and latency histograms move (what Prometheus sees).

        with Traffic(fleet, rate=5) as traffic:
            ...
        traffic.codes  ->  {200: 140, 500: 60, None: 2}   (None: no answer)

    Requests to the hosts of one tick go out concurrently; a tick that overruns is followed at once
    (no catch-up burst). The wait between ticks ends early when the traffic is stopped.
    """

    def __init__(self, fleet, rate=5.0, path="/", timeout=2.0):
        if rate <= 0:
            raise FleetError(f"traffic rate must be greater than 0, got {rate}")
        self.fleet = fleet
        self.interval = 1.0 / rate
        self.path = path
        self.timeout = timeout
        self.codes = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._pool = None

    def _one(self, host):
        try:
            code, unused = _get(host.port, self.path, self.timeout)
        except (OSError, http.client.HTTPException):
            code = None
        with self._lock:
            self.codes[code] = self.codes.get(code, 0) + 1

    def _run(self):
        due = time.monotonic()
        while not self._stop.is_set():
            list(self._pool.map(self._one, self.fleet.hosts))
            due = max(due + self.interval, time.monotonic())
            self._stop.wait(max(0.0, due - time.monotonic()))

    def start(self):
        self._pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(self.fleet.hosts)),
                                        thread_name_prefix="traffic")
        self._thread = threading.Thread(target=self._run, name="fleet-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return dict(self.codes)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
