# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: service_selection
short_description: The services of a services_list to act on, with their manager defaulted
version_added: 0.2.0
author:
  - fleetops maintainers (@fleetops)
description:
  - Returns the services of O(_input) named in O(only) (all of them when O(only) is null), in declared order, each
    with C(manager) defaulted to V(command). The P(fleetops.rollback.services#role) and P(fleetops.rollback.rollback#role)
    roles both select their services with it, and the P(fleetops.rollback.rollback_steps#filter) filter does too.
  - "With O(strict), a name in O(only) that is not in O(_input) fails with
    C(<name> names services that are not in services_list: <names>), so a typo never acts on nothing silently."
positional: _input, only
options:
  _input:
    description: A host's services (C(services_list)), in declared order; each a dictionary with at least C(name).
    type: list
    elements: dict
    required: true
  only:
    description: The names of the services to select; null selects all of them, an empty list none.
    type: list
    elements: str
  strict:
    description: Fail on a name in O(only) that is not in O(_input).
    type: bool
    default: false
  name:
    description: The variable that O(only) came from, for the failure message of O(strict).
    type: str
    default: only
"""

EXAMPLES = r"""
- name: The services to restart, those of rollback_services (all when it is empty); a typo fails
  ansible.builtin.debug:
    msg: >-
      {{ services_list | fleetops.rollback.service_selection(rollback_services or none, strict=true,
                                                             name='rollback_services') }}

- name: Every service with its manager
  ansible.builtin.debug:
    msg: "{{ [{'name': 'pg', 'manager': 'systemd'}, {'name': 'app'}] | fleetops.rollback.service_selection }}"
  # [{'name': 'pg', 'manager': 'systemd'}, {'name': 'app', 'manager': 'command'}]
"""

RETURN = r"""
_value:
  description: The selected services, in declared order, each a copy of its entry with C(manager) set.
  type: list
  elements: dict
"""

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_bool


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


def service_selection(services_list, only=None, strict=False, name="only"):
    """services_list -> the selected services, each with `manager` set."""
    if not is_list(services_list):
        raise AnsibleFilterError("service_selection: services_list must be a list, not %r" % (services_list,))
    if only is not None and not is_list(only):
        raise AnsibleFilterError("service_selection: only must be a list of names or null, not %r" % (only,))
    return select_services(services_list, only, strict=to_bool(strict), name=name)


class FilterModule:
    """fleetops.rollback filters."""

    def filters(self):
        return {"service_selection": service_selection}
