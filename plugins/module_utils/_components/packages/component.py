# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `packages` component: exact pip environments and apt packages, via _pip and _apt.

Spec (components.packages):

    pip:                        # one environment or a list of them
      - virtualenv: /srv/app/venv       # or executable: /usr/bin/python3 (or a pip script)
        find_links: [/srv/wheelhouse]   # where a restore finds the exact versions (and/or index_url)
        index_url: https://pypi.internal/simple
        prune_extra: true               # remove what the point does not have (default true)
        build_isolation: true           # for editable / VCS entries that pip builds
        use_pip_config: false           # ignore pip.conf and PIP_* (default), so only the source above counts
    apt:
      names: [nginx, libssl3]           # the packages to pin (dpkg-query versions)
      hold: false                       # apt-mark hold them after a restore
      prune_extra: true                 # remove a named package that was not installed at capture
      dpkg_lock_timeout: 300            # seconds to wait for another apt/dpkg run to release the dpkg lock

Record: {"pip": [environment records], "apt": apt record or None}. A safety capture (scope) also keeps
copies of the installed versions a restore will replace (wheels repacked from the environment, .debs)
under dumps/<safety id>/, so re-applying the safety point works offline.
"""

from __future__ import annotations

import os

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import apt as _apt
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pip as _pip
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components import packages as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import private_dir


def _envs(record):
    exact = record.get("exact", False)
    return [dict(env, exact=exact) if exact else env for env in record.get("pip") or []]


def _apt_record(record):
    apt = record.get("apt")
    if apt and record.get("exact"):
        return dict(apt, exact=True)
    return apt


def _changes(record, preflight=False):
    """What restoring the record would change, each change tagged with its manager; with `preflight`, a pip
    environment that needs changes is first checked for the exact versions being available."""
    changes = []
    for env in _envs(record):
        found = _pip.plan(env)
        for change in found:
            change["manager"] = "pip"
        if preflight and found and not env.get("exact"):
            _pip.preflight(env, found)
        changes += found
    apt = _apt_record(record)
    if apt:
        found = _apt.plan(apt)
        for change in found:
            change["manager"] = "apt"
        changes += found
    return changes


class PackagesComponent(Component):
    name = "packages"
    declaration = declaration
    previewable = True
    supports_select = True

    # ---------------------------------------------------------------- spec
    def normalize(self, spec, where=None):
        # One environment given as a dict is the short form of a list of one.
        if isinstance(spec, dict) and isinstance(spec.get("pip"), dict):
            spec = dict(spec, pip=[spec["pip"]])
        return super().normalize(spec, where)

    def check_spec(self, spec, where):
        envs = spec.get("pip") or []
        out = {"pip": [_pip.normalize_env(env, "%s.pip[%d]" % (where, i)) for i, env in enumerate(envs)], "apt": None}
        seen = set()
        for index, env in enumerate(out["pip"]):
            ident = env["virtualenv"] or env["executable"]
            if ident in seen:
                raise RollbackError("%s.pip[%d]: %s is listed twice" % (where, index, ident))
            seen.add(ident)
        if spec.get("apt") is not None:
            out["apt"] = _apt.normalize(spec["apt"], "%s.apt" % where)
        if not out["pip"] and not out["apt"]:
            raise RollbackError("%s: give pip environments, apt names or both" % where)
        return out

    def check_capturable(self, spec):
        for index, env in enumerate(spec["pip"]):
            _pip.resolve_python(env["virtualenv"], env["executable"],
                                where="components.packages.pip[%d].%s" % (index, "virtualenv" if env["virtualenv"]
                                                                          else "executable"))
            _pip.check_find_links(env, "components.packages.pip[%d].find_links" % index)
        if spec.get("apt"):
            _apt.check_capturable(spec["apt"])

    def scope(self, record, changes=None):
        """The spec of a safety capture: the same environments, keeping copies of what the restore will replace.
        `changes` is the plan restore() already made for this record (listing the environments again costs an
        interpreter start per environment); without it the plan is made here."""
        if changes is None:
            changes = _changes(record)
        replaced = [c for c in changes if c["action"] in ("change", "remove")]
        pip_specs = []
        for env in _envs(record):
            spec = {key: env.get(key) for key in ("virtualenv", "executable", "find_links", "index_url",
                                                  "prune_extra", "build_isolation", "use_pip_config")}
            label = _pip.env_label(env)
            spec["keep"] = [c["key"] for c in replaced if c.get("manager") == "pip" and c["env"] == label]
            pip_specs.append(spec)
        apt = _apt_record(record)
        apt_spec = None
        if apt:
            apt_spec = {"names": apt["names"], "hold": apt.get("hold", False), "prune_extra": apt.get("prune_extra", True),
                        "keep": [c["name"] for c in replaced if c.get("manager") == "apt"]}
            if apt.get("dpkg_lock_timeout") is not None:
                apt_spec["dpkg_lock_timeout"] = apt["dpkg_lock_timeout"]
        return {"pip": pip_specs, "apt": apt_spec}

    # ---------------------------------------------------------------- capture
    def capture(self, store, spec, point_id=None):
        record = {"pip": [], "apt": None}
        for index, env in enumerate(spec["pip"]):
            directory = None
            if env.get("keep") and point_id:
                directory = private_dir(os.path.join(store.point_dumps_dir(point_id), "pip-%d" % index))
            record["pip"].append(_pip.capture(env, env.get("keep"), directory))
        apt = spec.get("apt")
        if apt:
            record["apt"] = _apt.capture(apt)
            if apt.get("keep") and point_id:
                directory = private_dir(os.path.join(store.point_dumps_dir(point_id), "apt"))
                record["apt"]["debs"] = _apt.keep_debs(apt["keep"], directory)
        return record

    # ---------------------------------------------------------------- select (partial restores)
    def select(self, record, items):
        """Narrow a record to the named packages (a partial rollback such as `select: {packages: [black]}`):
        each pip environment and the apt set restore only the names they hold; the others are left out."""
        out = dict(record)
        wanted = {_pip.canonical(n): n for n in items}
        found = set()
        out["pip"] = []
        for env in record.get("pip") or []:
            mine = [key for key in wanted if key in env["packages"]]
            if mine:
                out["pip"].append(dict(env, only=mine))
                found.update(mine)
        apt = record.get("apt")
        out["apt"] = None
        if apt:
            mine = [n for n in items if n in apt["names"]]
            if mine:
                out["apt"] = dict(apt, only=mine)
                found.update(_pip.canonical(n) for n in mine)
        missing = [name for key, name in wanted.items() if key not in found]
        if missing:
            held = sorted({n for env in record.get("pip") or [] for n in env["packages"]} | set((apt or {}).get("names") or []))
            raise RollbackError("select.packages: %s not in this point's package snapshots (they hold %d packages: %s%s)"
                                % (", ".join(missing), len(held), ", ".join(held[:20]), " ..." if len(held) > 20 else ""),
                                missing=missing)
        return out

    def narrow(self, record, options):
        """Narrow a record for package_snapshot's restores: options {manager, python|virtualenv, only,
        prune_extra, find_links, index_url, build_isolation, hold}; keys left None keep the record's value."""
        if not options:
            return record
        manager = options.get("manager")
        out = dict(record)
        if manager == "pip":
            python = options.get("python")
            envs = [env for env in record.get("pip") or []
                    if python in (env.get("python"), env.get("virtualenv"), env.get("executable"))]
            if not envs:
                raise RollbackError("packages: the point holds no pip snapshot of %s (it has: %s)"
                                    % (python, ", ".join(_pip.env_label(e) for e in record.get("pip") or []) or "none"))
            env = dict(envs[0])
            for key in ("prune_extra", "find_links", "index_url", "build_isolation", "use_pip_config"):
                if options.get(key) is not None:
                    env[key] = options[key]
            env["only"] = _pip.check_only(env, options.get("only"))
            out["pip"], out["apt"] = [env], None
        elif manager == "apt":
            apt = record.get("apt")
            if not apt:
                raise RollbackError("packages: the point holds no apt snapshot")
            apt = dict(apt)
            for key in ("prune_extra", "hold", "dpkg_lock_timeout"):
                if options.get(key) is not None:
                    apt[key] = options[key]
            only = options.get("only")
            if only is not None:
                unknown = [n for n in only if n not in apt["names"]]
                if unknown:
                    raise RollbackError("only: %s not in the apt snapshot (it holds %s)"
                                        % (", ".join(unknown), ", ".join(apt["names"])))
                apt["only"] = list(only)
            out["pip"], out["apt"] = [], apt
        return out

    # ---------------------------------------------------------------- plan
    def plan(self, store, record, point_id=""):
        return _changes(record, preflight=True)

    # ---------------------------------------------------------------- apply
    def apply(self, store, record, changes):
        for env in _envs(record):
            mine = [c for c in changes if c.get("manager") == "pip" and c["env"] == _pip.env_label(env)]
            if mine:
                _pip.apply(env, mine)
        apt = _apt_record(record)
        mine = [c for c in changes if c.get("manager") == "apt"]
        if apt and mine:
            _apt.apply(apt, mine)

    def diff(self, store, record, changes):
        out = []
        for env in _envs(record):
            out += _pip.diff(env, [c for c in changes if c.get("manager") == "pip" and c["env"] == _pip.env_label(env)])
        out += _apt.diff([c for c in changes if c.get("manager") == "apt"])
        return out
