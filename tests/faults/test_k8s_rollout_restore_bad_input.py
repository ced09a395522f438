"""Bad input to k8s_rollout_restore as real module processes against the Kubernetes API test double (tests/k8s_api).

Every case asserts: it failed, the message names the option and the value, no traceback, the bearer token appears
nowhere, and the workload did not change (its resourceVersion and history are as before). Input the module can judge
alone is refused before any request: those cases point `host` at a port nobody listens on, so a request would fail
with "cannot reach" instead of the expected message.
"""
import os
import sys

import pytest

from harness import ROOT, assert_clear_failure, run_module

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.k8s_api.fixture import start_server  # noqa: E402  pylint: disable=wrong-import-position

MODULE = "k8s_rollout_restore"
TOKEN = "k8s-tok-7d3e9b1a55c2"
NOBODY = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def cluster():
    server = start_server()
    from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s  # pylint: disable=import-outside-toplevel
    client = k8s.connect({"host": server.url})
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:v1"}]}}}}
    client.create("/apis/apps/v1/namespaces/default/deployments", body)
    client.patch("/apis/apps/v1/namespaces/default/deployments/web",
                 [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:v2"}])
    server.client = client
    yield server
    server.stop()
    assert not server.errors(), server.errors()


def state(server):
    items = server.client.items("/apis/apps/v1/namespaces/default/replicasets")
    dep = server.client.get("/apis/apps/v1/namespaces/default/deployments/web")
    return dep["metadata"]["resourceVersion"], sorted(rs["metadata"]["resourceVersion"] for rs in items)


# Refused before any request (host points nowhere).
OFFLINE = [
    ("kind", {"kind": "Pod"}, ["kind", "'Pod'"]),
    ("kind-empty", {"kind": ""}, ["kind", "''"]),
    ("name", {"name": "Web_1"}, ["name", "'Web_1'"]),
    ("namespace", {"namespace": "Prod!"}, ["namespace", "'Prod!'"]),
    ("to-revision-zero", {"to_revision": 0}, ["to_revision", "0"]),
    ("to-revision-negative", {"to_revision": -2}, ["to_revision", "-2"]),
    ("two-targets", {"to_revision": 1, "point": "20260101T120000.000000Z-1a2b"},
     ["to_revision/point", "to_revision=1", "point='20260101T120000.000000Z-1a2b'"]),
    ("three-targets", {"to_revision": 1, "template_hash": "abcd1234", "point": "x"},
     ["to_revision/template_hash/point"]),
    ("hash-not-hex", {"template_hash": "zz:top!"}, ["template_hash", "'zz:top!'"]),
    ("hash-upper", {"template_hash": "ABCDEF0123456789"}, ["template_hash", "'ABCDEF0123456789'"]),
    ("point-shape", {"point": "release-42"}, ["point", "'release-42'", "restore point id"]),
    ("wait-timeout", {"wait_timeout": -1}, ["wait_timeout", "-1"]),
]


@pytest.mark.bad_input("k8s_rollout_restore")
@pytest.mark.parametrize("args, mentions", [pytest.param(a, m, id=i) for i, a, m in OFFLINE])
def test_refused_before_any_request(args, mentions):
    run = run_module(MODULE, dict({"host": NOBODY, "api_key": TOKEN, "name": "web"}, **args))
    assert_clear_failure(run, *mentions, secrets=(TOKEN,))
    assert "cannot reach" not in run.msg


# Refused after reading the cluster, which is left as it was.
ONLINE = [
    ("missing-revision", {"to_revision": 7}, ["to_revision", "revision 7", "its revisions are", "nothing was changed"]),
    ("missing-hash", {"template_hash": "0123456789abcdef"}, ["template_hash", "'0123456789abcdef'", "2 (hash"]),
    ("missing-point", {"point": "20260101T120000.000000Z-1a2b"}, ["point", "20260101T120000.000000Z-1a2b"]),
    ("missing-workload", {"name": "api"}, ["name", "deployment/api does not exist"]),
    ("wrong-kind-of-workload", {"kind": "sts"}, ["statefulset/web does not exist"]),
    ("missing-namespace", {"namespace": "nope"}, ["namespace", "'nope' does not exist"]),
]


@pytest.mark.bad_input("k8s_rollout_restore")
@pytest.mark.parametrize("args, mentions", [pytest.param(a, m, id=i) for i, a, m in ONLINE])
def test_refused_after_reading_and_nothing_changes(cluster, args, mentions):
    before = state(cluster)
    run = run_module(MODULE, dict({"host": cluster.url, "api_key": TOKEN, "name": "web"}, **args))
    assert_clear_failure(run, *mentions, secrets=(TOKEN,))
    assert state(cluster) == before


@pytest.mark.bad_input("k8s_rollout_restore")
def test_a_context_the_kubeconfig_lacks(cluster, tmp_path):
    config = cluster.write_kubeconfig(os.path.join(str(tmp_path), "kubeconfig"), context="staging")
    run = run_module(MODULE, {"kubeconfig": config, "context": "prod", "api_key": TOKEN, "name": "web"})
    assert_clear_failure(run, "context", "'prod'", "staging", secrets=(TOKEN,))
