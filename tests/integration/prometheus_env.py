"""A real Prometheus server from Debian for the tests, set up from nothing and cleaned up.

- `ensure_installed()` installs Debian's `prometheus` package when the binary is missing, through
  tools/system_packages.py (the machine-wide apt lock) under a file lock of its own (two pytest-xdist
  workers may ask at once). The package's own service is never used: if the install started it, it is
  stopped and disabled again.
- `Prometheus(workdir)` runs the binary as a child process on 127.0.0.1 with a generated config, its
  own `--storage.tsdb.path` under `workdir`, a 1 s scrape interval and a `file_sd` targets file, so a test
  points it at its fleet with `scrape(fleet)` without restarting it. `stop()` ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position
from tools import system_packages  # noqa: E402  pylint: disable=wrong-import-position

LOCK = os.path.join(tempfile.gettempdir(), "fleetops-prometheus-bootstrap.lock")
BINARY = "/usr/bin/prometheus"
READY_DEADLINE = 60
JOB = "fleet"


def binary():
    return shutil.which("prometheus") or (BINARY if os.access(BINARY, os.X_OK) else None)


def ensure_installed():
    """The prometheus binary, installed from Debian when missing (idempotent; tools/system_packages.py holds the
    machine-wide apt lock, this file's lock makes one worker install while the others wait for it)."""
    found = binary()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("the Prometheus tests need the `prometheus` binary, or root and apt-get to install it")
    with system_packages.file_lock(LOCK):
        found = binary()
        if found:
            return found
        system_packages.apt_install("prometheus")
        _stop_package_service()
        found = binary()
        if not found:
            raise RuntimeError("apt-get installed prometheus but no prometheus binary is on PATH or at %s" % BINARY)
        return found


def _stop_package_service():
    """The package may have started its own service (on a host with systemd and no policy-rc.d): the tests never
    use it, so the install leaves it stopped and disabled, as the machine was."""
    if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
        for action in ("stop", "disable"):
            subprocess.run(["systemctl", action, "prometheus.service"], capture_output=True, check=False)
    elif os.path.exists("/etc/init.d/prometheus") and shutil.which("invoke-rc.d"):
        subprocess.run(["invoke-rc.d", "prometheus", "stop"], capture_output=True, check=False)


def _get_json(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return json.loads(response.read().decode("utf-8"))


class Prometheus:
    """One Prometheus server on 127.0.0.1, scraping the targets that `scrape()` gives it every second."""

    def __init__(self, workdir, scrape_interval="1s"):
        self.workdir = str(workdir)
        self.scrape_interval = scrape_interval
        self.binary = ensure_installed()
        self.port = None
        self.proc = None
        self.scrapes = 0
        self.targets_file = os.path.join(self.workdir, "targets.json")
        self.log_path = os.path.join(self.workdir, "prometheus.log")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _write_config(self):
        # JSON is YAML: no YAML library needed.
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval},
            "scrape_configs": [{
                "job_name": JOB,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [self.targets_file], "refresh_interval": "1s"}],
            }],
        }
        path = os.path.join(self.workdir, "prometheus.yml")
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(config, stream, indent=1)
        return path

    def _write_targets(self, groups):
        tmp = self.targets_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as stream:
            json.dump(groups, stream)
        os.replace(tmp, self.targets_file)

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        self._write_targets([])
        config = self._write_config()
        # A port outside the ephemeral range, claimed for this process like the fleets' ports.
        self.port = local_fleet.find_free_base(1)
        argv = [self.binary, "--config.file=" + config,
                "--storage.tsdb.path=" + os.path.join(self.workdir, "data"),
                "--web.listen-address=127.0.0.1:%d" % self.port,
                "--storage.tsdb.retention.time=1h", "--log.level=warn"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.workdir)
        deadline = time.monotonic() + READY_DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited with %s at start:\n%s" % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("prometheus was not ready after %ss:\n%s" % (READY_DEADLINE, self.log()))
            time.sleep(0.1)  # poll readiness; the deadline bounds the wait

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as stream:
                return stream.read()[-3000:]
        except OSError:
            return ""

    def query(self, promql):
        """[(labels, float)] of an instant query."""
        answer = _get_json(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert answer["status"] == "success", answer
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def scrape(self, fleet, timeout=60.0):
        """Scrape these hosts and nothing else, each labelled `host` (its inventory name) and `fleet` (a token
        unique to this call, so queries never mix in the series of an earlier fleet); return once every host
        has been scraped successfully. Returns the label selector of this fleet, like `job="fleet",fleet="f3"`."""
        self.scrapes += 1
        token = "f%d" % self.scrapes
        self._write_targets([{"targets": ["127.0.0.1:%d" % host.port], "labels": {"host": host.name, "fleet": token}}
                             for host in fleet.hosts])
        wanted = {"127.0.0.1:%d" % host.port for host in fleet.hosts}
        deadline = time.monotonic() + timeout
        while True:
            up = {labels.get("instance") for labels, unused in self.query('up{job="%s",fleet="%s"} == 1' % (JOB, token))}
            if up >= wanted:
                return 'job="%s",fleet="%s"' % (JOB, token)
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not scrape %s within %ss:\n%s" % (
                    sorted(wanted - up), timeout, self.log()))
            time.sleep(0.2)  # poll until the next scrape; the deadline bounds the wait

    def wait_for(self, promql, predicate, timeout=60.0):
        """Poll an instant query until predicate(values) holds; return the values."""
        deadline = time.monotonic() + timeout
        while True:
            values = [v for unused, v in self.query(promql)]
            if predicate(values):
                return values
            if time.monotonic() > deadline:
                raise RuntimeError("%s never satisfied the condition within %ss (last %s)" % (promql, timeout, values))
            time.sleep(0.2)  # poll; the deadline bounds the wait

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
