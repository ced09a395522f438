#!/usr/bin/env python
"""Built-in local fleet: N "hosts" on this machine (ansible_connection=local), one sample app each.

    local_fleet.py create  --dir DIR [--hosts 5] [--base-port 18100|0] [--group fleet]
    local_fleet.py deploy  --dir DIR --release N [--start | --restart]
    local_fleet.py start|stop|restart --dir DIR
    local_fleet.py status  --dir DIR [--json]          exit 0 only when every host is healthy
    local_fleet.py wait-healthy --dir DIR [--timeout 60] [--any-status]
    local_fleet.py destroy --dir DIR

`create` writes DIR/inventory.ini (group [fleet] with fleet_root and app_port per host, and the
group vars the rollback roles read) and DIR/hosts/<name>/ host roots. --base-port 0 picks a free
port range. Exit codes: 0 success, 1 some host failed or is unhealthy, 2 bad usage or fleet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import fleet as fleetlib  # noqa: E402  pylint: disable=wrong-import-position


def _report(results, verb):
    failed = [(h, msg) for h, ok, msg in results if not ok]
    for host, msg in failed:
        print(f"{host.name}: {msg}", file=sys.stderr)
    print(f"{verb} {len(results) - len(failed)}/{len(results)} hosts"
          + (f"; {len(failed)} failed" if failed else ""))
    return 0 if not failed else 1


def _row_line(row):
    health = row["health"] if row["health"] is not None else "down"
    line = f"{row['name']} {row['port']} {row['version'] or '-'} {health}"
    if row["health"] != 200 and row["reason"]:
        line += f" ({row['reason']})"
    return line


def cmd_create(args):
    started = time.monotonic()
    fleet = fleetlib.create(args.dir, hosts=args.hosts, base_port=args.base_port, group=args.group)
    ports = f"{fleet.hosts[0].port}-{fleet.hosts[-1].port}"
    print(f"created {len(fleet.hosts)} hosts in {fleet.dir} (ports {ports}) in {time.monotonic() - started:.2f} s; "
          f"inventory {fleet.inventory}")
    return 0


def cmd_deploy(args):
    fleet = fleetlib.load(args.dir)
    action = "start" if args.start else "restart" if args.restart else None
    return _report(fleetlib.deploy(fleet, args.release, action=action), f"deployed release {args.release} to")


def cmd_start(args):
    return _report(fleetlib.start(fleetlib.load(args.dir)), "started")


def cmd_restart(args):
    return _report(fleetlib.restart(fleetlib.load(args.dir)), "restarted")


def cmd_stop(args):
    return _report(fleetlib.stop(fleetlib.load(args.dir)), "stopped")


def cmd_status(args):
    rows = fleetlib.status(fleetlib.load(args.dir))
    healthy = sum(1 for row in rows if row["health"] == 200)
    if args.json:
        print(json.dumps({"healthy": healthy, "hosts": len(rows), "rows": rows}, indent=1))
    else:
        for row in rows:
            print(_row_line(row))
        print(f"{healthy}/{len(rows)} hosts healthy", file=sys.stderr)
    return 0 if healthy == len(rows) else 1


def cmd_wait_healthy(args):
    fleet = fleetlib.load(args.dir)
    if args.any_status:
        ok, rows, seconds = fleetlib.wait_answering(fleet, timeout=args.timeout)
        waiting = [row for row in rows if row["health"] is None]
        state = "answering"
    else:
        ok, rows, seconds = fleetlib.wait_healthy(fleet, timeout=args.timeout)
        waiting = [row for row in rows if row["health"] != 200]
        state = "healthy"
    if ok:
        print(f"all {len(rows)} hosts {state} after {seconds:.2f} s")
        return 0
    for row in waiting:
        print(_row_line(row), file=sys.stderr)
    print(f"{len(waiting)}/{len(rows)} hosts still not {state} after {seconds:.2f} s")
    return 1


def cmd_destroy(args):
    if fleetlib.destroy(args.dir):
        print(f"destroyed {os.path.abspath(args.dir)}")
    else:
        print(f"nothing to destroy at {os.path.abspath(args.dir)}")
    return 0


def parser():
    top = argparse.ArgumentParser(description="Built-in local fleet for fleetops.rollback demos and tests.")
    sub = top.add_subparsers(dest="command", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", required=True, help="fleet directory")
        p.set_defaults(func=func)
        return p

    p = add("create", cmd_create, "create host roots and DIR/inventory.ini")
    p.add_argument("--hosts", type=int, default=fleetlib.DEFAULT_HOSTS, help="number of hosts (default %(default)s)")
    p.add_argument("--base-port", type=int, default=fleetlib.DEFAULT_BASE_PORT,
                   help="first port; 0 picks a free range (default %(default)s)")
    p.add_argument("--group", default=fleetlib.DEFAULT_GROUP, help="inventory group (default %(default)s)")
    p = add("deploy", cmd_deploy, "deploy a release to every host")
    p.add_argument("--release", type=int, required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--start", action="store_true", help="start apps that are not running")
    group.add_argument("--restart", action="store_true", help="restart every app")
    add("start", cmd_start, "start every host's app")
    add("restart", cmd_restart, "restart every host's app")
    add("stop", cmd_stop, "stop every host's app")
    p = add("status", cmd_status, "one line per host: name, port, version, health code")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("wait-healthy", cmd_wait_healthy, "poll every /health until all answer 200")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default %(default)s)")
    p.add_argument("--any-status", action="store_true",
                   help="wait until every /health answers at all (e.g. 503 after a bad release)")
    add("destroy", cmd_destroy, "stop the apps and remove DIR")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except fleetlib.FleetError as exc:
        print(f"local_fleet {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"local_fleet {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
