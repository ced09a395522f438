"""`make demo`: break a local fleet with a bad release and roll it back with rollback_immediate.

1. build the local fleet; 2. deploy release 1 (healthy), snapshot it, mark it known good;
3. deploy the bad release 2 (fails /health); 4. run rollback_immediate; 5. show every host healthy on
release 1 again and a short summary.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)


def step(text):
    print("\n==> " + text, flush=True)


def show(rows):
    for row in rows:
        reason = " (%s)" % row["reason"] if row.get("reason") else ""
        print("    %-10s port %-5s version %-6s health %s%s" % (row["name"], row["port"], row["version"], row["health"], reason))


def playbook(name, inventory, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, os.path.join(ROOT, "playbooks", name)] + list(args)
    print("    $ " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv), flush=True)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    return proc, seconds


def tail(text, marker):
    """The part of ansible-playbook's output from a task header on (its summary and recap)."""
    index = text.find(marker)
    return text[index:] if index >= 0 else text[-3000:]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=int(os.environ.get("DEMO_HOSTS", "5")))
    parser.add_argument("--dir", default=os.path.join(ROOT, ".fleet"))
    parser.add_argument("--keep-running", action="store_true", help="leave the apps running at the end")
    opts = parser.parse_args()
    begun = time.monotonic()

    step("1. Build a local fleet of %d hosts in %s" % (opts.hosts, os.path.relpath(opts.dir, ROOT)))
    fleet = local_fleet.create(opts.dir, hosts=opts.hosts, base_port=0)
    print("    inventory: %s" % os.path.relpath(fleet.inventory, ROOT))

    step("2. Deploy release 1, gate on health, snapshot it and mark it known good")
    local_fleet.deploy(fleet, 1, action="restart")
    healthy, rows, _waited = local_fleet.wait_healthy(fleet, timeout=30)
    show(local_fleet.status(fleet))
    if not healthy:
        sys.exit("release 1 did not come up healthy; see %s/hosts/*/log/app.log" % opts.dir)
    proc, seconds = playbook("snapshot.yml", fleet.inventory, "-e", "restore_point_label=release-1")
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:])
        sys.exit("snapshot.yml failed")
    print("    snapshot taken on every host in %.1f s" % seconds)

    step("3. Deploy the bad release 2 (new code, changed config, an extra conf.d file)")
    local_fleet.deploy(fleet, 2, action="restart")
    local_fleet.wait_answering(fleet, timeout=30)
    broken = local_fleet.status(fleet)
    show(broken)

    step("4. Roll back: ansible-playbook playbooks/rollback_immediate.yml -l %s" % fleet.group)
    proc, seconds = playbook("rollback_immediate.yml", fleet.inventory, "-l", fleet.group,
                             "-e", "rollback_reason=demo-bad-release-2")
    print(tail(proc.stdout, "TASK [Summarise the rollback]"))
    if proc.returncode != 0:
        print(proc.stderr[-2000:])

    step("5. Every host after the rollback")
    after = local_fleet.status(fleet)
    show(after)
    good = [r for r in after if r["health"] == 200 and r["version"] == "1.0.0"]
    print("\nSummary: %d hosts; %d were unhealthy on release 2; rollback_immediate took %.1f s from start until every "
          "host was gated healthy; %d/%d hosts healthy on release 1.0.0 again (config restored, extra conf.d file "
          "removed, current -> releases/1, app restarted); demo total %.1f s."
          % (len(after), sum(1 for r in broken if r["health"] != 200), seconds, len(good), len(after),
             time.monotonic() - begun))
    if not opts.keep_running:
        local_fleet.stop(fleet)
        print("Apps stopped; `python tools/local_fleet.py start --dir %s` starts them again." % os.path.relpath(opts.dir, ROOT))
    if proc.returncode != 0 or len(good) != len(after):
        sys.exit(1)


if __name__ == "__main__":
    main()
