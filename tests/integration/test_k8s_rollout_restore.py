"""k8s_rollout_restore against the Kubernetes API test double (tests/k8s_api), with the machine's real kubectl as the
judge: kubectl's own behaviour first (renumbering, the flip-flop, "skipped rollback"), then ours where it must be the
same and where it must be better. Every module run is a real module process (tests/faults/harness.run_module) or a
real ansible-playbook; waits go through the module's own deadline or `kubectl rollout status`, never fixed sleeps.
"""
import json
import os
import shutil
import sys

import pytest

from playbook_runner import ROOT, local_inventory, run_playbook
from plays import play

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_workloads import (  # noqa: E402
    normal_template)  # pylint: disable=wrong-import-position
from tests.faults.harness import run_module  # noqa: E402  pylint: disable=wrong-import-position
from tests.k8s_api.fixture import start_server  # noqa: E402  pylint: disable=wrong-import-position
from kube_env import Kube as KubeBase  # noqa: E402  pylint: disable=wrong-import-position

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs the real kubectl")
MODULE = "k8s_rollout_restore"
TOKEN = "tok-3f9a1c7e5b2d4a6f8e0c"  # the double ignores authentication; the value must never be shown
POINT = "20260101T120000.000000Z-1a2b"


def workload(kind="Deployment", name="web", image="nginx:v1", labels=None, annotations=None, **spec):
    labels = labels or {"app": name}
    body = {"selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)},
                         "spec": {"containers": [{"name": "app", "image": image}]}}}
    if kind != "DaemonSet":
        body["replicas"] = 2
    if kind == "StatefulSet":
        body["serviceName"] = name
    body.update(spec)
    meta = {"name": name, "labels": {"team": "blue", "tier": "front"},
            "annotations": dict({"owner": "payments", "note": "keep me"}, **(annotations or {}))}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": body}


class Kube(KubeBase):
    """One test double with kubectl and our module pointed at it."""

    def image(self, ref="deployment/web"):
        return self.get(ref)["spec"]["template"]["spec"]["containers"][0]["image"]

    def set_image(self, ref, image):
        self.run("set", "image", ref, "app=" + image)

    def revisions(self, ref="deployment/web"):
        out = self.run("rollout", "history", ref).stdout
        return [int(line.split()[0]) for line in out.splitlines() if line.split() and line.split()[0].isdigit()]

    def history(self, ref="deployment/web"):
        """{revision: image} of the holders the workload owns (ReplicaSets or ControllerRevisions)."""
        obj = self.get(ref)
        uid = obj["metadata"]["uid"]
        found = {}
        if obj["kind"] == "Deployment":
            for rs in self.get("replicasets")["items"]:
                if any(r["uid"] == uid for r in rs["metadata"].get("ownerReferences", [])):
                    found[int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])] = \
                        rs["spec"]["template"]["spec"]["containers"][0]["image"]
        else:
            for cr in self.get("controllerrevisions")["items"]:
                if any(r["uid"] == uid for r in cr["metadata"].get("ownerReferences", [])):
                    found[cr["revision"]] = cr["data"]["spec"]["template"]["spec"]["containers"][0]["image"]
        return found

    def holder(self, image, ref="deployment/web"):
        """The ReplicaSet / ControllerRevision of ref that holds image."""
        obj = self.get(ref)
        plural = "replicasets" if obj["kind"] == "Deployment" else "controllerrevisions"
        for item in self.get(plural)["items"]:
            template = item["spec"]["template"] if plural == "replicasets" else item["data"]["spec"]["template"]
            if any(r["uid"] == obj["metadata"]["uid"] for r in item["metadata"].get("ownerReferences", [])) and \
                    template["spec"]["containers"][0]["image"] == image:
                return item
        raise AssertionError("no holder of %s for %s" % (image, ref))

    def module(self, check=False, diff=False, **args):
        run = run_module(MODULE, dict({"kubeconfig": self.config, "api_key": TOKEN, "name": "web"}, **args),
                         check=check, diff=diff)
        assert TOKEN not in run.everything
        assert "Traceback" not in run.everything, run.everything[-3000:]
        return run

    def rolled_out(self, ref="deployment/web"):
        """kubectl rollout status says the rollout is complete."""
        proc = self.run("rollout", "status", ref, "--timeout=60s", check=False)
        done = ("successfully rolled out", "roll out complete", "update complete")
        return proc.returncode == 0 and any(text in proc.stdout for text in done)


@pytest.fixture
def kube(tmp_path):
    server = start_server()
    try:
        yield Kube(server, tmp_path)
    finally:
        server.stop()
    assert not server.errors(), server.errors()


def three_rollouts(kube, ref="deployment/web", obj=None):
    kube.apply(obj or workload())
    kube.set_image(ref, "nginx:v2")
    kube.set_image(ref, "nginx:v3")
    assert kube.revisions(ref) == [1, 2, 3]


def test_kubectl_flip_flops_where_a_hash_or_point_stays_put(kube):
    three_rollouts(kube)
    v1_label = kube.holder("nginx:v1")["metadata"]["labels"]["pod-template-hash"]
    # kubectl: undo goes to v2 as revision 4, a second undo flips back to v3
    kube.run("rollout", "undo", "deployment/web")
    assert kube.image() == "nginx:v2" and kube.revisions() == [1, 3, 4]
    kube.run("rollout", "undo", "deployment/web")
    assert kube.image() == "nginx:v3" and kube.revisions() == [1, 4, 5]

    # ours, by the controller's hash of v1: to v1, then nothing to do
    first = kube.module(template_hash=v1_label)
    assert not first.failed, first.msg
    assert first.result["changed"] is True and first.result["rollout"] == "done"
    assert first.result["to"]["revision"] == 1 and first.result["revision"] == 6
    assert first.result["from"] == {"revision": 5, "hash": first.result["from"]["hash"], "images": {"app": "nginx:v3"}}
    assert kube.image() == "nginx:v1" and kube.revisions() == [4, 5, 6]
    assert kube.rolled_out()
    again = kube.module(template_hash=v1_label)
    assert not again.failed and again.result["changed"] is False and again.result["revision"] == 6
    assert again.result["to"]["hash"] == first.result["to"]["hash"]
    assert kube.revisions() == [4, 5, 6]
    # our own hash names the same template
    assert kube.module(template_hash=first.result["to"]["hash"]).result["changed"] is False

    # by a restore point recorded on v2's ReplicaSet (as capture does): to v2, then nothing to do
    kube.run("annotate", "replicaset", kube.holder("nginx:v2")["metadata"]["name"],
             "fleetops.rollback/point=%s,20260102T000000.000000Z-ffff" % POINT)
    by_point = kube.module(point=POINT)
    assert by_point.result["changed"] is True and kube.image() == "nginx:v2", by_point.msg
    assert by_point.result["to"]["revision"] == 4 and by_point.result["revision"] == 7
    assert kube.module(point=POINT).result["changed"] is False
    assert kube.revisions() == [5, 6, 7] and kube.rolled_out()
    annotations = kube.get("deployment/web")["metadata"]["annotations"]
    assert annotations["fleetops.rollback/restored-from"] == "revision 4 (hash %s)" % by_point.result["to"]["hash"]

    # no target: the previous revision, as kubectl undo (and it flips like kubectl's)
    previous = kube.module()
    assert previous.result["to"]["revision"] == 6 and kube.image() == "nginx:v1"


def test_to_revision_gives_what_kubectl_undo_to_revision_gives(tmp_path):
    results = {}
    for who in ("kubectl", "ours"):
        server = start_server()
        try:
            (tmp_path / who).mkdir()
            kube = Kube(server, tmp_path / who)
            three_rollouts(kube)
            if who == "kubectl":
                kube.run("rollout", "undo", "deployment/web", "--to-revision=1")
            else:
                run = kube.module(to_revision=1)
                assert run.result["changed"] is True and run.result["revision"] == 4, run.msg
            assert kube.rolled_out()
            dep = kube.get("deployment/web")
            results[who] = {"revisions": kube.revisions(), "history": kube.history(),
                            "template": dep["spec"]["template"], "labels": dep["metadata"]["labels"],
                            "generation": dep["metadata"]["generation"],
                            "revision-4": kube.run("rollout", "history", "deployment/web", "--revision=4").stdout,
                            "annotations": dep["metadata"]["annotations"]}
        finally:
            server.stop()
        assert not server.errors(), server.errors()
    ours, theirs = results["ours"], results["kubectl"]
    assert ours["revisions"] == theirs["revisions"] == [2, 3, 4]
    assert ours["history"] == theirs["history"] == {2: "nginx:v2", 3: "nginx:v3", 4: "nginx:v1"}
    # kubectl sends the template as Go encodes it (creationTimestamp: null, resources: {}), which a real server's
    # defaulting drops and the double keeps: compared as the API would hold them.
    assert normal_template(ours["template"]) == normal_template(theirs["template"])
    assert ours["revision-4"] == theirs["revision-4"] and "nginx:v1" in ours["revision-4"]
    assert ours["generation"] == theirs["generation"]
    # unrelated annotations and labels are kept; ours adds one annotation
    assert ours["labels"] == theirs["labels"] == {"team": "blue", "tier": "front"}
    assert {k: v for k, v in ours["annotations"].items() if k != "fleetops.rollback/restored-from"} == \
        theirs["annotations"]
    assert ours["annotations"]["owner"] == "payments" and ours["annotations"]["note"] == "keep me"
    assert ours["annotations"]["fleetops.rollback/restored-from"].startswith("revision 1 (hash ")


def test_a_pruned_or_moved_revision_is_refused_and_nothing_changes(kube):
    kube.apply(workload(revisionHistoryLimit=2))
    for version in ("v2", "v3", "v4", "v5"):
        kube.set_image("deployment/web", "nginx:" + version)
    assert kube.revisions() == [3, 4, 5]
    before = kube.get("deployment/web")["metadata"]["resourceVersion"]
    pruned = kube.module(to_revision=1)
    assert pruned.failed
    for needle in ("to_revision", "revision 1 of deployment/web does not exist", "revisionHistoryLimit=2",
                   "3 (hash", "app=nginx:v3", "app=nginx:v5, current", "nothing was changed"):
        assert needle in pruned.msg, pruned.msg
    assert [r["revision"] for r in pruned.result["revisions"]] == [3, 4, 5]
    assert kube.module(to_revision=9).failed
    assert kube.get("deployment/web")["metadata"]["resourceVersion"] == before
    # kubectl refuses it too
    assert "unable to find specified revision 1" in kube.run("rollout", "undo", "deployment/web",
                                                             "--to-revision=1", check=False).stderr
    # a number that moved in an undo: refused, saying where it went
    kube.run("rollout", "undo", "deployment/web", "--to-revision=3")
    moved = kube.module(to_revision=3)
    assert moved.failed and "revision 3 was rolled back to and is revision 6 now" in moved.msg, moved.msg
    unknown = kube.module(template_hash="0123456789abcdef")
    assert unknown.failed and "template_hash" in unknown.msg and "'0123456789abcdef'" in unknown.msg


def test_the_current_template_is_skipped_like_kubectl_does(kube):
    three_rollouts(kube)
    assert "skipped rollback" in kube.run("rollout", "undo", "deployment/web", "--to-revision=3").stdout
    before = kube.get("deployment/web")["metadata"]["resourceVersion"]
    for check in (True, False):
        run = kube.module(to_revision=3, check=check, diff=True)
        assert not run.failed and run.result["changed"] is False, run.msg
        assert run.result["revision"] == 3 and run.result["rollout"] == "not waited"
        assert "skipped" in run.result["actions"][0]
        assert run.result["diff"]["before"] == run.result["diff"]["after"]
    assert kube.get("deployment/web")["metadata"]["resourceVersion"] == before
    assert kube.revisions() == [1, 2, 3]


def test_overlapping_selectors_use_only_the_named_workloads_history(kube):
    same = {"app": "shop"}
    kube.apply(workload(name="web", labels=same))
    kube.set_image("deployment/web", "nginx:v2")
    kube.apply(workload(name="canary", labels=same, image="nginx:c1"))
    for version in ("c2", "c3"):
        kube.set_image("deployment/canary", "nginx:" + version)
    canary_before = kube.get("deployment/canary")
    # kubectl lists each one's own history
    assert kube.revisions("deployment/canary") == [1, 2, 3] and kube.revisions() == [1, 2]
    refused = kube.module(to_revision=3)
    assert refused.failed and "nginx:c" not in refused.msg, refused.msg
    run = kube.module(to_revision=1)
    assert run.result["changed"] is True and run.result["to"]["images"] == {"app": "nginx:v1"}, run.msg
    assert kube.image() == "nginx:v1"
    assert kube.get("deployment/canary")["metadata"]["resourceVersion"] == canary_before["metadata"]["resourceVersion"]
    assert kube.history("deployment/canary") == {1: "nginx:c1", 2: "nginx:c2", 3: "nginx:c3"}
    previous = kube.module(name="canary")
    assert previous.result["to"]["images"] == {"app": "nginx:c2"} and kube.image("deployment/canary") == "nginx:c2"


def test_a_rollout_that_fails_puts_the_previous_template_back(kube):
    kube.apply(workload(progressDeadlineSeconds=2))
    kube.set_image("deployment/web", "nginx:bad")
    kube.set_image("deployment/web", "nginx:v2")
    assert kube.rolled_out() and kube.revisions() == [1, 2, 3]
    failed = kube.module(to_revision=2, wait_timeout=120)
    assert failed.failed and failed.result["reverted"] is True, failed.msg
    for needle in ("rollout of deployment/web", "revision 2", "nginx:bad", "progress deadline",
                   "the template it had before (revision 3", "app=nginx:v2", "was put back"):
        assert needle in failed.msg, failed.msg
    assert failed.result["rollout"] == "failed"
    assert kube.image() == "nginx:v2" and kube.rolled_out()
    annotations = kube.get("deployment/web")["metadata"]["annotations"]
    assert "fleetops.rollback/restored-from" not in annotations and annotations["owner"] == "payments"
    # told not to revert: left on the bad template, and it says so
    left = kube.module(to_revision=4, revert_on_failure=False)
    assert left.failed and left.result["reverted"] is False and "left on it" in left.msg, left.msg
    assert kube.image() == "nginx:bad"


@pytest.mark.parametrize("kind, ref, label", [("StatefulSet", "statefulset/web", "controller-revision-hash"),
                                              ("DaemonSet", "daemonset/web", "controller-revision-hash")])
def test_statefulsets_and_daemonsets_undo_by_controller_revision(kube, kind, ref, label):
    three_rollouts(kube, ref, workload(kind))
    run = kube.module(kind=kind.lower(), to_revision=1, diff=True)
    assert run.result["changed"] is True and run.result["revision"] == 4, run.msg
    assert kube.image(ref) == "nginx:v1" and kube.revisions(ref) == [2, 3, 4] and kube.rolled_out(ref)
    assert "revision: 4 (was 1)" in run.result["diff"]["after"]
    assert kube.module(kind="sts" if kind == "StatefulSet" else "ds", to_revision=4).result["changed"] is False
    # by the controller's hash of v3, then the previous revision (v1 again, as kubectl's undo)
    v3 = kube.holder("nginx:v3", ref)["metadata"]["labels"][label]
    assert kube.module(kind=kind, template_hash=v3).result["changed"] is True and kube.image(ref) == "nginx:v3"
    meta = kube.get(ref)["metadata"]
    assert meta["labels"] == {"team": "blue", "tier": "front"} and meta["annotations"]["note"] == "keep me"
    assert kube.module(kind=kind).result["to"]["images"] == {"app": "nginx:v1"}


def test_check_mode_predicts_the_real_run_and_changes_nothing(kube, tmp_path):
    three_rollouts(kube)
    inventory = local_inventory(tmp_path / "inventory.ini", {"k8s-prod": {}})
    task = play(("Undo", MODULE, {"kubeconfig": kube.config, "api_key": TOKEN, "name": "web", "to_revision": 2}))
    before = kube.get("deployment/web")["metadata"]["resourceVersion"]
    checked = run_playbook(task, inventory, check=True, diff=True)
    assert checked.rc == 0, checked.stdout[-3000:]
    assert kube.get("deployment/web")["metadata"]["resourceVersion"] == before
    assert kube.revisions() == [1, 2, 3] and kube.image() == "nginx:v3"
    real = run_playbook(task, inventory, diff=True)
    assert real.rc == 0, real.stdout[-3000:]
    for run in (checked, real):
        assert TOKEN not in run.stdout + run.stderr + json.dumps(run.results)
    predicted, done = checked.result("Undo", "k8s-prod"), real.result("Undo", "k8s-prod")
    for key in ("changed", "from", "to", "revision", "diff", "kind", "name", "namespace"):
        assert predicted[key] == done[key], key
    assert predicted["changed"] is True and done["revision"] == 4 and kube.revisions() == [1, 3, 4]
    assert "nginx:v2" in done["diff"]["after"] and "nginx:v3" in done["diff"]["before"]
    assert predicted["rollout"] == "not waited" and done["rollout"] == "done"
    assert [a.split(" ", 2)[:2] for a in predicted["actions"]] == [["would", "patch"]]
    again = run_playbook(task.replace('"to_revision": 2', '"to_revision": 4'), inventory)
    assert again.result("Undo", "k8s-prod")["changed"] is False


def test_a_wrong_context_namespace_or_name_is_a_clear_error(kube):
    three_rollouts(kube)
    context = kube.module(name="web", context="production")
    assert context.failed and "context: 'production' is not in" in context.msg and "fake" in context.msg
    namespace = kube.module(name="web", namespace="nope")
    assert namespace.failed and "namespace: 'nope' does not exist" in namespace.msg, namespace.msg
    missing = kube.module(name="api")
    assert missing.failed and "deployment/api does not exist in namespace 'default'" in missing.msg
    elsewhere = kube.module(name="web", namespace="prod")
    assert elsewhere.failed and "namespace 'prod'" in elsewhere.msg
    by_host = run_module(MODULE, {"host": kube.server.url, "api_key": TOKEN, "name": "web", "to_revision": 1})
    assert by_host.result["changed"] is True and TOKEN not in by_host.everything
    assert kube.revisions() == [2, 3, 4]
