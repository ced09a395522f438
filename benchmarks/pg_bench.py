"""pg_dump / pg_restore through fleetops.rollback against raw pg_dump / pg_restore, in the same run.

    .venv/bin/python benchmarks/pg_bench.py [--scale 20] [--rounds 11] [--json benchmarks/results/pg.json]

Starts its own PostgreSQL cluster (durable settings: fsync on), loads pgbench at --scale, then for each
format (custom with 1 job, directory with 2 jobs), alternating raw and module runs round by round:

- dump:    raw `pg_dump -F? [-j]`  vs  the pg_dump module's work (dump in a shared snapshot, row counts, TOC,
           sha256, metadata); the scratch-restore verification (verify: true) is timed separately;
- restore: raw `pg_restore --clean --if-exists` (one transaction with 1 job, -j 2 otherwise)  vs  the
           pg_restore module's work with safety_dump=false (checksum, plan/idempotence check, restore, row
           count verification); the safety dump it takes by default is timed separately.
  Before every restore some pgbench transactions change the database, so every restore has work to do.

The module code is timed in-process (what the module runs on the host). One `ansible-playbook` run of each
module is also timed end to end, so the fixed Ansible cost per task is visible next to it.
CPU seconds are reported next to wall time (this process, pg_dump/pg_restore, and every server process of the
cluster, from /proc): they show the work added, which a busy machine disturbs far less than the wall clock.
Each round times raw and module back to back (their order alternates), so a change of machine speed hits both
alike; the ratio reported is the median of the per-round ratios (this machine's speed wanders by +-20% from one
second to the next, so one pair proves little), with the median seconds of each side. The target is <= 1.10x.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from postgres.cluster import PASSWORD, ROLE, PgCluster  # noqa: E402
from playbook_runner import local_inventory, run_playbook  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_ops as _pg_ops  # noqa: E402


def timed(fn):
    begun = time.monotonic()
    value = fn()
    return time.monotonic() - begun, value


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(parent pid, CPU seconds, CPU seconds of its reaped children) from /proc/<pid>/stat."""
    with open("/proc/%s/stat" % pid, encoding="ascii") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK


def cluster_cpu(cluster):
    """CPU seconds the cluster spent so far: the postmaster, the backends it has reaped (its children's times)
    and the ones still running."""
    with open(os.path.join(cluster.data, "postmaster.pid"), encoding="ascii") as stream:
        postmaster = int(stream.readline())
    unused, own, reaped = _stat(postmaster)
    total = own + reaped
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent, cpu, unused = _stat(entry)
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile: its time is in the postmaster's children's now
            if parent == postmaster:
                total += cpu
    return total


def cpu_timed(cluster, fn):
    """(wall, CPU seconds of this process, its children (pg_dump, pg_restore) and the server) of fn()."""
    own, cluster_before = os.times(), cluster_cpu(cluster)
    seconds, value = timed(fn)
    after = os.times()
    cpu = sum(getattr(after, f) - getattr(own, f) for f in ("user", "system", "children_user", "children_system"))
    return seconds, cpu + cluster_cpu(cluster) - cluster_before, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    cluster = PgCluster.create(durable=True)
    work = tempfile.mkdtemp(prefix="fleetops-pgbench-")
    results = {"scale": args.scale, "rounds": args.rounds, "formats": {}}
    try:
        cluster.create_database("bench")
        seconds, _value = timed(lambda: cluster.pgbench_init("bench", scale=args.scale))
        results["db_bytes"] = cluster.value("SELECT pg_database_size('bench')")
        print("pgbench scale %d loaded in %.1fs (%.0f MB)" % (args.scale, seconds, results["db_bytes"] / 1e6))
        login = {"db": "bench", "login_host": "127.0.0.1", "port": cluster.port, "login_user": ROLE,
                 "login_password": PASSWORD}
        conn = _pg.Conn(login)
        bin_dir = cluster.bin_dir

        for fmt, jobs in (("custom", 1), ("directory", 2)):
            flag = fmt[0]
            raw_dump, mod_dump, raw_restore, mod_restore, verify, safety, checks, posts = [], [], [], [], [], [], [], []
            dump_ratios, restore_ratios = [], []
            raw_dump_cpu, mod_dump_cpu, raw_restore_cpu, mod_restore_cpu = [], [], [], []
            for round_ in range(args.rounds):
                raw_path = os.path.join(work, "raw-%s-%d" % (fmt, round_))
                mod_path = os.path.join(work, "mod-%s-%d" % (fmt, round_))
                argv = ["pg_dump", "-F", flag, "-f", raw_path] + (["-j", str(jobs)] if fmt == "directory" else [])
                order = [("raw", None), ("mod", None)] if round_ % 2 == 0 else [("mod", None), ("raw", None)]
                for kind, _step in order:
                    if kind == "raw":
                        seconds, cpu, _value = cpu_timed(cluster, lambda: cluster.tool(*argv, "bench"))
                        raw_dump.append(seconds)
                        raw_dump_cpu.append(cpu)
                    else:
                        seconds, cpu, _value = cpu_timed(
                            cluster, lambda: _pg_ops.dump(conn, mod_path, {"format": fmt, "jobs": jobs}))
                        mod_dump.append(seconds)
                        mod_dump_cpu.append(cpu)
                meta = _pg_ops.read_meta(_pg_ops.DumpFiles(mod_path))
                verify.append(_pg_ops.verify_dump(conn, mod_path, meta, jobs)["seconds"])

                restore_argv = ["pg_restore", "--clean", "--if-exists", "--exit-on-error", "-d", "bench"]
                restore_argv += ["--single-transaction"] if jobs == 1 else ["-j", str(jobs)]
                for kind, _step in order:
                    cluster.pgbench_run("bench", transactions=200)
                    if kind == "raw":
                        seconds, cpu, _value = cpu_timed(cluster, lambda: cluster.tool(*(restore_argv + [raw_path])))
                        raw_restore.append(seconds)
                        raw_restore_cpu.append(cpu)
                    else:
                        seconds, cpu, result = cpu_timed(
                            cluster, lambda: _pg_ops.restore(conn, _pg_ops.DumpFiles(mod_path), jobs=jobs))
                        mod_restore_cpu.append(cpu)
                        assert result["changed"], result
                        mod_restore.append(seconds)
                        posts.append(result["seconds"].get("verify", 0.0))
                        checks.append(result["seconds"]["checksum"] + result["seconds"].get("plan", 0.0))
                        # A second restore of the same dump finds nothing to do: how long that check takes.
                        idle, again = timed(lambda: _pg_ops.restore(conn, _pg_ops.DumpFiles(mod_path), jobs=jobs))
                        assert not again["changed"], again["plan"]["reason"]
                dump_ratios.append(mod_dump[-1] / raw_dump[-1])
                restore_ratios.append(mod_restore[-1] / raw_restore[-1])
                cluster.pgbench_run("bench", transactions=200)
                safety_path = os.path.join(work, "safety-%s-%d.dump" % (fmt, round_))
                safety.append(timed(lambda: _pg_ops.dump(conn, safety_path, {"format": "custom"}))[0])
                for path in (raw_path, mod_path, safety_path):
                    _pg_ops.remove_dump(path)
            med = statistics.median
            row = {
                "jobs": jobs,
                "dump_raw_s": round(med(raw_dump), 3), "dump_module_s": round(med(mod_dump), 3),
                "dump_ratio": round(med(dump_ratios), 3),
                "restore_raw_s": round(med(raw_restore), 3), "restore_module_s": round(med(mod_restore), 3),
                "restore_ratio": round(med(restore_ratios), 3),
                "dump_cpu_ratio": round(med(mod_dump_cpu) / med(raw_dump_cpu), 3),
                "restore_cpu_ratio": round(med(mod_restore_cpu) / med(raw_restore_cpu), 3),
                "all_dump_ratios": [round(x, 3) for x in dump_ratios],
                "all_restore_ratios": [round(x, 3) for x in restore_ratios],
                "restore_module_row_count_check_s": round(med(posts), 3),
                "restore_module_checksum_and_plan_s": round(med(checks), 3),
                "noop_restore_s": round(idle, 3),
                "verify_scratch_restore_s": round(med(verify), 3),
                "safety_dump_s": round(med(safety), 3),
                "all_dump": [round(x, 3) for x in mod_dump], "all_dump_raw": [round(x, 3) for x in raw_dump],
                "all_restore": [round(x, 3) for x in mod_restore],
                "all_restore_raw": [round(x, 3) for x in raw_restore],
            }
            results["formats"][fmt] = row
            print("%-9s jobs=%d  dump %.2fs vs raw %.2fs = %.2fx (CPU %.2fx) | restore %.2fs vs raw %.2fs = %.2fx (CPU %.2fx) "
                  "(of which row count check %.2fs, checksum+plan %.2fs) | no-op restore %.2fs | "
                  "verify (scratch restore) %.2fs | safety dump %.2fs"
                  % (fmt, jobs, row["dump_module_s"], row["dump_raw_s"], row["dump_ratio"], row["dump_cpu_ratio"],
                     row["restore_module_s"], row["restore_raw_s"], row["restore_ratio"], row["restore_cpu_ratio"],
                     row["restore_module_row_count_check_s"],
                     row["restore_module_checksum_and_plan_s"], row["noop_restore_s"],
                     row["verify_scratch_restore_s"], row["safety_dump_s"]))

        # End to end through ansible-playbook once, to show the fixed cost of a task next to the work.
        inventory = local_inventory(os.path.join(work, "inventory.ini"), {"target": {}})
        dest = os.path.join(work, "playbook.dump")
        play = ("- hosts: all\n  gather_facts: false\n  tasks:\n"
                "    - name: Dump\n      fleetops.rollback.pg_dump: %s\n"
                "    - name: Restore\n      fleetops.rollback.pg_restore: %s\n") % (
            json.dumps(dict(login, dest=dest, format="custom")),
            json.dumps(dict(login, src=dest, safety_dump=False)))
        noop = "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n"
        empty, _value = timed(lambda: run_playbook(noop, inventory))
        total, run = timed(lambda: run_playbook(play, inventory))
        assert run.rc == 0, run.stdout + run.stderr
        results["ansible_playbook"] = {"dump_and_restore_s": round(total, 3), "one_ping_task_playbook_s": round(empty, 3)}
        print("ansible-playbook: pg_dump + pg_restore (custom, nothing to restore after the dump: no-op) %.2fs; "
              "a one-task ping playbook %.2fs" % (total, empty))
        del bin_dir
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(results, stream, indent=1)
    worst = max(max(r["dump_ratio"], r["restore_ratio"]) for r in results["formats"].values())
    print("worst module/raw ratio: %.3fx (target <= 1.10x)" % worst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
