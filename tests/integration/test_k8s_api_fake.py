"""The real kubectl judges the Kubernetes API test double (tests/k8s_api).

Every test starts its own double on 127.0.0.1 and runs /usr/bin/kubectl against it with a kubeconfig of its own.
The assertions are about logic (revision numbers, images, which objects exist), never about timings; waits go through
`kubectl rollout status --timeout`, `kubectl wait --timeout` or poll() (a condition asked again until a deadline),
never fixed sleeps.
"""
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.k8s_api import patch as patches  # noqa: E402  pylint: disable=wrong-import-position
from tests.k8s_api import pods as podstatus  # noqa: E402  pylint: disable=wrong-import-position
from tests.k8s_api.fixture import start_server  # noqa: E402  pylint: disable=wrong-import-position

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs the real kubectl")
DIGEST_ID = re.compile(r"^docker\.io/library/nginx@sha256:[0-9a-f]{64}$")


def poll(check, what, deadline=30.0):
    """Ask check() again (every 0.1 s) until it returns something true, and return that; fail after deadline s."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < end, "gave up waiting for %s; last: %r" % (what, result)
        time.sleep(0.1)


def deployment(name="web", image="nginx:v1", **spec):
    body = {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image}]}}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "annotations": {"team": "blue"}},
            "spec": body}


class Kube:
    """kubectl against one running double."""

    def __init__(self, server, tmp_path):
        self.server = server
        self.tmp_path = tmp_path
        self.config = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="default", context="fake")
        self.env = dict(os.environ, KUBECONFIG=self.config)

    def run(self, *args, check=True, timeout=120):
        argv = [KUBECTL, "--kubeconfig", self.config, "--cache-dir", str(self.tmp_path / "kube-cache")] + list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env, check=False)
        if check:
            assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc

    def apply(self, obj, *args, check=True):
        path = self.tmp_path / ("%s-%d.json" % (obj["metadata"]["name"], len(os.listdir(self.tmp_path))))
        path.write_text(json.dumps(obj))
        return self.run("apply", "-f", str(path), *args, check=check)

    def get(self, *args):
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def image(self, name="web"):
        return self.get("deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"]

    def revisions(self, name="web"):
        """The revision numbers `kubectl rollout history` lists."""
        out = self.run("rollout", "history", "deployment/" + name).stdout
        return [int(line.split()[0]) for line in out.splitlines() if line.split() and line.split()[0].isdigit()]

    def pods(self, selector="app=web"):
        return self.get("pods", "-l", selector)["items"]

    def pod_rows(self, selector="app=web"):
        """{name: (READY, STATUS, RESTARTS)} of the table `kubectl get pods -l selector` prints."""
        lines = self.run("get", "pods", "-l", selector).stdout.splitlines()
        assert not lines or lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], lines
        # RESTARTS may read "3 (1s ago)": its first word is the count
        return {line.split()[0]: tuple(line.split()[1:4]) for line in lines[1:]}

    def replicasets(self, name="web"):
        """{revision: image} of the ReplicaSets the deployment controls."""
        uid = self.get("deployment", name)["metadata"]["uid"]
        found = {}
        for rs in self.get("replicasets", "-l", "app=%s" % name)["items"]:
            if any(ref["uid"] == uid and ref.get("controller") for ref in rs["metadata"].get("ownerReferences", [])):
                found[int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])] = \
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
        return found


@pytest.fixture
def kube(tmp_path):
    server = start_server()
    try:
        yield Kube(server, tmp_path)
    finally:
        server.stop()
    assert not server.errors(), server.errors()  # no exception inside the double


def test_discovery_and_empty_namespace(kube):
    proc = kube.run("get", "deploy")
    assert "No resources found in default namespace." in proc.stderr
    names = {ns["metadata"]["name"] for ns in kube.get("namespaces")["items"]}
    assert {"default", "prod"} <= names
    table = kube.run("get", "namespaces").stdout
    assert table.split()[:3] == ["NAME", "STATUS", "AGE"] and "prod" in table
    assert "deployments" in kube.run("api-resources").stdout
    kube.apply(deployment())
    obj = deployment("api")
    obj["metadata"]["namespace"] = "prod"
    kube.apply(obj)
    everywhere = kube.get("deployments", "--all-namespaces")["items"]
    assert sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in everywhere) == [("default", "web"), ("prod", "api")]
    assert [d["metadata"]["name"] for d in kube.get("deployments", "-n", "prod")["items"]] == ["api"]


def test_apply_makes_an_owned_replicaset_and_rolls_out(kube):
    assert "deployment.apps/web created" in kube.apply(deployment()).stdout
    dep = kube.get("deployment", "web")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert dep["metadata"]["generation"] == 1 and dep["metadata"]["uid"] and dep["metadata"]["creationTimestamp"]
    [rs] = kube.get("replicasets")["items"]
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == "web-" + template_hash
    assert rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert "successfully rolled out" in kube.run("rollout", "status", "deployment/web", "--timeout=60s").stdout
    table = kube.run("get", "deploy").stdout.split()
    assert table[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and table[5:9] == ["web", "2/2", "2", "2"]
    # apply again, unchanged: nothing new; apply a new image: a new revision
    assert "unchanged" in kube.apply(deployment()).stdout
    assert kube.apply(deployment(image="nginx:v2")).returncode == 0
    assert kube.replicasets() == {1: "nginx:v1", 2: "nginx:v2"}
    assert kube.get("deployment", "web")["metadata"]["generation"] == 2


def test_set_image_history_undo_renumbers_and_flip_flops(kube):
    kube.apply(deployment())
    kube.run("set", "image", "deployment/web", "web=nginx:v2")
    kube.run("set", "image", "deployment/web", "web=nginx:v3")
    assert kube.revisions() == [1, 2, 3]
    assert kube.image() == "nginx:v3"

    assert "rolled back" in kube.run("rollout", "undo", "deployment/web").stdout
    assert kube.image() == "nginx:v2"
    assert kube.revisions() == [1, 3, 4]  # revision 2 is re-used as 4
    assert kube.replicasets() == {1: "nginx:v1", 3: "nginx:v3", 4: "nginx:v2"}
    dep = kube.get("deployment", "web")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert dep["metadata"]["annotations"]["team"] == "blue"

    kube.run("rollout", "undo", "deployment/web")  # flip-flop: back to v3
    assert kube.image() == "nginx:v3"
    assert kube.revisions() == [1, 4, 5]

    kube.run("rollout", "undo", "deployment/web", "--to-revision=1")
    assert kube.image() == "nginx:v1"
    assert kube.revisions() == [4, 5, 6]
    assert "successfully rolled out" in kube.run("rollout", "status", "deployment/web", "--timeout=60s").stdout

    skipped = kube.run("rollout", "undo", "deployment/web", "--to-revision=6").stdout
    assert "skipped rollback (current template already matches revision 6)" in skipped
    assert kube.revisions() == [4, 5, 6]

    missing = kube.run("rollout", "undo", "deployment/web", "--to-revision=2", check=False)
    assert missing.returncode != 0 and "unable to find specified revision 2" in missing.stderr


def test_rollout_status_fails_on_a_bad_image_and_undo_recovers(kube):
    kube.apply(deployment(progressDeadlineSeconds=2))
    kube.run("rollout", "status", "deployment/web", "--timeout=60s")
    kube.run("set", "image", "deployment/web", "web=nginx:bad")
    failed = kube.run("rollout", "status", "deployment/web", "--timeout=60s", check=False)
    assert failed.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in failed.stderr
    progressing = [c for c in kube.get("deployment", "web")["status"]["conditions"] if c["type"] == "Progressing"]
    assert progressing[0]["status"] == "False" and progressing[0]["reason"] == "ProgressDeadlineExceeded"
    # the old ReplicaSet still serves while the bad one never becomes available
    replicasets = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in kube.get("rs")["items"]}
    assert replicasets["nginx:v1"]["status"].get("availableReplicas") == 2
    assert not replicasets["nginx:bad"]["status"].get("availableReplicas")

    kube.run("rollout", "undo", "deployment/web")
    assert "successfully rolled out" in kube.run("rollout", "status", "deployment/web", "--timeout=60s").stdout
    assert kube.image() == "nginx:v1"
    assert kube.revisions() == [2, 3]


def test_scale_restart_pause_and_resume(kube):
    kube.apply(deployment())
    assert "scaled" in kube.run("scale", "deployment/web", "--replicas=3").stdout  # the /scale subresource
    assert kube.get("deployment", "web")["spec"]["replicas"] == 3
    assert kube.replicasets() == {1: "nginx:v1"}
    kube.run("rollout", "restart", "deployment/web")  # a new template annotation: a new revision, same image
    assert kube.replicasets() == {1: "nginx:v1", 2: "nginx:v1"}
    assert "kubectl.kubernetes.io/restartedAt" in kube.run("rollout", "history", "deployment/web", "--revision=2").stdout
    kube.run("rollout", "pause", "deployment/web")
    kube.run("set", "image", "deployment/web", "web=nginx:v2")
    assert kube.revisions() == [1, 2]  # paused: no rollout
    kube.run("rollout", "resume", "deployment/web")
    assert kube.revisions() == [1, 2, 3]
    assert "successfully rolled out" in kube.run("rollout", "status", "deployment/web", "--timeout=60s").stdout
    # DELETE carries a body (propagationPolicy); the connection must stay in step for the requests after it
    kube.run("delete", "deployment", "web", "--timeout=60s")
    assert kube.get("deployments")["items"] == [] and kube.get("rs")["items"] == []


def test_revision_history_limit_prunes_old_replicasets(kube):
    kube.apply(deployment(revisionHistoryLimit=2))
    for version in ("v2", "v3", "v4", "v5"):
        kube.run("set", "image", "deployment/web", "web=nginx:" + version)
    assert kube.revisions() == [3, 4, 5]
    assert kube.replicasets() == {3: "nginx:v3", 4: "nginx:v4", 5: "nginx:v5"}
    assert len(kube.get("rs")["items"]) == 3


def test_patch_kinds(kube):
    kube.apply(deployment())
    kube.run("annotate", "deployment/web", "keep=me")
    kube.run("patch", "deployment/web", "--type", "merge", "-p", json.dumps({"metadata": {"annotations": {"owner": "ops"}}}))
    annotations = kube.get("deployment", "web")["metadata"]["annotations"]
    assert annotations["keep"] == "me" and annotations["owner"] == "ops" and annotations["team"] == "blue"

    kube.run("patch", "deployment/web", "--type", "json", "-p",
             json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:v2"}]))
    assert kube.image() == "nginx:v2"
    # strategic merge: a second container is merged in by name, the first one is kept
    kube.run("patch", "deployment/web", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1"}]}}}}))
    containers = kube.get("deployment", "web")["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:v2"), ("sidecar", "busybox:1")]
    assert kube.revisions() == [1, 2, 3]

    bad = kube.run("patch", "deployment/web", "--type", "json", "-p",
                   json.dumps([{"op": "replace", "path": "/spec/nosuch/x", "value": 1}]), check=False)
    assert bad.returncode != 0


def test_server_side_dry_run_stores_nothing(kube):
    out = kube.apply(deployment("api"), "--dry-run=server").stdout
    assert "deployment.apps/api created (server dry run)" in out
    missing = kube.run("get", "deployment", "api", check=False)
    assert missing.returncode != 0 and 'deployments.apps "api" not found' in missing.stderr
    assert kube.get("rs")["items"] == []

    kube.apply(deployment())
    kube.run("set", "image", "deployment/web", "web=nginx:v9", "--dry-run=server")
    assert kube.image() == "nginx:v1"
    assert kube.revisions() == [1]
    kube.run("set", "image", "deployment/web", "web=nginx:v2")
    assert "rolled back (server dry run)" in kube.run("rollout", "undo", "deployment/web", "--dry-run=server").stdout
    assert kube.image() == "nginx:v2" and kube.revisions() == [1, 2]
    kube.run("delete", "deployment", "web", "--dry-run=server")
    assert kube.revisions() == [1, 2]


def test_not_found_and_already_exists(kube):
    missing = kube.run("get", "deploy", "nosuch", check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): deployments.apps "nosuch" not found' in missing.stderr

    kube.apply(deployment())
    elsewhere = kube.run("-n", "prod", "get", "deploy", "web", check=False)
    assert elsewhere.returncode != 0 and 'deployments.apps "web" not found' in elsewhere.stderr
    # kubectl itself checks the namespace when a get in it is NotFound
    nowhere = kube.run("-n", "nosuchns", "get", "deploy", "web", check=False)
    assert nowhere.returncode != 0 and 'namespaces "nosuchns" not found' in nowhere.stderr

    path = kube.tmp_path / "again.json"
    path.write_text(json.dumps(deployment()))
    nowhere = kube.run("-n", "nosuchns", "apply", "-f", str(path), check=False)
    assert nowhere.returncode != 0 and 'namespaces "nosuchns" not found' in nowhere.stderr

    again = kube.run("create", "-f", str(path), check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr and 'deployments.apps "web" already exists' in again.stderr


def test_label_selectors_configmaps_secrets_and_delete(kube):
    kube.run("create", "configmap", "app-config", "--from-literal=mode=blue")
    kube.run("label", "configmap", "app-config", "tier=front")
    kube.run("create", "secret", "generic", "app-secret", "--from-literal=token=s3cret")
    assert [c["metadata"]["name"] for c in kube.get("configmaps", "-l", "tier in (front,back)")["items"]] == ["app-config"]
    assert kube.get("configmaps", "-l", "tier=back")["items"] == []
    assert kube.get("configmap", "app-config")["data"] == {"mode": "blue"}
    assert kube.get("secret", "app-secret")["type"] == "Opaque"
    assert kube.get("pods")["items"] == []

    kube.apply(deployment())
    kube.apply(deployment("api"))
    assert [d["metadata"]["name"] for d in kube.get("deploy", "-l", "!nosuch")["items"]] == ["api", "web"]
    kube.run("delete", "deployment", "web", "--timeout=60s")
    assert [d["metadata"]["name"] for d in kube.get("deploy")["items"]] == ["api"]
    # the deployment's ReplicaSets went with it (garbage collection), the other one's stay
    assert [rs["metadata"]["labels"]["app"] for rs in kube.get("rs")["items"]] == ["api"]


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_statefulset_and_daemonset_history_and_undo(kube, kind):
    obj = deployment()
    obj["kind"] = kind
    if kind == "DaemonSet":
        del obj["spec"]["replicas"]
    resource = "%s/web" % kind.lower()
    kube.apply(obj)
    kube.run("set", "image", resource, "web=nginx:v2")
    kube.run("set", "image", resource, "web=nginx:v3")
    status = kube.run("rollout", "status", resource, "--timeout=60s").stdout
    assert "roll out complete" in status or "successfully rolled out" in status, status

    def revisions():
        out = kube.run("rollout", "history", resource).stdout
        return [int(line.split()[0]) for line in out.splitlines() if line.split() and line.split()[0].isdigit()]

    def image():
        return kube.get(kind.lower(), "web")["spec"]["template"]["spec"]["containers"][0]["image"]

    assert revisions() == [1, 2, 3]
    assert len(kube.get("controllerrevisions")["items"]) == 3
    assert "rolled back" in kube.run("rollout", "undo", resource).stdout
    assert image() == "nginx:v2" and revisions() == [1, 3, 4]
    kube.run("rollout", "undo", resource)
    assert image() == "nginx:v3" and revisions() == [1, 4, 5]
    kube.run("rollout", "undo", resource, "--to-revision=1")
    assert image() == "nginx:v1" and revisions() == [4, 5, 6]
    assert "nginx:v3" in kube.run("rollout", "history", resource, "--revision=5").stdout


def test_watch_streams_added_and_modified_and_ends_at_its_timeout(kube):
    kube.apply(deployment())
    rv = kube.get("deployment", "web")["metadata"]["resourceVersion"]
    host, port = kube.server.url[len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", "/apis/apps/v1/namespaces/default/deployments?watch=1&timeoutSeconds=300")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    first = json.loads(response.readline())
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "web"
    kube.run("set", "image", "deployment/web", "web=nginx:v2")
    seen = []
    while not seen or seen[-1]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] != "nginx:v2":
        seen.append(json.loads(response.readline()))
    assert {e["type"] for e in seen} == {"MODIFIED"}
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in seen)
    conn.close()

    # from a resourceVersion: only what came after it; and the stream ends when timeoutSeconds pass
    now = kube.get("deployment", "web")["metadata"]["resourceVersion"]
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", "/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion=%s&timeoutSeconds=1" % now)
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""  # read() returns at the end of the chunked stream
    conn.close()


def test_binds_loopback_only(kube):
    assert kube.server.url.startswith("http://127.0.0.1:")
    assert kube.server.server.server_address[0] == "127.0.0.1"


def test_typed_create_commands_send_protobuf(kube):
    """kubectl create deployment|configmap|secret|namespace send protobuf bodies, which the double reads."""
    kube.run("create", "deployment", "hello", "--image=nginx:v1", "--replicas=3", "--port=80", "--", "/bin/app", "serve")
    dep = kube.get("deployment", "hello")
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["selector"] == {"matchLabels": {"app": "hello"}}
    assert dep["spec"]["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:v1", "command": ["/bin/app", "serve"], "ports": [{"containerPort": 80}]}]
    kube.run("set", "image", "deployment/hello", "nginx=nginx:v2")
    kube.run("rollout", "undo", "deployment/hello")
    assert kube.image("hello") == "nginx:v1" and kube.revisions("hello") == [2, 3]
    kube.run("create", "deployment", "zero", "--image=nginx:v1", "--replicas=0")
    assert kube.get("deployment", "zero")["spec"]["replicas"] == 0  # a pointer field: 0 is set, not unset
    kube.run("create", "namespace", "team-a")
    kube.run("-n", "team-a", "create", "secret", "generic", "token", "--from-literal=t=abc")
    assert kube.get("-n", "team-a", "secret", "token")["data"] == {"t": "YWJj"}


def test_replace_with_a_stale_resource_version_conflicts(kube):
    kube.apply(deployment())
    stale = kube.get("deployment", "web")
    kube.run("set", "image", "deployment/web", "web=nginx:v2")
    stale["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:v3"
    path = kube.tmp_path / "stale.json"
    path.write_text(json.dumps(stale))
    conflict = kube.run("replace", "-f", str(path), check=False)
    assert conflict.returncode != 0 and "the object has been modified" in conflict.stderr
    assert kube.image() == "nginx:v2"
    del stale["metadata"]["resourceVersion"]
    path.write_text(json.dumps(stale))
    kube.run("replace", "-f", str(path))
    assert kube.image() == "nginx:v3" and kube.revisions() == [1, 2, 3]


# --- pods: the controller's, as kubectl sees them --------------------------------------------------------------
def owned_by(obj, owner):
    return [ref for ref in obj["metadata"].get("ownerReferences", []) if ref["uid"] == owner["metadata"]["uid"]
            and ref.get("controller") is True]


def test_pods_follow_the_replicas_and_report_image_digests(kube):
    kube.apply(deployment(image="nginx:1.25"))
    rows = kube.pod_rows()
    assert len(rows) == 2 and set(rows.values()) == {("1/1", "Running", "0")}
    [rs] = kube.get("rs")["items"]
    for pod in kube.pods():
        suffix = pod["metadata"]["name"][len(rs["metadata"]["name"]) + 1:]
        assert pod["metadata"]["name"] == "%s-%s" % (rs["metadata"]["name"], suffix)
        assert len(suffix) == 5 and set(suffix) <= set(podstatus.NAME_CHARS)
        assert owned_by(pod, rs) and pod["spec"]["nodeName"] == "node-1"
        assert pod["metadata"]["labels"] == dict(rs["spec"]["template"]["metadata"]["labels"], app="web")
        assert pod["metadata"]["labels"]["pod-template-hash"] == rs["metadata"]["labels"]["pod-template-hash"]

    assert "scaled" in kube.run("scale", "deployment/web", "--replicas=3").stdout
    assert len(kube.pod_rows()) == 3
    kube.run("scale", "deployment/web", "--replicas=1")
    assert len(kube.pod_rows()) == 1
    kube.run("scale", "deployment/web", "--replicas=2")
    assert len(kube.pod_rows()) == 2 and len(kube.get("rs")["items"]) == 1

    ids = kube.run("get", "pods", "-l", "app=web", "-o",
                   r"jsonpath={range .items[*]}{.status.containerStatuses[0].imageID}{'\n'}{end}").stdout.split()
    expected = "docker.io/library/nginx@sha256:" + hashlib.sha256(b"docker.io/library/nginx:1.25").hexdigest()
    assert ids == [expected, expected] and DIGEST_ID.match(ids[0])
    images = kube.run("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.containerStatuses[*].image}")
    assert images.stdout.split() == ["nginx:1.25", "nginx:1.25"]

    waited = kube.run("wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=20s")
    assert waited.stdout.count("condition met") == 2
    wide = kube.run("get", "pods", "-l", "app=web", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert all(line.split()[6] == "node-1" for line in wide[1:])
    running = kube.get("pods", "--field-selector", "status.phase=Running,spec.nodeName=node-1")["items"]
    assert len(running) == 2 and kube.get("pods", "--field-selector", "status.phase=Pending")["items"] == []


def test_a_bad_image_crash_loops_and_undo_leaves_ready_pods_of_the_old_template(kube):
    kube.apply(deployment(image="nginx:1.25"))
    old_pods = {pod["metadata"]["name"] for pod in kube.pods()}
    old_hash = kube.get("rs")["items"][0]["metadata"]["labels"]["pod-template-hash"]
    kube.run("set", "image", "deployment/web", "web=nginx:bad")

    def crash_looping():
        rows = {name: row for name, row in kube.pod_rows().items() if name not in old_pods}
        done = all(row[:2] == ("0/1", "CrashLoopBackOff") and int(row[2]) > 0 for row in rows.values())
        return len(rows) == 2 and done and rows
    new_pods = poll(crash_looping, "the new pods to show CrashLoopBackOff with restarts")
    assert all(kube.pod_rows()[name] == ("1/1", "Running", "0") for name in old_pods)  # the old ones still serve
    bad = next(pod for pod in kube.pods() if pod["metadata"]["name"] in new_pods)
    [status] = bad["status"]["containerStatuses"]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff" and status["ready"] is False
    assert status["lastState"]["terminated"]["exitCode"] == 1 and status["lastState"]["terminated"]["reason"] == "Error"
    assert DIGEST_ID.match(status["imageID"])
    ready = [c for c in bad["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "False" and ready[0]["reason"] == "ContainersNotReady"

    def restarted_again():
        now = kube.get("pod", bad["metadata"]["name"])["status"]["containerStatuses"][0]["restartCount"]
        return now > status["restartCount"]
    poll(restarted_again, "the restart count to grow")
    # the ReplicaSets and the Deployment count what the pods show
    replicasets = {rs["metadata"]["labels"]["pod-template-hash"]: rs for rs in kube.get("rs")["items"]}
    new_rs = [rs for h, rs in replicasets.items() if h != old_hash][0]
    assert new_rs["status"]["replicas"] == 2 and not new_rs["status"].get("readyReplicas")
    assert not new_rs["status"].get("availableReplicas")
    assert replicasets[old_hash]["status"]["readyReplicas"] == 2
    dep = kube.get("deployment", "web")["status"]
    assert (dep["replicas"], dep["updatedReplicas"], dep["readyReplicas"], dep["unavailableReplicas"]) == (4, 2, 2, 2)

    failed = kube.run("rollout", "status", "deployment/web", "--timeout=3s", check=False)
    assert failed.returncode != 0
    kube.run("rollout", "undo", "deployment/web")
    assert "successfully rolled out" in kube.run("rollout", "status", "deployment/web", "--timeout=60s").stdout
    assert {pod["metadata"]["name"] for pod in kube.pods()} == old_pods
    assert {pod["metadata"]["labels"]["pod-template-hash"] for pod in kube.pods()} == {old_hash}
    assert set(kube.pod_rows().values()) == {("1/1", "Running", "0")}
    kube.run("wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=20s")


def test_a_deleted_pod_gets_a_replacement(kube):
    kube.apply(deployment())
    [rs] = kube.get("rs")["items"]
    before = {pod["metadata"]["name"] for pod in kube.pods()}
    victim = sorted(before)[0]
    assert 'pod "%s" deleted' % victim in kube.run("delete", "pod", victim, "--timeout=60s").stdout

    def replaced():
        names = {pod["metadata"]["name"] for pod in kube.pods()}
        return len(names) == 2 and victim not in names and names
    after = poll(replaced, "a replacement pod")
    assert len(after - before) == 1 and all(owned_by(pod, rs) for pod in kube.pods())
    assert kube.get("deployment", "web")["status"]["readyReplicas"] == 2
    missing = kube.run("get", "pod", victim, check=False)
    assert missing.returncode != 0 and 'pods "%s" not found' % victim in missing.stderr


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_statefulset_and_daemonset_pods_crash_loop_on_a_bad_image(kube, kind):
    obj = deployment(image="nginx:1.25", replicas=3)
    obj["kind"] = kind
    if kind == "DaemonSet":
        del obj["spec"]["replicas"]
    resource = "%s/web" % kind.lower()
    kube.apply(obj)
    owner = kube.get(kind.lower(), "web")
    good = kube.pods()
    assert all(owned_by(pod, owner) for pod in good) and all(podstatus.is_ready(pod) for pod in good)
    [revision] = [cr["metadata"]["name"] for cr in kube.get("controllerrevisions")["items"]]
    # as the real controllers label them: a StatefulSet pod with the revision's name, a DaemonSet pod with its hash
    if kind == "StatefulSet":
        assert sorted(pod["metadata"]["name"] for pod in good) == ["web-0", "web-1", "web-2"]
        assert {pod["metadata"]["labels"]["controller-revision-hash"] for pod in good} == {revision}
        assert owner["status"]["currentRevision"] == revision
    else:
        assert len(good) == 1 and good[0]["metadata"]["name"].startswith("web-")
        assert "web-" + good[0]["metadata"]["labels"]["controller-revision-hash"] == revision
    kube.run("rollout", "status", resource, "--timeout=60s")

    kube.run("set", "image", resource, "web=nginx:bad")
    crashing = poll(lambda: [name for name, row in kube.pod_rows().items() if row[1] == "CrashLoopBackOff"],
                    "a crash-looping pod")
    status = kube.get(kind.lower(), "web")["status"]
    if kind == "StatefulSet":
        # the rolling update replaced the highest ordinal and stops there: the pod never becomes ready
        assert crashing == ["web-2"] and len(kube.pods()) == 3
        assert (status["readyReplicas"], status["updatedReplicas"], status["currentReplicas"]) == (2, 1, 2)
        assert status["updateRevision"] != status["currentRevision"]
    else:
        assert len(crashing) == 1 and len(kube.pods()) == 1
        assert (status["numberReady"], status["numberAvailable"], status["updatedNumberScheduled"]) == (0, 0, 1)
    assert status["observedGeneration"] == kube.get(kind.lower(), "web")["metadata"]["generation"]
    assert kube.run("rollout", "status", resource, "--timeout=3s", check=False).returncode != 0

    kube.run("rollout", "undo", resource)
    if kind == "StatefulSet":
        # as on a real cluster (OrderedReady): the undo alone waits for the broken pod forever; deleting it repairs
        assert kube.pod_rows()["web-2"][1] == "CrashLoopBackOff"
        assert kube.run("rollout", "status", resource, "--timeout=2s", check=False).returncode != 0
        kube.run("delete", "pod", "web-2", "--timeout=60s")
    out = kube.run("rollout", "status", resource, "--timeout=60s").stdout
    assert "roll out complete" in out or "successfully rolled out" in out, out
    assert set(kube.pod_rows().values()) == {("1/1", "Running", "0")}
    assert {c["image"] for pod in kube.pods() for c in pod["spec"]["containers"]} == {"nginx:1.25"}


def test_pod_list_json_shape_over_plain_http(kube):
    """The pod list as a client library reads it: owner uid, digests, conditions; and what the double refuses."""
    def call(method, path, body=None, content_type="application/json"):
        request = urllib.request.Request(kube.server.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    code, _dep = call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment(image="nginx:1.25"))
    assert code == 201
    code, rs_list = call("GET", "/apis/apps/v1/namespaces/default/replicasets")
    [rs] = rs_list["items"]
    code, pod_list = call("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
    assert code == 200 and pod_list["kind"] == "PodList" and pod_list["apiVersion"] == "v1"
    assert pod_list["metadata"]["resourceVersion"] and len(pod_list["items"]) == 2
    for pod in pod_list["items"]:
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        assert pod["kind"] == "Pod" and meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"]
        assert meta["generateName"] == rs["metadata"]["name"] + "-"
        [ref] = meta["ownerReferences"]
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs["metadata"]["name"],
                       "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        assert spec["containers"] == [{"name": "web", "image": "nginx:1.25"}] and spec["nodeName"] == "node-1"
        assert status["phase"] == "Running" and re.match(r"^10\.244\.\d+\.\d+$", status["podIP"])
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        [container] = status["containerStatuses"]
        assert DIGEST_ID.match(container["imageID"])
        assert re.match(r"^containerd://[0-9a-f]{64}$", container["containerID"])
        shown = (container["name"], container["image"], container["ready"], container["started"])
        assert shown == ("web", "nginx:1.25", True, True)
        assert container["restartCount"] == 0 and "startedAt" in container["state"]["running"]
    name = pod_list["items"][0]["metadata"]["name"]
    code, one = call("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3D" + name)
    assert [p["metadata"]["name"] for p in one["items"]] == [name]
    code, bad = call("GET", "/api/v1/namespaces/default/pods?fieldSelector=spec.nosuch%3Dx")
    assert code == 400 and bad["kind"] == "Status"

    # only the controller makes pods (README); labels may change, the spec may not
    mine = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mine"},
            "spec": {"containers": [{"name": "a", "image": "b"}]}}
    code, refused = call("POST", "/api/v1/namespaces/default/pods", mine)
    assert code == 405 and refused["reason"] == "MethodNotAllowed"
    code, labelled = call("PATCH", "/api/v1/namespaces/default/pods/" + name, {"metadata": {"labels": {"extra": "1"}}},
                          "application/merge-patch+json")
    assert code == 200 and labelled["metadata"]["labels"]["extra"] == "1" and labelled["status"]["phase"] == "Running"
    other_image = {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}
    code, immutable = call("PATCH", "/api/v1/namespaces/default/pods/" + name, other_image,
                           "application/merge-patch+json")
    assert code == 422 and immutable["reason"] == "Invalid"
    code, discovery = call("GET", "/api/v1")
    [entry] = [r for r in discovery["resources"] if r["name"] == "pods"]
    assert "create" not in entry["verbs"] and "delete" in entry["verbs"]


def test_image_ids_are_normalized_like_a_runtime_reports_them():
    sha = podstatus.image_id
    assert sha("nginx") == sha("nginx:latest") == sha("docker.io/library/nginx:latest") == sha("index.docker.io/nginx")
    assert sha("nginx:1.25") != sha("nginx:1.26") and sha("nginx:1.25").startswith("docker.io/library/nginx@sha256:")
    assert sha("bitnami/nginx:1").startswith("docker.io/bitnami/nginx@sha256:")
    assert sha("ghcr.io/org/app:2").startswith("ghcr.io/org/app@sha256:")
    assert sha("localhost:5000/app:2").startswith("localhost:5000/app@sha256:")
    assert sha("registry:5000/team/app").startswith("registry:5000/team/app@sha256:")
    digest = "sha256:" + "ab" * 32
    assert sha("nginx:1.25@" + digest) == sha("nginx@" + digest) == "docker.io/library/nginx@" + digest


# --- the double's patch kinds on their own (what kubectl sends, checked above, and a few directives more) -------
def test_strategic_merge_directives():
    doc = {"spec": {"containers": [{"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                                   {"name": "b", "image": "y:1"}],
                    "nodeSelector": {"disk": "ssd"}, "args": ["1", "2"]}}
    patched = patches.strategic_merge_patch(doc, {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "a", "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]}],
        "nodeSelector": {"$patch": "replace", "zone": "z1"},
        "$deleteFromPrimitiveList/args": ["1"]}})
    assert [c["name"] for c in patched["spec"]["containers"]] == ["b", "a"]
    assert patched["spec"]["containers"][1]["env"] == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
    assert patched["spec"]["containers"][1]["image"] == "x:1"
    assert patched["spec"]["nodeSelector"] == {"zone": "z1"}
    assert patched["spec"]["args"] == ["2"]
    assert doc["spec"]["nodeSelector"] == {"disk": "ssd"}  # the input is not changed
    # lists without a merge key are replaced, as in a merge patch
    assert patches.strategic_merge_patch(doc, {"spec": {"args": ["9"]}})["spec"]["args"] == ["9"]


def test_json_and_merge_patch():
    doc = {"a": {"b": [1, 2, 3]}, "c": "x"}
    assert patches.json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 4}, {"op": "remove", "path": "/c"},
                                    {"op": "copy", "from": "/a/b/0", "path": "/d"}, {"op": "test", "path": "/d", "value": 1},
                                    {"op": "move", "from": "/d", "path": "/e~1f"}]) == {"a": {"b": [1, 2, 3, 4]}, "e/f": 1}
    with pytest.raises(patches.PatchError):
        patches.json_patch(doc, [{"op": "test", "path": "/c", "value": "y"}])
    with pytest.raises(patches.PatchError):
        patches.json_patch(doc, [{"op": "replace", "path": "/nosuch", "value": 1}])
    assert patches.merge_patch(doc, {"a": {"b": None, "z": 1}, "c": None}) == {"a": {"z": 1}}
