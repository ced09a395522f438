# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks and targets from the modules' input: every key validated against the schema (schema.py), defaults and
required keys taken from it, and a message naming the option and the bad value. Nothing runs when one fails."""

from __future__ import annotations

import os
import re

from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_options import CONNECTION_OPTIONS
from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_workloads import KINDS
from ansible_collections.fleetops.rollback.plugins.module_utils._health.checks import CommandCheck, HttpCheck, TcpCheck
from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import (
    HealthInputError,
    boolean,
    check_program,
    integer,
    number,
    parse_headers,
    parse_host,
    parse_query,
    parse_url,
    pattern,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.k8s_rollout import K8sRolloutCheck
from ansible_collections.fleetops.rollback.plugins.module_utils._health.prometheus import PrometheusCheck
from ansible_collections.fleetops.rollback.plugins.module_utils._health.schema import (
    ALL_KEYS,
    CHECK_TYPES,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_REQUEST_TIMEOUT,
    ON_EMPTY,
    RC_RANGE,
    SCHEMA,
    TYPE_KEYS,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.text import redact_url, show

_METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*$")
# Kubernetes names: a workload's (DNS subdomain) and a namespace's (DNS label).
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_K8S_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

HTTP = SCHEMA["http"]
TCP = SCHEMA["tcp"]
COMMAND = SCHEMA["command"]
PROMETHEUS = SCHEMA["prometheus"]
K8S_ROLLOUT = SCHEMA["k8s_rollout"]


class Target:
    def __init__(self, name, checks):
        self.name = name
        self.checks = list(checks)

    def __repr__(self):
        return "Target(%r, %d checks)" % (self.name, len(self.checks))


def parse_check(raw, where):
    """Validate one check dict (keys set to None count as absent) and build its Check."""
    if not isinstance(raw, dict):
        raise HealthInputError("%s: %s is not a dictionary (a check with a type)" % (where, show(raw)))
    given = {k: v for k, v in raw.items() if v is not None}
    kind = given.get("type")
    if kind is None:
        raise HealthInputError("%s.type: required, one of %s" % (where, ", ".join(CHECK_TYPES)))
    if kind not in CHECK_TYPES:
        raise HealthInputError("%s.type: %s is not one of %s" % (where, show(kind), ", ".join(CHECK_TYPES)))
    for key in sorted(given):
        if key in TYPE_KEYS[kind]:
            continue
        if key in ALL_KEYS:
            owners = [t for t in CHECK_TYPES if key in TYPE_KEYS[t]]
            raise HealthInputError("%s.%s: not an option of a %s check (it belongs to %s checks; %s checks take %s)" % (
                where, key, kind, " and ".join(owners), kind, ", ".join(TYPE_KEYS[kind][1:])))
        raise HealthInputError("%s.%s: unknown option (%s checks take %s)" % (
            where, key, kind, ", ".join(TYPE_KEYS[kind][1:])))

    request_timeout = number(given.get("request_timeout", DEFAULT_REQUEST_TIMEOUT),
                             where + ".request_timeout", minimum=0, maximum=MAX_REQUEST_TIMEOUT)
    return _PARSERS[kind](given, where, request_timeout)


def _parse_http(given, where, request_timeout):
    url = parse_url(HTTP.require(given, "url", where), where + ".url", "http")
    method = given.get("method", HTTP.default("method"))
    if not isinstance(method, str) or not _METHOD_RE.match(method):
        raise HealthInputError("%s.method: %s is not an HTTP method" % (where, show(method)))
    status = given.get("status", HTTP.default("status"))
    if isinstance(status, (int, str)) and not isinstance(status, bool):
        status = [status]
    if not isinstance(status, (list, tuple)) or not status:
        raise HealthInputError("%s.status: %s is not a non-empty list of HTTP status codes" % (where, show(status)))
    codes = [integer(code, "%s.status[%d]" % (where, index), minimum=100, maximum=599,
                     what="an HTTP status (100-599)") for index, code in enumerate(status)]
    body = pattern(given["body"], where + ".body") if "body" in given else None
    max_latency = None
    if "max_latency" in given:
        max_latency = number(given["max_latency"], where + ".max_latency", minimum=0)
    headers = parse_headers(given, where)
    validate_certs = boolean(given.get("validate_certs", HTTP.default("validate_certs")), where + ".validate_certs")
    return HttpCheck(url=url, method=method.upper(), status=codes, body=body, request_timeout=request_timeout,
                     max_latency=max_latency, headers=headers, validate_certs=validate_certs)


def _parse_tcp(given, where, request_timeout):
    TCP.require(given, "port", where)
    host = parse_host(given.get("host", TCP.default("host")), where + ".host")
    port = integer(given["port"], where + ".port", minimum=1, maximum=65535, what="a TCP port (1-65535)")
    return TcpCheck(host=host, port=port, request_timeout=request_timeout)


def _parse_command(given, where, request_timeout):
    argv = COMMAND.require(given, "argv", where)
    if isinstance(argv, str) or not isinstance(argv, (list, tuple)) or not argv:
        raise HealthInputError("%s.argv: %s is not a non-empty list (the program, then its arguments; "
                               "never a shell line)" % (where, show(argv)))
    for index, item in enumerate(argv):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise HealthInputError("%s.argv[%d]: %s is not a string" % (where, index, show(item)))
    argv = [str(item) for item in argv]
    if not argv[0].strip():
        raise HealthInputError("%s.argv[0]: the program name is empty" % where)
    for index, item in enumerate(argv):
        if "\x00" in item:
            raise HealthInputError("%s.argv[%d]: %s holds a NUL byte, which no program argument can carry"
                                   % (where, index, show(item)))
    check_program(argv[0], where + ".argv[0]")
    rc = integer(given.get("rc", COMMAND.default("rc")), where + ".rc", minimum=RC_RANGE[0], maximum=RC_RANGE[1],
                 what="an exit status (0-255, or minus a signal number for a command killed by it)")
    stdout = pattern(given["stdout"], where + ".stdout") if "stdout" in given else None
    return CommandCheck(argv=argv, rc=rc, stdout=stdout, request_timeout=request_timeout)


def _query(given, key, where):
    return parse_query(given.get(key), "%s.%s" % (where, key))


def _parse_prometheus(given, where, request_timeout):
    url = parse_url(PROMETHEUS.require(given, "url", where), where + ".url", "prometheus")
    PROMETHEUS.require(given, "query", where)
    query = _query(given, "query", where)
    high = number(given["max"], where + ".max") if "max" in given else None
    low = number(given["min"], where + ".min") if "min" in given else None
    if high is not None and low is not None and low > high:
        raise HealthInputError("%s.min: %s is above max %s; nothing could pass" % (where, show(given["min"]),
                                                                                   show(given["max"])))
    baseline_query = _query(given, "baseline_query", where) if "baseline_query" in given else None
    max_ratio = number(given["max_ratio"], where + ".max_ratio", minimum=0) if "max_ratio" in given else None
    if (baseline_query is None) != (max_ratio is None):
        raise HealthInputError("%s.%s: a baseline ratio needs both baseline_query and max_ratio" % (
            where, "baseline_query" if baseline_query is None else "max_ratio"))
    if high is None and low is None and max_ratio is None:
        raise HealthInputError("%s: a prometheus check needs a threshold (max and/or min) or a baseline ratio "
                               "(baseline_query and max_ratio)" % where)
    on_empty = given.get("on_empty", PROMETHEUS.default("on_empty"))
    if on_empty not in ON_EMPTY:
        raise HealthInputError("%s.on_empty: %s is not one of %s" % (where, show(on_empty), ", ".join(ON_EMPTY)))
    validate_certs = boolean(given.get("validate_certs", PROMETHEUS.default("validate_certs")),
                             where + ".validate_certs")
    return PrometheusCheck(url=url, query=query, max=high, min=low, baseline_query=baseline_query,
                           max_ratio=max_ratio, on_empty=on_empty, headers=parse_headers(given, where),
                           validate_certs=validate_certs, request_timeout=request_timeout)


def _workload_kind(value, where):
    if isinstance(value, str):
        for kind, (_plural, spellings) in KINDS.items():
            if value == kind or value.lower() in spellings:
                return kind
    raise HealthInputError("%s: %s is not a workload kind; give Deployment, StatefulSet or DaemonSet (or deploy, sts, "
                           "ds)" % (where, show(value)))


def _text(given, key, where, what):
    """A non-empty string without control characters, or None when the key is absent."""
    if key not in given:
        return None
    value = given[key]
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise HealthInputError("%s.%s: %s is not %s" % (where, key, show(value), what))
    return value


def _file(given, key, where, what):
    value = _text(given, key, where, "a path (%s)" % what)
    if value is None:
        return None
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise HealthInputError("%s.%s: %s is not a file; give the path of %s" % (where, key, show(value), what))
    return path


def _parse_k8s_rollout(given, where, request_timeout):
    kind = _workload_kind(given.get("kind", K8S_ROLLOUT.default("kind")), where + ".kind")
    name = _text(given, "name", where, "a workload name")
    selector = _text(given, "selector", where, "a label selector (such as app=web)")
    if name is not None and selector is not None:
        raise HealthInputError("%s.selector: %s given with name %s; give name for one workload or selector for every "
                               "workload it matches, not both" % (where, show(selector), show(name)))
    if name is None and selector is None:
        raise HealthInputError("%s.name: required for a k8s_rollout check unless selector is given (the %s's name, or "
                               "a label selector such as app=web)" % (where, kind))
    if name is not None and not _K8S_NAME_RE.match(name):
        raise HealthInputError("%s.name: %s is not a Kubernetes object name (lower case letters, digits, - and .)"
                               % (where, show(name)))
    connection = {}
    namespace = _text(given, "namespace", where, "a namespace name")
    if namespace is not None and not _K8S_NAMESPACE_RE.match(namespace):
        raise HealthInputError("%s.namespace: %s is not a namespace name (lower case letters, digits and -, at most "
                               "63)" % (where, show(namespace)))
    connection["namespace"] = namespace
    connection["kubeconfig"] = _file(given, "kubeconfig", where, "a kubeconfig")
    connection["ca_cert"] = _file(given, "ca_cert", where, "a CA bundle (PEM)")
    connection["context"] = _text(given, "context", where, "a kubeconfig context name")
    if "host" in given:
        host = given["host"]
        if isinstance(host, str) and "@" in host.partition("://")[2].partition("/")[0]:
            raise HealthInputError("%s.host: %s carries credentials; give the token in api_key instead"
                                   % (where, show(redact_url(host))))
        connection["host"] = parse_url(host, where + ".host", "k8s_rollout")
    if "api_key" in given:
        # Never echo the value: it is a token.
        if not isinstance(given["api_key"], str) or not given["api_key"].strip():
            raise HealthInputError("%s.api_key: not a non-empty string (a bearer token)" % where)
        connection["api_key"] = given["api_key"]
    if "validate_certs" in given:
        connection["validate_certs"] = boolean(given["validate_certs"], where + ".validate_certs")
    unknown = set(connection) - set(CONNECTION_OPTIONS)
    if unknown:  # pragma: no cover - the schema takes its connection keys from CONNECTION_OPTIONS
        raise AssertionError("connection keys outside k8s_options: %s" % sorted(unknown))
    return K8sRolloutCheck(kind=kind, name=name, selector=selector, request_timeout=request_timeout,
                           connection={k: v for k, v in connection.items() if v is not None})


# One parser per check type of the schema.
_PARSERS = {"http": _parse_http, "tcp": _parse_tcp, "command": _parse_command, "prometheus": _parse_prometheus,
            "k8s_rollout": _parse_k8s_rollout}


def parse_checks(raw, where):
    if not isinstance(raw, (list, tuple)) or not raw:
        raise HealthInputError("%s: %s is not a non-empty list of checks" % (where, show(raw)))
    return [parse_check(item, "%s[%d]" % (where, index)) for index, item in enumerate(raw)]


def parse_targets(checks=None, targets=None, name="local"):
    """The targets to poll: `checks` (one target called `name`) or `targets` (a list of {name, checks})."""
    if checks is not None and targets is not None:
        raise HealthInputError("checks, targets: mutually exclusive; give checks for one target "
                               "or targets for several")
    if checks is None and targets is None:
        raise HealthInputError("checks, targets: one of them is required")
    if checks is not None:
        if not isinstance(name, str) or not name:
            raise HealthInputError("name: %s is not a non-empty string" % show(name))
        return [Target(name, parse_checks(checks, "checks"))]
    if not isinstance(targets, (list, tuple)) or not targets:
        raise HealthInputError("targets: %s is not a non-empty list of {name, checks}" % show(targets))
    parsed, seen = [], set()
    for index, raw in enumerate(targets):
        where = "targets[%d]" % index
        if not isinstance(raw, dict):
            raise HealthInputError("%s: %s is not a dictionary with name and checks" % (where, show(raw)))
        unknown = sorted(k for k, v in raw.items() if k not in ("name", "checks") and v is not None)
        if unknown:
            raise HealthInputError("%s.%s: unknown option (a target takes name and checks)" % (where, unknown[0]))
        target_name = raw.get("name")
        if not isinstance(target_name, str) or not target_name:
            raise HealthInputError("%s.name: %s is not a non-empty string" % (where, show(target_name)))
        if target_name in seen:
            raise HealthInputError("%s.name: %s names more than one target" % (where, show(target_name)))
        seen.add(target_name)
        target_checks = raw.get("checks")
        if target_checks is None or (isinstance(target_checks, (list, tuple)) and not target_checks):
            raise HealthInputError("%s.checks: target %s has no checks; give it a non-empty list"
                                   % (where, show(target_name)))
        parsed.append(Target(target_name, parse_checks(target_checks, where + ".checks")))
    return parsed
