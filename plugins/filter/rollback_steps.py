# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: rollback_steps
short_description: The optional steps of the rollback role that a host needs
version_added: 0.2.0
author:
  - fleetops maintainers (@fleetops)
description:
  - Given a host's rollback variables, returns the optional steps of the P(fleetops.rollback.rollback#role) role that
    the host needs, in the order they run. It is the one definition of those steps' conditions. The role asks it for
    each host's C(when) and, in fleet mode (C(tasks_from=fleet)), for the decision made once for a whole batch.
  - V(drain) - the drain hook O(_input.rollback_drain_tasks) runs before the restore.
  - V(stop) - the services stop in reverse declared order before the restore (O(_input.rollback_service_mode) is
    V(stop_start); not in check mode).
  - V(inline_restart) - the restore call restarts the services itself (mode V(restart),
    O(_input.rollback_restart_services), and every selected service is command-managed with a C(restart) argv).
  - V(start) - the services start in declared order after the restore, also a failed one (mode V(stop_start); not in
    check mode).
  - V(restart) - the P(fleetops.rollback.services#role) role restarts the services after a restore that changed
    something (mode V(restart), O(_input.rollback_restart_services), a service selected, no V(inline_restart); not in
    check mode).
  - V(undrain) - the undrain hook O(_input.rollback_undrain_tasks) runs after the health gate.
  - Given a list of hosts' variables (for example the C(hostvars) of a batch), returns the union of their steps,
    in the same order. A step that no host of the list needs is one that the batch can skip.
  - A name in O(_input.rollback_services) that is not in O(_input.services_list) is left out here; the role fails
    the host on it at the restore (see the P(fleetops.rollback.service_selection#filter) filter).
positional: _input
options:
  _input:
    description:
      - One host's variables, or a list of them. Each may be any mapping, such as C(hostvars[host]); a variable it
        does not hold is taken from O(defaults), then from the rollback role's default.
    type: raw
    required: true
    suboptions:
      rollback_service_mode:
        description: V(restart) or V(stop_start), as in the rollback role. Any value but V(stop_start) restarts.
        type: str
        default: restart
      rollback_restart_services:
        description: Restart the services after a restore that changed something (mode V(restart)).
        type: bool
        default: true
      rollback_services:
        description: Names from O(_input.services_list) to act on; empty or null acts on all of them.
        type: list
        elements: str
        default: []
      rollback_drain_tasks:
        description: The drain hook's task file; empty or null for none.
        type: str
        default: ""
      rollback_undrain_tasks:
        description: The undrain hook's task file; empty or null for none.
        type: str
        default: ""
      services_list:
        description: The host's services, as for the P(fleetops.rollback.services#role) role (C(manager) defaults to V(command)).
        type: list
        elements: dict
        default: []
  defaults:
    description:
      - The values for the variables that a host of O(_input) does not hold. In fleet mode the role passes the
        values the deciding host sees (role defaults, play and role variables).
    type: dict
  check_mode:
    description:
      - The run is in check mode (C(ansible_check_mode)); V(stop), V(start) and V(restart) are then not needed
        (the restore only plans).
    type: bool
    default: false
  restore:
    description:
      - The registered result of the host's restore, once it ran. V(restart) is then needed only when the restore
        changed something and did not fail. Without it (before the restore), V(restart) means the host restarts
        if its restore changes something.
    type: dict
"""

EXAMPLES = r"""
- name: The steps of this host
  ansible.builtin.debug:
    msg: >-
      {{ {'rollback_service_mode': 'stop_start', 'rollback_drain_tasks': 'drain.yml',
          'services_list': [{'name': 'app', 'start': ['appctl', 'start'], 'stop': ['appctl', 'stop']}]}
         | fleetops.rollback.rollback_steps }}
  # ['drain', 'stop', 'start']

- name: Restart through the services role only when the restore changed something
  ansible.builtin.include_role:
    name: fleetops.rollback.services
  when: "'restart' in (my_vars | fleetops.rollback.rollback_steps(check_mode=ansible_check_mode, restore=restored))"

- name: The steps that any host of the batch needs (the others default to what this host sees)
  ansible.builtin.set_fact:
    batch_steps: >-
      {{ ansible_play_batch | map('extract', hostvars) | list
         | fleetops.rollback.rollback_steps(defaults=my_vars, check_mode=ansible_check_mode) }}
"""

RETURN = r"""
_value:
  description:
    - The steps needed, in the order they run, each at most once; a subset of V(drain), V(stop), V(inline_restart),
      V(start), V(restart), V(undrain).
  type: list
  elements: str
  sample: [drain, inline_restart, undrain]
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_bool
from ansible.plugins.test.core import changed, failed

from ansible_collections.fleetops.rollback.plugins.filter.service_selection import is_list, select_services

# Every step, in the order the rollback role runs them.
STEPS = ("drain", "stop", "inline_restart", "start", "restart", "undrain")
# The rollback role's defaults, for a variable that neither the host nor `defaults` holds.
FALLBACK = {
    "rollback_service_mode": "restart",
    "rollback_restart_services": True,
    "rollback_services": [],
    "rollback_drain_tasks": "",
    "rollback_undrain_tasks": "",
    "services_list": [],
}


def host_steps(host, defaults=None, check_mode=False, restore=None):
    """The steps one host needs (a list in STEPS order)."""
    if not isinstance(host, Mapping):
        raise AnsibleFilterError("rollback_steps: a host's variables must be a dictionary, not %r" % (host,))

    def value(key):
        if key in host:
            return host[key]
        if defaults is not None and key in defaults:
            return defaults[key]
        return FALLBACK[key]

    stop_start = value("rollback_service_mode") == "stop_start"
    live = not check_mode
    restart = not stop_start and to_bool(value("rollback_restart_services"))
    services = select_services(value("services_list"), value("rollback_services") or None)
    inline = restart and bool(services) and all(
        service["manager"] == "command" and "restart" in service for service in services)
    # Without a restore result the restore may still change something: a restart is then possible, so needed.
    restored = restore is None or (changed(restore) and not failed(restore))
    needed = {
        "drain": bool(value("rollback_drain_tasks")),
        "stop": stop_start and live,
        "inline_restart": inline,
        "start": stop_start and live,
        "restart": restart and bool(services) and not inline and live and restored,
        "undrain": bool(value("rollback_undrain_tasks")),
    }
    return [step for step in STEPS if needed[step]]


def rollback_steps(hosts, defaults=None, check_mode=False, restore=None):
    """One host's variables -> its steps; a list of hosts' variables -> the union of their steps."""
    if defaults is not None and not isinstance(defaults, Mapping):
        raise AnsibleFilterError("rollback_steps: defaults must be a dictionary, not %r" % (defaults,))
    if restore is not None and not isinstance(restore, Mapping):
        raise AnsibleFilterError("rollback_steps: restore must be a registered result (a dictionary), not %r" % (restore,))
    check_mode = to_bool(check_mode)
    if isinstance(hosts, Mapping):
        return host_steps(hosts, defaults, check_mode, restore)
    if is_list(hosts):
        union = set()
        for host in hosts:
            union.update(host_steps(host, defaults, check_mode, restore))
        return [step for step in STEPS if step in union]
    raise AnsibleFilterError("rollback_steps: expects a host's variables or a list of them, not %r" % (hosts,))


class FilterModule:
    """fleetops.rollback filters."""

    def filters(self):
        return {"rollback_steps": rollback_steps}
