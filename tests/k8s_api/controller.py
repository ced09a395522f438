"""A simulated deployment controller for the Kubernetes API test double (not a Kubernetes implementation).

How it runs: the server calls sync() synchronously after every write to a workload or a ReplicaSet and deleted() after
a client deletes a pod or a ReplicaSet (so a client that writes and then reads sees the ReplicaSets and pods at once),
and a background thread calls sync_all() every 0.05 s for what depends on time (the progress deadline, crash loops)
and to repair what was deleted by hand.

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
- status, counted from the pods: the new ReplicaSet gets all the replicas at once (no maxSurge / maxUnavailable
  steps); its pods start ready at once unless an image ends with ":bad" (they crash-loop, see pods.py). While the new
  ReplicaSet is not fully available the old available ReplicaSets keep their replicas, and once
  spec.progressDeadlineSeconds (default 600) pass the Progressing condition turns False with reason
  ProgressDeadlineExceeded. Old ReplicaSets are scaled to 0 when the new one is available.
ReplicaSets (a Deployment's or a client's own) keep spec.replicas pods NAME-XXXXX (template labels, annotations and
spec, nodeName node-1, ownerReferences with controller: true); surplus pods go not-ready first, then the ones that
restarted most, then the newest. A pod deleted by hand is replaced by a new one with a new name.
StatefulSets and DaemonSets keep their history as ControllerRevisions NAME-HASH (data:
{"spec": {"template": ..., "$patch": "replace"}}, the patch kubectl applies on undo; labels: the template's plus
controller-revision-hash), numbered like ReplicaSet revisions: a template seen before gets its old
ControllerRevision back with the number max+1; spec.revisionHistoryLimit (default 10) prunes the oldest that no pod
runs. Simplification: kubectl decides "skipped rollback" for these by comparing bytes of Go's JSON encoding with the
stored data, which the double does not reproduce; an undo to the current template is a no-op patch instead.
StatefulSet pods NAME-0..N-1 follow the real controller's steps: with podManagementPolicy OrderedReady (the default)
a pod is created only when the ones before it are ready, scale-down removes the highest ordinal first, and a rolling
update (updateStrategy RollingUpdate, partition honoured; OnDelete replaces nothing) replaces pods from the highest
ordinal down, each only once the ones above it are ready. So, as on a real cluster, a template that crash-loops stops
the rollout at its first pod, and going back to a good template does not repair it until that pod is deleted by hand
("forced rollback" in the StatefulSet documentation). status.currentRevision moves to the update revision when every
pod is updated and ready. A DaemonSet runs one pod NAME-XXXXX on the one imaginary node, replaced when the template
changes (RollingUpdate: the old pod first, or with maxSurge the new one first and the old one once the new one is
ready; OnDelete: kept until deleted).
"""
import copy
import hashlib
import json
import random
import threading
import time

from . import pods
from .store import now_rfc3339

DEPLOYMENTS = "deployments.apps"
REPLICASETS = "replicasets.apps"
STATEFULSETS = "statefulsets.apps"
DAEMONSETS = "daemonsets.apps"
REVISIONS = "controllerrevisions.apps"
PODS = "pods"
KINDS = {"Deployment": DEPLOYMENTS, "ReplicaSet": REPLICASETS, "StatefulSet": STATEFULSETS, "DaemonSet": DAEMONSETS}
REVISION_HASH_LABEL = "controller-revision-hash"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
# Deployment annotations that are not copied to its ReplicaSets (as in the real controller).
NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
              "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas")
# A crash-looping container restarts once a second: the kubelet's back-off (10 s doubling to 5 min) would make the
# tests wait; the back-off message still names the real delay.
CRASH_INTERVAL = 1.0


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


def revision(obj):
    try:
        return int(obj["metadata"].get("annotations", {}).get(REVISION, "0"))
    except (TypeError, ValueError):
        return 0


def controller_ref(obj):
    """The ownerReference of obj's controller (controller: true), or None."""
    return next((ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)


def _restarts(pod):
    return sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


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
        self.crashes = {}  # uid of a crash-looping pod -> monotonic time of its last crash
        self.pods_started = 0  # numbers the pods' IPs
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
            for dep in self.store.list(DEPLOYMENTS)[0]:
                self.sync_deployment(dep["metadata"]["namespace"], dep["metadata"]["name"])
            for rs in self.store.list(REPLICASETS)[0]:
                if controller_ref(rs) is None:  # a Deployment's ReplicaSets were synced with it
                    self._sync_replicaset(rs)
            for resource, sync in ((STATEFULSETS, self.sync_statefulset), (DAEMONSETS, self.sync_daemonset)):
                for obj in self.store.list(resource)[0]:
                    sync(obj["metadata"]["namespace"], obj["metadata"]["name"])
            live = {pod["metadata"]["uid"] for pod in self.store.list(PODS)[0]}
            self.crashes = {uid: when for uid, when in self.crashes.items() if uid in live}

    def sync(self, resource, namespace, name):
        sync = {DEPLOYMENTS: self.sync_deployment, REPLICASETS: self.sync_replicaset,
                STATEFULSETS: self.sync_statefulset, DAEMONSETS: self.sync_daemonset}.get(resource)
        if sync:
            with self.store.lock:
                sync(namespace, name)

    def deleted(self, obj):
        """A client deleted obj (e.g. a pod): its controller makes up for it at once (the real one does so soon)."""
        ref = controller_ref(obj)
        if ref and ref.get("kind") in KINDS:
            self.sync(KINDS[ref["kind"]], obj["metadata"]["namespace"], ref["name"])

    # --- pods --------------------------------------------------------------------------------------------------
    def _owned(self, resource, owner):
        """The objects of one resource that owner controls (ownerReferences with controller: true), by name."""
        uid = owner["metadata"]["uid"]
        found = [self.store.get(*key) for key in self.store.owned_by(uid) if key[0] == resource]
        return sorted((obj for obj in found if (controller_ref(obj) or {}).get("uid") == uid),
                      key=lambda obj: obj["metadata"]["name"])

    def _create_pod(self, owner, template, labels, name=None):
        """Create a pod of owner from template (plus labels) and start it on the node; name None: OWNER-XXXXX."""
        store, meta = self.store, owner["metadata"]
        namespace = meta["namespace"]
        template_meta = template.get("metadata") or {}
        pod_meta = {"labels": dict(template_meta.get("labels") or {}, **labels),
                    "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                                         "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]}
        if template_meta.get("annotations"):
            pod_meta["annotations"] = copy.deepcopy(template_meta["annotations"])
        if name is None:
            pod_meta["generateName"] = meta["name"] + "-"
            while name is None or store.get(PODS, namespace, name) is not None:
                name = pod_meta["generateName"] + "".join(random.choices(pods.NAME_CHARS, k=5))
        pod_meta["name"] = name
        spec = copy.deepcopy(template.get("spec") or {})
        spec["nodeName"] = pods.NODE_NAME
        if owner["kind"] == "StatefulSet":  # a stable network identity under the governing service
            spec["hostname"] = name
            if (owner.get("spec") or {}).get("serviceName"):
                spec["subdomain"] = owner["spec"]["serviceName"]
        # created Pending as the API stores it; then the node starts it
        pod = store.create(PODS, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec,
                                             "status": {"phase": "Pending"}})
        self.pods_started += 1
        pod_ip = "10.244.%d.%d" % (self.pods_started // 250, self.pods_started % 250 + 2)
        pod["status"] = pods.running_status(pod, pod_ip)
        if pods.crash_looping(pod):
            self.crashes[pod["metadata"]["uid"]] = time.monotonic()
        return store.update(PODS, namespace, pod, check_rv=False)

    def _delete_pod(self, pod):
        self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.crashes.pop(pod["metadata"]["uid"], None)

    def _crash(self, pod):
        """A crash-looping pod's ":bad" containers crash again (restartCount + 1) once per CRASH_INTERVAL."""
        if not pods.crash_looping(pod) or not (pod.get("status") or {}).get("containerStatuses"):
            return pod
        uid, now = pod["metadata"]["uid"], time.monotonic()
        if now - self.crashes.setdefault(uid, now) < CRASH_INTERVAL:
            return pod
        self.crashes[uid] = now
        pod["status"] = pods.crashed(pod, now_rfc3339())
        return self.store.update(PODS, pod["metadata"]["namespace"], pod, check_rv=False)

    def _pods_of(self, owner):
        """owner's pods, after their crash loops went on."""
        return [self._crash(pod) for pod in self._owned(PODS, owner)]

    # --- ReplicaSets -------------------------------------------------------------------------------------------
    def sync_replicaset(self, namespace, name):
        """A Deployment's ReplicaSet is synced with its Deployment (which sets its replicas); any other on its own."""
        rs = self.store.get(REPLICASETS, namespace, name)
        if rs is None:
            return
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            dep = self.store.get(DEPLOYMENTS, namespace, ref["name"])
            if dep is not None and dep["metadata"]["uid"] == ref.get("uid"):
                self.sync_deployment(namespace, ref["name"])
                return
        self._sync_replicaset(rs)

    def _sync_replicaset(self, rs):
        """Write rs, create or delete its pods to match its spec.replicas, and write its status counted from them."""
        namespace = rs["metadata"]["namespace"]
        rs = self.store.update(REPLICASETS, namespace, rs, check_rv=False)
        spec = rs.get("spec") or {}
        template = spec.get("template") or {}
        owned = self._pods_of(rs)
        surplus = len(owned) - spec.get("replicas", 1)
        if surplus > 0:
            # the real controller's order: not ready first, then the ones that restarted most, then the newest
            owned.sort(key=lambda pod: pod["metadata"]["creationTimestamp"], reverse=True)
            owned.sort(key=lambda pod: (pods.is_ready(pod), -_restarts(pod)))
            for pod in owned[:surplus]:
                self._delete_pod(pod)
            owned = owned[surplus:]
        elif (template.get("spec") or {}).get("containers"):
            owned += [self._create_pod(rs, template, {}) for _missing in range(-surplus)]
        labels = (template.get("metadata") or {}).get("labels") or {}
        ready = sum(1 for pod in owned if pods.is_ready(pod))
        labelled = sum(1 for pod in owned if labels.items() <= (pod["metadata"].get("labels") or {}).items())
        status = {"replicas": len(owned), "fullyLabeledReplicas": labelled, "readyReplicas": ready,
                  "availableReplicas": ready}
        rs["status"] = {key: value for key, value in status.items() if value or key == "replicas"}  # as the API omits 0
        rs["status"]["observedGeneration"] = rs["metadata"].get("generation", 1)
        return self.store.update(REPLICASETS, namespace, rs, check_rv=False)

    # --- Deployments -------------------------------------------------------------------------------------------
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

    def sync_deployment(self, namespace, name):
        store = self.store
        dep = store.get(DEPLOYMENTS, namespace, name)
        if dep is None:
            return
        spec = dep.setdefault("spec", {})
        meta = dep["metadata"]
        desired = spec.get("replicas", 1)
        pod_hash = template_hash(spec.get("template"))
        owned = self._owned(REPLICASETS, dep)
        new = next((rs for rs in owned if rs["metadata"].get("labels", {}).get(HASH_LABEL) == pod_hash), None)
        old = [rs for rs in owned if rs is not new]
        next_rev = max([revision(rs) for rs in old] + [0]) + 1
        if spec.get("paused") and new is None:
            for rs in old:  # no rollout while paused, but the ReplicaSets keep their pods
                self._sync_replicaset(rs)
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

        new["spec"]["replicas"] = desired
        new = self._sync_replicaset(new)
        complete = new["status"].get("availableReplicas", 0) >= desired
        for rs in old:
            # A new ReplicaSet whose pods are all available replaces all the old ones; one whose pods are not (":bad"
            # images) leaves the old available ones running (and the old unavailable ones, e.g. an earlier bad
            # template, are scaled down, as the real controller does).
            if complete or not rs["status"].get("availableReplicas"):
                rs["spec"]["replicas"] = 0
            self._sync_replicaset(rs)
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
        if complete:
            _condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                       'ReplicaSet "%s" has successfully progressed.' % rs_name)
        elif time.monotonic() - rollout[1] > deadline:
            _condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                       'ReplicaSet "%s" has timed out progressing.' % rs_name)
        else:
            _condition(conditions, "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % rs_name)
        store.update(DEPLOYMENTS, namespace, dep, check_rv=False)

    # --- StatefulSets and DaemonSets: history as ControllerRevisions, and their pods -------------------------------
    def _sync_history(self, obj):
        """Ensure the ControllerRevision of obj's current template; returns its name."""
        store, meta = self.store, obj["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
        pod_hash = template_hash(template)
        owned = self._owned(REVISIONS, obj)
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
        return current["metadata"]["name"]

    def _prune_history(self, obj, live):
        """spec.revisionHistoryLimit (default 10): delete the oldest ControllerRevisions beyond it, except the live
        ones (names in live: the current and update revisions, the revisions pods run)."""
        limit = (obj.get("spec") or {}).get("revisionHistoryLimit", 10)
        others = sorted((cr for cr in self._owned(REVISIONS, obj) if cr["metadata"]["name"] not in live),
                        key=lambda cr: cr.get("revision", 0))
        for cr in others[:max(0, len(others) - limit)]:
            self.store.delete(REVISIONS, obj["metadata"]["namespace"], cr["metadata"]["name"])

    def _templates(self, obj):
        """{ControllerRevision name: the pod template it records} of obj's history."""
        templates = {}
        for cr in self._owned(REVISIONS, obj):
            template = copy.deepcopy(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
            template.pop("$patch", None)
            templates[cr["metadata"]["name"]] = template
        return templates

    def sync_statefulset(self, namespace, name):
        sts = self.store.get(STATEFULSETS, namespace, name)
        if sts is None:
            return
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        plan = {"replicas": spec.get("replicas", 1), "update": self._sync_history(sts), "rolling": rolling,
                "partition": ((strategy.get("rollingUpdate") or {}).get("partition") or 0) if rolling else 0,
                "monotonic": spec.get("podManagementPolicy", "OrderedReady") != "Parallel"}
        plan["templates"] = self._templates(sts)
        plan["current"] = (sts.get("status") or {}).get("currentRevision")
        if plan["current"] not in plan["templates"]:
            plan["current"] = plan["update"]
        existing = len(self._pods_of(sts))
        for _step in range(3 * (plan["replicas"] + existing) + 3):  # each step creates or deletes one pod
            if not self._statefulset_step(sts, plan):
                break
        owned = self._owned(PODS, sts)
        revisions = [pod["metadata"]["labels"].get(REVISION_HASH_LABEL) for pod in owned]
        ready = sum(1 for pod in owned if pods.is_ready(pod))
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(owned),
                  "readyReplicas": ready, "currentReplicas": revisions.count(plan["current"]),
                  "updatedReplicas": revisions.count(plan["update"]), "availableReplicas": ready,
                  "currentRevision": plan["current"], "updateRevision": plan["update"], "collisionCount": 0}
        if rolling and status["updatedReplicas"] == len(owned) == ready:  # the rolling update is complete
            status.update(currentRevision=plan["update"], currentReplicas=status["updatedReplicas"])
        sts["status"] = status
        self._prune_history(sts, {plan["current"], plan["update"]} | set(revisions))
        self.store.update(STATEFULSETS, namespace, sts, check_rv=False)

    def _statefulset_step(self, sts, plan):
        """One step of the real StatefulSet controller: create, delete or replace one pod. False when there is none
        to take: all done, or waiting for a pod that is not ready."""
        name = sts["metadata"]["name"]
        by_ordinal = {}
        for pod in self._owned(PODS, sts):
            suffix = pod["metadata"]["name"][len(name) + 1:]
            if pod["metadata"]["name"] == "%s-%s" % (name, suffix) and suffix.isdigit():
                by_ordinal[int(suffix)] = pod
        for ordinal in range(plan["replicas"]):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                rev = plan["current"] if plan["rolling"] and ordinal < plan["partition"] else plan["update"]
                labels = {REVISION_HASH_LABEL: rev, "statefulset.kubernetes.io/pod-name": "%s-%d" % (name, ordinal),
                          "apps.kubernetes.io/pod-index": str(ordinal)}
                self._create_pod(sts, plan["templates"][rev], labels, name="%s-%d" % (name, ordinal))
                return True
            if plan["monotonic"] and not pods.is_ready(pod):
                return False
        unhealthy = next((by_ordinal[o] for o in sorted(by_ordinal) if not pods.is_ready(by_ordinal[o])), None)
        for ordinal in sorted((o for o in by_ordinal if o >= plan["replicas"]), reverse=True):
            pod = by_ordinal[ordinal]
            if plan["monotonic"] and not pods.is_ready(pod) and pod is not unhealthy:
                return False
            self._delete_pod(pod)
            return True
        if plan["rolling"]:
            for ordinal in range(plan["replicas"] - 1, plan["partition"] - 1, -1):
                pod = by_ordinal[ordinal]
                if pod["metadata"]["labels"].get(REVISION_HASH_LABEL) != plan["update"]:
                    self._delete_pod(pod)  # the next step creates it again from the update revision
                    return True
                if not pods.is_ready(pod):
                    return False
        return False

    def sync_daemonset(self, namespace, name):
        ds = self.store.get(DAEMONSETS, namespace, name)
        if ds is None:
            return
        spec = ds.get("spec") or {}
        rev = self._sync_history(ds)
        pod_hash = template_hash(spec.get("template"))
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", 0) not in (0, "0", "0%", None)
        owned = self._pods_of(ds)
        new = [pod for pod in owned if pod["metadata"]["labels"].get(REVISION_HASH_LABEL) == pod_hash]
        old = [pod for pod in owned if pod["metadata"]["labels"].get(REVISION_HASH_LABEL) != pod_hash]
        labels = {REVISION_HASH_LABEL: pod_hash, "pod-template-generation": str(ds["metadata"].get("generation", 1))}
        for pod in new[1:]:  # one node, one pod
            self._delete_pod(pod)
        new = new[:1]
        if rolling:
            if not surge:  # maxUnavailable: the old pod goes first
                for pod in old:
                    self._delete_pod(pod)
                old = []
            if not new:
                new = [self._create_pod(ds, spec.get("template") or {}, labels)]
            for pod in old:  # maxSurge: the old pod goes once the new one is ready (or at once if it is not ready)
                if pods.is_ready(new[0]) or not pods.is_ready(pod):
                    self._delete_pod(pod)
        elif not owned:
            self._create_pod(ds, spec.get("template") or {}, labels)
        else:  # OnDelete: the pod stays whatever its template
            for pod in (new + old)[1:]:
                self._delete_pod(pod)
        owned = self._owned(PODS, ds)
        nodes = 1  # the double has one imaginary node; the counts are of nodes
        ready = min(nodes, sum(1 for pod in owned if pods.is_ready(pod)))
        hashes = {pod["metadata"]["labels"].get(REVISION_HASH_LABEL) for pod in owned}
        ds["status"] = {"observedGeneration": ds["metadata"].get("generation", 1),
                        "currentNumberScheduled": min(nodes, len(owned)), "desiredNumberScheduled": nodes,
                        "numberAvailable": ready, "numberReady": ready,
                        "updatedNumberScheduled": min(nodes, int(pod_hash in hashes)),
                        "numberMisscheduled": 0}
        if ready < nodes:
            ds["status"]["numberUnavailable"] = nodes - ready
        self._prune_history(ds, {rev} | {"%s-%s" % (name, h) for h in hashes})
        self.store.update(DAEMONSETS, namespace, ds, check_rv=False)
