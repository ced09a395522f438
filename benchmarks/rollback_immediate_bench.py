"""Benchmark: rollback_immediate against a plain step-by-step playbook on the same local fleet.

For each fleet size N it deploys release 1, snapshots it, breaks every host with release 2, then times
`ansible-playbook playbooks/rollback_immediate.yml` from start until it exits with every host gated healthy.
In the same run it breaks the fleet again and times benchmarks/baseline_rollback.yml doing the same work.
Both must leave every host healthy on release 1. Reported: seconds for each and the ratio.

    .venv/bin/python benchmarks/rollback_immediate_bench.py [--sizes 1,20,200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
           PATH=BIN + os.pathsep + os.environ.get("PATH", ""))


def run(playbook, inventory, *args):
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook] + list(args)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc %d):\n%s\n%s" % (playbook, proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    return seconds


def break_fleet(fleet):
    local_fleet.deploy(fleet, 2, action="restart")
    local_fleet.wait_answering(fleet, timeout=30)
    assert all(r["health"] != 200 for r in local_fleet.status(fleet)), "release 2 should be unhealthy"


def assert_recovered(fleet, who):
    rows = local_fleet.status(fleet)
    bad = [r["name"] for r in rows if r["health"] != 200 or r["version"] != "1.0.0"]
    if bad:
        raise SystemExit("%s left %d hosts unrecovered: %s" % (who, len(bad), ", ".join(bad[:10])))


def bench(size, workdir, forks):
    fleet = local_fleet.create(os.path.join(workdir, "fleet-%d" % size), hosts=size, base_port=0)
    try:
        local_fleet.deploy(fleet, 1, action="restart")
        if not local_fleet.wait_healthy(fleet, timeout=120)[0]:
            raise SystemExit("release 1 did not come up on every host")
        run(os.path.join(ROOT, "playbooks", "snapshot.yml"), fleet.inventory, "-f", str(forks))
        for host in fleet.hosts:  # what the plain playbook restores from, as the runbooks' `cp -r` backups do
            shutil.copytree(os.path.join(host.root, "etc", "app"), os.path.join(host.root, "backup", "etc", "app"),
                            symlinks=True, dirs_exist_ok=True)

        break_fleet(fleet)
        fast = run(os.path.join(ROOT, "playbooks", "rollback_immediate.yml"), fleet.inventory,
                   "-l", fleet.group, "-f", str(forks))
        assert_recovered(fleet, "rollback_immediate")

        break_fleet(fleet)
        plain = run(os.path.join(ROOT, "benchmarks", "baseline_rollback.yml"), fleet.inventory,
                    "-l", fleet.group, "-f", str(forks))
        assert_recovered(fleet, "the plain playbook")
        return {"hosts": size, "rollback_immediate_s": round(fast, 2), "plain_playbook_s": round(plain, 2),
                "ratio": round(fast / plain, 3)}
    finally:
        local_fleet.stop(fleet)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,20,200")
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "rollback_immediate.json"))
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleetops-bench-") as workdir:
        for size in [int(s) for s in opts.sizes.split(",") if s.strip()]:
            row = bench(size, workdir, opts.forks)
            rows.append(row)
            print("N=%-4d rollback_immediate %7.2f s   plain playbook %7.2f s   ratio %.3f (target at 20 hosts: <= 0.25)"
                  % (row["hosts"], row["rollback_immediate_s"], row["plain_playbook_s"], row["ratio"]), flush=True)
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w", encoding="utf-8") as stream:
        json.dump({"benchmark": "rollback_immediate", "forks": opts.forks, "results": rows}, stream, indent=2)
    print("results written to %s" % os.path.relpath(opts.out, ROOT))


if __name__ == "__main__":
    main()
