"""Benchmark: rollback_immediate against a plain step-by-step playbook on the same local fleet.

For each fleet size N it deploys release 1, snapshots it, breaks every host with release 2, then times
`ansible-playbook playbooks/rollback_immediate.yml` from start until it exits with every host gated healthy.
In the same run it breaks the fleet again and times benchmarks/baseline_rollback.yml doing the same work.
Both must leave every host healthy on release 1. Reported: seconds for each and the ratio. Up to 20 hosts the
pair runs --repeat times interleaved and the median round is reported, with the CPU ratio (CPU seconds of
ansible-playbook and every process it waited for), which a busy machine disturbs less than wall time.

    .venv/bin/python benchmarks/rollback_immediate_bench.py [--sizes 1,20,200]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
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
    """(wall seconds, CPU seconds of ansible-playbook and everything it waited for) of one run."""
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook] + list(args)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc %d):\n%s\n%s" % (playbook, proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def break_fleet(fleet):
    local_fleet.deploy(fleet, 2, action="restart")
    local_fleet.wait_answering(fleet, timeout=30)
    assert all(r["health"] != 200 for r in local_fleet.status(fleet)), "release 2 should be unhealthy"


def assert_recovered(fleet, who):
    rows = local_fleet.status(fleet)
    bad = [r["name"] for r in rows if r["health"] != 200 or r["version"] != "1.0.0"]
    if bad:
        raise SystemExit("%s left %d hosts unrecovered: %s" % (who, len(bad), ", ".join(bad[:10])))


def bench(size, workdir, forks, repeat):
    fleet = local_fleet.create(os.path.join(workdir, "fleet-%d" % size), hosts=size, base_port=0)
    try:
        local_fleet.deploy(fleet, 1, action="restart")
        if not local_fleet.wait_healthy(fleet, timeout=120)[0]:
            raise SystemExit("release 1 did not come up on every host")
        run(os.path.join(ROOT, "playbooks", "snapshot.yml"), fleet.inventory, "-f", str(forks))
        for host in fleet.hosts:  # what the plain playbook restores from, as the runbooks' `cp -r` backups do
            shutil.copytree(os.path.join(host.root, "etc", "app"), os.path.join(host.root, "backup", "etc", "app"),
                            symlinks=True, dirs_exist_ok=True)

        rounds = []
        for unused in range(repeat):  # interleaved, so a load change on the machine hits both sides alike
            break_fleet(fleet)
            fast = run(os.path.join(ROOT, "playbooks", "rollback_immediate.yml"), fleet.inventory,
                       "-l", fleet.group, "-f", str(forks))
            assert_recovered(fleet, "rollback_immediate")
            break_fleet(fleet)
            plain = run(os.path.join(ROOT, "benchmarks", "baseline_rollback.yml"), fleet.inventory,
                        "-l", fleet.group, "-f", str(forks))
            assert_recovered(fleet, "the plain playbook")
            rounds.append({"rollback_immediate_s": round(fast[0], 2), "plain_playbook_s": round(plain[0], 2),
                           "ratio": round(fast[0] / plain[0], 3), "cpu_ratio": round(fast[1] / plain[1], 3),
                           "rollback_immediate_cpu_s": round(fast[1], 2), "plain_playbook_cpu_s": round(plain[1], 2)})
        best = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]  # the median round
        return dict(best, hosts=size, rounds=rounds, median_ratio=round(statistics.median(r["ratio"] for r in rounds), 3),
                    load_average=round(os.getloadavg()[0], 1))
    finally:
        local_fleet.stop(fleet)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,20,200")
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved rounds per size up to 20 hosts, reported by the median ratio (one above)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "rollback_immediate.json"))
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleetops-bench-") as workdir:
        for size in [int(s) for s in opts.sizes.split(",") if s.strip()]:
            row = bench(size, workdir, opts.forks, opts.repeat if size <= 20 else 1)
            rows.append(row)
            print("N=%-4d rollback_immediate %7.2f s   plain playbook %7.2f s   ratio %.3f (median of %d; CPU ratio %.3f; "
                  "load %.1f) (target at 20 hosts: <= 0.25)"
                  % (row["hosts"], row["rollback_immediate_s"], row["plain_playbook_s"], row["ratio"], len(row["rounds"]),
                     row["cpu_ratio"], row["load_average"]), flush=True)
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w", encoding="utf-8") as stream:
        json.dump({"benchmark": "rollback_immediate", "forks": opts.forks, "results": rows}, stream, indent=2)
    print("results written to %s" % os.path.relpath(opts.out, ROOT))


if __name__ == "__main__":
    main()
