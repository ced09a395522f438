"""Benchmark: roll 10 containers back to the previous image with image_retag, and with the runbook's shell procedure.

Both start from the same broken state: `app:latest` is the bad v2 (it serves, but fails its HEALTHCHECK) and N
containers configured with `app:latest` run it, each publishing its own port on 127.0.0.1; `app:previous` is v1.

- module:   `ansible-playbook` with one `fleetops.rollback.image_retag` task (name=app:previous,
            repository=[app:latest], recreate=by_image), which stops, retags, recreates and waits until every
            container is healthy; then one HTTP check of every container's /health.
- baseline: the runbook's procedure as a shell script for all N containers at once: `docker stop`, `docker tag
            app:previous app:latest`, `docker rm` + `docker run -d` with the same settings (what `docker-compose up
            -d` does for a changed image), `sleep 30`, then `curl -sf` of every /health.

Each is timed from start until every container answers /health with 200 on v1, in the same run, on the same
engine. Reported: both times and the ratio module/baseline (lower is better).

    .venv/bin/python benchmarks/images_bench.py [--containers 10] [--sleep 30] [--repeat 1]

`--sleep` shortens the baseline's fixed sleep for a quick run; the default is the runbook's 30 s. The runbook's
single-service procedure repeated per service would sleep once per container (10 x 30 s); this baseline sleeps
once for all of them, the charitable reading.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import docker_env  # noqa: E402  pylint: disable=wrong-import-position
from playbook_runner import ansible_env, local_inventory  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)


class Bench:
    def __init__(self, client, count):
        self.client = client
        self.api = client.api
        self.prefix = "fleetops-bench-%d" % os.getpid()
        self.repo = self.prefix + "/app"
        self.ids = docker_env.build_app_images(client, self.repo, variants=("v1", "v2"))
        self.names = ["%s-app%02d" % (self.prefix, i) for i in range(count)]
        self.ports = {name: docker_env.free_port() for name in self.names}

    def run_args(self, name):
        """The settings every container is created with (the module must keep them; the script repeats them)."""
        return {"env": {"APP_ROLE": "backend", "APP_INSTANCE": name}, "port": self.ports[name], "restart": "unless-stopped",
                "label": "com.example.service=backend"}

    def deploy_bad(self):
        """The broken state: latest -> v2 and every container recreated on it (untimed)."""
        self.api.tag(self.ids["v1"], self.repo, "previous", force=True)
        self.api.tag(self.ids["v2"], self.repo, "latest", force=True)
        # Removes the containers and their volumes (a recreated container mounts its predecessor's by name).
        docker_env.cleanup(self.client, self.prefix)
        for name in self.names:
            args = self.run_args(name)
            self.client.containers.run(self.repo + ":latest", name=name, detach=True, init=True,
                                       environment=args["env"], ports={"8080/tcp": ("127.0.0.1", args["port"])},
                                       restart_policy={"Name": args["restart"]},
                                       labels=dict([args["label"].split("=", 1)]))
        for name in self.names:
            docker_env.wait_until(lambda n=name: docker_env.http_get("http://127.0.0.1:%d/version" % self.ports[n])[0] == 200,
                                  timeout=60, what="%s serving v2" % name)
        assert all(docker_env.http_get("http://127.0.0.1:%d/health" % p)[0] == 404 for p in self.ports.values())

    def all_healthy_on_v1(self):
        for name, port in self.ports.items():
            if docker_env.http_get("http://127.0.0.1:%d/health" % port) != (200, "ok\n"):
                return False
            if docker_env.http_get("http://127.0.0.1:%d/version" % port) != (200, "v1\n"):
                return False
        return all(self.api.inspect_container(n)["Image"] == self.ids["v1"] for n in self.names)

    # ------------------------------------------------------------------ the two procedures
    def module(self, workdir):
        inventory = local_inventory(os.path.join(workdir, "inventory.ini"), {"localhost": {}})
        playbook = os.path.join(workdir, "rollback.yml")
        with open(playbook, "w", encoding="utf-8") as stream:
            stream.write("""
- hosts: all
  gather_facts: false
  tasks:
    - name: Roll the backend back
      fleetops.rollback.image_retag:
        name: %s:previous
        repository: [%s:latest]
        recreate: by_image
        wait_timeout: 120
""" % (self.repo, self.repo))
        started = time.monotonic()
        proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook], cwd=ROOT,
                              env=ansible_env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("image_retag playbook failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-2000:]))
        healthy = self.all_healthy_on_v1()
        seconds = time.monotonic() - started
        if not healthy:
            raise SystemExit("the module run left containers that are not healthy on v1")
        return seconds

    def script(self, sleep):
        docker = shutil.which("docker")
        lines = ["set -e"]
        lines += ["%s stop %s >/dev/null" % (docker, " ".join(self.names))]
        lines += ["%s tag %s:previous %s:latest" % (docker, self.repo, self.repo)]
        lines += ["%s rm -v %s >/dev/null" % (docker, " ".join(self.names))]  # -v: the bench keeps no data
        for name in self.names:
            args = self.run_args(name)
            env = " ".join("-e %s" % shlex.quote("%s=%s" % kv) for kv in args["env"].items())
            lines.append("%s run -d --init --name %s %s -p 127.0.0.1:%d:8080 --restart %s --label %s %s:latest >/dev/null"
                         % (docker, name, env, args["port"], args["restart"], args["label"], self.repo))
        lines.append("sleep %s" % sleep)
        lines += ["curl -sf http://127.0.0.1:%d/health >/dev/null" % self.ports[name] for name in self.names]
        return "\n".join(lines) + "\n"

    def baseline(self, sleep):
        started = time.monotonic()
        proc = subprocess.run(["bash", "-c", self.script(sleep)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("the runbook procedure failed (rc %d; a curl after too short a sleep?):\n%s"
                             % (proc.returncode, proc.stderr[-2000:]))
        healthy = self.all_healthy_on_v1()
        seconds = time.monotonic() - started
        if not healthy:
            raise SystemExit("the runbook procedure left containers that are not healthy on v1")
        return seconds

    def cleanup(self):
        docker_env.cleanup(self.client, self.prefix, [self.repo])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=30.0, help="the baseline's fixed sleep (runbook: 30)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "images.json"))
    opts = parser.parse_args()
    if not shutil.which("curl"):
        docker_env.apt_install("curl")
    client = docker_env.ensure_engine()
    bench = Bench(client, opts.containers)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="fleetops-images-bench-") as workdir:
            for attempt in range(opts.repeat):
                bench.deploy_bad()
                module = bench.module(workdir)
                bench.deploy_bad()
                baseline = bench.baseline(opts.sleep)
                row = {"run": attempt + 1, "containers": opts.containers, "module_s": round(module, 2),
                       "baseline_s": round(baseline, 2), "baseline_sleep_s": opts.sleep,
                       "ratio": round(module / baseline, 3)}
                rows.append(row)
                print("%d containers: image_retag %6.2f s   runbook (sleep %g) %6.2f s   ratio %.3f (%.1fx faster)"
                      % (opts.containers, module, opts.sleep, baseline, row["ratio"], baseline / module), flush=True)
    finally:
        bench.cleanup()
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w", encoding="utf-8") as stream:
        json.dump({"benchmark": "images", "results": rows}, stream, indent=2)
    print("results written to %s" % os.path.relpath(opts.out, ROOT))


if __name__ == "__main__":
    main()
