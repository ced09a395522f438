# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract every component meets, and the typed validation of its spec.

A component is two files in its own package under `_components/`:

- `__init__.py`, its declaration, light enough for every module to import: NAME, SUMMARY, OPTIONS (the Ansible
  argument spec of `components.<name>`, each option with its description), RUNTIME_OPTIONS (restore_point options
  it reads at restore time, such as a password) and `load()`, which imports the implementation;
- `component.py`, the implementation: a subclass of Component.

The registry (`_components/__init__.py`) lists the declarations in restore order. Instances live for one module
call: runtime values (passwords, tokens) and clients (a Docker connection) are kept on the instance, never in a
module global, so nothing outlives the call that was given it.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.fleetops.rollback.plugins.module_utils._argspec import messages, shape_problem
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError

# Keys of an OPTIONS entry that document it; the argument spec is the rest.
DOC_KEYS = ("description", "version_added")


def argument_spec(options):
    """An OPTIONS dict (documented argument spec) as a plain Ansible argument spec, suboptions included."""
    spec = {}
    for name, option in options.items():
        entry = {key: value for key, value in option.items() if key not in DOC_KEYS}
        if "options" in entry:
            entry["options"] = argument_spec(entry["options"])
        spec[name] = entry
    return spec


def secret_options(options, prefix=""):
    """Dotted names of every no_log option in an OPTIONS dict."""
    found = []
    for name, option in options.items():
        if option.get("no_log"):
            found.append(prefix + name)
        found += secret_options(option.get("options") or {}, prefix + name + ".")
    return found


def validate_spec(options, value, where):
    """Check a spec against a documented argument spec the way AnsibleModule checks a module's arguments (types,
    choices, required, unknown keys, defaults) and return it validated. A refusal names the option and the value."""
    spec = argument_spec(options)
    problem = shape_problem({"type": "dict", "options": spec}, value, where)
    if problem:
        raise RollbackError(problem)
    result = ArgumentSpecValidator(spec).validate(value)
    if result.error_messages:
        raise RollbackError("; ".join(messages(result.errors, where, root=value)))
    return result.validated_parameters


class Component:
    """The contract. A subclass sets `name` and implements capture, scope, plan and apply; everything else has a
    default that works or fails clearly.

    capture(store, spec, point_id)   the record of what is there now (store None: check mode's preview, which
                                     writes nothing; only when `previewable`)
    scope(record, changes)           the spec a safety point captures before this record is restored
    plan(store, record, point_id)    the changes that would turn today into the record ([] when none)
    apply(store, record, changes)    make them; a failure raises, and the safety point is re-applied
    diff(store, record, changes)     before/after texts for --diff
    select(record, items)            the record narrowed to some items (a partial rollback), when supported
    narrow(record, options)          the record narrowed by a sibling module's options, when supported
    """

    name = None
    # The component's declaration module (its package's __init__: OPTIONS, RUNTIME_OPTIONS, ...).
    declaration = None
    # capture(None, spec) reads the host and writes nothing: check mode can tell whether a capture reuses a point.
    previewable = False

    def __init__(self, runtime=None):
        # Values for this call only (a password given at restore): never stored, gone with the instance.
        self.runtime = dict(runtime or {})
        # What the last plan() found worth telling but not a reason to refuse (a Secret changed since the point):
        # restore() passes them on as the result's warnings.
        self.warnings = []

    # ---------------------------------------------------------------- spec
    @property
    def where(self):
        return "components.%s" % self.name

    def normalize(self, spec, where=None):
        """The spec checked against the declaration's OPTIONS, then by check_spec()."""
        where = where or self.where
        return self.check_spec(validate_spec(self.declaration.OPTIONS, spec, where), where)

    def check_spec(self, spec, where):  # pylint: disable=unused-argument
        """What the argument spec cannot say (paths, references, combinations); returns the normalized spec."""
        return spec

    def check_capturable(self, spec):
        """Fail before anything is written when the spec cannot be captured (a missing path, a stopped service)."""

    # ---------------------------------------------------------------- the work
    def _missing(self, method):
        raise RollbackError("the %s component does not implement %s(); this is a bug in its code" % (self.name, method))

    def capture(self, store, spec, point_id=None):
        self._missing("capture")

    def scope(self, record, changes=None):
        self._missing("scope")

    def plan(self, store, record, point_id=""):
        self._missing("plan")

    def apply(self, store, record, changes):
        self._missing("apply")

    def diff(self, store, record, changes):  # pylint: disable=unused-argument
        return []

    # ---------------------------------------------------------------- partial rollbacks
    supports_select = False

    def select(self, record, items):  # pylint: disable=unused-argument
        raise RollbackError("select: the %s component is restored whole; drop it from select" % self.name)

    def narrow(self, record, options):  # pylint: disable=unused-argument
        raise RollbackError("the %s component cannot be narrowed by %s" % (self.name, ", ".join(sorted(options))))
