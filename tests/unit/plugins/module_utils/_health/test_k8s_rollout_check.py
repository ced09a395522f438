"""The k8s_rollout check: its input (what is refused, with the key and the value), its verdict on workloads as the
server reports them, and samples against the Kubernetes API test double (tests/k8s_api): rolled out, progressing,
past its progress deadline, missing, wrong namespace or context, an unreachable server within the time budget."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s, k8s_workloads
from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_options import CONNECTION_OPTIONS
from ansible_collections.fleetops.rollback.plugins.module_utils._health import parse
from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import HealthInputError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.k8s_rollout import (
    K8sRolloutCheck,
    judge,
    stuck_text,
)
from ansible_collections.fleetops.rollback.plugins.module_utils._health.schema import TYPE_KEYS

ROOT = os.path.dirname(os.path.abspath(__file__))
for _ in range(5):
    ROOT = os.path.dirname(ROOT)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.k8s_api.fixture import start_server  # noqa: E402  pylint: disable=wrong-import-position

TOKEN = "k8s-token-never-shown-5c1e"


def check(**raw):
    return parse.parse_check(dict(raw, type="k8s_rollout"), "checks[3]")


# ------------------------------------------------------------------------------------------------ input

def test_connection_keys_are_those_of_the_one_connection_spec():
    assert TYPE_KEYS["k8s_rollout"] == ("type", "request_timeout", "kind", "name", "selector") + tuple(CONNECTION_OPTIONS)


@pytest.mark.parametrize("spelling,kind", [(None, "Deployment"), ("deploy", "Deployment"), ("deployments", "Deployment"),
                                           ("StatefulSet", "StatefulSet"), ("sts", "StatefulSet"),
                                           ("DaemonSet", "DaemonSet"), ("ds", "DaemonSet")])
def test_kinds_and_their_short_names(spelling, kind):
    assert check(name="web", kind=spelling).kind == kind


def test_a_parsed_check_keeps_only_the_connection_keys_given_and_never_shows_the_token(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    parsed = check(selector="app=web", namespace="prod", kubeconfig=str(kubeconfig), context="prod", api_key=TOKEN,
                   validate_certs="no", host="https://127.0.0.1:6443", request_timeout=2)
    assert isinstance(parsed, K8sRolloutCheck)
    assert parsed.connection == {"namespace": "prod", "kubeconfig": str(kubeconfig), "context": "prod",
                                 "api_key": TOKEN, "validate_certs": False, "host": "https://127.0.0.1:6443"}
    assert parsed.label() == "k8s_rollout deployments -l app=web (namespace prod)"
    assert TOKEN not in repr(parsed) and TOKEN not in parsed.label()
    assert check(name="web", kind="sts").label() == "k8s_rollout statefulset/web"
    assert check(name="web").connection == {}


@pytest.mark.parametrize("raw,message", [
    ({"name": "web", "kind": "Pod"},
     "checks[3].kind: 'Pod' is not a workload kind; give Deployment, StatefulSet or DaemonSet"),
    ({"name": "web", "kind": 3}, "checks[3].kind: 3 is not a workload kind"),
    ({"name": "web", "selector": "app=web"},
     "checks[3].selector: 'app=web' given with name 'web'; give name for one workload or selector"),
    ({}, "checks[3].name: required for a k8s_rollout check unless selector is given"),
    ({"namespace": "prod"}, "checks[3].name: required for a k8s_rollout check unless selector is given"),
    ({"name": "Web_1"}, "checks[3].name: 'Web_1' is not a Kubernetes object name"),
    ({"name": ""}, "checks[3].name: '' is not a workload name"),
    ({"name": ["web"]}, "checks[3].name: ['web'] is not a workload name"),
    ({"selector": "app=web\n"}, "checks[3].selector: 'app=web\\n' is not a label selector"),
    ({"name": "web", "namespace": 5}, "checks[3].namespace: 5 is not a namespace name"),
    ({"name": "web", "namespace": "Prod"}, "checks[3].namespace: 'Prod' is not a namespace name"),
    ({"name": "web", "context": {"a": 1}}, "checks[3].context: {'a': 1} is not a kubeconfig context name"),
    ({"name": "web", "kubeconfig": "/nonexistent/kubeconfig"},
     "checks[3].kubeconfig: '/nonexistent/kubeconfig' is not a file; give the path of a kubeconfig"),
    ({"name": "web", "ca_cert": "/"}, "checks[3].ca_cert: '/' is not a file; give the path of a CA bundle"),
    ({"name": "web", "host": "127.0.0.1:6443"}, "checks[3].host: '127.0.0.1:6443' is not an http:// or https:// URL "
                                                "with a host (for example https://127.0.0.1:6443)"),
    ({"name": "web", "host": "https://admin:hunter22@k8s:6443"},
     "checks[3].host: 'https://admin:********@k8s:6443' carries credentials; give the token in api_key instead"),
    ({"name": "web", "api_key": 12}, "checks[3].api_key: not a non-empty string (a bearer token)"),
    ({"name": "web", "validate_certs": "maybe"}, "checks[3].validate_certs: 'maybe' is not a boolean"),
    ({"name": "web", "replicas": 3}, "checks[3].replicas: unknown option (k8s_rollout checks take request_timeout, "
                                     "kind, name, selector, kubeconfig, context, host, api_key"),
    ({"name": "web", "url": "http://x"}, "checks[3].url: not an option of a k8s_rollout check (it belongs to http and "
                                         "prometheus checks"),
])
def test_bad_input_is_refused_naming_the_key_and_the_value(raw, message):
    with pytest.raises(HealthInputError) as err:
        check(**raw)
    assert str(err.value).startswith(message), str(err.value)
    assert "hunter22" not in str(err.value)


def test_a_token_is_never_echoed_by_a_refusal():
    with pytest.raises(HealthInputError) as err:
        check(name="web", api_key=TOKEN, kind="Pod")
    assert TOKEN not in str(err.value)


def test_other_types_refuse_the_k8s_keys_naming_their_owner():
    with pytest.raises(HealthInputError, match=r"checks\[0\]\.namespace: not an option of a tcp check \(it belongs to "
                                               r"k8s_rollout checks"):
        parse.parse_check({"type": "tcp", "port": 1, "namespace": "prod"}, "checks[0]")


# ------------------------------------------------------------------------------------------------ verdict

def deployment(replicas=3, updated=3, available=3, total=None, generation=2, observed=2, condition=None, **spec):
    status = {"observedGeneration": observed, "replicas": updated if total is None else total,
              "updatedReplicas": updated, "availableReplicas": available}
    if condition:
        status["conditions"] = [dict(type="Progressing", **condition)]
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": generation},
            "spec": dict(replicas=replicas, **spec), "status": status}


@pytest.mark.parametrize("workload,state,message", [
    (deployment(), "done", "deployment/web: 3 of 3 replicas updated and available"),
    (deployment(available=1), "progressing", "deployment/web: 1 of 3 updated replicas available"),
    (deployment(updated=1, total=3), "progressing", "deployment/web: 1 of 3 new replicas updated"),
    (deployment(total=5), "progressing", "deployment/web: 2 old replicas pending termination"),
    (deployment(observed=1), "progressing", "deployment/web: waiting for the controller to observe generation 2"),
    (deployment(available=0, condition={"status": "False", "reason": "ProgressDeadlineExceeded",
                                        "message": 'ReplicaSet "web-1" has timed out progressing.'}),
     "failed", 'deployment/web: rollout exceeded its progress deadline: ReplicaSet "web-1" has timed out progressing.'),
    (deployment(paused=True, available=1), "progressing", "deployment/web: paused"),
])
def test_the_rollout_state_of_a_deployment(workload, state, message):
    judged_state, texts = judge(workload, [])
    assert judged_state == state
    assert texts[0].startswith(message)


def test_a_stuck_pod_fails_a_rollout_whose_counts_look_done_and_is_named():
    stuck = [("web-abc-xyz", "web", "CrashLoopBackOff", 4), ("web-abc-uvw", "sidecar", "ImagePullBackOff", 1)]
    state, texts = judge(deployment(), stuck)
    assert state == "progressing"
    assert texts[0] == "deployment/web: 3 of 3 replicas updated and available, but 2 pods of the current revision " \
                       "are stuck"
    assert texts[1:] == ["pod web-abc-xyz container web: CrashLoopBackOff (4 restarts)",
                         "pod web-abc-uvw container sidecar: ImagePullBackOff (1 restart)"]
    # A failed rollout stays failed whatever its pods do.
    failed = deployment(condition={"status": "False", "reason": "ProgressDeadlineExceeded", "message": "x"})
    assert judge(failed, stuck)[0] == "failed"


def test_stuck_text_of_a_pod_status():
    pod = {"metadata": {"name": "web-1"}, "status": {"containerStatuses": [
        {"name": "web", "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        {"name": "ok", "restartCount": 0, "state": {"running": {}}}]}}
    assert [stuck_text(item) for item in k8s_workloads.stuck_pods([pod])] == [
        "pod web-1 container web: CrashLoopBackOff (7 restarts)"]


# ------------------------------------------------------------------------------------------------ samples

@pytest.fixture
def api(tmp_path):
    server = start_server()
    server.kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="prod", context="prod")
    server.cluster = k8s.connect({"kubeconfig": server.kubeconfig})
    yield server
    server.stop()
    assert not server.errors(), server.errors()


def workload(kind, name, image="nginx:v1", **spec):
    body = {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image}]}}}
    if kind != "DaemonSet":
        body["replicas"] = 2
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "labels": {"tier": "shop"}}, "spec": body}


def set_image(cluster, kind, name, image):
    cluster.patch(k8s_workloads.path(kind, cluster.namespace, name),
                  [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_deployment_rolled_out_then_broken_then_past_its_deadline(api):
    body = workload("Deployment", "web", progressDeadlineSeconds=2)
    api.cluster.create(k8s_workloads.path("Deployment", "prod"), body)
    gate = check(name="web", kubeconfig=api.kubeconfig)
    first = gate.run(10)
    assert first["ok"] and first["state"] == "done" and first["workloads"] == 1, first
    assert first["detail"] == "k8s_rollout deployment/web: 2 of 2 replicas updated and available"
    cluster = gate._cluster  # pylint: disable=protected-access
    set_image(api.cluster, "Deployment", "web", "nginx:bad")
    broken = gate.run(10)
    assert not broken["ok"] and broken["state"] == "progressing", broken
    assert broken["error"].startswith("k8s_rollout deployment/web: ")

    def failed_sample():
        result = gate.run(10)
        return result if result["state"] == "failed" else None

    failed = wait_for(failed_sample)
    assert not failed["ok"]
    assert "rollout exceeded its progress deadline" in failed["error"] and "timed out progressing" in failed["error"]
    # One connection for every sample of the check.
    assert gate._cluster is cluster  # pylint: disable=protected-access
    set_image(api.cluster, "Deployment", "web", "nginx:v1")
    assert wait_for(lambda: gate.run(10)["ok"])


def test_a_crash_looping_pod_fails_a_rollout_whose_counts_are_fine(api):
    api.cluster.create(k8s_workloads.path("Deployment", "prod"), workload("Deployment", "web"))
    gate = check(name="web", kubeconfig=api.kubeconfig)
    assert gate.run(10)["ok"]
    obj = k8s_workloads.read(api.cluster, "Deployment", "web")
    victim = sorted(p["metadata"]["name"] for p in k8s_workloads.pods(api.cluster, obj))[0]
    # What a kubelet would write of a container that crashed after its readiness was reported: the pod still counts
    # as ready, so the Deployment's counts stay complete.
    path = k8s_workloads.core_path("pods", "prod", victim) + "/status"
    statuses = api.cluster.get(path)["status"]["containerStatuses"]
    statuses[0].update(state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}, restartCount=4)
    api.cluster.patch(path, {"status": {"containerStatuses": statuses}}, content_type=k8s.MERGE_PATCH)
    assert k8s_workloads.rollout_state(k8s_workloads.read(api.cluster, "Deployment", "web"))[0] == "done"
    result = gate.run(10)
    assert not result["ok"] and result["state"] == "progressing"
    assert result["error"] == ("k8s_rollout deployment/web: 2 of 2 replicas updated and available, but 1 pod of the "
                               "current revision is stuck; pod %s container web: CrashLoopBackOff (4 restarts)" % victim)


def test_the_pods_named_are_those_of_the_current_revision(api):
    body = workload("Deployment", "web", progressDeadlineSeconds=60)
    api.cluster.create(k8s_workloads.path("Deployment", "prod"), body)
    gate = check(name="web", kubeconfig=api.kubeconfig)
    old = {p["metadata"]["name"] for p in k8s_workloads.pods(api.cluster, k8s_workloads.read(
        api.cluster, "Deployment", "web"))}
    set_image(api.cluster, "Deployment", "web", "nginx:bad")

    def crash_looping():
        result = gate.run(10)
        return result if "CrashLoopBackOff" in result.get("error", "") else None

    result = wait_for(crash_looping)
    assert not result["ok"] and result["state"] == "progressing"
    named = re.findall(r"pod (\S+) container web: CrashLoopBackOff", result["error"])
    assert named and not set(named) & old
    assert all(name.startswith("web-") for name in named)


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_statefulsets_and_daemonsets(api, kind):
    api.cluster.create(k8s_workloads.path(kind, "prod"), workload(kind, "db"))
    gate = check(kind=kind, name="db", kubeconfig=api.kubeconfig)
    result = gate.run(10)
    assert result["ok"], result
    assert result["detail"].startswith("k8s_rollout %s/db: " % kind.lower())
    set_image(api.cluster, kind, "db", "nginx:v2")
    assert wait_for(lambda: gate.run(10)["ok"])


def test_a_selector_judges_every_match_and_names_the_bad_one(api):
    for name in ("web", "api"):
        body = workload("Deployment", name, progressDeadlineSeconds=2)
        api.cluster.create(k8s_workloads.path("Deployment", "prod"), body)
    gate = check(selector="tier=shop", kubeconfig=api.kubeconfig)
    result = gate.run(10)
    assert result["ok"] and result["workloads"] == 2, result
    assert "deployment/api: " in result["detail"] and "deployment/web: " in result["detail"]
    set_image(api.cluster, "Deployment", "api", "nginx:bad")
    result = gate.run(10)
    assert not result["ok"]
    assert "deployment/api: " in result["error"] and "deployment/web" not in result["error"]
    none = check(selector="tier=none", kubeconfig=api.kubeconfig).run(10)
    assert not none["ok"] and "no deployment matches the selector 'tier=none' in namespace prod" in none["error"]


def test_missing_workload_wrong_namespace_and_wrong_context_are_clear_failed_samples(api):
    missing = check(name="nope", kubeconfig=api.kubeconfig).run(10)
    assert not missing["ok"] and "deployment 'nope' not found in namespace prod on " + api.url in missing["error"]
    namespace = check(name="web", kubeconfig=api.kubeconfig, namespace="nowhere").run(10)
    assert not namespace["ok"]
    assert "namespace: 'nowhere' does not exist on " + api.url in namespace["error"]
    context = check(name="web", kubeconfig=api.kubeconfig, context="staging").run(10)
    assert not context["ok"] and "context: 'staging' is not in" in context["error"]
    assert "its contexts are prod" in context["error"]


class SilentServer:
    """A TCP listener that takes connections and never answers: every read from it times out."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.accepted = []
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_server_that_does_not_answer_fails_the_sample_within_its_budget():
    silent = SilentServer()
    try:
        result = check(name="web", host=silent.url, api_key=TOKEN, request_timeout=0.5).run(30)
    finally:
        silent.close()
    assert not result["ok"] and "cannot reach the Kubernetes API at %s" % silent.url in result["error"]
    assert "timed out" in result["error"]
    # One request: neither urllib3 nor Cluster.request retries past the sample's budget.
    assert len(silent.accepted) == 1
    assert TOKEN not in str(result)


def test_an_unreachable_server_and_a_token_that_stays_out(api):
    dead = check(name="web", host="http://127.0.0.1:1", api_key=TOKEN, request_timeout=1).run(30)
    assert not dead["ok"] and "cannot reach the Kubernetes API at http://127.0.0.1:1" in dead["error"]
    assert TOKEN not in str(dead)
    # The token is sent (the double ignores it); the answer carries no trace of it.
    api.cluster.create(k8s_workloads.path("Deployment", "prod"), workload("Deployment", "web"))
    good = check(name="web", host=api.url, namespace="prod", api_key=TOKEN).run(10)
    assert good["ok"] and TOKEN not in str(good)


def test_the_client_is_imported_only_for_a_k8s_rollout_check():
    script = (
        "import sys\n"
        "from ansible_collections.fleetops.rollback.plugins.module_utils._health import parse, poll\n"
        "checks = parse.parse_checks([{'type': 'tcp', 'port': 1}, {'type': 'k8s_rollout', 'name': 'web'}], 'checks')\n"
        "checks[0].run(1)\n"
        "print('kubernetes' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False", out.stderr
