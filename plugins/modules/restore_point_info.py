#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore_point_info
short_description: List and inspect the restore points on a host
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Lists the points in a store, oldest first, with the known good pointer and any unreadable manifests.
  - With O(point), returns that point's whole manifest (hashes, modes, owners, link targets; never file contents) and,
    with O(verify=true), checks every stored file body against its sha256.
options:
  point:
    description: A point id, label (newest with it) or C(known_good) to inspect.
    type: str
  verify:
    description: Check the stored bodies of O(point) against their sha256.
    type: bool
    default: false
  journal:
    description: How many of the newest journal events to return (C(0) for none).
    type: int
    default: 0
extends_documentation_fragment: [fleetops.rollback.store, fleetops.rollback.attributes.platform]
attributes:
  check_mode:
    support: full
    description: Read only; runs the same in check mode.
  diff_mode:
    support: none
    description: Read only; there is nothing to show.
  idempotent:
    support: full
    description: Read only; always C(changed=false).
seealso:
  - module: fleetops.rollback.restore_point
"""

EXAMPLES = r"""
- name: List the points
  fleetops.rollback.restore_point_info:
  register: points

- name: Check the known good point is intact before an incident needs it
  fleetops.rollback.restore_point_info:
    point: known_good
    verify: true
"""

RETURN = r"""
points:
  description: Every readable point, oldest first (id, label, status, created_at, kind, components).
  returned: always
  type: list
  elements: dict
known_good:
  description: The id the known good pointer names, or null.
  returned: always
  type: str
unreadable:
  description: Points whose manifest is missing or fails its sha256 check, with the reason.
  returned: always
  type: list
  elements: dict
point:
  description:
    - The whole manifest of O(point). Config file bodies are named by the first 12 hex digits of their sha256 (as
      in plans and diffs), never the full hash; a database dump keeps its full sha256.
  returned: when O(point) is given
  type: dict
verified:
  description: With O(verify), whether every body of O(point) is present and matches its sha256.
  returned: when O(verify) is true
  type: bool
corrupt:
  description: With O(verify), the blobs that are missing or corrupt, by the first 12 hex digits of their sha256.
  returned: when O(verify) is true
  type: list
  elements: str
journal:
  description: The newest O(journal) audit events. Lines that are not readable events are skipped (see
    RV(journal_damaged_lines)).
  returned: when O(journal) > 0
  type: list
  elements: dict
journal_damaged_lines:
  description: Line numbers of the journal that could not be read (torn by a crash or edited); they were skipped.
  returned: when O(journal) > 0 and some line is damaged
  type: list
  elements: int
interrupted_rollback:
  description: The record of a rollback that was killed while it changed the host, or null (see
    M(fleetops.rollback.restore_point)'s RV(fleetops.rollback.restore_point#module:interrupted_rollback)).
  returned: always
  type: dict
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._store.points import summary
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import short_digest, shorten_digests
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store, blob_refs


class RestorePointInfoModule(ModuleBase):
    argument_spec = dict(
        point=dict(type="str"),
        verify=dict(type="bool", default=False),
        journal=dict(type="int", default=0),
    )

    def run(self):
        store = Store(self.params["store_path"])
        exists = store.exists()
        if self.params["point"] and not exists:
            store.require()
        good, broken = store.points() if exists else ([], [])
        result = {"changed": False, "points": [summary(m) for m in good], "unreadable": broken,
                  "known_good": store.known_good_id() if exists else None,
                  "interrupted_rollback": store.in_progress() if exists else None}
        if self.params["point"]:
            manifest = store.resolve(self.params["point"])
            # File bodies by a prefix of their hash: the full sha256 of a short secret file would let anyone who reads
            # the result confirm guesses of it offline. A database dump keeps its full sha256 (pg_restore checks it).
            shown = dict(manifest, fingerprint=short_digest(manifest.get("fingerprint")))
            shown["components"] = dict(manifest["components"])
            if "config" in shown["components"]:
                shown["components"]["config"] = shorten_digests(manifest["components"]["config"], keys=("blob",))
            result["point"] = shown
            if self.params["verify"]:
                corrupt = sorted(sha for sha in blob_refs(manifest["components"]) if not store.blob_ok(sha))
                result.update(verified=not corrupt, corrupt=[short_digest(sha) for sha in corrupt])
        if self.params["journal"] < 0:
            raise RollbackError("journal: %d is not a number of events; give 0 or more" % self.params["journal"])
        if self.params["journal"] > 0:
            damaged = []
            result["journal"] = store.read_journal(self.params["journal"], damaged=damaged)
            if damaged:
                # Torn by a crash or edited by hand: said, never fatal, so the rest of the history stays readable.
                result["journal_damaged_lines"] = damaged
                self.module.warn("the journal %s has %d unreadable line(s) (line %s); they were skipped"
                                 % (store.journal_path, len(damaged), ", ".join(str(n) for n in damaged[:10])))
        return result


def main():
    RestorePointInfoModule().main()


if __name__ == "__main__":
    main()
