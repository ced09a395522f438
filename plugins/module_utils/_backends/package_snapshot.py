# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the package_snapshot module does: snapshot files (dest/src) and restore-point captures and restores of
one pip environment or a set of apt packages, with the same code as the `packages` component."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import apt as _apt
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pins as _pins
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pip as _pip
from ansible_collections.fleetops.rollback.plugins.module_utils._components import Components
from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import atomic_write
from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import kind_of

FORMAT = "fleetops.rollback/package_snapshot/1"


def component():
    """The packages component, for this call only (no instance outlives a module run)."""
    return Components()["packages"]


FREEZE_HIDDEN = ("pip", "setuptools", "wheel", "distribute")


# ---------------------------------------------------------------------------------------------- parameters

def check_options(params):
    """Refuse options that belong to the other manager, naming them."""
    if params.get("virtualenv") is not None:
        _pip.check_abs(params["virtualenv"], "virtualenv", "the virtualenv")
    if params.get("executable") is not None and (not params["executable"].strip() or "\x00" in params["executable"]):
        raise RollbackError("executable: %r is not a path; give the full path of a python or pip" % params["executable"])
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
    timeout = params.get("dpkg_lock_timeout")
    if params["manager"] == "pip" and timeout is not None:
        raise RollbackError("dpkg_lock_timeout: is for manager=apt")
    if timeout is not None and not 0 <= timeout <= _apt.MAX_LOCK_TIMEOUT:
        raise RollbackError("dpkg_lock_timeout: %r must be from 0 to %d seconds" % (timeout, _apt.MAX_LOCK_TIMEOUT))


def component_spec(params):
    """The packages component spec for this module call (one pip environment or the apt names)."""
    if params["manager"] == "pip":
        env = {"virtualenv": params.get("virtualenv"), "executable": params.get("executable"),
               "find_links": params.get("find_links") or [], "index_url": params.get("index_url"),
               "build_isolation": params["build_isolation"], "use_pip_config": params["use_pip_config"]}
        return component().normalize({"pip": [{k: v for k, v in env.items() if v is not None}]}, where="package_snapshot")
    if not params.get("names"):
        raise RollbackError("names: manager=apt needs the list of Debian packages to snapshot, for example [nginx, libssl3]")
    apt = {"names": params["names"], "hold": params["hold"]}
    if params.get("dpkg_lock_timeout") is not None:
        apt["dpkg_lock_timeout"] = params["dpkg_lock_timeout"]
    return component().normalize({"apt": apt}, where="package_snapshot")


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
        out["dpkg_lock_timeout"] = params.get("dpkg_lock_timeout")
    return out


# ---------------------------------------------------------------------------------------------- files

def document(record, manager):
    body = record["pip"][0] if manager == "pip" else record["apt"]
    return dict({"format": FORMAT, "manager": manager}, **body)


def regular_file(option, path, what):
    """An existing regular file (through symlinks), refused naming what is there instead: reading a FIFO or a
    device would hang or never end."""
    path = check_path(option, path)
    try:
        st = os.stat(path)
    except OSError as err:
        if os.path.islink(path):
            raise RollbackError("%s: %r is a dangling symlink (to %r); give %s" % (option, path, os.readlink(path), what))
        raise RollbackError("%s: %r %s; give %s" % (option, path, "does not exist" if err.errno == errno.ENOENT
                                                    else "cannot be read (%s)" % err.strerror, what))
    if not stat.S_ISREG(st.st_mode):
        raise RollbackError("%s: %r is %s, not a regular file; give %s" % (option, path, kind_of(st.st_mode), what))
    return path


def write_snapshot(dest, record, manager, check=False):
    """Write the snapshot file (0600); unchanged when it already holds the same snapshot."""
    dest = check_path("dest", dest)
    if not os.path.isdir(os.path.dirname(dest)):
        raise RollbackError("dest: the directory of %s does not exist; create it first" % dest)
    if os.path.lexists(dest):
        regular_file("dest", dest, "the path of the snapshot file (a regular file, or one that does not exist yet)")
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
    src = regular_file("src", src, "the snapshot file written by dest (or, for pip, a pip freeze file)")
    try:
        with open(src, "rb") as stream:
            text = stream.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RollbackError("src: cannot read %s (%s)" % (src, getattr(err, "strerror", None) or err))
    manager = params["manager"]
    body = None
    if text.lstrip().startswith(("{", "[")):
        try:
            body = json.loads(text)
        except ValueError as err:
            raise RollbackError("src: %s is not valid JSON (%s)" % (src, err))
        if not isinstance(body, dict):
            raise RollbackError("src: %s is not a package_snapshot file (a JSON %s, not an object)"
                                % (src, type(body).__name__))
        if body.get("format") != FORMAT:
            raise RollbackError("src: %s is not a package_snapshot file (format %r)" % (src, body.get("format")))
        if body.get("manager") != manager:
            raise RollbackError("src: %s is a %s snapshot, not %s; set manager=%s"
                                % (src, body.get("manager"), manager, body.get("manager")))
    if manager == "pip":
        env = dict(spec["pip"][0])
        if body is not None:
            packages = body.get("packages")
            if not env.get("find_links") and body.get("find_links"):
                links = body["find_links"] if isinstance(body["find_links"], list) else [body["find_links"]]
                env["find_links"] = [_pip.check_source_url(link, "src %s: find_links" % src, local=True)
                                     for link in links]
            if not env.get("index_url") and body.get("index_url"):
                env["index_url"] = _pip.check_source_url(body["index_url"], "src %s: index_url" % src)
        else:
            packages = _pip.parse_freeze(text, where="src %s" % src)
            # pip freeze leaves these out: the file says nothing about them, so they are never pruned.
            env["unmanaged"] = list(FREEZE_HIDDEN)
        if not isinstance(packages, dict):
            raise RollbackError("src: %s holds no packages" % src)
        env["packages"] = _pip.check_packages(packages, "src %s" % src)
        env["python"] = _pip.resolve_python(env["virtualenv"], env["executable"])
        return {"pip": [env], "apt": None}
    if body is not None:
        apt = {key: body.get(key) for key in ("names", "packages")}
        if not isinstance(apt["packages"], dict) or not isinstance(apt["names"], list):
            raise RollbackError("src: %s holds no apt packages" % src)
        if not all(isinstance(row, dict) for row in apt["packages"].values()) or \
                not all(isinstance(n, str) and n in apt["packages"] for n in apt["names"]):
            raise RollbackError("src: %s is not a valid apt snapshot (each name needs a {version, held} entry)" % src)
    else:
        packages = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            found = re.match(r"^(\S+?)=(\S+)$", line)
            if not found:
                raise RollbackError("src %s line %d: %r is not NAME=VERSION" % (src, number, raw))
            _apt.check_versions({found.group(1): found.group(2)}, "src %s line %d" % (src, number))
            packages[found.group(1)] = {"version": found.group(2), "held": False, "arch": None}
        apt = {"names": list(packages), "packages": packages}
    _apt.check_versions(apt["packages"], "src %s" % src)
    wanted = params.get("names")
    if wanted:
        unknown = [n for n in wanted if n not in apt["packages"]]
        if unknown:
            raise RollbackError("names: %s not in the snapshot %s (it holds %s)"
                                % (", ".join(unknown), src, ", ".join(apt["names"])))
        apt["names"] = list(wanted)
    apt.update(hold=params["hold"], prune_extra=True)
    if params.get("dpkg_lock_timeout") is not None:
        apt["dpkg_lock_timeout"] = params["dpkg_lock_timeout"]
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
    record = component().narrow(record, selection(params, spec))
    pins = _pins_plan(params, record)
    planned = _plan(record, check)
    changes = [c for _where, found, _listing in planned for c in found]
    result = {"changed": bool(changes) or bool(pins and pins[2]), "changes": changes, "packages": _summary(changes)}
    _add_pins(result, params, pins, diff)
    if diff:
        result.setdefault("diff", [])[:0] = component().diff(None, record, changes)
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
        pins = _pins_plan(params, component().narrow(target["components"]["packages"], sel))
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
