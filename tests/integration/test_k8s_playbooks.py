"""The rollback playbooks on a cluster host: one inventory host stands for a cluster and namespace
(`ansible_connection=local`, its store on the controller), its workloads captured by the kubernetes component and
gated by k8s_rollout checks. Real ansible-playbook runs against the Kubernetes API test double (tests/k8s_api).

Covers the immediate rollback (with a ConfigMap reverted along with its template, and a second run that changes
nothing), the standard rollback with one workload as the canary, a partial rollback of one workload, and the drill
with drill_fault=bad_image.
"""
import json
import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s  # noqa: E402
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads as workloads  # noqa: E402
from tests.k8s_api.fixture import k8s_api  # noqa: E402,F401  pylint: disable=unused-import

PLAYBOOKS = os.path.join(ROOT, "playbooks")
RESTORE = "Restore the host to its restore point"
HOST = "k8s-prod"
TOKEN = "tok-k8s-5150-never-shown"


def deployment(name, image, configmap=None):
    container = {"name": name, "image": image}
    if configmap:
        container["envFrom"] = [{"configMapRef": {"name": configmap}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "annotations": {"team": "shop"}, "labels": {"tier": "front"}},
            "spec": {"replicas": 2, "progressDeadlineSeconds": 3, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}


class Shop:
    """Two Deployments (web reads the ConfigMap web-config) in namespace prod, and a cluster host for them."""

    def __init__(self, server, tmp_path):
        self.tmp = tmp_path
        self.kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="prod", context="prod")
        self.cluster = k8s.connect({"kubeconfig": self.kubeconfig})
        self.cluster.create(workloads.core_path("configmaps", "prod"), {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"WORKERS": "4"}})
        self.cluster.create(workloads.path("Deployment", "prod"), deployment("web", "shop/web:1.4", "web-config"))
        self.cluster.create(workloads.path("Deployment", "prod"), deployment("api", "shop/api:2.0"))
        self.reports = tmp_path / "reports"
        connection = {"kubeconfig": self.kubeconfig, "context": "prod", "namespace": "prod"}
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "rollback_store_path": str(tmp_path / "store"),
            "rollback_report_dir": str(self.reports),
            "rollback_point_components": {"kubernetes": dict(connection, workloads=["deployment/web", "deployment/api"],
                                                             wait_timeout=60)},
            "health_gate_checks": [dict(connection, type="k8s_rollout", name=name) for name in ("web", "api")],
            "rollback_canary_checks": [dict(connection, type="k8s_rollout", name="web")],
            "health_gate_timeout": 60,
            "health_gate_interval": 0.2,
        }
        self.inventory = str(tmp_path / "inventory.yml")
        with open(self.inventory, "w", encoding="utf-8") as stream:
            yaml.safe_dump({"all": {"children": {"clusters": {"hosts": {HOST: host}}}}}, stream)

    def image(self, name):
        return workloads.images(workloads.read(self.cluster, "Deployment", name)["spec"]["template"])[name]

    def set_image(self, name, image):
        self.cluster.patch(workloads.path("Deployment", "prod", name),
                           [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])

    def config(self):
        return self.cluster.get(workloads.core_path("configmaps", "prod", "web-config"))["data"]

    def set_config(self, data):
        self.cluster.patch(workloads.core_path("configmaps", "prod", "web-config"),
                           [{"op": "replace", "path": "/data", "value": data}])

    def wait(self):
        workloads.wait_rollouts(self.cluster, [workloads.read(self.cluster, "Deployment", n) for n in ("web", "api")],
                                60)

    def revisions(self, name):
        return len(workloads.history(self.cluster, workloads.read(self.cluster, "Deployment", name)))


@pytest.fixture
def shop(k8s_api, tmp_path, playbook):  # pylint: disable=redefined-outer-name
    """The shop captured as known good by snapshot.yml (gated by its k8s_rollout checks first)."""
    scene = Shop(k8s_api, tmp_path)
    run = playbook(os.path.join(PLAYBOOKS, "snapshot.yml"), scene.inventory)
    assert run.rc == 0, run.stdout[-3000:]
    return scene


def test_immediate_rollback_of_a_cluster_host_puts_templates_and_config_back(shop, playbook):  # pylint: disable=redefined-outer-name
    shop.set_config({"WORKERS": "0"})
    shop.set_image("web", "shop/web:1.5")
    shop.set_image("api", "shop/api:2.1")
    shop.wait()
    run = playbook(os.path.join(PLAYBOOKS, "rollback_immediate.yml"), shop.inventory,
                   extra_vars={"rollback_kubernetes_api_key": TOKEN}, args=["-v"])
    assert run.rc == 0, run.stdout[-3000:]
    assert (shop.image("web"), shop.image("api"), shop.config()) == ("shop/web:1.4", "shop/api:2.0", {"WORKERS": "4"})
    # The token reached the module (the double takes any) and nothing shows or keeps it.
    assert TOKEN not in run.stdout + run.stderr + json.dumps(run.results)
    for root, _dirs, files in os.walk(shop.tmp / "store"):
        for name in files:
            with open(os.path.join(root, name), "rb") as stream:
                assert TOKEN.encode() not in stream.read(), name
    web = workloads.read(shop.cluster, "Deployment", "web")
    assert web["metadata"]["annotations"]["team"] == "shop" and web["metadata"]["labels"] == {"tier": "front"}
    revisions = shop.revisions("web")
    again = playbook(os.path.join(PLAYBOOKS, "rollback_immediate.yml"), shop.inventory)
    assert again.rc == 0, again.stdout[-3000:]
    assert again.status(RESTORE, HOST) == "ok" and not again.result(RESTORE, HOST)["changed"]
    assert shop.revisions("web") == revisions


def test_standard_rollback_restores_one_workload_as_the_canary_first(shop, playbook):  # pylint: disable=redefined-outer-name
    shop.set_image("web", "shop/web:1.5")
    shop.set_image("api", "shop/api:2.1")
    shop.wait()
    run = playbook(os.path.join(PLAYBOOKS, "rollback_standard.yml"), shop.inventory,
                   extra_vars={"rollback_canary_select": {"kubernetes": ["deployment/web"]}})
    assert run.rc == 0, run.stdout[-3000:]
    restores = [r["result"] for r in run.for_task(RESTORE, HOST) if r["status"] != "skipped"]
    # The canary restore touched web only; the batch restore then had only api left to do.
    touched = [[c["workload"] for c in r["plan"]["kubernetes"]["changes"] if c["action"] == "restore"]
               for r in restores]
    assert touched == [["Deployment/web"], ["Deployment/api"]], touched
    assert (shop.image("web"), shop.image("api")) == ("shop/web:1.4", "shop/api:2.0")


def test_partial_rollback_of_one_workload_leaves_the_other_alone(shop, playbook):  # pylint: disable=redefined-outer-name
    shop.set_image("web", "shop/web:1.5")
    shop.set_image("api", "shop/api:2.1")
    shop.wait()
    run = playbook(os.path.join(PLAYBOOKS, "rollback_partial.yml"), shop.inventory,
                   extra_vars={"rollback_select": {"kubernetes": ["deployment/api"]}})
    assert run.rc == 0, run.stdout[-3000:]
    assert (shop.image("web"), shop.image("api")) == ("shop/web:1.5", "shop/api:2.0")


def test_drill_with_a_bad_image_on_a_cluster_host(k8s_api, tmp_path, playbook):  # pylint: disable=redefined-outer-name
    scene = Shop(k8s_api, tmp_path)
    run = playbook(os.path.join(PLAYBOOKS, "rollback_drill.yml"), scene.inventory, extra_vars={
        "drill_fault": "bad_image", "drill_detect_timeout": 60, "drill_id": "drill-k8s"})
    assert run.rc == 0, run.stdout[-4000:]
    report = json.loads((scene.reports / "drill-k8s.json").read_text(encoding="utf-8"))
    assert report["fault"] == "bad_image" and int(report["recovered"]) == 1 and int(report["hosts"]) == 1
    assert scene.image("web") == "shop/web:1.4"
    history = workloads.history(scene.cluster, workloads.read(scene.cluster, "Deployment", "web"))
    # The bad image was really rolled out (a revision of its own) before the rollback brought 1.4 back.
    assert "registry.invalid/fleetops-drill:bad" in [workloads.images(r.template)["web"] for r in history]
