"""kubectl (the machine's real one) against the Kubernetes API test double (tests/k8s_api), for integration tests.

`Kube(server, tmp_path)` writes a kubeconfig for the double and runs kubectl with it; `deployment()` builds a
Deployment the tests start from. Waits go through `kubectl rollout status --timeout`, never fixed sleeps.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.k8s_api.fixture import start_server  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def deployment(name="web", image="nginx:1.25", labels=None, configmap=None, secret=None, **spec):
    """A Deployment of one container; `configmap`/`secret`: names it reads with envFrom."""
    labels = labels or {"app": name}
    container = {"name": "app", "image": image}
    env_from = ([{"configMapRef": {"name": configmap}}] if configmap else []) + \
        ([{"secretRef": {"name": secret}}] if secret else [])
    if env_from:
        container["envFrom"] = env_from
    body = {"replicas": 2, "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"team": "blue", **labels}, "annotations": {"team": "blue"}},
            "spec": body}


class Kube:
    """kubectl against one running double, with a kubeconfig of its own (context `fake`, namespace `default`)."""

    def __init__(self, server, tmp_path, namespace="default", context="fake"):
        self.server = server
        self.tmp_path = tmp_path
        self.config = server.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace, context=context)

    def run(self, *args, check=True, stdin=None, timeout=120):
        argv = [KUBECTL, "--kubeconfig", self.config, "--cache-dir", str(self.tmp_path / "kube-cache")] + list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
        if check:
            assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc

    def apply(self, obj):
        return self.run("apply", "-f", "-", stdin=json.dumps(obj))

    def get(self, *args):
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def configmap(self, name, **data):
        self.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})

    def secret(self, name, **data):
        self.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})

    def rollout_status(self, what, timeout="60s", check=True):
        return self.run("rollout", "status", what, "--timeout", timeout, check=check)

    def replicasets(self, owner):
        """name -> (revision, annotations) of the ReplicaSets a Deployment owns (by uid)."""
        uid = self.get("deployment", owner)["metadata"]["uid"]
        return {rs["metadata"]["name"]: (rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision"),
                                         rs["metadata"].get("annotations"))
                for rs in self.get("replicasets")["items"]
                if any(ref["uid"] == uid for ref in rs["metadata"].get("ownerReferences") or [])}
