"""The k8s_rollout health check through the real health_gate and rollback_watch modules (module processes, as Ansible
runs them) against the Kubernetes API test double (tests/k8s_api), with the machine's kubectl changing the workloads
and judging them.

Assertions are about logic (verdicts, states, messages), never timings; waits poll with a deadline.
"""
import json
import os
import re
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.faults.harness import finish, run_module, start_module, wait_for  # noqa: E402
from tests.k8s_api.fixture import start_server  # noqa: E402
from kube_env import Kube  # noqa: E402  pylint: disable=wrong-import-position

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs the real kubectl")
# Given to every module run: it must never come out of one.
TOKEN = "k8s-bearer-7d0c-do-not-echo"


def workload(kind, name, image="nginx:v1", **spec):
    body = {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image}]}}}
    if kind != "DaemonSet":
        body["replicas"] = 3
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "labels": {"app": name}}, "spec": body}


class Cluster(Kube):
    """The double, a kubeconfig for its namespace prod, kubectl, and every module run's output (for the token)."""

    def __init__(self, server, tmp_path):
        super().__init__(server, tmp_path, namespace="prod", context="prod")
        self.kubeconfig = self.config
        self.outputs = []

    def kubectl(self, *args, check=True):
        return self.run(*args, check=check)

    def check(self, **keys):
        base = {"type": "k8s_rollout", "kubeconfig": self.kubeconfig, "api_key": TOKEN}
        base.update(keys)
        return base

    def gate(self, checks, **args):
        args = dict(dict(checks=checks, interval=0.1, successes=2, failures=0, timeout=60, fail_on_unhealthy=False),
                    **args)
        run = run_module("health_gate", args)
        self.outputs.append(run.everything)
        return run

    def start_gate(self, checks, **args):
        return start_module("health_gate", dict(dict(checks=checks, interval=0.1, successes=2, failures=1000,
                                                     timeout=60, fail_on_unhealthy=False), **args))

    def finish(self, proc):
        run = finish(proc)
        self.outputs.append(run.everything)
        return run

    def requests(self, path):
        return sum(1 for line in self.server.server.log if line.split()[1].split("?")[0] == path)


@pytest.fixture
def cluster(tmp_path):
    server = start_server(log=True)
    try:
        kube = Cluster(server, tmp_path)
        yield kube
        for text in kube.outputs:
            assert TOKEN not in text
    finally:
        server.stop()
    assert not server.errors(), server.errors()


def errors(run):
    return [check.get("error") for sample in run.result["samples"] for check in sample["checks"] if not check["ok"]]


def test_a_healthy_deployment_passes_the_gate(cluster):
    cluster.apply(workload("Deployment", "web"))
    run = cluster.gate([cluster.check(name="web")])
    assert run.result["verdict"] == "healthy", run.result
    assert not run.failed and run.result["changed"] is False
    last = run.result["samples"][-1]["checks"][0]
    assert last["state"] == "done" and last["workloads"] == 1
    assert last["detail"] == "k8s_rollout deployment/web: 3 of 3 replicas updated and available"


def test_a_bad_image_is_not_ok_while_progressing_then_fails_on_its_progress_deadline(cluster):
    cluster.apply(workload("Deployment", "web", progressDeadlineSeconds=2))
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    cluster.kubectl("set", "image", "deployment/web", "web=nginx:bad")

    progressing = cluster.gate([cluster.check(name="web")])
    assert progressing.result["verdict"] == "unhealthy"
    first = progressing.result["samples"][0]["checks"][0]
    assert first["state"] in ("progressing", "failed") and not first["ok"]

    # kubectl is the judge of the deadline; then the gate must say the same.
    judged = cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s", check=False)
    assert judged.returncode != 0 and "exceeded its progress deadline" in judged.stderr
    failed = cluster.gate([cluster.check(name="web")], fail_on_unhealthy=True)
    assert failed.failed and failed.result["verdict"] == "unhealthy"
    sample = failed.result["samples"][-1]["checks"][0]
    assert sample["state"] == "failed"
    assert sample["error"].startswith("k8s_rollout deployment/web: rollout exceeded its progress deadline: ")
    assert "k8s_rollout deployment/web: rollout exceeded its progress deadline" in failed.msg
    # The why: the new pods crash-loop, each named with its container (kubectl sees the same pods).
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    looping = {pod["metadata"]["name"] for pod in pods
               if any((status.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
                      for status in pod["status"].get("containerStatuses") or [])}
    bad = {pod["metadata"]["name"] for pod in pods if pod["spec"]["containers"][0]["image"] == "nginx:bad"}
    named = set(re.findall(r"pod (\S+) container web: CrashLoopBackOff \(\d+ restarts?\)", sample["error"]))
    assert named and named <= looping and named <= bad, (named, looping, bad)


def test_a_rollback_while_the_gate_polls_ends_healthy(cluster):
    cluster.apply(workload("Deployment", "web", progressDeadlineSeconds=2))
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    cluster.kubectl("set", "image", "deployment/web", "web=nginx:bad")
    path = "/apis/apps/v1/namespaces/prod/deployments/web"
    before = cluster.requests(path)
    proc = cluster.start_gate([cluster.check(name="web")])
    # The gate has seen the broken workload twice before the rollback.
    wait_for(lambda: cluster.requests(path) >= before + 2 or proc.poll() is not None, what="the gate's first samples")
    assert proc.poll() is None, cluster.finish(proc).result
    cluster.kubectl("rollout", "undo", "deployment/web")
    run = cluster.finish(proc)
    assert run.result["verdict"] == "healthy", run.result
    oks = [sample["ok"] for sample in run.result["samples"]]
    assert oks[0] is False and oks[-2:] == [True, True], oks
    assert any(error and error.startswith("k8s_rollout deployment/web: ") for error in errors(run))
    assert "successfully rolled out" in cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s").stdout


@pytest.mark.parametrize("kind,short", [("StatefulSet", "sts"), ("DaemonSet", "ds")])
def test_statefulsets_and_daemonsets(cluster, kind, short):
    cluster.apply(workload(kind, "db"))
    cluster.kubectl("set", "image", "%s/db" % kind.lower(), "db=nginx:v2")
    run = cluster.gate([cluster.check(kind=short, name="db"), cluster.check(kind=kind, selector="app=db")])
    assert run.result["verdict"] == "healthy", run.result
    details = [check["detail"] for check in run.result["samples"][-1]["checks"]]
    assert details[0].startswith("k8s_rollout %s/db: " % kind.lower())
    assert details[1].startswith("k8s_rollout %ss -l app=db: %s/db: " % (kind.lower(), kind.lower()))


def test_a_wrong_namespace_context_or_name_is_a_clear_failed_sample(cluster):
    cluster.apply(workload("Deployment", "web"))
    run = cluster.gate([cluster.check(name="web", namespace="shop")])
    assert run.result["verdict"] == "unhealthy"
    assert run.result["targets"]["local"]["last_error"] == (
        "k8s_rollout deployment/web (namespace shop): namespace: 'shop' does not exist on %s (context 'prod'); give an "
        "existing namespace (kubectl get namespaces)" % cluster.server.url)
    run = cluster.gate([cluster.check(name="web", context="staging")])
    assert "k8s_rollout deployment/web: context: 'staging' is not in %s; its contexts are prod" % cluster.kubeconfig \
        in run.result["targets"]["local"]["last_error"]
    run = cluster.gate([cluster.check(name="api")])
    assert "deployment 'api' not found in namespace prod" in run.result["targets"]["local"]["last_error"]


def test_bad_input_is_refused_before_anything_runs(cluster):
    path = "/apis/apps/v1/namespaces/prod/deployments/web"
    run = cluster.gate([{"type": "http", "url": "http://127.0.0.1:1/"}, cluster.check(name="web", selector="app=web")])
    assert run.failed and run.msg.startswith("checks[1].selector: 'app=web' given with name 'web'; ")
    run = cluster.gate([cluster.check(name="web", kind="Pod")])
    assert run.failed and run.msg.startswith("checks[0].kind: 'Pod' is not a workload kind")
    assert cluster.requests(path) == 0


def test_rollback_watch_counts_a_bad_rollout_as_a_failing_target(cluster):
    cluster.apply(workload("Deployment", "web", progressDeadlineSeconds=2))
    cluster.apply(workload("Deployment", "api"))
    targets = [{"name": "web", "checks": [cluster.check(name="web")]},
               {"name": "api", "checks": [cluster.check(name="api", host=cluster.server.url, namespace="prod")]}]
    calm = run_module("rollback_watch", dict(targets=targets, window=1, interval=0.2, failures=0))
    cluster.outputs.append(calm.everything)
    assert not calm.failed and calm.result["decision"] == "none", calm.result
    assert calm.result["failing_hosts"] == []

    cluster.kubectl("set", "image", "deployment/web", "web=nginx:bad")
    watch = run_module("rollback_watch", dict(targets=targets, window=60, interval=0.2, failures=0))
    cluster.outputs.append(watch.everything)
    assert not watch.failed, watch.result
    assert watch.result["detected"] is True and watch.result["decision"] != "none"
    assert watch.result["failing_hosts"] == ["web"]
    assert watch.result["health"]["web"]["last_error"].startswith("k8s_rollout deployment/web: ")
    assert watch.result["health"]["api"]["failing"] is False
