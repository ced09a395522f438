"""Benchmark: an exact package restore against the runbook's `pip install -r frozen.txt --force-reinstall`.

A real venv holds 50 locally written packages (nothing is downloaded); 5 of them are then upgraded, so the
environment differs from the snapshot in 5 places. Package sizes (--profile):

  realistic  the module counts and sizes of the 18 distributions of this repository's own .venv (pinned in
             constraints.txt, pip left out), cycled over the 50 packages: from 2 modules / 64 kB (markupsafe)
             to 781 modules / 7.5 MB (ansible-core), median about 20 modules / 400 kB; modules hold at most
             12 kB of code each, the rest of a package's size is a data file (as native code is);
  tiny       every package 21 modules of 2 kB: pip's fixed start-up cost then dominates both runs, which is
             the least favourable case for a restore that changes few packages.

Each round times, on the same venv and wheelhouse:

  restore   package_snapshot's restore code (the module's code path without Ansible: plan, keep copies of what
            it replaces, one `pip install --no-deps --force-reinstall` of the 5 pins, verify);
  baseline  `pip install -r frozen.txt --force-reinstall --no-index --find-links WHEELHOUSE` (every package).

Both must leave `pip freeze` equal to the snapshot. Reported: median wall seconds and median CPU seconds (this
process plus every child: pip, the listing interpreter) of each, and their ratios. CPU time is the steadier
number on a shared, loaded machine. With --ansible, one ansible-playbook run of the module is timed too
(Ansible's own start-up included).

    .venv/bin/python benchmarks/packages_bench.py [--profile realistic|tiny] [--packages 50] [--differ 5]
                                                  [--rounds 3] [--ansible]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, ".collections"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import pyenvs  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import package_snapshot as _package_snapshot  # noqa: E402

MODULE_DEFAULTS = {"manager": "pip", "state": "restored", "executable": None, "index_url": None, "use_pip_config": False,
                   "build_isolation": True, "names": None, "hold": False, "dest": None, "only": None,
                   "prune_extra": False, "pins_file": None, "point": None, "label": None, "reason": None}


# (modules, kB of source) of the distributions in this repository's .venv, smallest first.
REALISTIC = [(2, 64), (4, 129), (4, 17), (7, 254), (9, 51), (13, 78), (17, 121), (18, 140), (18, 2805), (20, 699),
             (22, 485), (25, 482), (78, 14636), (82, 1408), (106, 3826), (223, 3774), (343, 4484), (781, 7688)]


def sizes(profile, count):
    if profile == "tiny":
        return [(20, 40)] * count
    # Interleave small and large so any evenly spaced subset (the packages that differ) has the same spread.
    order = [REALISTIC[i] for i in range(0, len(REALISTIC), 2)] + [REALISTIC[i] for i in range(1, len(REALISTIC), 2)]
    return [order[index % len(order)] for index in range(count)]


def differing(names, profile, count):
    """The packages that differ: the middle one of each of `count` equal slices of the size ranking, so they are
    as big as the whole on average (a little bigger for the realistic profile: 91 modules against 84)."""
    ranked = sorted(range(len(names)), key=lambda index: sizes(profile, len(names))[index])
    return [names[ranked[int((slot + 0.5) * len(names) / count)]] for slot in range(count)]


def build(workdir, count, profile):
    wheelhouse = os.path.join(workdir, "wheelhouse")
    names = ["bench-pkg-%02d" % index for index in range(count)]
    for name, (modules, kilobytes) in zip(names, sizes(profile, count)):
        # At most 12 kB of code per module; the rest of a package's weight is a data file (native code, data).
        per_module = min(12 * 1024, kilobytes * 1024 // (modules + 1))
        data = max(0, kilobytes * 1024 - per_module * (modules + 1))
        for version in ("1.0", "2.0"):
            pyenvs.write_wheel(wheelhouse, name, version, modules=modules, module_bytes=per_module, data_bytes=data)
    venv = pyenvs.make_template(os.path.join(workdir, "venv"))
    pyenvs.install(venv, wheelhouse, *["%s==1.0" % name for name in names])
    return wheelhouse, venv, names


class Timer:
    """Wall and CPU seconds (own process and waited-for children) of a block."""

    def __enter__(self):
        self.wall = time.monotonic()
        self.cpu = self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.wall
        self.cpu = self._cpu() - self.cpu
        return False

    @staticmethod
    def _cpu():
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime


def restore_with_module_code(venv, wheelhouse, snapshot):
    params = dict(MODULE_DEFAULTS, virtualenv=venv, find_links=[wheelhouse], src=snapshot)
    with Timer() as timer:
        spec = _package_snapshot.component_spec(params)
        result = _package_snapshot.restore_from_file(params, spec)
    return timer, result


def baseline(venv, wheelhouse, frozen):
    with Timer() as timer:
        pyenvs.pip(venv, "install", "-q", "-r", frozen, "--force-reinstall", "--no-index", "--find-links", wheelhouse)
    return timer


def ansible_restore(venv, wheelhouse, snapshot, workdir):
    inventory = os.path.join(workdir, "inventory.ini")
    with open(inventory, "w", encoding="utf-8") as stream:
        stream.write("target ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    playbook = os.path.join(workdir, "restore.yml")
    args = {"manager": "pip", "state": "restored", "virtualenv": venv, "src": snapshot, "find_links": [wheelhouse]}
    with open(playbook, "w", encoding="utf-8") as stream:
        stream.write("- hosts: all\n  gather_facts: false\n  tasks:\n    - fleetops.rollback.package_snapshot: %s\n"
                     % json.dumps(args))
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), PATH=bindir + os.pathsep + os.environ["PATH"])
    started = time.monotonic()
    proc = subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", inventory, playbook], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-2000:]))
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--packages", type=int, default=50)
    parser.add_argument("--differ", type=int, default=5)
    parser.add_argument("--profile", choices=["realistic", "tiny"], default="realistic", help="package sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ansible", action="store_true", help="also time one restore through ansible-playbook")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fleetops-packages-bench-") as workdir:
        wheelhouse, venv, names = build(workdir, args.packages, args.profile)
        snapshot = os.path.join(workdir, "snapshot.json")
        params = dict(MODULE_DEFAULTS, state="present", virtualenv=venv, find_links=[wheelhouse])
        spec = _package_snapshot.component_spec(params)
        _package_snapshot.write_snapshot(snapshot, _package_snapshot.COMPONENT.capture(None, spec), "pip")
        frozen = os.path.join(workdir, "frozen.txt")
        with open(frozen, "w", encoding="utf-8") as stream:
            stream.write(pyenvs.pip(venv, "freeze").stdout)
        expected = pyenvs.freeze(venv)
        upgrade = ["%s==2.0" % name for name in differing(names, args.profile, args.differ)]

        ours, theirs = [], []
        for round_ in range(args.rounds):
            pyenvs.install(venv, wheelhouse, *upgrade)
            timer, result = restore_with_module_code(venv, wheelhouse, snapshot)
            if pyenvs.freeze(venv) != expected or len(result["packages"]["changed"]) != args.differ:
                raise SystemExit("the restore did not bring the snapshot back: %s" % result["packages"])
            ours.append(timer)
            pyenvs.install(venv, wheelhouse, *upgrade)
            theirs.append(baseline(venv, wheelhouse, frozen))
            if pyenvs.freeze(venv) != expected:
                raise SystemExit("the baseline did not bring the snapshot back")
            print("round %d: restore %.2fs (cpu %.2fs), baseline %.2fs (cpu %.2fs)"
                  % (round_ + 1, ours[-1].wall, ours[-1].cpu, theirs[-1].wall, theirs[-1].cpu), flush=True)

        def median(timers, what):
            return statistics.median(getattr(t, what) for t in timers)

        report = {"packages": args.packages, "differ": args.differ, "profile": args.profile,
                  "rounds": args.rounds, "load_average": os.getloadavg()[0],
                  "restore_seconds": round(median(ours, "wall"), 3),
                  "baseline_seconds": round(median(theirs, "wall"), 3),
                  "speedup": round(median(theirs, "wall") / median(ours, "wall"), 2),
                  "restore_cpu_seconds": round(median(ours, "cpu"), 3),
                  "baseline_cpu_seconds": round(median(theirs, "cpu"), 3),
                  "cpu_speedup": round(median(theirs, "cpu") / median(ours, "cpu"), 2)}
        if args.ansible:
            pyenvs.install(venv, wheelhouse, *upgrade)
            report["ansible_playbook_restore_seconds"] = round(ansible_restore(venv, wheelhouse, snapshot, workdir), 3)
            if pyenvs.freeze(venv) != expected:
                raise SystemExit("the ansible-playbook restore did not bring the snapshot back")
        print(json.dumps(report, indent=1))
        print("restore %.2fs vs pip install -r frozen.txt --force-reinstall %.2fs: %.1fx faster wall clock, %.1fx less "
              "CPU (target 5x)" % (report["restore_seconds"], report["baseline_seconds"], report["speedup"],
                                   report["cpu_speedup"]))


if __name__ == "__main__":
    main()
