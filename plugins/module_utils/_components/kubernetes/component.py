# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `kubernetes` component: Deployments, StatefulSets and DaemonSets of one namespace.

Capture records, per workload, its normalized pod template (our template hash), images and the digests its pods
run, spec.replicas and the revision holding the template; the ConfigMaps the templates read, by content; the Secrets
they read as a salted sha256 of their data only (never a value). The revision's ReplicaSet / ControllerRevision gets
the point id in its `fleetops.rollback/point` annotation, so k8s_rollout_restore finds it after any renumbering.

A restore does not depend on the history at all: it patches the recorded template back (history pruned or
renumbered does not matter), ConfigMaps first. Every patch is a JSON patch of the fields it restores only, so
unrelated labels and annotations are kept, and tests the resourceVersion read in the plan, so a concurrent change is
refused instead of overwritten. Each planned patch is sent once as a server-side dry run while planning: check mode
is the server's answer, and a patch the server refuses is refused before anything changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s as _k8s
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads as _wl
from ansible_collections.fleetops.rollback.plugins.module_utils._common import PROGRESS, RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components import kubernetes as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_pair

CONNECTION_KEYS = ("kubeconfig", "context", "host", "validate_certs", "ca_cert", "namespace")
DEFAULT_WAIT = 300.0
# A Kubernetes object name (DNS-1123 subdomain).
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SALT_PREFIX = "fleetops.rollback/secret-salt"
# Times a patch whose resourceVersion test failed is sent again when only the status moved in between.
PATCH_ATTEMPTS = 3
# The pointer-escaped annotation keys a patch adds (RFC 6901: "/" is "~1").
RESTORED_KEY = _wl.RESTORED_ANNOTATION.replace("~", "~0").replace("/", "~1")
POINT_KEY = _wl.POINT_ANNOTATION.replace("~", "~0").replace("/", "~1")


def _label(kind, name):
    return "%s/%s" % (kind, name)


def check_name(value, where):
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise RollbackError("%s: %r is not a Kubernetes object name (lowercase letters, digits, '-' and '.', at most "
                            "253 characters)" % (where, value))
    return value


def check_workload(item, where):
    """One entry of `workloads` as {kind, name} or {kind, selector}."""
    if isinstance(item, str):
        kind, sep, name = item.partition("/")
        if not sep:
            kind, name = "Deployment", item
        if not name or "/" in name:
            raise RollbackError("%s: %r is not a workload; give KIND/NAME (deployment/web, sts/db) or a Deployment's "
                                "name" % (where, item))
        return {"kind": _wl.kind_of(kind, where), "name": check_name(name, where)}
    if not isinstance(item, dict):
        raise RollbackError("%s: %r is not a workload; give {kind: Deployment, name: web}, {selector: app=web} or "
                            "deployment/web" % (where, item))
    unknown = sorted(set(item) - {"kind", "name", "selector"})
    if unknown:
        raise RollbackError("%s: unsupported key %s; a workload has kind and one of name or selector"
                            % (where, ", ".join(unknown)))
    kind = _wl.kind_of(item.get("kind") or "Deployment", where + ".kind")
    has_name, has_selector = item.get("name") is not None, item.get("selector") is not None
    if has_name == has_selector:
        raise RollbackError("%s: give exactly one of name or selector, got %s" % (
            where, "both" if has_name else "neither"))
    if has_name:
        return {"kind": kind, "name": check_name(item["name"], where + ".name")}
    selector = item["selector"]
    if not isinstance(selector, str) or not selector.strip():
        raise RollbackError("%s.selector: %r is not a label selector; give one in kubectl's syntax, such as app=web"
                            % (where, selector))
    return {"kind": kind, "selector": selector.strip()}


def secret_salt(namespace_uid, name):
    """The salt of one Secret's hash: fixed for the Secret's name in this namespace of this cluster, so two
    captures of the same state are the same point, and unknown to anyone without the cluster (no precomputed
    tables). It is stored next to the hash, as any salt is."""
    return hashlib.sha256(("%s:%s:%s" % (SALT_PREFIX, namespace_uid, name)).encode("utf-8")).hexdigest()[:32]


def secret_hash(secret, salt):
    """sha256 of the salt and the Secret's canonical type and data. The only trace of a Secret a point keeps."""
    canonical = json.dumps({"type": secret.get("type") or "Opaque", "data": secret.get("data") or {}},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((salt + ":" + canonical).encode("utf-8")).hexdigest()


def configmap_content(obj):
    return {"data": dict(obj.get("data") or {}), "binaryData": dict(obj.get("binaryData") or {})}


def content_hash(content):
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def configmap_summary(content):
    if content is None:
        return None
    return {"keys": sorted(content["data"]) + sorted(content["binaryData"]), "hash": content_hash(content)}


def configmap_patch(current, recorded):
    """JSON patch of /data and /binaryData only: labels, annotations and everything else are kept."""
    ops = []
    for field in ("data", "binaryData"):
        want, have = recorded.get(field) or {}, current.get(field)
        if want and have is None:
            ops.append({"op": "add", "path": "/" + field, "value": want})
        elif want and have != want:
            ops.append({"op": "replace", "path": "/" + field, "value": want})
        elif not want and have is not None:
            ops.append({"op": "remove", "path": "/" + field})
    return ops


def workload_patch(obj, record, resource_version, point_id, replicas):
    """The JSON patch that puts a workload's recorded template (and replicas) back: it tests the resourceVersion the
    plan read, and adds our restored-from annotation without touching any other annotation or label."""
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
           {"op": "replace", "path": "/spec/template", "value": record["template"]}]
    if replicas and record.get("replicas") is not None:
        ops.append({"op": "replace" if "replicas" in obj["spec"] else "add", "path": "/spec/replicas",
                    "value": record["replicas"]})
    if point_id:
        if obj["metadata"].get("annotations"):
            ops.append({"op": "add", "path": "/metadata/annotations/" + RESTORED_KEY, "value": point_id})
        else:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {_wl.RESTORED_ANNOTATION: point_id}})
    return ops


def template_listing(template):
    """A readable listing of a template for a diff: its metadata and each container, one JSON field a line."""
    spec = template.get("spec") or {}
    parts = []
    if template.get("metadata"):
        parts.append("metadata: %s" % json.dumps(template["metadata"], sort_keys=True))
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            parts.append("%s %s:" % (group[:-1], container.get("name")))
            parts += ["  %s: %s" % (key, json.dumps(value, sort_keys=True)) for key, value in sorted(container.items())
                      if key != "name"]
    rest = {key: value for key, value in spec.items() if key not in ("initContainers", "containers")}
    parts += ["%s: %s" % (key, json.dumps(value, sort_keys=True)) for key, value in sorted(rest.items())]
    return "".join("    %s\n" % line for line in parts)


def workload_text(label, template, replicas, digests=None):
    lines = ["%s\n" % label, "  template hash: %s\n" % _wl.template_hash(template), "  replicas: %s\n" % replicas,
             "  images:\n"]
    for container, image in _wl.images(template).items():
        digest = (digests or {}).get(container)
        lines.append("    %s: %s%s\n" % (container, image, " (%s)" % digest if digest else ""))
    lines.append("  template:\n")
    return "".join(lines) + template_listing(template)


def configmap_text(name, content):
    if content is None:
        return "ConfigMap %s: (absent)\n" % name
    lines = ["ConfigMap %s\n" % name]
    for key, value in sorted(content["data"].items()):
        lines.append("  %s:\n" % key)
        lines += ["    %s\n" % line for line in value.splitlines()] or ["    \n"]
    for key, value in sorted(content["binaryData"].items()):
        lines.append("  %s: (binary, %d bytes, sha256 %s)\n" % (
            key, len(base64.b64decode(value or "")), hashlib.sha256((value or "").encode()).hexdigest()[:12]))
    return "".join(lines)


def secret_line(name, changed, restored):
    """A Secret in a diff: by its hash only, never its data."""
    if not changed:
        return "Secret %s: as in the point (by salted hash)\n" % name
    if restored:
        return "Secret %s: not restored: restore Secrets with your secret manager\n" % name
    return "Secret %s: changed since the point (by salted hash)\n" % name


class KubernetesComponent(Component):
    name = "kubernetes"
    declaration = declaration
    previewable = True
    supports_select = True

    def __init__(self, runtime=None):
        super().__init__(runtime)
        # Connections of this call only (one per connection), and what the last plan read (resourceVersions, current
        # templates and ConfigMaps) for apply and diff.
        self._clusters = {}
        self._versions = {}
        self._seen = {}

    # ---------------------------------------------------------------- connection
    def cluster(self, connection):
        key = json.dumps(connection, sort_keys=True)
        if key not in self._clusters:
            self._clusters[key] = _k8s.connect(connection, api_key=self.runtime.get("kubernetes_api_key"))
        return self._clusters[key]

    # ---------------------------------------------------------------- spec
    def check_spec(self, spec, where):
        items = spec.get("workloads")
        if not isinstance(items, list) or not items:
            raise RollbackError("%s.workloads: give a non-empty list of workloads (deployment/web, {kind: sts, name: "
                                "db} or {selector: app=web}), got %r" % (where, items))
        workloads = []
        for index, item in enumerate(items):
            entry = check_workload(item, "%s.workloads[%d]" % (where, index))
            if entry in workloads:
                raise RollbackError("%s.workloads[%d]: %r is listed twice" % (where, index, item))
            workloads.append(entry)
        wait = spec.get("wait_timeout")
        wait = DEFAULT_WAIT if wait is None else wait
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait <= 0:
            raise RollbackError("%s.wait_timeout: %r is not a number of seconds above 0" % (where, wait))
        if spec.get("namespace") is not None:
            check_name(spec["namespace"], where + ".namespace")
        out = {key: spec.get(key) for key in CONNECTION_KEYS}
        out.update(workloads=workloads, configmaps=spec.get("configmaps", True) is not False,
                   secrets=spec.get("secrets") or "report", replicas=spec.get("replicas", True) is not False,
                   wait_timeout=float(wait))
        return out

    @staticmethod
    def _connection(spec):
        return {key: spec.get(key) for key in CONNECTION_KEYS if spec.get(key) is not None}

    def _resolve(self, cluster, spec, refuse_empty):
        """The workload objects a spec selects, each once, in the spec's order."""
        found, seen = [], set()
        for index, entry in enumerate(spec["workloads"]):
            where = "components.kubernetes.workloads[%d]" % index
            if "name" in entry:
                obj = _wl.read(cluster, entry["kind"], entry["name"], missing_ok=True)
                if obj is None:
                    if refuse_empty:
                        raise RollbackError("%s: %s does not exist in namespace %s on %s; give an existing workload "
                                            "(kubectl get %s)" % (where, _label(entry["kind"], entry["name"]),
                                                                  cluster.namespace, cluster.where(),
                                                                  _wl.KINDS[entry["kind"]][0]))
                    continue
                objs = [obj]
            else:
                objs = _wl.select(cluster, entry["kind"], entry["selector"])
                if not objs and refuse_empty:
                    raise RollbackError("%s: the selector %r matches no %s in namespace %s on %s; check it with "
                                        "kubectl get %s -l '%s'" % (where, entry["selector"], entry["kind"],
                                                                    cluster.namespace, cluster.where(),
                                                                    _wl.KINDS[entry["kind"]][0], entry["selector"]))
            for obj in objs:
                key = (obj["kind"], obj["metadata"]["name"])
                if key not in seen:
                    seen.add(key)
                    found.append(obj)
        return found

    def check_capturable(self, spec):
        self._resolve(self.cluster(self._connection(spec)), spec, refuse_empty=True)

    # ---------------------------------------------------------------- capture
    def _namespace_uid(self, cluster):
        try:
            return (cluster.get(_wl.CORE + "/namespaces/" + cluster.namespace).get("metadata") or {}).get("uid") \
                or cluster.namespace
        except _k8s.KubeError as err:
            if err.status == 403:  # a token that may not read namespaces: the name is the salt's base
                return cluster.namespace
            raise

    def capture(self, store, spec, point_id=None):
        cluster = self.cluster(self._connection(spec))
        workloads, configmap_names, secret_names = [], set(spec.get("extra_configmaps") or []), set()
        for obj in self._resolve(cluster, spec, refuse_empty=False):
            workloads.append(self._capture_workload(cluster, obj, store is not None and point_id))
            configmap_names.update(workloads[-1]["configmaps"])
            secret_names.update(workloads[-1]["secrets"])
        configmaps = []
        if spec["configmaps"]:
            for name in sorted(configmap_names):
                obj = cluster.get(_wl.core_path("configmaps", cluster.namespace, name), missing_ok=True)
                configmaps.append({"name": name, "absent": True} if obj is None else
                                  dict(configmap_content(obj), name=name, immutable=bool(obj.get("immutable"))))
        secrets = []
        if spec["secrets"] != "ignore" and secret_names:
            namespace_uid = self._namespace_uid(cluster)
            for name in sorted(secret_names):
                obj = cluster.get(_wl.core_path("secrets", cluster.namespace, name), missing_ok=True)
                if obj is None:
                    secrets.append({"name": name, "absent": True})
                    continue
                salt = secret_salt(namespace_uid, name)
                secrets.append({"name": name, "type": obj.get("type") or "Opaque", "salt": salt,
                                "hash": secret_hash(obj, salt)})
        connection = self._connection(spec)
        # The namespace the point was taken in, even when the context chose it: a restore goes back there.
        connection["namespace"] = cluster.namespace
        return {"connection": connection, "server": cluster.server, "workloads": workloads,
                "configmaps": configmaps, "secrets": secrets,
                "options": {key: spec[key] for key in ("configmaps", "secrets", "replicas", "wait_timeout")}}

    def _capture_workload(self, cluster, obj, point_id):
        template = _wl.normal_template(obj["spec"].get("template"))
        revisions = _wl.history(cluster, obj)
        current = _wl.current_revision(obj, revisions)
        digests = _wl.digests(_wl.pods(cluster, obj, current)) if current is not None else {}
        configmaps, secrets = _wl.references(template)
        revision = None
        if current is not None:
            labels = current.holder["metadata"].get("labels") or {}
            revision = {"number": current.number, "holder": current.name,
                        "hash_label": next((labels[k] for k in _wl.HASH_LABELS if labels.get(k)), None)}
            if point_id:
                self._mark_revision(cluster, current, point_id)
        return {"kind": obj["kind"], "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
                "template": template, "hash": _wl.template_hash(template), "images": _wl.images(template),
                "digests": digests, "replicas": obj["spec"].get("replicas"), "revision": revision,
                "configmaps": configmaps, "secrets": secrets}

    @staticmethod
    def _mark_revision(cluster, revision, point_id):
        """Add the point id to the revision's fleetops.rollback/point annotation (that key only)."""
        points = revision.points
        if point_id in points:
            return
        value = ",".join(points + [point_id])
        if revision.annotations:
            ops = [{"op": "add", "path": "/metadata/annotations/" + POINT_KEY, "value": value}]
        else:
            ops = [{"op": "add", "path": "/metadata/annotations", "value": {_wl.POINT_ANNOTATION: value}}]
        PROGRESS.at("marking revision %s of %s with point %s" % (revision.number, revision.name, point_id))
        cluster.patch(revision.holder_path, ops)

    # ---------------------------------------------------------------- scope and select
    def scope(self, record, changes=None):  # pylint: disable=unused-argument
        spec = {key: record["connection"].get(key) for key in CONNECTION_KEYS}
        spec.update(record["options"])
        spec["workloads"] = [{"kind": w["kind"], "name": w["name"]} for w in record["workloads"]]
        # The ConfigMaps this restore may write, even those the workloads do not read today (or that do not exist
        # yet): the safety point holds their content or their absence.
        spec["extra_configmaps"] = [c["name"] for c in record["configmaps"]]
        return spec

    def select(self, record, items):
        known = {}
        for w in record["workloads"]:
            known[_label(w["kind"], w["name"])] = w
        chosen = []
        for item in items:
            kind, sep, name = item.partition("/")
            if sep:
                try:
                    kind = _wl.kind_of(kind, "select.kubernetes")
                except RollbackError:
                    kind = None
                matches = [w for w in record["workloads"] if w["kind"] == kind and w["name"] == name]
            else:
                matches = [w for w in record["workloads"] if w["name"] == item]
            if not matches:
                raise RollbackError("select.kubernetes: %r is not a workload of this point; it holds %s"
                                    % (item, ", ".join(sorted(known)) or "none"))
            chosen += [w for w in matches if w not in chosen]
        configmaps = {n for w in chosen for n in w["configmaps"]}
        secrets = {n for w in chosen for n in w["secrets"]}
        return dict(record, workloads=chosen, configmaps=[c for c in record["configmaps"] if c["name"] in configmaps],
                    secrets=[s for s in record["secrets"] if s["name"] in secrets])

    # ---------------------------------------------------------------- plan
    def plan(self, store, record, point_id=""):
        try:
            return self._plan(record, point_id)
        except _k8s.KubeError as err:
            raise RollbackError("point %s: components.kubernetes: %s; nothing was changed" % (point_id, err.msg),
                                status=err.status, reason=err.reason) from None

    def _plan(self, record, point_id):
        cluster = self.cluster(record["connection"])
        options, exact = record["options"], record.get("exact")
        self.warnings = []
        self._check_secrets(cluster, record, point_id)
        changes = []
        if options.get("configmaps", True):
            changes += self._plan_configmaps(cluster, record, point_id, exact)
        for item in record["workloads"]:
            label = _label(item["kind"], item["name"])
            obj = _wl.read(cluster, item["kind"], item["name"], missing_ok=True)
            if obj is None:
                raise RollbackError("point %s: %s no longer exists in namespace %s on %s; a restore patches workloads "
                                    "and does not recreate them: recreate it (kubectl apply), or leave it out with "
                                    "select; nothing was changed"
                                    % (point_id, label, cluster.namespace, cluster.where()), workload=label)
            template = _wl.normal_template(obj["spec"].get("template"))
            self._seen[label] = {"template": template, "replicas": obj["spec"].get("replicas")}
            self._versions[label] = obj["metadata"].get("resourceVersion")
            replicas = options.get("replicas", True) and item.get("replicas") is not None
            if template == item["template"] and (not replicas or obj["spec"].get("replicas") == item["replicas"]):
                continue
            change = {"action": "restore", "workload": label,
                      "from": {"images": _wl.images(template), "hash": _wl.template_hash(template),
                               "replicas": obj["spec"].get("replicas")},
                      "to": {"images": item["images"], "hash": item["hash"],
                             "replicas": item["replicas"] if replicas else obj["spec"].get("replicas")},
                      "restored_from": point_id or None}
            # The server judges the patch now, before anything changes (and check mode is this answer).
            try:
                cluster.patch(_wl.path(item["kind"], cluster.namespace, item["name"]),
                              workload_patch(obj, item, self._versions[label], point_id, replicas), dry_run=True)
            except _k8s.KubeError as err:
                raise RollbackError("point %s: the API server refuses to restore %s (server-side dry run): %s; "
                                    "nothing was changed" % (point_id, label, err.msg), workload=label) from None
            changes.append(change)
        return changes

    def _check_secrets(self, cluster, record, point_id):
        mode = record["options"].get("secrets", "report")
        if mode == "ignore":
            return
        changed = []
        for item in record["secrets"]:
            obj = cluster.get(_wl.core_path("secrets", cluster.namespace, item["name"]), missing_ok=True)
            if item.get("absent"):
                if obj is not None:
                    changed.append("%s (created since the point)" % item["name"])
            elif obj is None:
                changed.append("%s (deleted since the point)" % item["name"])
            elif secret_hash(obj, item["salt"]) != item["hash"] or (obj.get("type") or "Opaque") != item["type"]:
                changed.append("%s (data changed since the point, by salted hash)" % item["name"])
        self._seen["secrets"] = changed
        if not changed:
            return
        if mode == "verify":
            raise RollbackError("point %s: components.kubernetes.secrets=verify: Secret %s in namespace %s; Secrets "
                                "are never stored, so a restore cannot put them back: restore them with your secret "
                                "manager first, or restore with secrets=report; nothing was changed"
                                % (point_id, ", ".join(changed), cluster.namespace), secrets=changed)
        self.warnings.append("point %s: Secret %s in namespace %s; the workloads are restored, the Secrets are not "
                             "(restore them with your secret manager)" % (point_id, ", ".join(changed),
                                                                          cluster.namespace))

    def _plan_configmaps(self, cluster, record, point_id, exact):
        changes = []
        for item in record["configmaps"]:
            name = item["name"]
            path = _wl.core_path("configmaps", cluster.namespace, name)
            obj = cluster.get(path, missing_ok=True)
            current = configmap_content(obj) if obj is not None else None
            self._seen["configmap/" + name] = current
            if item.get("absent"):
                # Only a safety point removes what the restore it guards created.
                if exact and obj is not None:
                    changes.append({"action": "delete", "configmap": name, "from": configmap_summary(current),
                                    "to": None})
                    cluster.request("DELETE", path, {"dryRun": "All"})
                continue
            wanted = configmap_content(item)
            if current == wanted:
                continue
            if obj is None:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
                body.update({k: v for k, v in wanted.items() if v})
                if item.get("immutable"):
                    body["immutable"] = True
                cluster.create(_wl.core_path("configmaps", cluster.namespace), body, dry_run=True)
                action = "create"
            else:
                if obj.get("immutable"):
                    raise RollbackError("point %s: ConfigMap %s is immutable and its data differs from the point; it "
                                        "cannot be patched: delete it (kubectl delete configmap %s) so that the "
                                        "restore recreates it, or restore with configmaps=false; nothing was changed"
                                        % (point_id, name, name), configmap=name)
                cluster.patch(path, configmap_patch(obj, wanted), dry_run=True)
                action = "update"
            changes.append({"action": action, "configmap": name, "from": configmap_summary(current),
                            "to": configmap_summary(wanted)})
        return changes

    # ---------------------------------------------------------------- apply
    def apply(self, store, record, changes):
        if not changes:
            return
        cluster = self.cluster(record["connection"])
        by_name = {c["name"]: c for c in record["configmaps"]}
        for change in changes:
            if "configmap" in change:
                self._apply_configmap(cluster, change, by_name[change["configmap"]])
        recorded = {_label(w["kind"], w["name"]): w for w in record["workloads"]}
        touched = []
        for change in changes:
            if change.get("action") == "restore":
                touched.append(self._apply_workload(cluster, record, recorded[change["workload"]], change))
        if not touched:
            return
        PROGRESS.at("waiting for the rollout of %s" % ", ".join(_wl.label(w) for w in touched))
        try:
            # A safety point puts back what was there, healthy or not: the controller only has to take it.
            _wl.wait_rollouts(cluster, touched, record["options"].get("wait_timeout", DEFAULT_WAIT),
                              settled=bool(record.get("exact")))
        except RollbackError as err:
            stuck = []
            for obj in touched:
                try:
                    stuck += _wl.stuck_pods(_wl.pods(cluster, _wl.read(cluster, obj["kind"], obj["metadata"]["name"])))
                except RollbackError:
                    pass  # the failure itself is what the message reports
            if stuck:
                err.msg += "; pods not running: %s" % ", ".join("%s (%s: %s, %s restarts)" % s for s in stuck[:5])
            raise

    def _apply_configmap(self, cluster, change, item):
        name = change["configmap"]
        path = _wl.core_path("configmaps", cluster.namespace, name)
        PROGRESS.at("restoring ConfigMap %s" % name)
        if change["action"] == "delete":
            cluster.request("DELETE", path)
            return
        wanted = configmap_content(item)
        obj = cluster.get(path, missing_ok=True)
        if obj is None:
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
            body.update({k: v for k, v in wanted.items() if v})
            if item.get("immutable"):
                body["immutable"] = True
            cluster.create(_wl.core_path("configmaps", cluster.namespace), body)
            return
        ops = configmap_patch(obj, wanted)
        if ops:
            cluster.patch(path, [{"op": "test", "path": "/metadata/resourceVersion",
                                  "value": obj["metadata"]["resourceVersion"]}] + ops)

    def _apply_workload(self, cluster, record, item, change):
        label = change["workload"]
        path = _wl.path(item["kind"], cluster.namespace, item["name"])
        replicas = record["options"].get("replicas", True) and item.get("replicas") is not None
        version = self._versions.get(label)
        PROGRESS.at("restoring the template of %s" % label)
        for attempt in range(PATCH_ATTEMPTS):
            obj = _wl.read(cluster, item["kind"], item["name"])
            now = {"hash": _wl.template_hash(obj["spec"].get("template")), "replicas": obj["spec"].get("replicas")}
            if now["hash"] != change["from"]["hash"] or (replicas and now["replicas"] != change["from"]["replicas"]):
                raise RollbackError("%s was changed by someone else since the plan (template %s, replicas %s; planned "
                                    "from template %s, replicas %s); it is not overwritten"
                                    % (label, now["hash"], now["replicas"], change["from"]["hash"],
                                       change["from"]["replicas"]), workload=label)
            version = version or obj["metadata"]["resourceVersion"]
            try:
                return cluster.patch(path, workload_patch(obj, item, version, change.get("restored_from"), replicas))
            except _k8s.KubeError as err:
                # Only the status (or an unrelated field) moved since the plan: the template check above said so.
                if err.status not in (409, 422) or attempt + 1 == PATCH_ATTEMPTS:
                    raise
                version = None
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- diff
    def diff(self, store, record, changes):
        out = []
        by_name = {c["name"]: c for c in record["configmaps"]}
        recorded = {_label(w["kind"], w["name"]): w for w in record["workloads"]}
        for change in changes:
            if "configmap" in change:
                name = change["configmap"]
                item = by_name[name]
                before = configmap_text(name, self._seen.get("configmap/" + name))
                after = configmap_text(name, None if item.get("absent") else configmap_content(item))
                before, after = redact_pair(before, after)
                out.append({"before_header": "configmap/%s" % name, "after_header": "configmap/%s" % name,
                            "before": before, "after": after})
                continue
            label = change["workload"]
            item = recorded[label]
            seen = self._seen.get(label) or {}
            before = workload_text(label, seen.get("template") or {}, change["from"]["replicas"])
            after = workload_text(label, item["template"], change["to"]["replicas"], item.get("digests"))
            before, after = redact_pair(before, after)
            out.append({"before_header": label, "after_header": label, "before": before, "after": after})
        if record["secrets"] and record["options"].get("secrets") != "ignore":
            changed = {text.split(" ", 1)[0] for text in self._seen.get("secrets") or []}
            if changed:
                names = [s["name"] for s in record["secrets"]]
                before = "".join(secret_line(n, n in changed, restored=False) for n in names)
                after = "".join(secret_line(n, n in changed, restored=True) for n in names)
                out.append({"before_header": "secrets", "after_header": "secrets", "before": before, "after": after})
        return out
