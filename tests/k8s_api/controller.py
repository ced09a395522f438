"""A simulated deployment controller for the Kubernetes API test double (not a Kubernetes implementation).

How it runs: the server calls sync() synchronously after every write to a Deployment (so a client that writes and then
reads sees the ReplicaSets at once), and a background thread calls sync_all() every 0.05 s for what depends on time
(the progress deadline) and to repair ReplicaSets deleted by hand.

What it mirrors of the real controller, for Deployments:
- the pod-template hash (sha256 of the canonical JSON of the template, 10 characters; nulls and empty maps/lists
  are left out, so a template sent back by a Go client with "creationTimestamp": null or "resources": {} hashes
  the same) names a ReplicaSet NAME-HASH owned by the Deployment (ownerReferences, controller: true), labelled and
  selected with pod-template-hash;
- revisions: a new template gets revision max+1; going back to an older template re-uses that ReplicaSet and moves
  its revision to max+1 (the old number goes to deployment.kubernetes.io/revision-history); the Deployment's
  deployment.kubernetes.io/revision annotation follows the new ReplicaSet; the Deployment's own annotations are
  copied to the new ReplicaSet (so kubernetes.io/change-cause reaches `kubectl rollout history`);
- spec.revisionHistoryLimit (default 10): the oldest scaled-down ReplicaSets beyond it are deleted;
- status: no pods exist; a new ReplicaSet is ready and available at once, unless an image of its template ends
  with ":bad": then it never becomes available, the old available ReplicaSets keep their replicas, and once
  spec.progressDeadlineSeconds (default 600) pass the Progressing condition turns False with reason
  ProgressDeadlineExceeded. Old ReplicaSets are scaled to 0 when the new one is available.
StatefulSets and DaemonSets get a ready status at once, and their history as ControllerRevisions NAME-HASH (data:
{"spec": {"template": ..., "$patch": "replace"}}, the patch kubectl applies on undo; labels: the template's plus
controller-revision-hash), numbered like ReplicaSet revisions: a template seen before gets its old
ControllerRevision back with the number max+1; spec.revisionHistoryLimit (default 10) prunes the oldest.
Simplification: kubectl decides "skipped rollback" for these by comparing bytes of Go's JSON encoding with the
stored data, which the double does not reproduce; an undo to the current template is a no-op patch instead.
"""
import copy
import hashlib
import json
import threading
import time

from .store import now_rfc3339

DEPLOYMENTS = "deployments.apps"
REPLICASETS = "replicasets.apps"
STATEFULSETS = "statefulsets.apps"
DAEMONSETS = "daemonsets.apps"
REVISIONS = "controllerrevisions.apps"
REVISION_HASH_LABEL = "controller-revision-hash"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
# Deployment annotations that are not copied to its ReplicaSets (as in the real controller).
NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
              "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas")


def _canonical(value):
    if isinstance(value, dict):
        pruned = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def template_hash(template):
    """A stable hash of a pod template, ignoring its pod-template-hash label."""
    template = copy.deepcopy(template or {})
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    text = json.dumps(_canonical(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def is_bad(template):
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return any(str(c.get("image", "")).endswith(":bad") for c in containers)


def revision(obj):
    try:
        return int(obj["metadata"].get("annotations", {}).get(REVISION, "0"))
    except (TypeError, ValueError):
        return 0


def _condition(conditions, kind, status, reason, message):
    """Set one condition, keeping its timestamps when nothing about it changes."""
    stamp = now_rfc3339()
    for cond in conditions:
        if cond["type"] == kind:
            if (cond["status"], cond["reason"], cond["message"]) != (status, reason, message):
                if cond["status"] != status:
                    cond["lastTransitionTime"] = stamp
                cond.update(status=status, reason=reason, message=message, lastUpdateTime=stamp)
            return
    conditions.append({"type": kind, "status": status, "reason": reason, "message": message,
                       "lastUpdateTime": stamp, "lastTransitionTime": stamp})


class Controller:
    """Reconciles workloads in a Store. start() runs the 0.05 s ticker; sync() is called by the server after writes."""

    def __init__(self, store, tick=0.05):
        self.store = store
        self.tick = tick
        self.rollouts = {}  # deployment uid -> (template hash, monotonic time the rollout to it began)
        self.errors = []  # exceptions of the ticker (bugs of the double); tests check it stays empty
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="k8s-fake-controller", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self):
        while not self._stop.wait(self.tick):
            try:
                self.sync_all()
            except Exception as exc:  # pylint: disable=broad-except  # a test double keeps ticking, and tells
                if len(self.errors) < 100:
                    self.errors.append(repr(exc))

    def sync_all(self):
        with self.store.lock:
            for resource, sync in ((DEPLOYMENTS, self.sync_deployment), (STATEFULSETS, self.sync_statefulset),
                                   (DAEMONSETS, self.sync_daemonset)):
                for obj in self.store.list(resource)[0]:
                    sync(obj["metadata"]["namespace"], obj["metadata"]["name"])

    def sync(self, resource, namespace, name):
        sync = {DEPLOYMENTS: self.sync_deployment, STATEFULSETS: self.sync_statefulset,
                DAEMONSETS: self.sync_daemonset}.get(resource)
        if sync:
            with self.store.lock:
                sync(namespace, name)

    # --- Deployments -------------------------------------------------------------------------------------------
    def _owned_replicasets(self, dep):
        uid = dep["metadata"]["uid"]
        return [rs for rs in self.store.list(REPLICASETS, dep["metadata"]["namespace"])[0]
                if any(ref.get("uid") == uid and ref.get("controller") for ref in rs["metadata"].get("ownerReferences") or [])]

    def _new_replicaset(self, dep, pod_hash, rev):
        meta, spec = dep["metadata"], dep["spec"]
        template = copy.deepcopy(spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOT_COPIED}
        annotations[REVISION] = str(rev)
        labels = dict(template["metadata"]["labels"])
        return {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "%s-%s" % (meta["name"], pod_hash), "namespace": meta["namespace"], "labels": labels,
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }

    def _write_replicaset(self, rs):
        """Write a ReplicaSet; its status.observedGeneration then follows its generation (which a spec change bumps)."""
        namespace = rs["metadata"]["namespace"]
        rs["status"]["observedGeneration"] = rs["metadata"].get("generation", 1)
        rs = self.store.update(REPLICASETS, namespace, rs, check_rv=False)
        if rs["status"].get("observedGeneration") != rs["metadata"].get("generation", 1):
            rs["status"]["observedGeneration"] = rs["metadata"].get("generation", 1)
            rs = self.store.update(REPLICASETS, namespace, rs, check_rv=False)
        return rs

    def sync_deployment(self, namespace, name):
        store = self.store
        dep = store.get(DEPLOYMENTS, namespace, name)
        if dep is None:
            return
        spec = dep.setdefault("spec", {})
        meta = dep["metadata"]
        desired = spec.get("replicas", 1)
        pod_hash = template_hash(spec.get("template"))
        owned = self._owned_replicasets(dep)
        new = next((rs for rs in owned if rs["metadata"].get("labels", {}).get(HASH_LABEL) == pod_hash), None)
        old = [rs for rs in owned if rs is not new]
        next_rev = max([revision(rs) for rs in old] + [0]) + 1
        if spec.get("paused") and new is None:
            return
        if new is None:
            new = store.create(REPLICASETS, namespace, self._new_replicaset(dep, pod_hash, next_rev))
        else:
            annotations = new["metadata"].setdefault("annotations", {})
            annotations.update({k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOT_COPIED})
            if revision(new) < next_rev:
                previous = [r for r in annotations.get(REVISION_HISTORY, "").split(",") if r]
                annotations[REVISION_HISTORY] = ",".join(previous + [str(revision(new))])
                annotations[REVISION] = str(next_rev)
        rollout = self.rollouts.get(meta["uid"])
        if rollout is None or rollout[0] != pod_hash:
            rollout = self.rollouts[meta["uid"]] = (pod_hash, time.monotonic())

        bad = is_bad(spec.get("template"))
        new["spec"]["replicas"] = desired
        new["status"] = {"replicas": desired, "fullyLabeledReplicas": desired}
        if not bad:
            new["status"].update(readyReplicas=desired, availableReplicas=desired)
        new = self._write_replicaset(new)
        for rs in old:
            # A good new ReplicaSet replaces all the old ones; a bad one leaves the old available ones running (and
            # the old unavailable ones, e.g. an earlier bad template, are scaled down, as the real controller does).
            if not bad or not rs["status"].get("availableReplicas"):
                rs["spec"]["replicas"] = 0
                rs["status"] = {"replicas": 0}
            self._write_replicaset(rs)
        old = [store.get(REPLICASETS, namespace, rs["metadata"]["name"]) for rs in old]

        limit = spec.get("revisionHistoryLimit", 10)
        idle = sorted((rs for rs in old if rs["spec"].get("replicas", 0) == 0 and not rs["status"].get("replicas")),
                      key=revision)
        for rs in idle[:max(0, len(idle) - limit)]:
            store.delete(REPLICASETS, namespace, rs["metadata"]["name"])
            old.remove(rs)

        dep = store.get(DEPLOYMENTS, namespace, name)
        dep["metadata"].setdefault("annotations", {})[REVISION] = new["metadata"]["annotations"][REVISION]
        every = old + [new]
        status = dep.setdefault("status", {})
        status["observedGeneration"] = dep["metadata"].get("generation", 1)
        counts = {key: sum(rs["status"].get(key, 0) for rs in every)
                  for key in ("replicas", "readyReplicas", "availableReplicas")}
        status.update(counts, updatedReplicas=new["status"]["replicas"])
        if counts["replicas"] > counts["availableReplicas"]:
            status["unavailableReplicas"] = counts["replicas"] - counts["availableReplicas"]
        else:
            status.pop("unavailableReplicas", None)
        for key in ("readyReplicas", "availableReplicas"):
            if not status[key]:
                del status[key]
        conditions = status.setdefault("conditions", [])
        if counts["availableReplicas"] >= desired:
            _condition(conditions, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            _condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                       "Deployment does not have minimum availability.")
        rs_name = new["metadata"]["name"]
        deadline = spec.get("progressDeadlineSeconds", 600)
        if not bad:
            _condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                       'ReplicaSet "%s" has successfully progressed.' % rs_name)
        elif time.monotonic() - rollout[1] > deadline:
            _condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                       'ReplicaSet "%s" has timed out progressing.' % rs_name)
        else:
            _condition(conditions, "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % rs_name)
        store.update(DEPLOYMENTS, namespace, dep, check_rv=False)

    # --- StatefulSets and DaemonSets: ready at once, history as ControllerRevisions ------------------------------
    def _sync_history(self, obj):
        """Ensure the ControllerRevision of obj's current template; returns its name."""
        store, meta = self.store, obj["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
        pod_hash = template_hash(template)
        owned = [cr for cr in store.list(REVISIONS, namespace)[0]
                 if any(ref.get("uid") == uid and ref.get("controller") for ref in cr["metadata"].get("ownerReferences") or [])]
        current = next((cr for cr in owned if cr["metadata"].get("labels", {}).get(REVISION_HASH_LABEL) == pod_hash), None)
        others = [cr for cr in owned if cr is not current]
        next_rev = max([cr.get("revision", 0) for cr in others] + [0]) + 1
        if current is None:
            template["$patch"] = "replace"
            labels = dict((template.get("metadata") or {}).get("labels") or {}, **{REVISION_HASH_LABEL: pod_hash})
            current = store.create(REVISIONS, namespace, {
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": "%s-%s" % (meta["name"], pod_hash), "namespace": namespace, "labels": labels,
                             "annotations": {k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOT_COPIED},
                             "ownerReferences": [{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                                                  "uid": uid, "controller": True, "blockOwnerDeletion": True}]},
                "data": {"spec": {"template": template}}, "revision": next_rev})
        elif current.get("revision", 0) < next_rev:
            current["revision"] = next_rev
            store.update(REVISIONS, namespace, current, check_rv=False)
        limit = (obj.get("spec") or {}).get("revisionHistoryLimit", 10)
        others.sort(key=lambda cr: cr.get("revision", 0))
        for cr in others[:max(0, len(others) - limit)]:
            store.delete(REVISIONS, namespace, cr["metadata"]["name"])
        return current["metadata"]["name"]

    def sync_statefulset(self, namespace, name):
        sts = self.store.get(STATEFULSETS, namespace, name)
        if sts is None:
            return
        replicas = sts.get("spec", {}).get("replicas", 1)
        rev = self._sync_history(sts)
        sts["status"] = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": replicas,
                         "readyReplicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas,
                         "availableReplicas": replicas, "currentRevision": rev, "updateRevision": rev}
        self.store.update(STATEFULSETS, namespace, sts, check_rv=False)

    def sync_daemonset(self, namespace, name):
        ds = self.store.get(DAEMONSETS, namespace, name)
        if ds is None:
            return
        nodes = 1  # the double has one imaginary node
        self._sync_history(ds)
        ds["status"] = {"observedGeneration": ds["metadata"].get("generation", 1), "currentNumberScheduled": nodes,
                        "desiredNumberScheduled": nodes, "numberAvailable": nodes, "numberReady": nodes,
                        "updatedNumberScheduled": nodes, "numberMisscheduled": 0}
        self.store.update(DAEMONSETS, namespace, ds, check_rv=False)
