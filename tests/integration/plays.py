"""The plays the integration tests run, and the local fleets they run them on, built in one place.

`play(*tasks)` is a play on every host of the inventory, without facts, with one task per (name, module, args): a
module of this collection by its short name and its arguments, written as JSON (which YAML reads as it is).
`capture_play` and `restore_play` are the restore_point tasks most tests start from.

`break_fleet` and `versions` act on the local fleets of tools/fleet.py that conftest.py's `known_good_fleet` and
`fleet3` fixtures make (release 1 running, captured known good as release-1).
"""
import json
import sys

from playbook_runner import ROOT

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position


def play(*tasks):
    return "- hosts: all\n  gather_facts: false\n  tasks:\n" + "".join(
        "    - name: %s\n      fleetops.rollback.%s: %s\n" % (name, module, json.dumps(args)) for name, module, args in tasks)


def capture_play(store, components, label="good", status="known_good"):
    """A task `Capture` taking a restore point of `components` into `store`; a label or status of None is not given."""
    args = {"store_path": str(store), "label": label, "status": status, "components": components}
    return play(("Capture", "restore_point", {key: value for key, value in args.items() if value is not None}))


def restore_play(store, **params):
    """A task `Restore` restoring from `store` (its newest known good point unless `point` is given)."""
    return play(("Restore", "restore_point", dict({"store_path": str(store), "state": "restored"}, **params)))


def versions(fleet):
    """{host name: (version, /health status)} of every host of a local fleet."""
    return {row["name"]: (row["version"], row["health"]) for row in local_fleet.status(fleet)}


def break_fleet(fleet):
    """The bad release 2 deployed and restarted on every host; returns once every app answers (503)."""
    local_fleet.deploy(fleet, 2, action="restart")
    assert local_fleet.wait_answering(fleet, timeout=60)[0]
    assert {version for version, unused in versions(fleet).values()} == {"2.0.0"}
