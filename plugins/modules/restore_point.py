#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore_point
short_description: Capture, restore, mark and prune verified restore points on a host
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - A restore point is a named, verified capture of what a host runs (exact pip and apt package versions, config
    files and trees, the current release symlink, Docker image tags and the containers running them, a PostgreSQL
    database and its schema revision), kept in a store on the host (O(store_path)).
  - O(state=present) captures a new point, or with O(point) changes an existing point's status (for example to C(bad)).
  - O(state=restored) rolls the host back to a point in one call. It takes the store lock, plans the changes, captures
    a safety point of what is there now, applies the components in their fixed order (see O(components)) and
    verifies them. If any step fails, it re-applies the safety point and fails with
    exactly what was and was not restored.
  - O(state=absent) prunes the store to the newest O(keep) points, or removes the one point O(point). The known good
    point and the newest safety point are never removed.
options:
  state:
    description: What to do.
    type: str
    choices: [present, restored, absent]
    default: present
  point:
    description:
      - The point to restore, mark or remove, by id, by label (the newest point with it), C(known_good), or
        C(latest_safety) (the newest safety point, that is the state the host had just before its last rollback).
      - With O(state=restored) it defaults to C(known_good).
    type: str
  label:
    description:
      - A name for a new point, for example the release it captures.
      - Capturing with a label whose newest point already holds exactly the same state reuses that point
        (C(changed=false)), so a repeated snapshot is idempotent.
    type: str
  status:
    description:
      - With O(state=present) and no O(point), the status of the new point (C(candidate) by default).
      - With O(point), the status to set. A point marked C(bad) is never restored; marking the known good point bad
        moves the known good pointer back to the newest other known good point.
    type: str
    choices: [candidate, known_good, bad]
  only:
    description:
      - With O(state=restored), restore only these components of the point (default every component it holds).
      - A name the point does not hold is refused before anything changes.
    type: list
    elements: str
    choices: [migrations, database, packages, config, release, images, kubernetes]
  select:
    description:
      - With O(state=restored), a partial rollback inside components, a dict of component name to the list of items
        to restore; the other items of that component are left as they are.
      - "C(config) takes paths that the point captured as roots, for example V({config: [/etc/app/app.env]})."
      - "C(packages) takes package names, for example V({packages: [black]}); each pip environment and the apt set of
        the point restore only the names they hold, and a name that no snapshot holds fails before anything changes."
      - A component named here must be one that is restored (see O(only)).
    type: dict
  keep:
    description: With O(state=absent) and no O(point), how many of the newest points to keep.
    type: int
  reason:
    description: Why this restore is happening (the trigger, for example an incident id); recorded in the journal.
    type: str
  run_id:
    description:
      - The id of the rollback run this call is part of; recorded as C(run) in every journal entry the call writes
        (capture, restore, mark), so the journal of each host can be joined with the run's report.
      - The rollback playbooks pass the id of their run (the C(rollback_run) fact).
    type: str
  run_type:
    description:
      - The kind of rollback run this call is part of (for example C(immediate), C(standard), C(partial),
        C(failed_recovery), C(drill)); recorded as C(type) in every journal entry the call writes.
    type: str
  allow_foreign_point:
    description:
      - Restore a point that was captured on another machine. Each point records the machine-id of the host it was
        captured on; a store copied or moved to another host would otherwise put that host's state here, so such a
        point is refused by default.
      - Set it when this machine really replaces the one the store came from (a rebuilt host).
    type: bool
    default: false
  restart_commands:
    description:
      - With O(state=restored), commands (argv lists, never a shell) run in order after a restore that changed
        something, while the lock is still held, for example the restarts of the services that read the restored
        files. It saves a task per host on the hot path of a large fleet.
      - Nothing runs when nothing changed, nor in check mode (the result lists what would run).
      - A failing command fails the task; the restore itself stays in place (the files are right, the service is not).
      - Every command is checked before anything changes. Each must be a non-empty list of strings (a scalar such as
        V(5) or a string such as V(systemctl restart app) is refused, never coerced) and its program must exist
        (an executable absolute path, or a name on E(PATH)).
    type: raw
extends_documentation_fragment:
  - fleetops.rollback.store
  - fleetops.rollback.components
  - fleetops.rollback.attributes.platform
attributes:
  check_mode:
    support: full
    description:
      - Returns the plan (what would change, from and to) and changes nothing, not even the lock.
      - A labelled capture reads the state (except a database, whose points are always new) to say whether the real
        run would reuse the newest point of that label.
  diff_mode:
    support: full
    description: Shows each file and link that would change; values of secret-looking keys are redacted.
  idempotent:
    support: partial
    description:
      - O(state=restored) of a point the host already matches reports C(changed=false) and takes no safety point.
      - O(state=present) with O(label) reuses the newest point of that label when it holds the same state
        (C(changed=false)); without O(label) every capture is a new point.
      - Marking a point with the status it has, and pruning to O(keep) points twice, change nothing the second time.
notes:
  - The store holds copies of config files, secrets included. It is created 0700 and its files 0600.
  - A directory restore also removes files that were not there at capture; they are kept in the safety point first.
seealso:
  - module: fleetops.rollback.restore_point_info
  - module: fleetops.rollback.health_gate
  - module: fleetops.rollback.image_retag
"""

EXAMPLES = r"""
- name: Capture the healthy release and mark it known good
  fleetops.rollback.restore_point:
    state: present
    label: release-42
    status: known_good
    components:
      config:
        paths:
          - /etc/app
          - path: /etc/nginx/nginx.conf
            validate: nginx -t -c %s
      release:
        path: /srv/app/current
      images:
        refs: [app_backend:latest, app_frontend:latest]
        containers: by_image
      packages:
        pip:
          - virtualenv: /srv/app/venv
            find_links: [/srv/wheelhouse]
        apt:
          names: [nginx, libssl3]

- name: Roll back to the known good point (one call; check mode shows the plan)
  fleetops.rollback.restore_point:
    state: restored
    reason: "INC-1234 error rate"
  register: rollback

- name: Restore only the config of a named point
  fleetops.rollback.restore_point:
    state: restored
    point: release-41
    only: [config]

- name: Never pick the abandoned point again
  fleetops.rollback.restore_point:
    point: release-43
    status: bad

- name: Keep the ten newest points
  fleetops.rollback.restore_point:
    state: absent
    keep: 10
"""

RETURN = r"""
point:
  description: The point captured, restored, marked or resolved.
  returned: success
  type: dict
  sample: {id: 20261122T031500.123456Z-a1b2, label: release-42, status: known_good, components: [config, release]}
safety_point:
  description: With O(state=restored), the id of the safety point taken before changing anything (null when nothing changed).
  returned: state=restored
  type: str
plan:
  description:
    - With O(state=restored), per component, whether it changes and each change with C(action), C(path), C(from) and
      C(to) (file hashes, modes, owners, link targets; never file contents). After a real run, C(seconds) per component.
  returned: state=restored
  type: dict
  sample: {release: {changed: true, changes: [{action: switch, path: /srv/app/current, from: {target: releases/2}, to: {target: releases/1}}]}}
restarted:
  description: With O(restart_commands), each command run (first three argv items), its exit code and seconds.
  returned: state=restored and something changed
  type: list
  elements: dict
interrupted_rollback:
  description:
    - With O(state=restored), the record of an earlier rollback on this host that was killed midway (its
      C(safety_point) is the state before that rollback, its C(target), C(started_at) and C(components)).
    - This run then finishes the job; its own safety point (taken over the mixed state) is marked C(over_interrupted),
      and C(latest_safety) keeps naming the interrupted run's safety point.
  returned: when such a record was found
  type: dict
state_before_rollback:
  description: The safety point that holds the host's state before the interrupted rollback this run finished.
  returned: when an interrupted rollback was found and something changed
  type: str
journal_error:
  description: Why the journal entry of a run that otherwise succeeded could not be written (a full or read-only store).
  returned: when the journal could not be written
  type: str
seconds:
  description: Time the restore took on the host.
  returned: state=restored and not check mode
  type: float
removed:
  description: With O(state=absent), the ids of the points removed (or that would be).
  returned: state=absent
  type: list
  elements: str
kept:
  description: With O(state=absent), the ids of the points kept.
  returned: state=absent
  type: list
  elements: str
failed_component:
  description: On a failed restore, the component that failed (or C(verify)).
  returned: failure
  type: str
component_state:
  description: On a failed restore, the state each component was left in.
  returned: failure
  type: dict
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError, hide_secrets
from ansible_collections.fleetops.rollback.plugins.module_utils._components import ORDER, Components, components_spec, runtime_spec
from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store


class RestorePointModule(ModuleBase):
    argument_spec = dict(
        state=dict(type="str", choices=["present", "restored", "absent"], default="present"),
        point=dict(type="str"),
        label=dict(type="str"),
        status=dict(type="str", choices=["candidate", "known_good", "bad"]),
        components=components_spec(),
        only=dict(type="list", elements="str", choices=list(ORDER)),
        keep=dict(type="int"),
        reason=dict(type="str"),
        restart_commands=dict(type="raw"),
        select=dict(type="dict"),
        run_id=dict(type="str"),
        run_type=dict(type="str"),
        allow_foreign_point=dict(type="bool", default=False),
        **runtime_spec()
    )

    def audit(self):
        """The run this call belongs to, for the journal."""
        fields = {"run": self.params["run_id"], "type": self.params["run_type"]}
        return {key: value for key, value in fields.items() if value}

    def run(self):
        hide_secrets(self.module, self.params["components"])
        # This call's components, with its runtime values (passwords): nothing is kept beyond the call.
        parts = Components(runtime={key: self.params[key] for key in runtime_spec()})
        store = Store(self.params["store_path"])
        state = self.params["state"]
        if (state == "restored" or self.params["point"]) and state != "absent":
            store.require()
        if state == "present":
            return self.present(store, parts)
        if self.params["components"]:
            raise RollbackError("components: is what state=present captures; with state=%s choose components with only, "
                                "for example only: [config]" % state)
        if state == "restored":
            commands = _points.check_commands(self.params["restart_commands"])
            options = dict(names=self.params["only"], select=self.params["select"], diff=self.diff_mode,
                           allow_foreign=self.params["allow_foreign_point"], restart_commands=commands, parts=parts)
            if self.check_mode:
                return _points.restore(store, self.params["point"], check=True, **options)
            with _points.locked(store, self.params, "restore"):
                return _points.restore(store, self.params["point"], reason=self.params["reason"], audit=self.audit(),
                                       **options)
        if self.params["keep"] is None and not self.params["point"]:
            raise RollbackError("state=absent needs keep (how many newest points to keep) or point (the one to remove)")
        if not store.exists():
            return {"changed": False, "removed": [], "kept": []}
        if self.check_mode:
            return _points.prune(store, self.params["keep"], self.params["point"], check=True)
        with _points.locked(store, self.params, "prune"):
            return _points.prune(store, self.params["keep"], self.params["point"])

    def present(self, store, parts):
        if self.params["only"]:
            raise RollbackError("only: chooses what state=restored restores; a capture takes what components lists")
        if self.params["point"]:
            if not self.params["status"]:
                raise RollbackError("point=%s given without status: say which status to set (candidate, known_good, bad)"
                                    % self.params["point"])
            if self.check_mode:
                return _points.mark(store, self.params["point"], self.params["status"], check=True)
            with _points.locked(store, self.params, "mark"):
                return _points.mark(store, self.params["point"], self.params["status"], audit=self.audit())
        status = self.params["status"] or "candidate"
        if status == "bad":
            raise RollbackError("status: a new point cannot be captured as bad; capture it as candidate or known_good")
        components = _points.normalize_components(self.params["components"], parts)
        _points.preflight(components, parts)
        if self.check_mode:
            return _points.capture(store, components, self.params["label"], status, check=True, parts=parts)
        with _points.locked(store, self.params, "capture", create=True):
            return _points.capture(store, components, self.params["label"], status, audit=self.audit(), parts=parts)


def main():
    RestorePointModule().main()


if __name__ == "__main__":
    main()
