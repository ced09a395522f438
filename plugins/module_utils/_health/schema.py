# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one schema of a health check: each check type declares its keys here, once.

Derived from the declarations, never written again by hand:

* `CHECK_OPTIONS`, the argument spec of one check, shared by the modules that take checks (health_gate,
  rollback_watch);
* `TYPE_KEYS`, the keys each type takes (for the messages that name them), and `CHECK_TYPES`;
* the defaults and the required keys the parsers (parse.py) apply per type.

The documentation of the keys is the `fleetops.rollback.health_checks` doc fragment
(plugins/doc_fragments/health_checks.py); a unit test fails when it and these declarations disagree.
"""

from __future__ import annotations

import collections

from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_options import CONNECTION_OPTIONS
from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import HealthInputError

DEFAULT_REQUEST_TIMEOUT = 5.0
DEFAULT_HOST = "127.0.0.1"
# Past this a request timeout is a typo, and the platform's timers overflow.
MAX_REQUEST_TIMEOUT = 3600.0
ON_EMPTY = ("fail", "pass", "zero")
# Exit statuses a command can end with: 0-255, or minus the signal that killed it.
RC_RANGE = (-64, 255)


class Key(collections.namedtuple("Key", "name type elements choices no_log required default hint",
                                 defaults=(None, None, False, False, None, None))):
    """One key of a check.

    `type`, `elements`, `choices` and `no_log` make its argument spec. For a key of a check type, `required` and
    `default` are the parser's: the argument spec cannot tell the check's type, and a default there would set
    the key on checks of every type. `hint` says what to give when a required key is missing.
    """

    __slots__ = ()

    def spec(self):
        spec = dict(type=self.type)
        if self.elements:
            spec["elements"] = self.elements
        if self.choices:
            spec["choices"] = list(self.choices)
        if self.no_log:
            spec["no_log"] = True
        return spec


class CheckType:
    """A check type: its name, how a sentence names one of its checks, and its own keys."""

    def __init__(self, name, phrase, keys):
        self.name = name
        self.phrase = phrase
        self.keys = tuple(keys)
        self._by_name = {key.name: key for key in self.keys}

    def default(self, name):
        return self._by_name[name].default

    def require(self, given, name, where):
        """The value of a key this type requires; HealthInputError naming the key when it is missing."""
        key = self._by_name[name]
        if not key.required:
            raise KeyError("%s is not a required key of %s" % (name, self.phrase))
        if name not in given:
            raise HealthInputError("%s.%s: required for %s%s" % (
                where, name, self.phrase, " (%s)" % key.hint if key.hint else ""))
        return given[name]


# Every check has these; unlike the keys of a type, their required flag and default belong to the argument spec.
COMMON_KEYS = (
    Key("type", "str", required=True),
    Key("request_timeout", "float", default=DEFAULT_REQUEST_TIMEOUT),
)

# Keys more than one type takes, declared once.
_URL = Key("url", "str", required=True)
_HEADERS = Key("headers", "dict", no_log=True)
_VALIDATE_CERTS = Key("validate_certs", "bool", default=True)


def _connection_keys():
    """The k8s_rollout check's connection keys: the names, types and secrets of the one Kubernetes connection spec
    (k8s_options), never a second list. No defaults here: an unset key leaves the kubeconfig's setting."""
    return tuple(Key(name, spec["type"], no_log=bool(spec.get("no_log"))) for name, spec in CONNECTION_OPTIONS.items())


TYPES = (
    CheckType("http", "an http check", (
        _URL,
        Key("method", "str", default="GET"),
        Key("status", "list", elements="int", default=(200,)),
        Key("body", "str"),
        Key("max_latency", "float"),
        _HEADERS,
        _VALIDATE_CERTS,
    )),
    CheckType("tcp", "a tcp check", (
        Key("host", "str", default=DEFAULT_HOST),
        Key("port", "int", required=True),
    )),
    CheckType("command", "a command check", (
        Key("argv", "list", elements="str", required=True, hint="a list: the program, then its arguments"),
        Key("rc", "int", default=0),
        Key("stdout", "str"),
    )),
    CheckType("prometheus", "a prometheus check", (
        _URL,
        Key("query", "str", required=True, hint="a PromQL query"),
        Key("max", "float"),
        Key("min", "float"),
        Key("baseline_query", "str"),
        Key("max_ratio", "float"),
        Key("on_empty", "str", choices=ON_EMPTY, default="fail"),
        _HEADERS,
        _VALIDATE_CERTS,
    )),
    CheckType("k8s_rollout", "a k8s_rollout check", (
        Key("kind", "str", default="Deployment"),
        Key("name", "str"),
        Key("selector", "str"),
    ) + _connection_keys()),
)

SCHEMA = {kind.name: kind for kind in TYPES}
CHECK_TYPES = tuple(SCHEMA)
TYPE_KEYS = {kind.name: tuple(key.name for key in COMMON_KEYS + kind.keys) for kind in TYPES}
ALL_KEYS = frozenset(name for names in TYPE_KEYS.values() for name in names)


def _check_options():
    options = {}
    for key in COMMON_KEYS:
        options[key.name] = key.spec()
        if key.required:
            options[key.name]["required"] = True
        if key.default is not None:
            options[key.name]["default"] = key.default
    for kind in TYPES:
        for key in kind.keys:
            spec = key.spec()
            if options.setdefault(key.name, spec) != spec:
                # Two types may share a key only as the same option: the argument spec has one entry per name.
                raise ValueError("check key %s: %s declares %r, another type %r" % (
                    key.name, kind.name, spec, options[key.name]))
    return options


# The argument spec of one check, shared by the modules that take checks (health_gate, rollback_watch).
CHECK_OPTIONS = _check_options()
