#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: package_snapshot
short_description: Snapshot exact pip or apt package versions and restore them exactly
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - The C(packages) component of M(fleetops.rollback.restore_point) on its own, for one pip environment
    (O(manager=pip)) or a set of Debian packages (O(manager=apt)).
  - O(state=present) records the exact installed versions, to the file O(dest) (mode 0600) or into a restore point.
    For pip, editable installs, VCS checkouts (with their commit) and direct URL installs are recorded as such, read
    from each distribution's C(direct_url.json) by the target interpreter itself. For apt, versions and hold marks
    come from C(dpkg-query).
  - O(state=restored) reads a snapshot from O(src) or from a restore point (O(point)) and makes the environment match
    it. pip is called once for the whole set with exact pins, C(--no-deps) and C(--force-reinstall), from
    O(find_links) and/or O(index_url); with O(prune_extra), extras are removed with one C(pip uninstall).
    apt runs one C(apt-get install pkg=version ... --allow-downgrades) (argv list, C(DEBIAN_FRONTEND=noninteractive)).
  - A wanted version that no source offers fails, naming the package and the version, and nothing is changed.
  - Before changing anything, a copy of every installed version the restore replaces or removes is kept (pip
    distributions repacked into wheels from their own RECORD, .deb files from the apt cache, a source or
    dpkg-repack). If pip or apt fails midway, those copies are installed again offline and the result says whether
    the environment is back exactly as it was; if a copy cannot be kept, nothing is touched.
  - A restore from a point goes through the restore point machinery (store lock, safety point, journal).
options:
  manager:
    description: Which package manager.
    type: str
    choices: [pip, apt]
    required: true
  state:
    description: V(present) captures a snapshot; V(restored) makes the environment match one.
    type: str
    choices: [present, restored]
    default: present
  virtualenv:
    description: With O(manager=pip), the virtualenv directory (its C(bin/python) is used). Give this or O(executable).
    type: path
  executable:
    description:
      - With O(manager=pip), the Python interpreter, or a pip script whose C(#!) line names it, for an environment
        that is not a virtualenv. The snapshot covers every distribution that interpreter sees.
    type: path
  find_links:
    description:
      - With O(manager=pip), wheelhouse directories (absolute paths) or URLs the restore installs from.
      - Without O(index_url), no index is used at all (C(--no-index)).
      - Given with O(state=present), they are recorded in the snapshot and used by later restores that give none.
    type: list
    elements: str
  index_url:
    description:
      - With O(manager=pip), the package index a restore installs from. Credentials in the URL are refused; put them in
        C(~/.netrc) or a keyring.
    type: str
  use_pip_config:
    description:
      - With O(manager=pip), let pip read its configuration files and C(PIP_*) variables. By default they are ignored,
        so that a global constraint or extra index cannot change what an exact restore installs.
    type: bool
    default: false
  build_isolation:
    description: With O(manager=pip), build editable and VCS entries with build isolation (pip's default).
    type: bool
    default: true
  names:
    description:
      - With O(manager=apt), the Debian packages to snapshot (required for O(state=present) and for a point).
      - With O(state=restored) and O(src), restore only these of the snapshot.
    type: list
    elements: str
  hold:
    description: With O(manager=apt), C(apt-mark hold) the restored packages afterwards.
    type: bool
    default: false
  dpkg_lock_timeout:
    description:
      - With O(manager=apt), seconds to wait for another apt, dpkg or unattended-upgrades run to release the dpkg lock
        before failing (0 to 3600). The failure names the process holding the lock and changes nothing.
      - Default 300. Given with O(state=present), it is recorded in the snapshot and used by its restores.
    type: int
  dest:
    description: With O(state=present), write the snapshot to this file (JSON, mode 0600) instead of a restore point.
    type: path
  src:
    description:
      - With O(state=restored), read the snapshot from this file instead of a restore point.
      - A file written by O(dest), or for pip the output of C(pip freeze) (the runbooks' C(requirements-backup.txt);
        C(pip), C(setuptools) and C(wheel), which C(pip freeze) omits, are then never removed), or for apt
        C(name=version) lines.
    type: path
  point:
    description:
      - With O(state=restored) and no O(src), the restore point to restore from (id, label or C(known_good)).
    type: str
    default: known_good
  label:
    description: With O(state=present) and no O(dest), the label of the new point (a repeated capture reuses it).
    type: str
  status:
    description: With O(state=present) and no O(dest), the status of the new point.
    type: str
    choices: [candidate, known_good]
    default: candidate
  only:
    description: With O(state=restored), restore only these packages (a partial rollback); everything else is untouched.
    type: list
    elements: str
  prune_extra:
    description:
      - With O(state=restored), also remove packages the snapshot does not have (for apt, named packages that were not
        installed at capture). C(pip) itself is never removed or changed.
      - Points captured by M(fleetops.rollback.restore_point) prune by default; this option applies to this module's
        restores only.
    type: bool
    default: false
  pins_file:
    description:
      - With O(manager=pip) and O(state=restored), a C(requirements.txt) or C(pyproject.toml) whose exact pins of the
        restored packages are rewritten to the restored versions. Only the version text of those pins changes; every
        other byte stays. Ranges are left alone. A pin carrying C(--hash) is refused before anything changes.
    type: path
  reason:
    description: Why; recorded in the journal of a restore from a point.
    type: str
extends_documentation_fragment: [fleetops.rollback.store, fleetops.rollback.attributes.platform]
attributes:
  check_mode:
    support: full
    description:
      - Returns the changes (added, removed, changed from and to) and changes nothing. For pip it also asks pip,
        with C(--dry-run), whether every wanted version can be installed from the source, so a missing version fails
        in check mode as it would for real.
  diff_mode:
    support: full
    description: Shows the packages that would change as name==version lines, and the pins file before and after.
  idempotent:
    support: partial
    description:
      - A restore of an environment that already matches reports C(changed=false); so does a repeated O(dest) and a
        capture with a O(label) whose newest point holds the same versions.
      - A capture into the store without O(label) is a new point every time.
notes:
  - pip resolves every requirement before it installs anything, so a version that cannot be found, or a download or
    build that fails, leaves the environment untouched; the module re-lists it to prove that.
  - O(src) and O(dest) restores do not take the store lock; restores from a point do.
  - For apt the package lists are used as they are (no C(apt-get update)). A restore that would remove or change
    packages outside O(names) is refused.
  - An editable install is restored as an editable install of the same source tree; the tree's code is not part of
    the snapshot.
seealso:
  - module: fleetops.rollback.restore_point
"""

EXAMPLES = r"""
- name: Record the app's virtualenv after a healthy deploy
  fleetops.rollback.package_snapshot:
    manager: pip
    virtualenv: /srv/app/venv
    find_links: [/srv/wheelhouse]
    dest: /var/backups/app-venv.json

- name: Roll the virtualenv back exactly (one pip call), and fix the pins in pyproject.toml
  fleetops.rollback.package_snapshot:
    manager: pip
    state: restored
    virtualenv: /srv/app/venv
    src: /var/backups/app-venv.json
    prune_extra: true
    pins_file: /srv/app/pyproject.toml

- name: Roll back one package only (black 24 broke the formatting)
  fleetops.rollback.package_snapshot:
    manager: pip
    state: restored
    virtualenv: /srv/app/venv
    src: /var/backups/app-venv.json
    only: [black]

- name: Restore from the runbook's pip freeze backup
  fleetops.rollback.package_snapshot:
    manager: pip
    state: restored
    virtualenv: /srv/app/venv
    src: /srv/app/requirements-backup.txt
    index_url: https://pypi.internal/simple

- name: Pin nginx and openssl into a known good restore point
  fleetops.rollback.package_snapshot:
    manager: apt
    names: [nginx, libssl3]
    label: release-42-packages
    status: known_good

- name: Put them back and hold them there
  fleetops.rollback.package_snapshot:
    manager: apt
    state: restored
    names: [nginx, libssl3]
    point: release-42-packages
    hold: true
"""

RETURN = r"""
packages:
  description: What the restore changes (or would in check mode).
  returned: state=restored
  type: dict
  sample: {added: [{name: rich, version: "13.7.0"}], removed: [], changed: [{name: black, from: "24.1.0", to: "23.12.1"}]}
changes:
  description: Every change with C(action) (install, change, remove, hold, unhold), C(name), C(from) and C(to).
  returned: state=restored
  type: list
  elements: dict
pins_file:
  description: With O(pins_file), its path, whether it changes, and each pin rewritten (line, name, from, to).
  returned: state=restored and pins_file given
  type: dict
point:
  description: The point captured or restored from.
  returned: when a restore point is used
  type: dict
safety_point:
  description: With a point restore, the safety point taken before changing anything (null when nothing changed).
  returned: state=restored without src
  type: str
snapshot:
  description: With O(state=present), the number of packages recorded and the environment.
  returned: state=present
  type: dict
  sample: {manager: pip, environment: /srv/app/venv, packages: 48}
seconds:
  description: Time the restore took.
  returned: state=restored and not check mode
  type: float
reverted:
  description: On a failure after pip or apt had started changing things, whether the environment was put back exactly.
  returned: failure
  type: bool
midway:
  description: On such a failure, the packages that had changed before it was put back.
  returned: failure
  type: list
  elements: str
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError, url_credentials
from ansible_collections.fleetops.rollback.plugins.module_utils._components import packages as packages_declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import argument_spec as spec_of
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import package_snapshot as snapshot
from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store


PIP_SPEC = spec_of(packages_declaration.PIP_ENVIRONMENT_OPTIONS)
APT_SPEC = spec_of(packages_declaration.APT_OPTIONS)


class PackageSnapshotModule(ModuleBase):
    argument_spec = dict(
        manager=dict(type="str", choices=["pip", "apt"], required=True),
        state=dict(type="str", choices=["present", "restored"], default="present"),
        # The packages component's own options: a value is accepted or refused here as it is in a restore point.
        **dict({key: PIP_SPEC[key] for key in ("virtualenv", "executable", "find_links", "index_url", "use_pip_config",
                                               "build_isolation")},
               names=dict(APT_SPEC["names"], required=False), hold=APT_SPEC["hold"],
               dpkg_lock_timeout=dict(APT_SPEC["dpkg_lock_timeout"], default=None)),
        dest=dict(type="path"),
        src=dict(type="path"),
        point=dict(type="str", default="known_good"),
        label=dict(type="str"),
        status=dict(type="str", choices=["candidate", "known_good"], default="candidate"),
        only=dict(type="list", elements="str"),
        prune_extra=dict(type="bool", default=False),
        pins_file=dict(type="path"),
        reason=dict(type="str"),
    )
    module_kwargs = dict(mutually_exclusive=[("virtualenv", "executable"), ("dest", "src")])

    def run(self):
        params = self.params
        # Credentials written into index_url or find_links are refused; they must not come back in the echoed
        # module arguments of that failure either.
        self.module.no_log_values.update(url_credentials([params["index_url"], params["find_links"]]))
        snapshot.check_options(params)
        if params["state"] == "present":
            return self.present(params)
        spec = snapshot.component_spec(params) if params["manager"] == "pip" else {"pip": [], "apt": None}
        if params["label"]:
            raise RollbackError("label: is for state=present")
        if params["src"]:
            return snapshot.restore_from_file(params, spec, check=self.check_mode, diff=self.diff_mode)
        if params["manager"] == "apt" and params["names"] and params["only"] is None:
            params = dict(params, only=params["names"])  # a point's apt names narrowed to these
        store = Store(params["store_path"])
        if not store.exists():
            raise RollbackError("store_path: there is no restore point store at %s; capture a point first, give src, or "
                                "give the right store_path" % store.path)
        if self.check_mode:
            return snapshot.restore_from_point(store, params, spec, check=True, diff=self.diff_mode)
        with _points.locked(store, params, "package_snapshot"):
            return snapshot.restore_from_point(store, params, spec, diff=self.diff_mode)

    def present(self, params):
        for key in ("src", "only", "pins_file"):
            if params[key]:
                raise RollbackError("%s: is for state=restored" % key)
        spec = snapshot.component_spec(params)
        _points.preflight({"packages": spec})
        if params["dest"]:
            record = snapshot.component().capture(None, spec)
            changed = snapshot.write_snapshot(params["dest"], record, params["manager"], check=self.check_mode)
            return {"changed": changed, "dest": params["dest"], "snapshot": self.described(record)}
        store = Store(params["store_path"])
        if self.check_mode:
            result = _points.capture(store, {"packages": spec}, params["label"], params["status"], check=True)
        else:
            with _points.locked(store, params, "package_snapshot", create=True):
                result = _points.capture(store, {"packages": spec}, params["label"], params["status"])
        result["snapshot"] = {"manager": params["manager"]}
        return result

    def described(self, record):
        if self.params["manager"] == "pip":
            env = record["pip"][0]
            return {"manager": "pip", "environment": env.get("virtualenv") or env["python"],
                    "python": env["python"], "packages": len(env["packages"])}
        return {"manager": "apt", "packages": len(record["apt"]["names"]),
                "versions": {n: p["version"] for n, p in record["apt"]["packages"].items()}}


def main():
    PackageSnapshotModule().main()


if __name__ == "__main__":
    main()
