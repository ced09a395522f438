#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_snapshot
short_description: Capture config files and trees into a restore point
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - The C(config) component of M(fleetops.rollback.restore_point) on its own, for config-only changes such as a
    C(.env) edit, a certificate renewal or an nginx change.
  - Captures each path byte-exact with its mode and owner; directory trees are captured whole.
options:
  paths:
    description:
      - Absolute files or directories, or V({path, validate}) where C(validate) is a command with C(%s) that
        M(fleetops.rollback.config_restore) runs on each candidate file before it is swapped in.
    type: list
    elements: raw
    required: true
  label:
    description: A name for the point. A label whose newest point holds the same content is reused (C(changed=false)).
    type: str
  status:
    description: Status of the new point.
    type: str
    choices: [candidate, known_good]
    default: candidate
extends_documentation_fragment: [fleetops.rollback.store, fleetops.rollback.attributes.platform]
attributes:
  check_mode:
    support: full
    description: Checks every path can be captured and writes nothing.
    details: Check mode reports C(changed=true); it does not compare with an existing point of the same O(label).
  diff_mode:
    support: none
    description: A capture changes nothing on the host that a diff could show; the result names the point.
  idempotent:
    support: partial
    description:
      - With O(label), a capture whose content matches the newest point of that label reuses it (C(changed=false)).
      - Without O(label), every run captures a new point.
seealso:
  - module: fleetops.rollback.config_restore
  - module: fleetops.rollback.restore_point
"""

EXAMPLES = r"""
- name: Snapshot the app config and TLS material before rotating certificates
  fleetops.rollback.config_snapshot:
    label: before-cert-rotation
    paths:
      - /etc/app/.env
      - path: /etc/ssl/app/cert.pem
        validate: openssl x509 -noout -in %s
"""

RETURN = r"""
point:
  description: The point captured or reused.
  returned: success
  type: dict
  sample: {id: 20261122T031500.123456Z-a1b2, label: before-cert-rotation, status: candidate, components: [config]}
reused:
  description: Whether an existing point with the same label and content was reused.
  returned: success and not check mode
  type: bool
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase
from ansible_collections.fleetops.rollback.plugins.module_utils._components import config as config_declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import argument_spec as spec_of
from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store


class ConfigSnapshotModule(ModuleBase):
    argument_spec = dict(
        # The config component's own option: a value is accepted or refused here as it is in a restore point.
        paths=spec_of(config_declaration.OPTIONS)["paths"],
        label=dict(type="str"),
        status=dict(type="str", choices=["candidate", "known_good"], default="candidate"),
    )

    def run(self):
        store = Store(self.params["store_path"])
        components = _points.normalize_components({"config": {"paths": self.params["paths"]}})
        _points.preflight(components)
        if self.check_mode:
            return _points.capture(store, components, self.params["label"], self.params["status"], check=True)
        with _points.locked(store, self.params, "config_snapshot", create=True):
            return _points.capture(store, components, self.params["label"], self.params["status"])


def main():
    ConfigSnapshotModule().main()


if __name__ == "__main__":
    main()
