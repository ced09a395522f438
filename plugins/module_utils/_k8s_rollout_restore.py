# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_rollout_restore: put a Deployment, StatefulSet or DaemonSet back on a revision of its own history.

The target is named by its number (as `kubectl rollout undo --to-revision`), by a template hash (ours, or the
controller's hash label) or by a restore point id recorded on the revision at capture, so that renumbering cannot
fool it; none of them means the previous revision. History comes from ownerReferences, never from the selector.

The change is one JSON patch: a test of resourceVersion (nobody wrote in between), the template replaced, and one
annotation added. Nothing else of the workload's metadata is touched. A rollout that fails puts the template that was
there before back.
"""

from __future__ import annotations

import copy
import math
import re

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, Terminated
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads as workloads
from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s import JSON_PATCH, KubeError
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import is_id

TARGET_OPTIONS = ("to_revision", "template_hash", "point")
# Our hash is 16 hex digits; the controller's labels are short strings of lowercase letters and digits (a real
# cluster's are not hex: they use Kubernetes' "safe" alphabet). Anything else cannot name a revision.
HASH_PATTERN = re.compile(r"[0-9a-z]{4,64}")
# DNS-1123 subdomain (workload names) and label (namespaces), as the API server checks them.
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
NAMESPACE_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_WAIT = 7 * 86400.0
NOTHING_CHANGED = "nothing was changed"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"


# ---------------------------------------------------------------- input
def check_params(params):
    """Refuse bad input before any request, naming the option and the value. Returns (kind, selector), the
    selector being (option, value) or (None, None) for the previous revision."""
    kind = workloads.kind_of(params.get("kind"), "kind")
    name = params.get("name")
    if not isinstance(name, str) or len(name) > 253 or not NAME_PATTERN.fullmatch(name):
        raise RollbackError("name: %r is not a workload name (lowercase letters, digits, '-' and '.', at most 253); "
                            "give the name kubectl get %s shows" % (name, kind.lower()))
    namespace = params.get("namespace")
    if namespace is not None and (len(namespace) > 63 or not NAMESPACE_PATTERN.fullmatch(namespace)):
        raise RollbackError("namespace: %r is not a namespace name (lowercase letters, digits and '-', at most 63); "
                            "give one kubectl get namespaces shows" % (namespace,))
    given = [option for option in TARGET_OPTIONS if params.get(option) is not None]
    if len(given) > 1:
        raise RollbackError("%s: give at most one of to_revision, template_hash and point (got %s); each names the "
                            "target revision on its own" % ("/".join(given), ", ".join(
                                "%s=%r" % (option, params[option]) for option in given)))
    selector = (given[0], params[given[0]]) if given else (None, None)
    option, value = selector
    if option == "to_revision" and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise RollbackError("to_revision: %r is not a revision number; give a number kubectl rollout history "
                            "lists (1 or more), or leave it out for the previous revision" % (value,))
    if option == "template_hash":
        if not isinstance(value, str) or not HASH_PATTERN.fullmatch(value):
            raise RollbackError("template_hash: %r is not a template hash; give our 16-hex hash (a restore point's "
                                "template_hash) or the revision's pod-template-hash / controller-revision-hash "
                                "label value (lowercase letters and digits)" % (value,))
    if option == "point" and not is_id(value):
        raise RollbackError("point: %r is not a restore point id (like 20260101T120000.000000Z-1a2b); give the id "
                            "restore_point returned or restore_point_info lists" % (value,))
    timeout = params.get("wait_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0 or timeout > MAX_WAIT):
        raise RollbackError("wait_timeout: %r is not a number of seconds more than 0 and at most a week (%d); give "
                            "how long the rollout may take" % (timeout, MAX_WAIT))
    return kind, selector


# ---------------------------------------------------------------- describing revisions
def describe(revision, current):
    hashes = sorted(revision.hashes() - {revision.hash})
    return "%d (hash %s%s, %s%s)" % (revision.number, revision.hash,
                                     " / " + "/".join(hashes) if hashes else "",
                                     images_text(workloads.images(revision.template)),
                                     ", current" if current is not None and revision is current else "")


def renumbered_as(revisions, number):
    """The revision a Deployment's undo moved `number` to (deployment.kubernetes.io/revision-history), or None."""
    for revision in revisions:
        if str(number) in revision.annotations.get(REVISION_HISTORY, "").split(","):
            return revision
    return None


def images_text(images):
    return ", ".join("%s=%s" % item for item in sorted(images.items())) or "no containers"


def summary(revision):
    return {"revision": revision.number, "hash": revision.hash, "holder": revision.name,
            "images": workloads.images(revision.template)}


def history_limit(workload):
    return (workload.get("spec") or {}).get("revisionHistoryLimit", 10)


def _missing(workload, revisions, current, what, option, number=None):
    label = "%s/%s" % (workload["kind"].lower(), workload["metadata"]["name"])
    listing = "; ".join(describe(r, current) for r in revisions) or "none"
    msg = "%s: %s of %s does not exist; its revisions are: %s" % (option, what, label, listing)
    limit = history_limit(workload)
    moved = renumbered_as(revisions, number) if number is not None else None
    if moved is not None:
        msg += ("; revision %d was rolled back to and is revision %d now (its template hash is %s)"
                % (number, moved.number, moved.hash))
    elif number is not None and revisions and number > revisions[-1].number:
        msg += "; no revision is that new"
    elif number is not None or len([r for r in revisions if r is not current]) >= limit:
        msg += ("; history is pruned to revisionHistoryLimit=%d old revisions%s, so older ones are gone (a restore "
                "point of the kubernetes component restores a template whatever its history)"
                % (limit, "" if workload["kind"] == "Deployment" else " or the number moved in an earlier undo"))
    if option == "to_revision":
        msg += "; numbers move when a revision is rolled back to: template_hash or point name one whatever its number"
    raise RollbackError(msg + "; " + NOTHING_CHANGED, revisions=[
        dict(summary(r), current=r is current) for r in revisions], revision_history_limit=limit)


# ---------------------------------------------------------------- choosing the target
def choose(workload, revisions, current, selector):
    """The revision the selector names, or a refusal listing the revisions that exist."""
    option, value = selector
    if option == "to_revision":
        found = [r for r in revisions if r.number == value]
        if not found:
            _missing(workload, revisions, current, "revision %d" % value, option, number=value)
        return found[-1]
    if option == "template_hash":
        found = [r for r in revisions if value in r.hashes()]
        if not found:
            _missing(workload, revisions, current, "no revision with template hash %r" % value, option)
        return found[-1]
    if option == "point":
        found = [r for r in revisions if value in r.points]
        if not found:
            _missing(workload, revisions, current, "no revision recorded by point %r (annotation %s)"
                     % (value, workloads.POINT_ANNOTATION), option)
        return found[-1]
    want = workloads.template_hash(workload["spec"].get("template"))
    below = current.number if current is not None else None
    found = [r for r in revisions if r.hash != want and (below is None or r.number < below)]
    if not found:
        _missing(workload, revisions, current, "no previous revision (one older than the current whose template "
                 "differs)", "previous")
    return found[-1]


def restorable_template(revision):
    """The revision's pod template as the workload should hold it: without the controller's hash label and, for a
    ControllerRevision, without the "$patch" directive its data carries."""
    template = copy.deepcopy(revision.template)
    template.pop("$patch", None)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        for key in workloads.HASH_LABELS:
            labels.pop(key, None)
    return template


def restore_patch(workload, template, annotation):
    """A JSON patch that puts `template` in and marks the workload; it fails (422/409) if the workload changed since
    it was read. The annotations map is added only when the workload has none; other entries are never touched."""
    patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": workload["metadata"]["resourceVersion"]},
             {"op": "replace", "path": "/spec/template", "value": template}]
    if workload["metadata"].get("annotations") is None:
        patch.append({"op": "add", "path": "/metadata/annotations",
                      "value": {workloads.RESTORED_ANNOTATION: annotation}})
    else:
        patch.append({"op": "add", "path": "/metadata/annotations/" + _pointer(workloads.RESTORED_ANNOTATION),
                      "value": annotation})
    return patch


def revert_patch(workload, template, annotation):
    """The JSON patch that puts back the template (and restored-from annotation, or its absence) found before."""
    patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": workload["metadata"]["resourceVersion"]},
             {"op": "replace", "path": "/spec/template", "value": template}]
    now = workload["metadata"].get("annotations") or {}
    key = "/metadata/annotations/" + _pointer(workloads.RESTORED_ANNOTATION)
    if annotation is not None:
        patch.append({"op": "add", "path": key, "value": annotation})
    elif workloads.RESTORED_ANNOTATION in now:
        patch.append({"op": "remove", "path": key})
    return patch


def _pointer(key):
    return key.replace("~", "~0").replace("/", "~1")


# ---------------------------------------------------------------- the undo
class Undo:
    """One undo of one workload. `run()` returns the result dict or raises RollbackError with the same details."""

    def __init__(self, cluster, kind, name, selector, check_mode=False, diff_mode=False, wait=True,
                 wait_timeout=300.0, revert_on_failure=True, progress=None):
        self.cluster = cluster
        self.kind = kind
        self.name = name
        self.selector = selector
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.revert_on_failure = revert_on_failure
        self.progress = progress
        self.label = "%s/%s" % (kind.lower(), name)
        self.actions = []

    def at(self, step, state=None):
        if self.progress is not None:
            self.progress.at(step, state)

    def read(self):
        workload = workloads.read(self.cluster, self.kind, self.name, missing_ok=True)
        if workload is None:
            raise RollbackError("name: %s does not exist in namespace %r on %s; give the name kubectl get %s shows; %s"
                                % (self.label, self.cluster.namespace, self.cluster.where(), self.kind.lower(),
                                   NOTHING_CHANGED), namespace=self.cluster.namespace)
        return workload

    def run(self):
        self.at("reading %s and its history" % self.label)
        workload = self.read()
        revisions = workloads.history(self.cluster, workload)
        current = workloads.current_revision(workload, revisions)
        target = choose(workload, revisions, current, self.selector)
        before_template = workload["spec"].get("template") or {}
        before_hash = workloads.template_hash(before_template)
        source = {"revision": current.number if current is not None else self._annotated(workload),
                  "hash": before_hash, "images": workloads.images(before_template)}
        goal = summary(target)
        result = {"changed": target.hash != before_hash, "kind": self.kind, "name": self.name,
                  "namespace": self.cluster.namespace, "from": source, "to": goal, "actions": self.actions}
        if not result["changed"]:
            # kubectl says "skipped rollback": nothing to send, no new revision.
            result.update(revision=source["revision"], rollout="not waited")
            self.actions.append("%s already holds the template of revision %d (hash %s): skipped"
                                % (self.label, target.number, target.hash))
            self._diff(result, source, source["revision"])
            return result
        # The controller moves the template it goes back to to the next number, as `kubectl rollout undo` shows.
        predicted = max([r.number for r in revisions] + [source["revision"] or 0]) + 1
        template = restorable_template(target)
        note = "revision %d (hash %s)" % (target.number, target.hash)
        patch = restore_patch(workload, template, note)
        self._diff(result, source, predicted)
        verb = "would patch" if self.check_mode else "patched"
        self.at("sending the patch of %s%s" % (self.label, " (server-side dry-run)" if self.check_mode else ""))
        self._patch(patch, dry_run=self.check_mode)
        self.actions.append("%s %s: template of %s, images %s; annotation %s=%r"
                            % (verb, self.label, note, images_text(goal["images"]), workloads.RESTORED_ANNOTATION,
                               note))
        if self.check_mode:
            result.update(revision=predicted, rollout="not waited")
            return result
        self.at("waiting for the rollout of %s" % self.label,
                "%s patched to the template of %s" % (self.label, note))
        try:
            if self.wait:
                workloads.wait_rollouts(self.cluster, [workload], self.wait_timeout)
                result["rollout"] = "done"
                self.actions.append("rollout of %s done" % self.label)
            else:
                result["rollout"] = "not waited"
        except (RollbackError, Terminated) as err:
            self._failed(result, err, workload, before_template, target)
        result["revision"] = self._number_now(target.hash, predicted)
        return result

    @staticmethod
    def _annotated(workload):
        value = (workload["metadata"].get("annotations") or {}).get(workloads.REVISION)
        return int(value) if value and str(value).isdigit() else None

    def _patch(self, patch, dry_run=False):
        try:
            return self.cluster.patch(workloads.path(self.kind, self.cluster.namespace, self.name), patch,
                                      content_type=JSON_PATCH, dry_run=dry_run)
        except KubeError as err:
            if err.status in (409, 422) and "resourceVersion" in err.msg:
                raise KubeError("%s changed while this task read it (another writer); %s; run again: %s"
                                % (self.label, NOTHING_CHANGED, err.msg), status=err.status,
                                reason=err.reason) from None
            raise

    def _number_now(self, target_hash, predicted):
        """The number the target has after the undo: the controller renumbers it (None if it has not yet)."""
        try:
            workload = self.read()
            revisions = workloads.history(self.cluster, workload)
        except RollbackError:
            return None
        numbers = [r.number for r in revisions if r.hash == target_hash]
        return numbers[-1] if numbers else predicted

    def _diff(self, result, source, number_after):
        if not self.diff_mode:
            return
        goal = result["to"]
        before = "%s (namespace %s)\nrevision: %s\ntemplate hash: %s\nimages:\n%s" % (
            self.label, self.cluster.namespace, source["revision"], source["hash"], _image_lines(source["images"]))
        if not result["changed"]:
            result["diff"] = {"before": before + "\n", "after": before + "\n"}
            return
        after = "%s (namespace %s)\nrevision: %s (was %s)\ntemplate hash: %s\nimages:\n%s" % (
            self.label, self.cluster.namespace, number_after, goal["revision"], goal["hash"],
            _image_lines(goal["images"]))
        result["diff"] = {"before_header": self.label, "after_header": self.label,
                          "before": before + "\n", "after": after + "\n"}

    def _failed(self, result, err, patched, before_template, target):
        """The rollout to the target failed or ran out of time: put the template that was there before back
        (unless told not to) and fail saying what state the workload is in."""
        reason = err.msg if isinstance(err, RollbackError) else str(err)
        result["rollout"] = "failed"
        details = {key: value for key, value in result.items() if key != "diff"}
        goal = "the template of revision %d (hash %s, %s)" % (
            target.number, target.hash, images_text(workloads.images(target.template)))
        if not self.revert_on_failure:
            self.actions.append("rollout of %s failed; left on %s (revert_on_failure=false)" % (self.label, goal))
            raise RollbackError("rollout of %s to %s failed: %s; revert_on_failure is false, so %s is left on it"
                                % (self.label, goal, reason, self.label), reverted=False, **details)
        self.at("putting back the template %s had before" % self.label)
        before = result["from"]
        previous_note = ((patched["metadata"].get("annotations") or {}).get(workloads.RESTORED_ANNOTATION))
        try:
            now = self.read()
            self._patch(revert_patch(now, before_template, previous_note))
            workloads.wait_rollouts(self.cluster, [now], self.wait_timeout, settled=True)
        except (RollbackError, Terminated) as revert_err:
            text = revert_err.msg if isinstance(revert_err, RollbackError) else str(revert_err)
            self.actions.append("putting back the template of revision %s failed" % before["revision"])
            raise RollbackError("rollout of %s to %s failed: %s; putting back the template it had before (revision "
                                "%s, hash %s) failed too: %s; %s holds %s now: fix it by hand (kubectl rollout undo "
                                "%s)" % (self.label, goal, reason, before["revision"], before["hash"], text,
                                         self.label, goal, self.label), reverted=False, **details) from None
        self.actions.append("rollout of %s failed: %s; put back the template of revision %s (hash %s)"
                            % (self.label, reason, before["revision"], before["hash"]))
        details["revision"] = self._number_now(before["hash"], None)
        raise RollbackError("rollout of %s to %s failed: %s; the template it had before (revision %s, hash %s, %s) "
                            "was put back" % (self.label, goal, reason, before["revision"], before["hash"],
                                              images_text(before["images"])), reverted=True, **details)


def _image_lines(images):
    return "\n".join("  %s: %s" % item for item in sorted(images.items())) or "  (none)"
