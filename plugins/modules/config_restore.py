#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_restore
short_description: Restore config files and trees from a restore point
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Restores the C(config) component of a point and nothing else (content, mode and owner, byte-exact).
  - Every file body is staged next to its destination and validated (when the point recorded a C(validate) command)
    before anything is swapped in; a failed validation changes nothing.
  - A safety point of the current config is captured first. Files that were not there at capture are removed, and
    are kept in that safety point. On any failure the safety point is re-applied.
options:
  point:
    description: The point to restore from, by id, label or C(known_good).
    type: str
    default: known_good
  paths:
    description: Restore only these captured roots (as they were listed at capture). Default all.
    type: list
    elements: path
  reason:
    description: Why; recorded in the journal.
    type: str
extends_documentation_fragment: [fleetops.rollback.store, fleetops.rollback.attributes.platform]
attributes:
  check_mode:
    support: full
    description: Returns the plan and changes nothing.
  diff_mode:
    support: full
    description: Shows each file that would change; values of secret-looking keys are redacted.
  idempotent:
    support: full
    description: A second restore of the same point finds nothing to change (C(changed=false)) and takes no safety point.
seealso:
  - module: fleetops.rollback.config_snapshot
  - module: fleetops.rollback.restore_point
"""

EXAMPLES = r"""
- name: Put the app's .env back as it was before the rotation
  fleetops.rollback.config_restore:
    point: before-cert-rotation
    paths: [/etc/app/.env]
"""

RETURN = r"""
point:
  description: The point restored from.
  returned: success
  type: dict
safety_point:
  description: The safety point taken before changing anything (null when nothing changed).
  returned: success
  type: str
plan:
  description: The C(config) changes (action, path, from, to).
  returned: success
  type: dict
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase
from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store


class ConfigRestoreModule(ModuleBase):
    argument_spec = dict(
        point=dict(type="str", default="known_good"),
        paths=dict(type="list", elements="path"),
        reason=dict(type="str"),
    )

    def run(self):
        store = Store(self.params["store_path"]).require()
        options = dict(names=["config"], select={"config": self.params["paths"]} if self.params["paths"] else None,
                       diff=self.diff_mode)
        if self.check_mode:
            return _points.restore(store, self.params["point"], check=True, **options)
        with _points.locked(store, self.params, "config_restore"):
            return _points.restore(store, self.params["point"], reason=self.params["reason"], **options)


def main():
    ConfigRestoreModule().main()


if __name__ == "__main__":
    main()
