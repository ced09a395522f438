# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the package_snapshot module does: snapshot files (dest/src) and restore-point captures and restores of
one pip environment or a set of apt packages, with the same code as the `packages` component."""

from __future__ import annotations

import json
import os
import re
import time

from ansible_collections.fleetops.rollback.plugins.module_utils import _apt, _pins, _pip, _points
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import atomic_write

FORMAT = "fleetops.rollback/package_snapshot/1"
COMPONENT = _points.COMPONENTS["packages"]
FREEZE_HIDDEN = ("pip", "setuptools", "wheel", "distribute")


# ---------------------------------------------------------------------------------------------- parameters

def check_options(params):
    """Refuse options that belong to the other manager, naming them."""
    if params["manager"] == "pip":
        if not (params.get("virtualenv") or params.get("executable")):
            raise RollbackError("manager=pip needs virtualenv (a venv directory) or executable (a python or pip path)")
        if params.get("names") or params.get("hold"):
            raise RollbackError("%s: is for manager=apt; for pip give virtualenv or executable"
                                % ("names" if params.get("names") else "hold"))
    else:
        for key in ("virtualenv", "executable", "find_links", "index_url", "pins_file"):
            if params.get(key):
                raise RollbackError("%s: is for manager=pip; for apt give names" % key)


def component_spec(params):
    """The packages component spec for this module call (one pip environment or the apt names)."""
    if params["manager"] == "pip":
        env = {"virtualenv": params.get("virtualenv"), "executable": params.get("executable"),
               "find_links": params.get("find_links") or [], "index_url": params.get("index_url"),
               "build_isolation": params["build_isolation"], "use_pip_config": params["use_pip_config"]}
        return COMPONENT.normalize({"pip": [{k: v for k, v in env.items() if v is not None}]}, where="package_snapshot")
    if not params.get("names"):
        raise RollbackError("names: manager=apt needs the list of Debian packages to snapshot, for example [nginx, libssl3]")
    return COMPONENT.normalize({"apt": {"names": params["names"], "hold": params["hold"]}}, where="package_snapshot")


def selection(params, spec):
    """How a restore narrows a stored record: this environment, only, prune_extra and source overrides."""
    out = {"manager": params["manager"], "only": params.get("only"), "prune_extra": params["prune_extra"]}
    if params["manager"] == "pip":
        env = spec["pip"][0]
        out["python"] = _pip.resolve_python(env["virtualenv"], env["executable"])
        for key in ("find_links", "index_url"):
            if params.get(key):
                out[key] = spec["pip"][0][key]
        out["build_isolation"] = params["build_isolation"]
        out["use_pip_config"] = params["use_pip_config"]
    else:
        out["hold"] = params["hold"]
    return out


# ---------------------------------------------------------------------------------------------- files

def document(record, manager):
    body = record["pip"][0] if manager == "pip" else record["apt"]
    return dict({"format": FORMAT, "manager": manager}, **body)


def write_snapshot(dest, record, manager, check=False):
    """Write the snapshot file (0600); unchanged when it already holds the same snapshot."""
    if not os.path.isabs(dest):
        raise RollbackError("dest: %r is not an absolute path; give the full path of the snapshot file" % dest)
    if not os.path.isdir(os.path.dirname(dest)):
        raise RollbackError("dest: the directory of %s does not exist; create it first" % dest)
    new = document(record, manager)
    data = (json.dumps(new, indent=1, sort_keys=True) + "\n").encode("utf-8")
    old = None
    if os.path.exists(dest):
        try:
            with open(dest, "rb") as stream:
                old = stream.read()
        except OSError as err:
            raise RollbackError("dest: cannot read %s: %s" % (dest, err))
    changed = old != data or (os.stat(dest).st_mode & 0o777) != 0o600
    if changed and not check:
        atomic_write(dest, data, mode=0o600)
    return changed


def read_snapshot(src, params, spec):
    """A record from a snapshot file: this module's JSON, `pip freeze` output (pip) or `name=version` lines (apt)."""
    if not os.path.isabs(src):
        raise RollbackError("src: %r is not an absolute path; give the full path of the snapshot file" % src)
    try:
        with open(src, "rb") as stream:
            text = stream.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RollbackError("src: cannot read %s (%s)" % (src, getattr(err, "strerror", None) or err))
    manager = params["manager"]
    body = None
    if text.lstrip().startswith("{"):
        try:
            body = json.loads(text)
        except ValueError as err:
            raise RollbackError("src: %s is not valid JSON (%s)" % (src, err))
        if body.get("format") != FORMAT:
            raise RollbackError("src: %s is not a package_snapshot file (format %r)" % (src, body.get("format")))
        if body.get("manager") != manager:
            raise RollbackError("src: %s is a %s snapshot, not %s; set manager=%s"
                                % (src, body.get("manager"), manager, body.get("manager")))
    if manager == "pip":
        env = dict(spec["pip"][0])
        if body is not None:
            packages = body.get("packages")
            for key in ("find_links", "index_url"):
                if not env.get(key) and body.get(key):
                    env[key] = body[key]
        else:
            packages = _pip.parse_freeze(text, where="src %s" % src)
            # pip freeze leaves these out: the file says nothing about them, so they are never pruned.
            env["unmanaged"] = list(FREEZE_HIDDEN)
        if not isinstance(packages, dict):
            raise RollbackError("src: %s holds no packages" % src)
        env["packages"] = packages
        env["python"] = _pip.resolve_python(env["virtualenv"], env["executable"])
        return {"pip": [env], "apt": None}
    if body is not None:
        apt = {key: body.get(key) for key in ("names", "packages")}
        if not isinstance(apt["packages"], dict) or not isinstance(apt["names"], list):
            raise RollbackError("src: %s holds no apt packages" % src)
    else:
        packages = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            found = re.match(r"^([a-z0-9][a-z0-9+.:-]+)=(\S+)$", line)
            if not found:
                raise RollbackError("src %s line %d: %r is not NAME=VERSION" % (src, number, raw))
            packages[found.group(1)] = {"version": found.group(2), "held": False, "arch": None}
        apt = {"names": list(packages), "packages": packages}
    wanted = params.get("names")
    if wanted:
        unknown = [n for n in wanted if n not in apt["packages"]]
        if unknown:
            raise RollbackError("names: %s not in the snapshot %s (it holds %s)"
                                % (", ".join(unknown), src, ", ".join(apt["names"])))
        apt["names"] = list(wanted)
    apt.update(hold=params["hold"], prune_extra=True)
    return {"pip": [], "apt": apt}


# ---------------------------------------------------------------------------------------------- restore

def _summary(changes):
    summary = _pip.summary([c for c in changes if c["action"] in ("install", "change", "remove")])
    marks = [{"name": c["name"], "held": c["to"]["held"]} for c in changes if c["action"] in ("hold", "unhold")]
    if marks:
        summary["holds"] = marks
    return summary


def restore_from_file(params, spec, check=False, diff=False):
    started = time.monotonic()
    record = read_snapshot(params["src"], params, spec)
    record = COMPONENT.narrow(record, selection(params, spec))
    pins = _pins_plan(params, record)
    planned = _plan(record, check)
    changes = [c for _where, found, _listing in planned for c in found]
    result = {"changed": bool(changes) or bool(pins and pins[2]), "changes": changes, "packages": _summary(changes)}
    _add_pins(result, params, pins, diff)
    if diff:
        result.setdefault("diff", [])[:0] = COMPONENT.diff(None, record, changes)
    if check:
        return result
    # Each apply verifies the result itself (and reverts when it does not match).
    for part, found, listing in planned:
        if found and part is record.get("apt"):
            _apt.apply(part, found)
        elif found:
            _pip.apply(part, found, listing)
    _write_pins(params, pins)
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _plan(record, check):
    """[(record part, changes, listing)] for a file restore. Check mode also asks pip whether every wanted version
    can be had."""
    planned = []
    for env in record["pip"]:
        found, listing = _pip.plan_and_listing(env)
        for change in found:
            change["manager"] = "pip"
        if found and check:
            _pip.preflight(env, found)
        planned.append((env, found, listing))
    if record.get("apt"):
        found = _apt.plan(record["apt"])
        for change in found:
            change["manager"] = "apt"
        planned.append((record["apt"], found, None))
    return planned


def restore_from_point(store, params, spec, check=False, diff=False):
    sel = selection(params, spec)
    pins = None
    if params.get("pins_file"):
        target = store.resolve(params.get("point") or "known_good")
        if "packages" not in target["components"]:
            raise RollbackError("point %s holds no packages component" % target["id"])
        pins = _pins_plan(params, COMPONENT.narrow(target["components"]["packages"], sel))
    result = _points.restore(store, params.get("point") or "known_good", names=["packages"], check=check, diff=diff,
                             reason=params.get("reason"), narrow={"packages": sel})
    changes = result["plan"].get("packages", {}).get("changes", [])
    result["changes"] = changes
    result["packages"] = _summary(changes)
    if pins and pins[2]:
        result["changed"] = True
    _add_pins(result, params, pins, diff)
    if not check:
        _write_pins(params, pins)
    return result


def _pins_plan(params, record):
    if not params.get("pins_file"):
        return None
    env = record["pip"][0]
    keys = env.get("only")
    return _pins.plan(params["pins_file"], env["packages"], keys)


def _add_pins(result, params, pins, diff):
    if pins is None:
        return
    old, new, changes = pins
    result["pins_file"] = {"path": params["pins_file"], "changed": bool(changes), "changes": changes}
    if diff and changes:
        result.setdefault("diff", []).append({"before_header": params["pins_file"], "after_header": params["pins_file"],
                                              "before": old.decode("utf-8"), "after": new.decode("utf-8")})


def _write_pins(params, pins):
    if pins and pins[2]:
        _pins.write(params["pins_file"], pins[1])
