"""The kubernetes component's own logic: spec normalization and refusals, the patches it builds, Secret hashing,
select and scope; plan, apply and diff against the Kubernetes API test double (tests/k8s_api), no mocks."""
import json
import os
import sys

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components import Components
from ansible_collections.fleetops.rollback.plugins.module_utils._components.kubernetes import component as kc
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads as wl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.k8s_api.fixture import k8s_api  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


def part():
    return Components()["kubernetes"]


# ---------------------------------------------------------------- spec
@pytest.mark.parametrize("given, expected", [
    ("web", {"kind": "Deployment", "name": "web"}),
    ("deployment/web", {"kind": "Deployment", "name": "web"}),
    ("sts/db", {"kind": "StatefulSet", "name": "db"}),
    ("ds/agent", {"kind": "DaemonSet", "name": "agent"}),
    ({"name": "web"}, {"kind": "Deployment", "name": "web"}),
    ({"kind": "StatefulSet", "selector": " app=db "}, {"kind": "StatefulSet", "selector": "app=db"}),
])
def test_workload_forms(given, expected):
    assert kc.check_workload(given, "w") == expected


@pytest.mark.parametrize("given, words", [
    ({"name": "web", "selector": "app=web"}, "exactly one of name or selector, got both"),
    ({"kind": "Deployment"}, "got neither"),
    ({"name": "web", "image": "x"}, "unsupported key image"),
    ("cronjob/web", "not a workload kind"),
    ("deployment/", "is not a workload"),
    ("Web", "not a Kubernetes object name"),
    ({"selector": ""}, "not a label selector"),
    (42, "is not a workload"),
])
def test_workload_refusals_name_the_entry(given, words):
    with pytest.raises(RollbackError) as err:
        kc.check_workload(given, "components.kubernetes.workloads[0]")
    assert words in err.value.msg and "components.kubernetes.workloads[0]" in err.value.msg


def test_normalize_defaults_and_refusals():
    spec = part().normalize({"workloads": ["web"], "namespace": "prod"})
    assert spec["workloads"] == [{"kind": "Deployment", "name": "web"}]
    assert (spec["configmaps"], spec["secrets"], spec["replicas"], spec["wait_timeout"]) == (True, "report", True, 300.0)
    assert spec["namespace"] == "prod" and spec["kubeconfig"] is None
    for bad, words in [({"workloads": []}, "non-empty list"), ({"workloads": ["web", "deployment/web"]}, "twice"),
                       ({"workloads": ["web"], "wait_timeout": 0}, "wait_timeout"),
                       ({"workloads": ["web"], "api_key": "t0ken"}, "api_key"),
                       ({"workloads": ["web"], "secrets": "store"}, "secrets"),
                       ({"workloads": ["web"], "namespace": "Bad_NS"}, "namespace")]:
        with pytest.raises(RollbackError) as err:
            part().normalize(bad)
        assert words in err.value.msg and "t0ken" not in err.value.msg


# ---------------------------------------------------------------- pure helpers
def test_secret_hash_is_salted_deterministic_and_holds_no_value():
    salt = kc.secret_salt("ns-uid", "db")
    assert salt == kc.secret_salt("ns-uid", "db") != kc.secret_salt("other-uid", "db") != kc.secret_salt("ns-uid", "x")
    secret = {"type": "Opaque", "data": {"password": "c2VjcmV0"}}
    digest = kc.secret_hash(secret, salt)
    assert digest == kc.secret_hash(dict(secret), salt) != kc.secret_hash(secret, kc.secret_salt("o", "db"))
    assert digest != kc.secret_hash({"type": "Opaque", "data": {"password": "b3RoZXI="}}, salt)
    assert "c2VjcmV0" not in digest + salt


def test_configmap_patch_touches_data_and_binary_data_only():
    current = {"metadata": {"labels": {"a": "1"}}, "data": {"k": "bad"}, "binaryData": {"b": "AA=="}}
    assert kc.configmap_patch(current, {"data": {"k": "good"}, "binaryData": {}}) == [
        {"op": "replace", "path": "/data", "value": {"k": "good"}}, {"op": "remove", "path": "/binaryData"}]
    assert kc.configmap_patch({"metadata": {}}, {"data": {"k": "v"}, "binaryData": {}}) == [
        {"op": "add", "path": "/data", "value": {"k": "v"}}]
    assert kc.configmap_patch({"data": {"k": "v"}}, {"data": {"k": "v"}, "binaryData": {}}) == []


def test_workload_patch_tests_the_version_and_adds_one_annotation():
    record = {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}, "replicas": 3}
    with_annotations = {"metadata": {"annotations": {"team": "blue"}}, "spec": {"replicas": 1}}
    ops = kc.workload_patch(with_annotations, record, "42", "P1", replicas=True)
    assert ops == [{"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                   {"op": "replace", "path": "/spec/template", "value": record["template"]},
                   {"op": "replace", "path": "/spec/replicas", "value": 3},
                   {"op": "add", "path": "/metadata/annotations/fleetops.rollback~1restored-from", "value": "P1"}]
    bare = kc.workload_patch({"metadata": {}, "spec": {}}, record, "7", "P1", replicas=False)
    assert [op["path"] for op in bare] == ["/metadata/resourceVersion", "/spec/template", "/metadata/annotations"]
    assert bare[-1]["value"] == {"fleetops.rollback/restored-from": "P1"}


RECORD = {"connection": {"namespace": "default"}, "options": {"configmaps": True, "secrets": "report",
                                                              "replicas": False, "wait_timeout": 30.0},
          "workloads": [{"kind": "Deployment", "name": "web", "configmaps": ["web-config"], "secrets": ["s"]},
                        {"kind": "StatefulSet", "name": "db", "configmaps": [], "secrets": []}],
          "configmaps": [{"name": "web-config", "data": {}, "binaryData": {}, "immutable": False}],
          "secrets": [{"name": "s", "type": "Opaque", "salt": "x", "hash": "y"}]}


def test_select_and_scope():
    narrowed = part().select(RECORD, ["sts/db"])
    assert [w["name"] for w in narrowed["workloads"]] == ["db"] and narrowed["configmaps"] == [] \
        and narrowed["secrets"] == []
    assert [w["name"] for w in part().select(RECORD, ["web"])["workloads"]] == ["web"]
    with pytest.raises(RollbackError) as err:
        part().select(RECORD, ["deployment/db"])
    assert "Deployment/web, StatefulSet/db" in err.value.msg
    scope = part().scope(RECORD)
    assert scope["workloads"] == [{"kind": "Deployment", "name": "web"}, {"kind": "StatefulSet", "name": "db"}]
    assert scope["extra_configmaps"] == ["web-config"] and scope["replicas"] is False and "api_key" not in scope


# ---------------------------------------------------------------- against the API test double
@pytest.fixture
def cluster_spec(k8s_api, tmp_path):  # pylint: disable=redefined-outer-name
    config = k8s_api.write_kubeconfig(tmp_path / "kubeconfig")
    component = part()
    cluster = component.cluster({"kubeconfig": config})
    cluster.create(wl.core_path("configmaps", "default"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": {"name": "web-config"}, "data": {"mode": "good"}})
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "app", "image": "nginx:1.25", "envFrom": [{"configMapRef": {"name": "web-config"}}]}]}}
    cluster.create(wl.path("Deployment", "default"), {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {"team": "blue"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}})
    return component, cluster, component.normalize({"kubeconfig": config, "workloads": ["web"]})


def set_image(cluster, image):
    cluster.patch(wl.path("Deployment", "default", "web"),
                  [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])


def test_preview_capture_writes_nothing_and_a_real_one_marks_the_revision(cluster_spec):
    component, cluster, spec = cluster_spec
    preview = component.capture(None, spec)
    assert all(not r.points for r in wl.history(cluster, wl.read(cluster, "Deployment", "web")))
    assert component.capture(object(), spec, "P1") == preview
    component.capture(object(), spec, "P2")
    [revision] = wl.history(cluster, wl.read(cluster, "Deployment", "web"))
    assert revision.points == ["P1", "P2"]


def test_plan_diff_and_a_concurrent_change_is_refused(cluster_spec):
    component, cluster, spec = cluster_spec
    record = component.capture(None, spec)
    assert component.plan(None, record, "P") == []
    set_image(cluster, "nginx:1.26")
    changes = component.plan(None, record, "P")
    assert [(c["action"], c["from"]["images"], c["to"]["images"]) for c in changes] == [
        ("restore", {"app": "nginx:1.26"}, {"app": "nginx:1.25"})]
    [diff] = component.diff(None, record, changes)
    assert "nginx:1.26" in diff["before"] and "nginx:1.25" in diff["after"] and diff["before_header"] == "Deployment/web"
    set_image(cluster, "nginx:1.27")  # someone deploys between the plan and the apply
    with pytest.raises(RollbackError) as err:
        component.apply(None, record, changes)
    assert "changed by someone else" in err.value.msg
    assert wl.read(cluster, "Deployment", "web")["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_refusals_before_anything_changes(cluster_spec):
    component, cluster, spec = cluster_spec
    record = component.capture(None, spec)
    cm_path = wl.core_path("configmaps", "default", "web-config")
    # An immutable ConfigMap whose data differs is refused, naming it.
    cluster.request("DELETE", cm_path)
    cluster.create(wl.core_path("configmaps", "default"), {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                                                           "metadata": {"name": "web-config"}, "data": {"mode": "x"}})
    with pytest.raises(RollbackError) as err:
        component.plan(None, record, "P")
    assert "ConfigMap web-config is immutable" in err.value.msg and "nothing was changed" in err.value.msg
    # A ConfigMap that is gone is recreated (planned as create).
    cluster.request("DELETE", cm_path)
    assert [c["action"] for c in component.plan(None, record, "P")] == ["create"]
    # The server refuses the patch in its dry run: a template without an image.
    broken = json.loads(json.dumps(record))
    broken["workloads"][0]["template"]["spec"]["containers"][0].pop("image")
    with pytest.raises(RollbackError) as err:
        component.plan(None, broken, "P")
    assert "server-side dry run" in err.value.msg
    assert cluster.get(cm_path, missing_ok=True) is None
    # A workload that is gone is refused.
    cluster.request("DELETE", wl.path("Deployment", "default", "web"))
    with pytest.raises(RollbackError) as err:
        component.plan(None, record, "P")
    assert "Deployment/web no longer exists" in err.value.msg


def test_an_exact_record_removes_a_configmap_it_did_not_hold(cluster_spec):
    component, cluster, spec = cluster_spec
    record = component.capture(None, dict(spec, extra_configmaps=["new-config"]))
    assert {"name": "new-config", "absent": True} in record["configmaps"]
    cluster.create(wl.core_path("configmaps", "default"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": {"name": "new-config"}, "data": {"a": "1"}})
    assert component.plan(None, record, "P") == []
    exact = dict(record, exact=True)
    changes = component.plan(None, exact, "S")
    assert [(c["action"], c["configmap"]) for c in changes] == [("delete", "new-config")]
    component.apply(None, exact, changes)
    assert cluster.get(wl.core_path("configmaps", "default", "new-config"), missing_ok=True) is None
