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
  - Given a host's rollback variables, returns the optional steps of the C(fleetops.rollback.rollback) role that the
    host needs, in the order they run. It is the one definition of those steps' conditions; the role uses it for
    each host's C(when) and, in fleet mode (C(tasks_from=fleet)), for the decision made once for a whole batch.
  - "The steps: V(drain) the drain hook (O(_input.rollback_drain_tasks)) runs; V(stop) the services stop in
    reverse declared order before the restore and V(start) they start in declared order after it
    (O(_input.rollback_service_mode=stop_start), not in check mode); V(inline_restart) the restore call restarts
    the services itself (every selected service is command-managed and has a C(restart) argv); V(restart) the
    C(fleetops.rollback.services) role restarts them after a restore that changed something (the other cases of
    O(_input.rollback_restart_services), not in check mode); V(undrain) the undrain hook
    (O(_input.rollback_undrain_tasks)) runs."
  - Given a list of hosts' variables (for example the C(hostvars) of a batch), returns the union of their steps,
    in the same order. A step that no host of the list needs is one that the batch can skip.
  - A name in O(_input.rollback_services) that is not in O(_input.services_list) is left out here; the role fails
    the host on it at the restore (see the C(fleetops.rollback.service_selection) filter).
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
        description: The host's services, as for the C(fleetops.rollback.services) role (C(manager) defaults to V(command)).
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

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_bool
from ansible.plugins.test.core import changed, failed

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


def is_list(value):
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def select_services(services_list, only=None, strict=False, name="only"):
    """The services of services_list named in only (all of them when only is None), in declared order, each with
    `manager` defaulted to command. With strict, a name in only that is not in services_list fails."""
    services = []
    for index, service in enumerate(services_list or []):
        if not isinstance(service, Mapping):
            raise AnsibleFilterError("services_list[%d] is not a dictionary: %r" % (index, service))
        services.append(dict({"manager": "command"}, **service))
    if only is None:
        return services
    if strict:
        known = [service.get("name") for service in services]
        unknown = []
        for item in only:
            if item not in known and item not in unknown:
                unknown.append(item)
        if unknown:
            raise AnsibleFilterError("%s names services that are not in services_list: %s"
                                     % (name, ", ".join(str(item) for item in unknown)))
    return [service for service in services if service.get("name") in only]


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


def service_selection(services_list, only=None, strict=False, name="only"):
    """services_list -> the selected services with `manager` defaulted (see service_selection.yml)."""
    if not is_list(services_list):
        raise AnsibleFilterError("service_selection: services_list must be a list, not %r" % (services_list,))
    if only is not None and not is_list(only):
        raise AnsibleFilterError("service_selection: only must be a list of names or null, not %r" % (only,))
    return select_services(services_list, only, strict=to_bool(strict), name=name)


class FilterModule:
    """fleetops.rollback filters for the rollback and services roles."""

    def filters(self):
        return {"rollback_steps": rollback_steps, "service_selection": service_selection}
