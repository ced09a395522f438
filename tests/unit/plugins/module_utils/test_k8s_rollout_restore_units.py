"""_k8s_rollout_restore: input checks, the choice of the target, the patches, and the undo itself run in-process
against the Kubernetes API test double (tests/k8s_api; the real client, no mocks)."""
import os
import sys

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils import _k8s_rollout_restore as rollout
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads as workloads
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.k8s_api.fixture import k8s_api  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

POINT = "20260101T120000.000000Z-1a2b"


def params(**given):
    return dict({"kind": "Deployment", "name": "web", "namespace": None, "to_revision": None,
                 "template_hash": None, "point": None, "wait_timeout": 300.0}, **given)


# ---------------------------------------------------------------- input
@pytest.mark.parametrize("kind, canonical", [("deploy", "Deployment"), ("Deployment", "Deployment"),
                                             ("sts", "StatefulSet"), ("daemonsets", "DaemonSet")])
def test_kinds_by_any_kubectl_spelling(kind, canonical):
    assert rollout.check_params(params(kind=kind)) == (canonical, (None, None))


@pytest.mark.parametrize("given, mentions", [
    ({"kind": "Pod"}, ["kind", "'Pod'"]),
    ({"name": "Web_1"}, ["name", "'Web_1'"]),
    ({"name": ""}, ["name", "''"]),
    ({"namespace": "Prod!"}, ["namespace", "'Prod!'"]),
    ({"to_revision": 0}, ["to_revision", "0"]),
    ({"to_revision": -3}, ["to_revision", "-3"]),
    ({"to_revision": 2, "template_hash": "abcd1234"}, ["to_revision/template_hash", "to_revision=2",
                                                       "template_hash='abcd1234'"]),
    ({"template_hash": "abc", "point": POINT}, ["template_hash/point"]),
    ({"template_hash": "NOT-HEX!"}, ["template_hash", "'NOT-HEX!'"]),
    ({"template_hash": "ABCDEF12"}, ["template_hash", "'ABCDEF12'"]),
    ({"point": "release-42"}, ["point", "'release-42'", "restore point id"]),
    ({"wait_timeout": 0.0}, ["wait_timeout", "0.0"]),
    ({"wait_timeout": float("nan")}, ["wait_timeout", "nan"]),
    ({"wait_timeout": 1e9}, ["wait_timeout", "at most a week"]),
])
def test_bad_input_is_refused_naming_the_option_and_value(given, mentions):
    with pytest.raises(RollbackError) as caught:
        rollout.check_params(params(**given))
    for needle in mentions:
        assert needle in caught.value.msg, caught.value.msg


@pytest.mark.parametrize("given, selector", [
    ({"to_revision": 3}, ("to_revision", 3)),
    ({"template_hash": "0f1e2d3c4b5a6978"}, ("template_hash", "0f1e2d3c4b5a6978")),
    ({"template_hash": "5d59d67564"}, ("template_hash", "5d59d67564")),
    ({"template_hash": "7bcqf8x2z"}, ("template_hash", "7bcqf8x2z")),  # a real cluster's label is not hex
    ({"point": POINT}, ("point", POINT)),
])
def test_good_selectors(given, selector):
    assert rollout.check_params(params(**given))[1] == selector


# ---------------------------------------------------------------- target and patches
def revision(number, image, kind="ReplicaSet", points=(), history=""):
    template = {"metadata": {"labels": {"app": "web", "pod-template-hash": "h%d" % number}},
                "spec": {"containers": [{"name": "app", "image": image}]}}
    annotations = {}
    if points:
        annotations[workloads.POINT_ANNOTATION] = ",".join(points)
    if history:
        annotations[rollout.REVISION_HISTORY] = history
    holder = {"kind": kind, "metadata": {"name": "web-h%d" % number, "namespace": "default",
                                         "labels": {"pod-template-hash": "h%d" % number},
                                         "annotations": annotations}}
    return workloads.Revision(number, template, holder)


def deployment(image, limit=10):
    return {"kind": "Deployment", "metadata": {"name": "web", "resourceVersion": "7", "annotations": {"a": "b"}},
            "spec": {"revisionHistoryLimit": limit, "template": {
                "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}}


def test_previous_is_the_newest_older_revision_with_another_template():
    revisions = [revision(1, "v1"), revision(2, "v2"), revision(4, "v4"), revision(5, "v5")]
    current = revisions[2]  # an undo made v4 current while v5 is newer
    assert rollout.choose(deployment("v4"), revisions, current, (None, None)).number == 2
    assert rollout.choose(deployment("v5"), revisions, revisions[3], (None, None)).number == 4


def test_targets_by_number_hash_and_point():
    revisions = [revision(1, "v1", points=[POINT]), revision(2, "v2"), revision(3, "v3")]
    assert rollout.choose(deployment("v3"), revisions, revisions[2], ("to_revision", 2)).number == 2
    assert rollout.choose(deployment("v3"), revisions, revisions[2], ("template_hash", "h1")).number == 1
    assert rollout.choose(deployment("v3"), revisions, revisions[2], ("template_hash", revisions[1].hash)).number == 2
    assert rollout.choose(deployment("v3"), revisions, revisions[2], ("point", POINT)).number == 1


def test_a_missing_target_lists_what_exists_and_says_why():
    revisions = [revision(4, "v4", history="1"), revision(5, "v5"), revision(6, "v6")]
    with pytest.raises(RollbackError) as moved:
        rollout.choose(deployment("v6", limit=2), revisions, revisions[2], ("to_revision", 1))
    assert "revision 1 was rolled back to and is revision 4 now" in moved.value.msg
    with pytest.raises(RollbackError) as pruned:
        rollout.choose(deployment("v6", limit=2), revisions, revisions[2], ("to_revision", 2))
    for needle in ("to_revision: revision 2 of deployment/web does not exist", "4 (hash ", "app=v6, current",
                   "revisionHistoryLimit=2", "nothing was changed"):
        assert needle in pruned.value.msg, pruned.value.msg
    assert [r["current"] for r in pruned.value.details["revisions"]] == [False, False, True]
    with pytest.raises(RollbackError) as newer:
        rollout.choose(deployment("v6"), revisions, revisions[2], ("to_revision", 9))
    assert "no revision is that new" in newer.value.msg and "revisionHistoryLimit" not in newer.value.msg
    with pytest.raises(RollbackError) as by_point:
        rollout.choose(deployment("v6"), revisions, revisions[2], ("point", POINT))
    assert "point" in by_point.value.msg and POINT in by_point.value.msg
    with pytest.raises(RollbackError) as alone:
        rollout.choose(deployment("v6"), revisions[2:], revisions[2], (None, None))
    assert "no previous revision" in alone.value.msg


def test_restorable_template_drops_the_hash_label_and_the_patch_directive():
    held = revision(2, "v2", kind="ControllerRevision")
    held.template["$patch"] = "replace"
    held.template["metadata"]["labels"]["controller-revision-hash"] = "x"
    template = rollout.restorable_template(held)
    assert template == {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "v2"}]}}
    assert "$patch" in held.template  # the holder's copy is left alone
    assert workloads.template_hash(held.template) == workloads.template_hash(template)


def test_the_patch_tests_the_version_and_touches_one_annotation_only():
    patch = rollout.restore_patch(deployment("v3"), {"spec": {}}, "revision 1 (hash h)")
    assert patch == [{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                     {"op": "replace", "path": "/spec/template", "value": {"spec": {}}},
                     {"op": "add", "path": "/metadata/annotations/fleetops.rollback~1restored-from",
                      "value": "revision 1 (hash h)"}]
    bare = deployment("v3")
    del bare["metadata"]["annotations"]
    assert rollout.restore_patch(bare, {}, "n")[-1] == {
        "op": "add", "path": "/metadata/annotations", "value": {"fleetops.rollback/restored-from": "n"}}
    marked = deployment("v3")
    marked["metadata"]["annotations"][workloads.RESTORED_ANNOTATION] = "new"
    assert rollout.revert_patch(marked, {}, None)[-1]["op"] == "remove"
    assert rollout.revert_patch(marked, {}, "old")[-1] == {
        "op": "add", "path": "/metadata/annotations/fleetops.rollback~1restored-from", "value": "old"}
    assert len(rollout.revert_patch(deployment("v3"), {}, None)) == 2


# ---------------------------------------------------------------- against the double
def create(cluster, kind, image, annotations=None, **spec):
    body = {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": image}]}}}
    body.update(spec)
    meta = {"name": "web", "labels": {"team": "blue"}}
    if annotations is not None:
        meta["annotations"] = annotations
    cluster.create(workloads.path(kind, "default"), {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
                                                     "spec": body})


def set_image(cluster, kind, image):
    cluster.patch(workloads.path(kind, "default", "web"),
                  [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])


def image(cluster, kind):
    return workloads.read(cluster, kind, "web")["spec"]["template"]["spec"]["containers"][0]["image"]


def undo(cluster, kind, selector, **options):
    return rollout.Undo(cluster, kind, "web", selector, **options).run()


def test_undo_check_mode_then_real_then_idempotent(k8s_api):
    cluster = k8s.connect({"host": k8s_api.url})
    create(cluster, "StatefulSet", "v1")  # no annotations at all: the map is created, not replaced
    set_image(cluster, "StatefulSet", "v2")
    version = workloads.read(cluster, "StatefulSet", "web")["metadata"]["resourceVersion"]
    predicted = undo(cluster, "StatefulSet", ("to_revision", 1), check_mode=True, diff_mode=True)
    assert workloads.read(cluster, "StatefulSet", "web")["metadata"]["resourceVersion"] == version
    done = undo(cluster, "StatefulSet", ("to_revision", 1), diff_mode=True)
    for key in ("changed", "from", "to", "revision", "diff"):
        assert predicted[key] == done[key], key
    assert done["revision"] == 3 and done["rollout"] == "done" and image(cluster, "StatefulSet") == "v1"
    assert predicted["actions"][0].startswith("would patch") and done["actions"][0].startswith("patched")
    meta = workloads.read(cluster, "StatefulSet", "web")["metadata"]
    assert meta["annotations"] == {workloads.RESTORED_ANNOTATION: "revision 1 (hash %s)" % done["to"]["hash"]}
    assert meta["labels"] == {"team": "blue"}
    again = undo(cluster, "StatefulSet", ("template_hash", done["to"]["hash"]))
    assert again["changed"] is False and again["revision"] == 3


def test_a_failed_rollout_is_reverted_or_left_as_told(k8s_api):
    cluster = k8s.connect({"host": k8s_api.url})
    create(cluster, "Deployment", "v1", annotations={"keep": "me"}, progressDeadlineSeconds=1)
    set_image(cluster, "Deployment", "app:bad")
    set_image(cluster, "Deployment", "v2")
    with pytest.raises(RollbackError) as reverted:
        undo(cluster, "Deployment", ("to_revision", 2), wait_timeout=60)
    assert reverted.value.details["reverted"] is True and reverted.value.details["rollout"] == "failed"
    assert "was put back" in reverted.value.msg and image(cluster, "Deployment") == "v2"
    annotations = workloads.read(cluster, "Deployment", "web")["metadata"]["annotations"]
    assert annotations["keep"] == "me" and workloads.RESTORED_ANNOTATION not in annotations
    with pytest.raises(RollbackError) as left:
        undo(cluster, "Deployment", ("template_hash", reverted.value.details["to"]["hash"]),
             revert_on_failure=False, wait_timeout=60)
    assert left.value.details["reverted"] is False and image(cluster, "Deployment") == "app:bad"


def test_no_wait_and_a_workload_that_changed_meanwhile(k8s_api):
    cluster = k8s.connect({"host": k8s_api.url})
    create(cluster, "DaemonSet", "v1")
    set_image(cluster, "DaemonSet", "v2")
    result = undo(cluster, "DaemonSet", (None, None), wait=False)
    assert result["rollout"] == "not waited" and result["revision"] == 3 and image(cluster, "DaemonSet") == "v1"
    stale = rollout.Undo(cluster, "DaemonSet", "web", (None, None))
    workload = stale.read()
    set_image(cluster, "DaemonSet", "v3")
    with pytest.raises(k8s.KubeError) as caught:
        stale._patch(rollout.restore_patch(workload, workload["spec"]["template"], "x"))  # pylint: disable=protected-access
    assert "changed while this task read it" in caught.value.msg and image(cluster, "DaemonSet") == "v3"
    with pytest.raises(RollbackError) as missing:
        rollout.Undo(cluster, "Deployment", "web", (None, None)).run()
    assert "deployment/web does not exist in namespace 'default'" in missing.value.msg
