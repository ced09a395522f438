"""A TEST DOUBLE of the Kubernetes API for the collection's tests. It is not a Kubernetes implementation.

It speaks enough of the real REST API (plain HTTP on 127.0.0.1, no authentication) for the real kubectl to work
against it:
- discovery: /version (reports 1.32), /api, /api/v1, /apis, /apis/apps, /apis/apps/v1 in the legacy format
  (kubectl asks for aggregated discovery first and falls back), and a minimal /openapi/v3 that only tells kubectl
  the server takes fieldValidation (without it, kubectl apply refuses to validate: "failed to download openapi");
  /openapi/v2 is 404 and kubectl builds its patches from its compiled-in types;
- get, list (labelSelector, fieldSelector on metadata.name / metadata.namespace, and the pods' own fields such as
  status.phase), watch, create, replace, delete, patch (JSON, merge and simplified strategic merge, see patch.py) and
  server-side dry-run, for apps/v1 Deployments, ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions and core
  v1 ConfigMaps, Secrets, Pods and Namespaces; the scale and status subresources. Pods are made by the controller only
  (a create is refused with 405; their spec cannot be changed);
- kubectl's typed commands send protobuf bodies: protobuf.py reads those of ConfigMaps, Secrets, Namespaces, Deployments;
  answers are always JSON; reads and watches answer meta.k8s.io Tables when asked, as kubectl get does.
There is no admission, no real validation beyond a few checks, no nodes (one imaginary one, node-1) and no
authentication. A simulated controller (controller.py) makes ReplicaSets, revisions, pods and status; pods.py is
what the node's kubelet would report of the pods. tests/integration/test_k8s_api_fake.py has the real kubectl judge
the double.

Use: fixture.start_server(), or `python -m tests.k8s_api.server` to run one by hand.
"""
import base64
import datetime
import json
import re
import select
import socket
import socketserver
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import patch as patches
from . import protobuf
from .controller import Controller
from .store import Store, StoreError

# plural -> (group, version, kind, namespaced, short names, verbs)
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
RESOURCES = {
    "namespaces": ("", "v1", "Namespace", False, ["ns"], ["create", "delete", "get", "list", "patch", "update", "watch"]),
    "configmaps": ("", "v1", "ConfigMap", True, ["cm"], ALL_VERBS),
    "secrets": ("", "v1", "Secret", True, [], ALL_VERBS),
    # pods are made by the controller only: no create (a POST is refused with 405)
    "pods": ("", "v1", "Pod", True, ["po"], ["delete", "get", "list", "patch", "update", "watch"]),
    "deployments": ("apps", "v1", "Deployment", True, ["deploy"], ALL_VERBS),
    "replicasets": ("apps", "v1", "ReplicaSet", True, ["rs"], ALL_VERBS),
    "statefulsets": ("apps", "v1", "StatefulSet", True, ["sts"], ALL_VERBS),
    "daemonsets": ("apps", "v1", "DaemonSet", True, ["ds"], ALL_VERBS),
    "controllerrevisions": ("apps", "v1", "ControllerRevision", True, [], ALL_VERBS),
}
FIXED_NAMESPACES = ("default", "kube-system", "kube-public", "prod", "staging")
WORKLOADS = ("deployments", "statefulsets", "daemonsets")
SCALABLE = ("deployments", "replicasets", "statefulsets")
# fields a fieldSelector may name besides metadata.name and metadata.namespace (the real API's list for pods)
SELECTABLE_FIELDS = {"pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                              "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")}


def store_key(plural):
    group = RESOURCES[plural][0]
    return "%s.%s" % (plural, group) if group else plural


def status_body(code, reason, message, details=None):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.body = status_body(code, reason, message, details)


# --- selectors -------------------------------------------------------------------------------------------------
def _split_top(text):
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text):
    """'a=b,c in (x,y),!d,e' -> a predicate on a labels dict. Supports =, ==, !=, in, notin, exists, !exists."""
    checks = []
    for req in _split_top(text or ""):
        match = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", req)
        if match:
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
            continue
        match = re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$", req)
        if match:
            key, op, value = match.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
            continue
        match = re.match(r"^(!?)([\w./-]+)$", req)
        if match:
            negate, key = match.groups()
            checks.append(lambda labels, k=key, n=bool(negate): (k in labels) != n)
            continue
        raise ApiError(400, "BadRequest", "unable to parse requirement: %r" % req)
    return lambda labels: all(check(labels or {}) for check in checks)


def _field(obj, path):
    """The value of a dotted field as a field selector compares it: a string, "" when missing."""
    for key in path.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return "" if obj is None else str(obj)


def parse_field_selector(text, plural=None):
    """metadata.name, metadata.namespace (pods: and SELECTABLE_FIELDS) with = / == / != -> a predicate on an object."""
    fields = ("metadata.name", "metadata.namespace") + SELECTABLE_FIELDS.get(plural, ())
    checks = []
    for req in _split_top(text or ""):
        match = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", req)
        if not match or match.group(1) not in fields:
            raise ApiError(400, "BadRequest", '"%s" is not a known field selector: only %s' % (
                req.split("=")[0].rstrip("!"), ", ".join('"%s"' % f for f in fields)))
        field, op, value = match.groups()
        if op == "!=":
            checks.append(lambda obj, f=field, v=value: _field(obj, f) != v)
        else:
            checks.append(lambda obj, f=field, v=value: _field(obj, f) == v)
    return lambda obj: all(check(obj) for check in checks)


# --- tables (kubectl get asks for them) ------------------------------------------------------------------------
def _age(stamp):
    try:
        then = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % max(seconds, 0)


def _status(obj):
    return obj.get("status") or {}


def _spec(obj):
    return obj.get("spec") or {}


def pod_cells(pod):
    """READY, STATUS, RESTARTS as the API server prints a pod (kubernetes/pkg/printers/internalversion printPod)."""
    status = _status(pod)
    reason = status.get("reason") or status.get("phase") or "Pending"
    restarts, ready, last_restart = 0, 0, ""
    for container in reversed(status.get("containerStatuses") or []):
        restarts += container.get("restartCount", 0)
        last_restart = max(last_restart, ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
                           or "")
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            reason = "ExitCode:%d" % state["terminated"].get("exitCode", 0)
        elif container.get("ready") and "running" in state:
            ready += 1
    shown = "%d (%s ago)" % (restarts, _age(last_restart)) if restarts and last_restart else str(restarts)
    return "%d/%d" % (ready, len(_spec(pod).get("containers") or [])), reason, shown


def _columns(plural):
    """(title, cell function[, priority]) of the columns kubectl get shows after NAME. AGE comes after those of
    priority 0; those of priority 1 are kubectl get -o wide's."""
    status, spec = _status, _spec
    if plural == "pods":
        return [("Ready", lambda o: pod_cells(o)[0]), ("Status", lambda o: pod_cells(o)[1]),
                ("Restarts", lambda o: pod_cells(o)[2]), ("IP", lambda o: status(o).get("podIP") or "<none>", 1),
                ("Node", lambda o: spec(o).get("nodeName") or "<none>", 1),
                ("Nominated Node", lambda o: status(o).get("nominatedNodeName") or "<none>", 1),
                ("Readiness Gates", lambda o: "<none>", 1)]
    if plural == "daemonsets":
        return [("Desired", lambda o: status(o).get("desiredNumberScheduled", 0)),
                ("Current", lambda o: status(o).get("currentNumberScheduled", 0)),
                ("Ready", lambda o: status(o).get("numberReady", 0)),
                ("Up-to-date", lambda o: status(o).get("updatedNumberScheduled", 0)),
                ("Available", lambda o: status(o).get("numberAvailable", 0)),
                ("Node Selector", lambda o: ",".join("%s=%s" % kv for kv in sorted(
                    ((spec(o).get("template") or {}).get("spec") or {}).get("nodeSelector", {}).items())) or "<none>")]
    if plural == "deployments":
        return [("Ready", lambda o: "%d/%d" % (status(o).get("readyReplicas", 0), spec(o).get("replicas", 1))),
                ("Up-to-date", lambda o: status(o).get("updatedReplicas", 0)),
                ("Available", lambda o: status(o).get("availableReplicas", 0))]
    if plural == "replicasets":
        return [("Desired", lambda o: spec(o).get("replicas", 1)), ("Current", lambda o: status(o).get("replicas", 0)),
                ("Ready", lambda o: status(o).get("readyReplicas", 0))]
    if plural == "statefulsets":
        return [("Ready", lambda o: "%d/%d" % (status(o).get("readyReplicas", 0), spec(o).get("replicas", 1)))]
    if plural == "namespaces":
        return [("Status", lambda o: status(o).get("phase", "Active"))]
    if plural == "configmaps":
        return [("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))]
    if plural == "secrets":
        return [("Type", lambda o: o.get("type", "Opaque")), ("Data", lambda o: len(o.get("data") or {}))]
    return []


def to_table(plural, objects, rv):
    columns = [column + (0,) * (3 - len(column)) for column in _columns(plural)]
    age = ("Age", lambda o: _age(o["metadata"].get("creationTimestamp")), 0)
    columns = [c for c in columns if not c[2]] + [age] + [c for c in columns if c[2]]
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}]
    for title, _cell, priority in columns:
        definitions.append({"name": title, "type": "string", "format": "", "description": title, "priority": priority})
    rows = [{"cells": [o["metadata"]["name"]] + [column[1](o) for column in columns], "object": o} for o in objects]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": definitions, "rows": rows}


def to_scale(obj):
    """The autoscaling/v1 Scale view of a Deployment, ReplicaSet or StatefulSet."""
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    text = ",".join("%s=%s" % item for item in sorted((selector.get("matchLabels") or {}).items()))
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": text}}


# --- validation and defaults -----------------------------------------------------------------------------------
def _selector_matches(selector, labels):
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def validate(plural, obj):
    """The few checks the double makes; returns a list of (field, message)."""
    kind = RESOURCES[plural][2]
    errors = []
    name = obj.get("metadata", {}).get("name")
    if not name:
        errors.append(("metadata.name", "Required value: name or generateName is required"))
    elif not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name) or len(name) > 253:
        errors.append(("metadata.name", 'Invalid value: "%s": a lowercase RFC 1123 subdomain must consist of lower case '
                       "alphanumeric characters, '-' or '.'" % name))
    if obj.get("kind") not in (None, kind):
        errors.append(("kind", 'Invalid value: "%s": must be %s' % (obj.get("kind"), kind)))
    if plural in WORKLOADS:
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        template = spec.get("template") or {}
        if not selector:
            errors.append(("spec.selector", "Required value"))
        elif not _selector_matches(selector, (template.get("metadata") or {}).get("labels")):
            errors.append(("spec.template.metadata.labels", "Invalid value: %s: `selector` does not match template `labels`"
                           % json.dumps((template.get("metadata") or {}).get("labels") or {})))
        containers = (template.get("spec") or {}).get("containers") or []
        if not containers:
            errors.append(("spec.template.spec.containers", "Required value"))
        for i, container in enumerate(containers):
            for field in ("name", "image"):
                if not container.get(field):
                    errors.append(("spec.template.spec.containers[%d].%s" % (i, field), "Required value"))
        if plural == "deployments" and spec.get("replicas", 1) < 0:
            errors.append(("spec.replicas", "Invalid value: %s: must be greater than or equal to 0" % spec["replicas"]))
    if errors:
        group = RESOURCES[plural][0]
        kind_group = "%s.%s" % (kind, group) if group else kind
        message = '%s "%s" is invalid: %s' % (kind_group, name, ", ".join("%s: %s" % e for e in errors))
        raise ApiError(422, "Invalid", message, {"name": name, "group": group, "kind": kind,
                                                 "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f}
                                                            for f, m in errors]})


def default(plural, obj):
    """The defaults the API server would add that the tests and kubectl look at."""
    group, version, kind = RESOURCES[plural][:3]
    obj["apiVersion"] = "%s/%s" % (group, version) if group else version
    obj["kind"] = kind
    spec = obj.get("spec")
    if plural == "deployments" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    if plural == "statefulsets" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("podManagementPolicy", "OrderedReady")
    if plural == "daemonsets" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    if plural == "secrets":
        obj.setdefault("type", "Opaque")
        for key, value in (obj.pop("stringData", None) or {}).items():
            obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()
    if plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
    return obj


# --- OpenAPI v3 (just enough for kubectl) --------------------------------------------------------------------------
def openapi_v3(group, version):
    """A minimal OpenAPI v3 document of one group/version: for each resource, a PATCH operation tagged with its
    group/version/kind that lists the fieldValidation and dryRun query parameters. kubectl reads it to learn that the
    server takes fieldValidation (then it leaves validation to the server instead of downloading schemas). It holds no
    schemas, so kubectl apply computes its patches from its compiled-in types, as it does for built-in kinds."""
    paths = {}
    prefix = "/apis/%s/%s" % (group, version) if group else "/api/%s" % version
    for plural, (res_group, res_version, kind, namespaced, _short, _verbs) in RESOURCES.items():
        if (res_group, res_version) != (group, version):
            continue
        path = "%s/namespaces/{namespace}/%s/{name}" % (prefix, plural) if namespaced else "%s/%s/{name}" % (prefix, plural)
        params = [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for name in ("dryRun", "fieldManager", "fieldValidation", "force")]
        paths[path] = {"patch": {"operationId": "patch" + kind, "parameters": params,
                                 "x-kubernetes-action": "patch",
                                 "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                                 "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes API test double", "version": "v1.32.0"}, "paths": paths,
            "components": {"schemas": {}}}


# --- HTTP ------------------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fleetops-k8s-test-double/1"

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if self.server.log is not None:
            self.server.log.append("%s %s" % (self.command, self.path))

    # helpers
    def _send(self, code, body, content_type="application/json"):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self):
        """Read the whole request body (always, so that a kept-alive connection stays in step; DELETE has one too)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if not size:
                    while self.rfile.readline().strip():
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _body(self):
        return self.raw_body

    def _json_body(self):
        body = self._body()
        if (self.headers.get("Content-Type") or "").startswith("application/vnd.kubernetes.protobuf"):
            try:
                return protobuf.decode(body)
            except (protobuf.ProtobufError, UnicodeDecodeError) as exc:
                raise ApiError(415, "UnsupportedMediaType", str(exc)) from None
        try:
            obj = json.loads(body or b"null")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format: %s" % exc) from None
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        return obj

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self):
        self.raw_body = self._read_body()
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path in ("/healthz", "/readyz", "/livez") and self.command == "GET":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                return
            body = self._discovery(url.path)
            if body is not None:
                self._send(200, body)
                return
            self._resource(url.path, query)
        except ApiError as exc:
            self._send(exc.body["code"], exc.body)
        except StoreError as exc:
            self._send(exc.code, status_body(exc.code, exc.reason, exc.message, exc.details))
        except patches.PatchError as exc:
            self._send(422, status_body(422, "Invalid", str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # pylint: disable=broad-except  # a bug of the double: answer 500 and keep it for the tests
            self.server.errors.append("%s %s: %r" % (self.command, self.path, exc))
            try:
                self._send(500, status_body(500, "InternalError", "test double error: %r" % exc))
            except OSError:
                pass

    # discovery
    def _discovery(self, path):
        if self.command not in ("GET", "HEAD"):
            return None
        path = path.rstrip("/") or "/"
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fleetops-test-double", "gitCommit": "",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "", "compiler": "gc",
                    "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server.address}]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group()]}
        if path == "/apis/apps":
            return dict(self._group(), kind="APIGroup", apiVersion="v1")
        if path == "/api/v1":
            return self._resource_list("", "v1")
        if path == "/apis/apps/v1":
            return self._resource_list("apps", "v1")
        if path == "/openapi/v3":
            return {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=0"},
                              "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=0"}}}
        if path == "/openapi/v3/api/v1":
            return openapi_v3("", "v1")
        if path == "/openapi/v3/apis/apps/v1":
            return openapi_v3("apps", "v1")
        return None

    @staticmethod
    def _group():
        version = {"groupVersion": "apps/v1", "version": "v1"}
        return {"name": "apps", "versions": [version], "preferredVersion": version}

    @staticmethod
    def _resource_list(group, version):
        resources = []
        for plural, (res_group, res_version, kind, namespaced, short, verbs) in sorted(RESOURCES.items()):
            if (res_group, res_version) != (group, version):
                continue
            entry = {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": verbs}
            if short:
                entry["shortNames"] = short
            if plural in WORKLOADS or plural == "pods":
                entry["categories"] = ["all"]
            resources.append(entry)
            if plural in WORKLOADS or plural in ("replicasets", "pods"):
                resources.append({"name": plural + "/status", "singularName": "", "namespaced": True, "kind": kind,
                                  "verbs": ["get", "patch", "update"]})
            if plural in SCALABLE:
                resources.append({"name": plural + "/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
                                  "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "%s/%s" % (group, version) if group else version,
                "resources": resources}

    # resources
    def _route(self, path):
        """-> (plural, namespace, name, subresource); namespace None for cluster-wide; raises 404 for unknown paths."""
        match = re.match(r"^/api/v1/(.*)$", path) or re.match(r"^/apis/apps/v1/(.*)$", path)
        if not match:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group = "" if path.startswith("/api/") else "apps"
        parts = [p for p in match.group(1).split("/") if p]
        namespace = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            namespace, parts = parts[1], parts[2:]
        plural = parts[0] if parts else ""
        if plural not in RESOURCES or RESOURCES[plural][0] != group:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if RESOURCES[plural][3] is False and namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub not in (None, "status", "scale") or len(parts) > 3 or (sub == "scale" and plural not in SCALABLE):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return plural, namespace, name, sub

    def _not_found(self, plural, name):
        group = RESOURCES[plural][0]
        shown = "%s.%s" % (plural, group) if group else plural
        return ApiError(404, "NotFound", '%s "%s" not found' % (shown, name), {"name": name, "group": group, "kind": plural})

    def _resource(self, path, query):
        plural, namespace, name, sub = self._route(path)
        method = self.command
        dry_run = query.get("dryRun") == "All"
        if query.get("dryRun") not in (None, "", "All"):
            raise ApiError(400, "BadRequest", "invalid dry run option %r" % query["dryRun"])
        if method in ("GET", "HEAD") and name is None:
            if query.get("watch") in ("1", "true"):
                self._watch(plural, namespace, query)
            else:
                self._list(plural, namespace, query)
            return
        if method in ("GET", "HEAD"):
            obj = self.server.store.get(store_key(plural), namespace, name)
            if obj is None:
                raise self._not_found(plural, name)
            if sub == "scale":
                self._send(200, to_scale(obj))
            else:
                self._send_object(plural, obj)
            return
        if sub == "scale" and method in ("PUT", "PATCH"):
            self._scale(plural, namespace, name, dry_run)
            return
        if method == "POST" and name is None:
            self._create(plural, namespace, self._json_body(), dry_run)
            return
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "PUT":
            obj = self._json_body()
            if obj.get("metadata", {}).get("name") not in (None, name):
                raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                               % (obj["metadata"]["name"], name))
            obj.setdefault("metadata", {})["name"] = name
            self._update(plural, namespace, name, obj, dry_run, sub, check_rv=True)
        elif method == "PATCH":
            current = self.server.store.get(store_key(plural), namespace, name)
            if current is None:
                raise self._not_found(plural, name)
            patched = patches.apply(current, self.headers.get("Content-Type"), self._body())
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patch did not produce an object")
            patched.setdefault("metadata", {})
            for key in ("name", "namespace", "uid"):
                if patched["metadata"].get(key) != current["metadata"].get(key):
                    raise ApiError(422, "Invalid", "metadata.%s cannot be changed by a patch" % key)
            self._update(plural, namespace, name, patched, dry_run, sub, check_rv=True)
        elif method == "DELETE":
            key = store_key(plural)
            if self.server.store.get(key, namespace, name) is None:
                raise self._not_found(plural, name)
            try:
                options = json.loads(self._body()) if self._body().strip() else {}
            except ValueError:
                raise ApiError(400, "BadRequest", "the DeleteOptions in the body are not JSON") from None
            if "All" in (options.get("dryRun") or []):  # kubectl delete --dry-run=server says it in DeleteOptions
                dry_run = True
            with self.server.store.lock:
                obj = self.server.store.delete(key, namespace, name, dry_run=dry_run)
                if not dry_run:
                    self.server.controller.deleted(obj)
            group = RESOURCES[plural][0]
            self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "group": group, "kind": plural, "uid": obj["metadata"]["uid"]}})
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _scale(self, plural, namespace, name, dry_run):
        """PUT or PATCH of the autoscaling/v1 Scale subresource: only spec.replicas goes through to the object."""
        key = store_key(plural)
        with self.server.store.lock:
            current = self.server.store.get(key, namespace, name)
            if current is None:
                raise self._not_found(plural, name)
            if self.command == "PUT":
                scale = self._json_body()
            else:
                scale = patches.apply(to_scale(current), self.headers.get("Content-Type"), self._body())
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", 'Scale.autoscaling "%s" is invalid: spec.replicas: Invalid value: %r: must be '
                               "greater than or equal to 0" % (name, replicas))
            current["spec"]["replicas"] = replicas
            updated = self.server.store.update(key, namespace, current, dry_run=dry_run, check_rv=False)
            if not dry_run:
                self.server.controller.sync(key, namespace, name)
                updated = self.server.store.get(key, namespace, name)
        self._send(200, to_scale(updated))

    def _send_object(self, plural, obj, code=200):
        if "as=Table" in (self.headers.get("Accept") or ""):
            self._send(code, to_table(plural, [obj], obj["metadata"].get("resourceVersion", "")))
        else:
            self._send(code, obj)

    def _matching(self, plural, namespace, query):
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), plural)
        return lambda obj: labels(obj["metadata"].get("labels")) and fields(obj)

    def _list(self, plural, namespace, query):
        match = self._matching(plural, namespace, query)
        objects, rv = self.server.store.list(store_key(plural), namespace)
        objects = [o for o in objects if match(o)]
        if "as=Table" in (self.headers.get("Accept") or ""):
            self._send(200, to_table(plural, objects, rv))
            return
        group, version, kind = RESOURCES[plural][:3]
        self._send(200, {"kind": kind + "List", "apiVersion": "%s/%s" % (group, version) if group else version,
                         "metadata": {"resourceVersion": rv}, "items": objects})

    def _namespace_exists(self, namespace):
        if namespace is not None and self.server.store.get("namespaces", None, namespace) is None:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % namespace,
                           {"name": namespace, "kind": "namespaces"})

    def _create(self, plural, namespace, obj, dry_run):
        if "create" not in RESOURCES[plural][5]:  # pods: only the controller makes them
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if RESOURCES[plural][3] and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        meta = obj.setdefault("metadata", {})
        if namespace is not None and meta.get("namespace") not in (None, "", namespace):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on "
                           "the request")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + str(self.server.store.rv + 1).rjust(5, "x")
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            meta.pop(key, None)
        if plural in WORKLOADS:
            obj.pop("status", None)
        default(plural, obj)
        validate(plural, obj)
        with self.server.store.lock:
            self._namespace_exists(namespace)
            try:
                created = self.server.store.create(store_key(plural), namespace, obj, dry_run=dry_run)
            except StoreError as exc:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (
                    store_key(plural), meta["name"]), {"name": meta["name"], "group": RESOURCES[plural][0],
                                                       "kind": plural}) from exc
            if not dry_run:
                self.server.controller.sync(store_key(plural), namespace, meta["name"])
        self._send_object(plural, created, code=201)

    def _update(self, plural, namespace, name, obj, dry_run, sub, check_rv):
        key = store_key(plural)
        with self.server.store.lock:
            current = self.server.store.get(key, namespace, name)
            if current is None:
                raise self._not_found(plural, name)
            if sub == "status":
                obj = dict(current, status=obj.get("status"))
            elif plural in WORKLOADS or plural == "pods":
                obj["status"] = current.get("status")
            if plural == "pods" and obj.get("spec") != current.get("spec"):
                # the real API lets a few fields change (images, tolerations, ...); the double none
                raise ApiError(422, "Invalid", 'Pod "%s" is invalid: spec: Forbidden: pod updates may not change '
                               "fields (the test double allows none to change)" % name,
                               {"name": name, "kind": "Pod", "causes": [{"reason": "FieldValueForbidden",
                                                                         "field": "spec"}]})
            default(plural, obj)
            validate(plural, obj)
            updated = self.server.store.update(key, namespace, obj, dry_run=dry_run, check_rv=check_rv)
            if not dry_run:
                self.server.controller.sync(key, namespace, name)
        self._send_object(plural, updated)

    # watch
    def _client_gone(self):
        try:
            readable = select.select([self.connection], [], [], 0)[0]
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, plural, namespace, query):
        store, key = self.server.store, store_key(plural)
        match = self._matching(plural, namespace, query)
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        start = query.get("resourceVersion") or "0"
        with store.lock:
            if start == "0":
                initial, start = store.list(key, namespace)
                initial = [("ADDED", o) for o in initial if match(o)]
            else:
                initial = []
            try:
                since = int(start)
            except ValueError:
                raise ApiError(400, "BadRequest", "invalid resourceVersion %r" % start) from None
            if store.events_after(since, key, namespace) is None:
                raise ApiError(410, "Expired", "too old resource version: %s (%d)" % (since, store.rv))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        as_table = "as=Table" in (self.headers.get("Accept") or "")

        def event(kind, obj):
            if as_table:  # kubectl get --watch asks for Tables of one row each
                obj = to_table(plural, [obj], obj["metadata"].get("resourceVersion", ""))
            self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        try:
            for kind, obj in initial:
                event(kind, obj)
            while time.monotonic() < deadline and not store.closed and not self.server.stopping.is_set():
                with store.lock:
                    events = store.events_after(since, key, namespace)
                    since = store.rv
                for _rv, kind, obj in events or []:
                    if match(obj):
                        event(kind, obj)
                if self._client_gone():
                    return
                store.wait(since, min(0.2, max(0.0, deadline - time.monotonic())))
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            return
        self.close_connection = True


class FakeApiServer(ThreadingHTTPServer):
    """The HTTP server with its store and controller. start() binds 127.0.0.1 on a free port and serves in a thread."""

    daemon_threads = True

    def __init__(self, host="127.0.0.1", port=0, tick=0.05, log=False):
        super().__init__((host, port), Handler)
        self.store = Store()
        self.controller = Controller(self.store, tick=tick)
        self.stopping = threading.Event()
        self.log = [] if log else None
        self.errors = []  # unexpected exceptions in request handlers (bugs of the double); tests check it stays empty
        self.address = "%s:%d" % self.server_address[:2]
        self.url = "http://%s" % self.address
        self._thread = None
        for name in FIXED_NAMESPACES:
            self.store.create("namespaces", None, default("namespaces", {"metadata": {"name": name}}))

    def server_bind(self):
        """Bind without HTTPServer's reverse DNS lookup of the address (socket.getfqdn), slow where DNS is missing."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def start(self):
        self.controller.start()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="k8s-fake-api", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.store.close()
        self.controller.stop()
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(5)


def main():
    server = FakeApiServer().start()
    print("fake Kubernetes API (test double) at %s" % server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
