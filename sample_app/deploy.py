#!/usr/bin/env python
"""Deploy a sample-app release into a host root.

    deploy.py --root HOST_ROOT --release N [--no-switch]

Writes <root>/srv/app/releases/N/{app.py,release.json}, writes release N's config
(<root>/etc/app/app.env mode 0640 and conf.d/*.env: files of other releases are removed), then
flips <root>/srv/app/current -> releases/N atomically (temporary symlink + rename).
With --no-switch only the release directory is staged: config and `current` stay as they are.
It does not restart the app (appctl.py does that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sample_app import releases  # noqa: E402  pylint: disable=wrong-import-position

APP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")
CONFIG_MODE = 0o640


def paths(root):
    root = os.path.abspath(root)
    return {
        "root": root,
        "app": os.path.join(root, "srv", "app"),
        "releases": os.path.join(root, "srv", "app", "releases"),
        "current": os.path.join(root, "srv", "app", "current"),
        "etc": os.path.join(root, "etc", "app"),
        "app_env": os.path.join(root, "etc", "app", "app.env"),
        "conf_d": os.path.join(root, "etc", "app", "conf.d"),
        "run": os.path.join(root, "run"),
        "log": os.path.join(root, "log"),
        "pidfile": os.path.join(root, "run", "app.pid"),
        "logfile": os.path.join(root, "log", "app.log"),
    }


def make_layout(root):
    """The host root's directories (idempotent)."""
    p = paths(root)
    for key in ("releases", "conf_d", "run", "log"):
        os.makedirs(p[key], exist_ok=True)
    os.chmod(p["etc"], 0o750)
    return p


def _atomic_write(path, data, mode):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_release(root, number):
    """Stage releases/N (app.py + release.json); returns its path."""
    release = releases.get(number)
    p = make_layout(root)
    target = os.path.join(p["releases"], str(release.number))
    os.makedirs(target, exist_ok=True)
    with open(APP_SOURCE, "rb") as stream:
        _atomic_write(os.path.join(target, "app.py"), stream.read(), 0o644)
    _atomic_write(os.path.join(target, "release.json"),
                  json.dumps(release.metadata, indent=2, sort_keys=True) + "\n", 0o644)
    return target


def write_config(root, number):
    """Write release N's app.env and conf.d files; remove conf.d/*.env files N does not have."""
    release = releases.get(number)
    p = make_layout(root)
    header = f"sample app configuration for release {release.number} ({release.version})\nwritten by sample_app/deploy.py"
    _atomic_write(p["app_env"], releases.render_env(release.app_env, header), CONFIG_MODE)
    for name, pairs in release.conf_d.items():
        _atomic_write(os.path.join(p["conf_d"], name), releases.render_env(pairs, header), CONFIG_MODE)
    for name in os.listdir(p["conf_d"]):
        if name.endswith(".env") and name not in release.conf_d:
            os.unlink(os.path.join(p["conf_d"], name))


def switch(root, number):
    """Point `current` at releases/N atomically: a temporary symlink renamed over it."""
    p = paths(root)
    relative = os.path.join("releases", str(int(number)))
    if not os.path.isdir(os.path.join(p["app"], relative)):
        raise FileNotFoundError(f"release directory {os.path.join(p['app'], relative)} does not exist")
    tmp = os.path.join(p["app"], f".current.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(relative, tmp)
    try:
        os.replace(tmp, p["current"])
    except BaseException:
        os.unlink(tmp)
        raise


def current_release(root):
    """The release number `current` points at, or None."""
    try:
        return int(os.path.basename(os.readlink(paths(root)["current"])))
    except (OSError, ValueError):
        return None


def deploy(root, number, switch_current=True):
    """Stage release N; unless switch_current is false, write its config and flip `current`."""
    release = releases.get(number)
    target = write_release(root, release.number)
    if switch_current:
        write_config(root, release.number)
        switch(root, release.number)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description="Deploy a sample-app release into a host root.")
    parser.add_argument("--root", required=True, help="host root")
    parser.add_argument("--release", required=True, type=int, help="release number (%s)" %
                        ", ".join(str(n) for n in sorted(releases.RELEASES)))
    parser.add_argument("--no-switch", action="store_true",
                        help="only stage releases/N; leave config and `current` unchanged")
    args = parser.parse_args(argv)
    try:
        target = deploy(args.root, args.release, switch_current=not args.no_switch)
    except (ValueError, OSError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    release = releases.get(args.release)
    if args.no_switch:
        print(f"staged release {release.number} ({release.version}) at {target}")
    else:
        print(f"deployed release {release.number} ({release.version}): current -> releases/{release.number}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
