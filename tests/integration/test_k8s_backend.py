"""The Kubernetes backend (plugins/module_utils/_backends/k8s.py, k8s_workloads.py) against the API test double
(tests/k8s_api), and against small stdlib servers for what the double does not do (throttling, a token check).

Assertions are about logic (which objects, which messages, how many requests), never timings.
"""
import http.server
import json
import os
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads as workloads  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError  # noqa: E402
from tests.k8s_api.fixture import k8s_api  # noqa: E402,F401  pylint: disable=unused-import


def deployment(name, labels, image="nginx:1", **spec):
    body = {"replicas": 2, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": body}


def set_image(cluster, name, image):
    cluster.patch(workloads.path("Deployment", cluster.namespace, name),
                  [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])


@pytest.fixture
def cluster(k8s_api, tmp_path):  # pylint: disable=redefined-outer-name
    config = k8s_api.write_kubeconfig(tmp_path / "kubeconfig", namespace="prod", context="fake")
    return k8s.connect({"kubeconfig": config})


def test_connect_reads_the_context_namespace_and_refuses_what_the_cluster_or_file_lacks(k8s_api, tmp_path):  # pylint: disable=redefined-outer-name
    config = k8s_api.write_kubeconfig(tmp_path / "kubeconfig", namespace="staging", context="fake")
    assert k8s.connect({"kubeconfig": config}).namespace == "staging"
    assert k8s.connect({"kubeconfig": config, "namespace": "prod"}).namespace == "prod"
    with pytest.raises(RollbackError) as err:
        k8s.connect({"kubeconfig": config, "context": "prod-eu"})
    assert "'prod-eu' is not in" in err.value.msg and "fake" in err.value.msg
    with pytest.raises(RollbackError) as err:
        k8s.connect({"kubeconfig": config, "namespace": "payments"})
    assert "'payments' does not exist" in err.value.msg and k8s_api.url in err.value.msg
    with pytest.raises(RollbackError) as err:
        k8s.connect({"kubeconfig": str(tmp_path / "absent")})
    assert "could not load" in err.value.msg and "absent" in err.value.msg


def test_options_not_given_come_from_the_kubernetes_core_variables():
    options = k8s.with_environment({"namespace": "prod"}, {"K8S_AUTH_HOST": "https://127.0.0.1:6443",
                                                          "K8S_AUTH_NAMESPACE": "other", "K8S_AUTH_VERIFY_SSL": "no"})
    assert options == {"namespace": "prod", "host": "https://127.0.0.1:6443", "validate_certs": False}


def test_an_unreachable_server_is_named(unused_port):
    with pytest.raises(k8s.KubeError) as err:
        k8s.connect({"host": "http://127.0.0.1:%d" % unused_port, "namespace": "prod"}, sleep=lambda _: None)
    assert "cannot reach the Kubernetes API at http://127.0.0.1:%d" % unused_port in err.value.msg


@pytest.fixture
def unused_port():
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` GETs, then a namespace; records each request's Authorization header."""

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        server = self.server
        server.seen.append(self.headers.get("Authorization"))
        if len(server.seen) <= server.failures:
            body, status = {"kind": "Status", "message": "etcd is busy", "reason": "ServiceUnavailable"}, 503
        else:
            body, status = {"kind": "Namespace", "metadata": {"name": "prod"}}, 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture
def recorder():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen, server.failures = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_reads_are_retried_on_a_busy_server_and_the_token_goes_in_the_header_only(recorder):  # pylint: disable=redefined-outer-name
    recorder.failures = 2
    pauses = []
    cluster = k8s.connect({"host": "http://127.0.0.1:%d" % recorder.server_port, "namespace": "prod",
                           "api_key": "tok-3141"}, sleep=pauses.append)
    assert cluster.namespace == "prod"
    assert recorder.seen == ["Bearer tok-3141"] * 3 and len(pauses) == 2 and pauses[0] < pauses[1]
    recorder.seen.clear()
    recorder.failures = 10
    with pytest.raises(k8s.KubeError) as err:
        cluster.get("/api/v1/namespaces/prod")
    assert len(recorder.seen) == k8s.READ_ATTEMPTS
    assert err.value.status == 503 and "etcd is busy" in err.value.msg and "tok-3141" not in err.value.msg


def test_history_is_found_by_owner_not_by_selector(cluster):  # pylint: disable=redefined-outer-name
    # Two Deployments select the same labels; each history holds only its own ReplicaSets.
    cluster.create(workloads.path("Deployment", "prod"), deployment("web", {"app": "web"}))
    cluster.create(workloads.path("Deployment", "prod"), deployment("web-copy", {"app": "web"}, image="nginx:9"))
    set_image(cluster, "web", "nginx:2")
    set_image(cluster, "web", "nginx:3")
    web = workloads.read(cluster, "Deployment", "web")
    revisions = workloads.history(cluster, web)
    assert [(r.number, workloads.images(r.template)["app"]) for r in revisions] == [
        (1, "nginx:1"), (2, "nginx:2"), (3, "nginx:3")]
    assert workloads.current_revision(web, revisions).number == 3
    copy = workloads.history(cluster, workloads.read(cluster, "Deployment", "web-copy"))
    assert [workloads.images(r.template)["app"] for r in copy] == ["nginx:9"]
    # The ReplicaSet's template (with its hash label) and the Deployment's are one template.
    assert revisions[-1].hash == workloads.template_hash(web["spec"]["template"])
    assert revisions[-1].holder["metadata"]["labels"]["pod-template-hash"] in revisions[-1].hashes()


def test_rollout_state_and_the_wait(cluster):  # pylint: disable=redefined-outer-name
    cluster.create(workloads.path("Deployment", "prod"), deployment("web", {"app": "web"}, progressDeadlineSeconds=1))
    web = workloads.read(cluster, "Deployment", "web")
    assert workloads.wait_rollouts(cluster, [web], 20)[0]["status"]["availableReplicas"] == 2
    set_image(cluster, "web", "nginx:bad")
    with pytest.raises(RollbackError) as err:
        workloads.wait_rollouts(cluster, [web], 60)
    assert "progress deadline" in err.value.msg and err.value.details["rollout"] == "failed"
    # A safety revert only waits for the controller to have seen its change, healthy or not.
    assert workloads.wait_rollouts(cluster, [web], 20, settled=True)
    clock = iter(range(0, 1000, 5)).__next__
    set_image(cluster, "web", "nginx:bad2")
    cluster.patch(workloads.path("Deployment", "prod", "web"), {"spec": {"paused": True}},
                  content_type=k8s.MERGE_PATCH)
    with pytest.raises(RollbackError) as err:
        workloads.wait_rollouts(cluster, [web], 12, clock=clock, sleep=lambda _: None)
    assert "rollout not complete after 12s" in err.value.msg and "paused" in err.value.msg


def test_template_identity_ignores_what_the_server_adds():
    given = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x:1"}]}}
    served = {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d9f"}, "creationTimestamp": None},
              "spec": {"containers": [{"name": "a", "image": "x:1", "resources": {}}], "volumes": []}}
    assert workloads.template_hash(given) == workloads.template_hash(served)
    assert workloads.template_hash(given) != workloads.template_hash(
        {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x:2"}]}})


def test_references_of_a_template():
    template = {"spec": {
        "volumes": [{"name": "c", "configMap": {"name": "app-config"}}, {"name": "s", "secret": {"secretName": "tls"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "extra"}},
                                                            {"secret": {"name": "token"}}]}}],
        "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
        "containers": [{"name": "app", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}},
                                               {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "flags",
                                                                                                "key": "b"}}}],
                        "envFrom": [{"secretRef": {"name": "api"}}]}],
        "imagePullSecrets": [{"name": "registry"}]}}
    assert workloads.references(template) == (["app-config", "extra", "flags", "init-env"],
                                              ["api", "db", "registry", "tls", "token"])


def test_kinds_are_read_in_kubectl_spellings():
    assert [workloads.kind_of(k, "kind") for k in ("deploy", "Deployment", "sts", "daemonsets")] == [
        "Deployment", "Deployment", "StatefulSet", "DaemonSet"]
    with pytest.raises(RollbackError) as err:
        workloads.kind_of("CronJob", "workloads[0].kind")
    assert "workloads[0].kind: 'CronJob'" in err.value.msg


def test_digests_and_stuck_pods_from_pod_status():
    def pod(name, image_id, waiting=None, restarts=0):
        state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
        return {"metadata": {"name": name}, "status": {"containerStatuses": [
            {"name": "app", "imageID": image_id, "state": state, "restartCount": restarts}]}}
    same = "docker.io/library/nginx@sha256:" + "a" * 64
    assert workloads.digests([pod("a", "docker-pullable://" + same), pod("b", same)]) == {"app": same}
    assert workloads.digests([pod("a", same), pod("b", same.replace("a" * 64, "b" * 64))]) == {}
    assert workloads.stuck_pods([pod("a", same), pod("b", "", "CrashLoopBackOff", 4)]) == [
        ("b", "app", "CrashLoopBackOff", 4)]
