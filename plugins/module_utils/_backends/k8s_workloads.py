# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deployments, StatefulSets and DaemonSets: their paths, pod templates, revision history, the ConfigMaps and
Secrets a template reads, rollout state and the wait for a rollout, with a deadline.

History is found by ownerReferences (the workload's uid), never by label selector: two workloads with overlapping
selectors each see only their own ReplicaSets or ControllerRevisions. Templates are compared after dropping what
the server adds or a client sends empty (nulls, empty maps and lists, creationTimestamp, the controller's hash
labels), so a template read back from a ReplicaSet equals the one the workload holds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from urllib.parse import quote

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError

APPS = "/apis/apps/v1"
CORE = "/api/v1"
# kind -> (plural, accepted spellings)
KINDS = {
    "Deployment": ("deployments", ("deployment", "deployments", "deploy")),
    "StatefulSet": ("statefulsets", ("statefulset", "statefulsets", "sts")),
    "DaemonSet": ("daemonsets", ("daemonset", "daemonsets", "ds")),
}
HASH_LABELS = ("pod-template-hash", "controller-revision-hash")
REVISION = "deployment.kubernetes.io/revision"
# The annotation capture puts on the workload's current ReplicaSet / ControllerRevision: the ids of the points that
# recorded it, so a point finds its revision after any renumbering.
POINT_ANNOTATION = "fleetops.rollback/point"
RESTORED_ANNOTATION = "fleetops.rollback/restored-from"
# Waiting reasons of a container that is not going to run by itself.
STUCK_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                 "CreateContainerError", "InvalidImageName", "RunContainerError")


def kind_of(value, where):
    """The canonical kind for a spelling (Deployment, deploy, sts, ...), or a clear refusal."""
    if isinstance(value, str):
        for kind, (_plural, spellings) in KINDS.items():
            if value == kind or value.lower() in spellings:
                return kind
    raise RollbackError("%s: %r is not a workload kind this tool restores; give Deployment, StatefulSet or DaemonSet"
                        % (where, value))


def path(kind, namespace, name=None, sub=None):
    out = "%s/namespaces/%s/%s" % (APPS, quote(namespace, safe=""), KINDS[kind][0])
    if name is not None:
        out += "/" + quote(name, safe="")
    return out + ("/" + sub if sub else "")


def core_path(plural, namespace, name=None):
    out = "%s/namespaces/%s/%s" % (CORE, quote(namespace, safe=""), plural)
    return out + ("/" + quote(name, safe="") if name is not None else "")


def label(obj):
    return "%s/%s" % (obj.get("kind") or "?", obj["metadata"]["name"])


# ---------------------------------------------------------------- templates
def _pruned(value):
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def normal_template(template):
    """A pod template as compared and stored: no server-set or empty fields, no controller hash labels."""
    out = _pruned(copy.deepcopy(template or {}))
    meta = out.get("metadata") or {}
    meta.pop("creationTimestamp", None)
    labels = meta.get("labels") or {}
    for key in HASH_LABELS:
        labels.pop(key, None)
    if not labels:
        meta.pop("labels", None)
    if not meta:
        out.pop("metadata", None)
    return out


def template_hash(template):
    """Our stable identity of a pod template: 16 hex digits of the sha256 of its canonical JSON."""
    text = json.dumps(normal_template(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def images(template):
    """container name -> image, init containers first."""
    spec = (template or {}).get("spec") or {}
    return {c["name"]: c.get("image") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}


def references(template):
    """The ConfigMaps and Secrets a pod template reads: (configmaps, secrets), each a sorted list of names."""
    spec = (template or {}).get("spec") or {}
    configmaps, secrets = set(), set()
    for volume in spec.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            configmaps.add(volume["configMap"]["name"])
        if (volume.get("secret") or {}).get("secretName"):
            secrets.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                configmaps.add(source["configMap"]["name"])
            if (source.get("secret") or {}).get("name"):
                secrets.add(source["secret"]["name"])
    containers = ((spec.get("initContainers") or []) + (spec.get("containers") or [])
                  + (spec.get("ephemeralContainers") or []))
    for container in containers:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if (source.get("configMapKeyRef") or {}).get("name"):
                configmaps.add(source["configMapKeyRef"]["name"])
            if (source.get("secretKeyRef") or {}).get("name"):
                secrets.add(source["secretKeyRef"]["name"])
        for env in container.get("envFrom") or []:
            if (env.get("configMapRef") or {}).get("name"):
                configmaps.add(env["configMapRef"]["name"])
            if (env.get("secretRef") or {}).get("name"):
                secrets.add(env["secretRef"]["name"])
    for pull in spec.get("imagePullSecrets") or []:
        if pull.get("name"):
            secrets.add(pull["name"])
    return sorted(configmaps), sorted(secrets)


# ---------------------------------------------------------------- reading
def read(cluster, kind, name, missing_ok=False):
    obj = cluster.get(path(kind, cluster.namespace, name), missing_ok=missing_ok)
    if obj is not None:
        obj.setdefault("kind", kind)
    return obj


def select(cluster, kind, selector):
    """Workloads of a kind matching a label selector (kubectl's syntax), sorted by name."""
    found = cluster.items(path(kind, cluster.namespace), {"labelSelector": selector})
    for obj in found:
        obj.setdefault("kind", kind)
    return sorted(found, key=lambda o: o["metadata"]["name"])


def _owned_by(obj, uid):
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


class Revision:
    """One entry of a workload's history: number, template, the object holding it (ReplicaSet/ControllerRevision)."""

    def __init__(self, number, template, holder):
        self.number = number
        self.template = template
        self.holder = holder
        self.hash = template_hash(template)

    @property
    def name(self):
        return self.holder["metadata"]["name"]

    @property
    def annotations(self):
        return self.holder["metadata"].get("annotations") or {}

    @property
    def points(self):
        return [p for p in self.annotations.get(POINT_ANNOTATION, "").split(",") if p]

    def hashes(self):
        """Every name this revision answers to: our template hash and the controller's hash label."""
        labels = self.holder["metadata"].get("labels") or {}
        return {self.hash} | {labels[k] for k in HASH_LABELS if labels.get(k)}

    @property
    def holder_path(self):
        plural = "replicasets" if self.holder.get("kind") == "ReplicaSet" else "controllerrevisions"
        return "%s/namespaces/%s/%s/%s" % (APPS, quote(self.holder["metadata"]["namespace"], safe=""), plural,
                                          quote(self.name, safe=""))


def history(cluster, workload):
    """The workload's revisions, oldest first, found by ownerReferences to its uid."""
    kind, uid = workload["kind"], workload["metadata"]["uid"]
    namespace = workload["metadata"].get("namespace") or cluster.namespace
    selector = _selector_text((workload["spec"].get("selector") or {}))
    query = {"labelSelector": selector} if selector else None
    out = []
    if kind == "Deployment":
        for rs in cluster.items("%s/namespaces/%s/replicasets" % (APPS, quote(namespace, safe="")), query):
            if _owned_by(rs, uid):
                rs.setdefault("kind", "ReplicaSet")
                number = _int((rs["metadata"].get("annotations") or {}).get(REVISION))
                out.append(Revision(number, rs["spec"].get("template") or {}, rs))
    else:
        for cr in cluster.items("%s/namespaces/%s/controllerrevisions" % (APPS, quote(namespace, safe="")), query):
            if _owned_by(cr, uid):
                cr.setdefault("kind", "ControllerRevision")
                template = ((cr.get("data") or {}).get("spec") or {}).get("template") or {}
                out.append(Revision(_int(cr.get("revision")), template, cr))
    return sorted(out, key=lambda r: r.number)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _selector_text(selector):
    parts = ["%s=%s" % item for item in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append("%s in (%s)" % (key, ",".join(values)))
        elif op == "NotIn":
            parts.append("%s notin (%s)" % (key, ",".join(values)))
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append("!" + key)
    return ",".join(parts)


def current_revision(workload, revisions):
    """The revision whose template the workload holds now (None when the controller has not made it yet)."""
    want = template_hash(workload["spec"].get("template"))
    matching = [r for r in revisions if r.hash == want]
    return matching[-1] if matching else None


def pods(cluster, workload, revision=None):
    """The workload's pods (of one revision when given), found through their owner chain."""
    namespace = workload["metadata"].get("namespace") or cluster.namespace
    selector = _selector_text(workload["spec"].get("selector") or {})
    found = cluster.items(core_path("pods", namespace), {"labelSelector": selector} if selector else None)
    if workload["kind"] == "Deployment":
        owners = {r.holder["metadata"]["uid"] for r in ([revision] if revision else history(cluster, workload))}
        found = [p for p in found if any(_owned_by(p, uid) for uid in owners)]
        return found
    found = [p for p in found if _owned_by(p, workload["metadata"]["uid"])]
    if revision is not None:
        found = [p for p in found if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
                 == (revision.holder["metadata"].get("labels") or {}).get("controller-revision-hash")]
    return found


def digests(pod_list):
    """container name -> image digest reference, when every pod reports the same one (else absent)."""
    seen = {}
    for pod in pod_list:
        for status in ((pod.get("status") or {}).get("initContainerStatuses") or []) + \
                ((pod.get("status") or {}).get("containerStatuses") or []):
            ref = status.get("imageID") or ""
            ref = ref.split("://", 1)[-1]
            if "@sha256:" in ref:
                seen.setdefault(status["name"], set()).add(ref)
    return {name: refs.pop() for name, refs in seen.items() if len(refs) == 1}


def stuck_pods(pod_list):
    """Pods with a container that will not run by itself: [(pod name, container, reason, restarts)]."""
    out = []
    for pod in pod_list:
        for status in ((pod.get("status") or {}).get("initContainerStatuses") or []) + \
                ((pod.get("status") or {}).get("containerStatuses") or []):
            reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in STUCK_REASONS:
                out.append((pod["metadata"]["name"], status.get("name"), reason, status.get("restartCount", 0)))
    return out


# ---------------------------------------------------------------- rollout state
def _condition(status, kind):
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def observed(workload):
    """Whether the controller has seen the workload's latest spec."""
    return _int((workload.get("status") or {}).get("observedGeneration")) >= _int(workload["metadata"].get("generation"))


def rollout_state(workload):
    """(state, message): state is "done", "progressing" or "failed", judged as `kubectl rollout status` does."""
    kind, meta, spec = workload["kind"], workload["metadata"], workload.get("spec") or {}
    status = workload.get("status") or {}
    name = "%s/%s" % (kind.lower(), meta["name"])
    if not observed(workload):
        return "progressing", "%s: waiting for the controller to observe generation %s" % (name, meta.get("generation"))
    if kind == "Deployment":
        progressing = _condition(status, "Progressing")
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return "failed", "%s: rollout exceeded its progress deadline: %s" % (name, progressing.get("message", ""))
        if spec.get("paused"):
            return "progressing", "%s: paused (kubectl rollout resume it)" % name
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        if updated < want:
            return "progressing", "%s: %d of %d new replicas updated" % (name, updated, want)
        if status.get("replicas", 0) > updated:
            return "progressing", "%s: %d old replicas pending termination" % (name, status["replicas"] - updated)
        if status.get("availableReplicas", 0) < updated:
            return "progressing", "%s: %d of %d updated replicas available" % (
                name, status.get("availableReplicas", 0), updated)
        return "done", "%s: %d of %d replicas updated and available" % (name, updated, want)
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        if status.get("readyReplicas", 0) < want:
            return "progressing", "%s: %d of %d pods ready" % (name, status.get("readyReplicas", 0), want)
        partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
        if partition:
            if status.get("updatedReplicas", 0) < want - partition:
                return "progressing", "%s: %d of %d pods updated (partition %d)" % (
                    name, status.get("updatedReplicas", 0), want - partition, partition)
        elif status.get("updateRevision") != status.get("currentRevision"):
            return "progressing", "%s: %d of %d pods updated" % (name, status.get("updatedReplicas", 0), want)
        return "done", "%s: %d of %d pods updated and ready" % (name, want, want)
    want = status.get("desiredNumberScheduled", 0)
    if status.get("updatedNumberScheduled", 0) < want:
        return "progressing", "%s: %d of %d pods updated" % (name, status.get("updatedNumberScheduled", 0), want)
    if status.get("numberAvailable", 0) < want:
        return "progressing", "%s: %d of %d updated pods available" % (name, status.get("numberAvailable", 0), want)
    return "done", "%s: %d of %d pods updated and available" % (name, want, want)


def wait_rollouts(cluster, workloads, timeout, clock=time.monotonic, sleep=time.sleep, settled=False):
    """Wait until every workload's rollout is done; raise when one fails or the deadline passes. `settled` waits
    only for the controller to observe the change (a safety revert puts back what was there, healthy or not).
    Returns the workloads as last read."""
    deadline = clock() + timeout
    pause = 0.1
    pending = {(w["kind"], w["metadata"]["name"]): w for w in workloads}
    done = {}
    while True:
        for key in list(pending):
            obj = read(cluster, key[0], key[1])
            state, message = rollout_state(obj)
            if settled and observed(obj):
                state = "done"
            if state == "failed":
                raise RollbackError(message, workload="%s/%s" % key, rollout="failed")
            if state == "done":
                done[key] = obj
                del pending[key]
            else:
                pending[key] = dict(obj, _message=message)
        if not pending:
            return [done[(w["kind"], w["metadata"]["name"])] for w in workloads]
        left = deadline - clock()
        if left <= 0:
            raise RollbackError("rollout not complete after %ss: %s" % (
                _seconds(timeout), "; ".join(w["_message"] for w in pending.values())), rollout="timeout")
        sleep(min(pause, left))
        pause = min(pause * 1.5, 2.0)


def _seconds(value):
    return ("%.1f" % value).rstrip("0").rstrip(".")
