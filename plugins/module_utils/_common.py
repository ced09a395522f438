# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base every fleetops.rollback module is built on.

It merges the common arguments (the store and its lock), builds the AnsibleModule and turns a
RollbackError into a fail_json that carries the message and the structured details.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule

DEFAULT_STORE_PATH = "/var/lib/fleetops/rollback"

STORE_ARGUMENT_SPEC = dict(
    store_path=dict(type="path", default=DEFAULT_STORE_PATH),
    lock_timeout=dict(type="float", default=0.0),
    force_unlock=dict(type="bool", default=False),
)


SECRET_OPTION_NAMES = ("login_password", "password")


def hide_secrets(module, value):
    """Mark every value under a password-named key of a free-form option (such as `components`) no_log."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if key in SECRET_OPTION_NAMES and isinstance(sub, (str, int)) and str(sub):
                    module.no_log_values.add(str(sub))
                else:
                    stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


class RollbackError(Exception):
    """A failure worth reporting: a message that says what and what to do, plus details for the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ModuleBase:
    """Subclasses set `argument_spec` (and `uses_store`) and implement `run()` returning the result dict."""

    argument_spec = {}
    uses_store = True
    module_kwargs = {}

    def __init__(self):
        spec = {}
        if self.uses_store:
            spec.update(STORE_ARGUMENT_SPEC)
        spec.update(self.argument_spec)
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **self.module_kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff

    def run(self):
        raise NotImplementedError

    def main(self):
        try:
            result = self.run()
        except RollbackError as err:
            self.module.fail_json(msg=err.msg, **err.details)
        except Exception as err:  # pylint: disable=broad-except
            # An unexpected error still reports what happened rather than a bare traceback.
            self.module.fail_json(msg="unexpected error: %s: %s" % (type(err).__name__, err),
                                  exception=traceback.format_exc())
        self.module.exit_json(**result)
