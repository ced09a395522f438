"""The `kubernetes` component of restore points, end to end: real ansible-playbook runs of restore_point against the
Kubernetes API test double (tests/k8s_api), with the machine's real kubectl as the judge.

Capture a known good state, break it the way a deploy does (kubectl set image, a ConfigMap edited), restore:
check mode is a server dry run that predicts the real run and changes nothing, the template and ConfigMap come
back even with the history pruned below the target, unrelated labels and annotations stay, a second run changes
nothing and makes no new revision. A rollout that never completes re-applies the safety point. No Secret value
ever reaches a point, a result or the journal.
"""
import json
import os

import pytest

from kube_env import KUBECTL, deployment
from plays import capture_play, play, restore_play

pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs the real kubectl")

SECRET_VALUE = "hunter2-s3cr3t-never-shown"


def store_text(store):
    """Every file of a store, concatenated (points, journal, everything)."""
    out = []
    for base, _dirs, files in os.walk(store):
        for name in files:
            with open(os.path.join(base, name), "rb") as stream:
                out.append(stream.read().decode("utf-8", "replace"))
    return "\n".join(out)


def versions(kube, *names):
    return {name: kube.get("deployment", name)["metadata"]["resourceVersion"] for name in names}


def changes_of(result):
    return json.dumps(result["plan"]["kubernetes"]["changes"], sort_keys=True)


@pytest.fixture
def app(kube, tmp_path):
    """Deployment web (reads ConfigMap web-config and Secret web-secret, revisionHistoryLimit 1) and StatefulSet db."""
    kube.configmap("web-config", mode="good", workers="4")
    kube.secret("web-secret", password=SECRET_VALUE)
    kube.apply(deployment("web", "nginx:1.25", configmap="web-config", secret="web-secret", revisionHistoryLimit=1,
                          progressDeadlineSeconds=2))
    kube.apply({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "labels": {"tier": "db"}},
                "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                         "template": {"metadata": {"labels": {"app": "db"}},
                                      "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}})
    kube.rollout_status("deployment/web")
    kube.store = tmp_path / "store"
    return kube


def spec(kube, **options):
    return dict({"kubeconfig": kube.config, "workloads": ["web", {"kind": "sts", "selector": "tier=db"}],
                 "wait_timeout": 60}, **options)


def test_capture_break_restore_with_pruned_history(app, one_host, playbook):
    run = playbook(capture_play(app.store, {"kubernetes": spec(app)}), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    point_id = run.result("Capture", "target")["point"]["id"]
    manifest = json.loads((app.store / "points" / point_id / "manifest.json").read_text())
    record = manifest["components"]["kubernetes"]
    assert [(w["kind"], w["name"]) for w in record["workloads"]] == [("Deployment", "web"), ("StatefulSet", "db")]
    assert record["workloads"][0]["images"] == {"app": "nginx:1.25"} and record["workloads"][0]["replicas"] == 2
    # The digest every pod of the current revision runs (imageID in the pods' status).
    pod_digests = {status["imageID"].split("://", 1)[-1] for pod in app.get("pods", "-l", "app=web")["items"]
                   for status in pod["status"]["containerStatuses"]}
    assert len(pod_digests) == 1 and record["workloads"][0]["digests"] == {"app": pod_digests.pop()}
    assert record["configmaps"] == [{"name": "web-config", "data": {"mode": "good", "workers": "4"}, "binaryData": {},
                                     "immutable": False}]
    assert [sorted(s) for s in record["secrets"]] == [["hash", "name", "salt", "type"]]
    # The revision holding the template is marked with the point, key by key.
    good_rs = record["workloads"][0]["revision"]["holder"]
    annotations = app.replicasets("web")[good_rs][1]
    assert annotations["fleetops.rollback/point"] == point_id and annotations["team"] == "blue"
    good_template = app.get("deployment", "web")["spec"]["template"]
    good_db = app.get("statefulset", "db")["spec"]["template"]

    # The bad deploy: two image changes (history limit 1 prunes the good ReplicaSet), a ConfigMap edit, an
    # annotation and a label someone else adds meanwhile.
    app.run("set", "image", "deployment/web", "app=nginx:1.26")
    app.run("set", "image", "deployment/web", "app=nginx:1.27")
    app.run("set", "image", "statefulset/db", "db=postgres:17")
    app.run("patch", "configmap", "web-config", "-p", '{"data": {"mode": "bad"}}')
    app.run("annotate", "deployment/web", "oncall=alice")
    app.run("label", "deployment/web", "release=27")
    app.rollout_status("deployment/web")
    assert good_rs not in app.replicasets("web"), "the history still holds the good revision"
    before = versions(app, "web")
    cm_version = app.get("configmap", "web-config")["metadata"]["resourceVersion"]

    check = playbook(restore_play(app.store), one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    predicted = check.result("Restore", "target")
    assert predicted["changed"] is True and predicted["safety_point"] is None
    assert [(c["action"], c.get("workload") or c.get("configmap")) for c in predicted["plan"]["kubernetes"]["changes"]] \
        == [("update", "web-config"), ("restore", "Deployment/web"), ("restore", "StatefulSet/db")]
    assert "nginx:1.27" in check.stdout and "nginx:1.25" in check.stdout and "mode" in check.stdout
    assert versions(app, "web") == before, "check mode changed the Deployment"
    assert app.get("configmap", "web-config")["metadata"]["resourceVersion"] == cm_version

    real = playbook(restore_play(app.store), one_host, diff=True)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert done["changed"] is True and done["safety_point"]
    assert changes_of(done) == changes_of(predicted), "check mode did not predict the real run"
    app.rollout_status("deployment/web")
    web = app.get("deployment", "web")
    assert web["spec"]["template"] == good_template
    assert app.get("statefulset", "db")["spec"]["template"] == good_db
    assert app.get("configmap", "web-config")["data"] == {"mode": "good", "workers": "4"}
    meta = web["metadata"]
    assert meta["annotations"]["oncall"] == "alice" and meta["annotations"]["team"] == "blue"
    assert meta["annotations"]["fleetops.rollback/restored-from"] == point_id
    assert meta["labels"] == {"team": "blue", "app": "web", "release": "27"}

    # Idempotence: nothing to do, no new ReplicaSet, no new revision.
    replicasets = app.replicasets("web")
    again = playbook(restore_play(app.store), one_host)
    assert again.rc == 0, again.stdout + again.stderr
    assert again.result("Restore", "target")["changed"] is False
    assert {name: rev for name, (rev, _a) in app.replicasets("web").items()} == \
        {name: rev for name, (rev, _a) in replicasets.items()}

    # No Secret value anywhere: the store (points, journal), the outputs.
    for text in (store_text(app.store), check.stdout, real.stdout, again.stdout, json.dumps(real.results)):
        assert SECRET_VALUE not in text


def test_a_rollout_that_never_completes_reapplies_the_safety_point(app, one_host, playbook):
    # The point holds a template that cannot become available (a :bad image, progress deadline 2 s).
    app.run("set", "image", "deployment/web", "app=nginx:bad")
    assert app.rollout_status("deployment/web", check=False).returncode != 0
    run = playbook(capture_play(app.store, {"kubernetes": spec(app, workloads=["web"])}, label="broken",
                                status="candidate"), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    point_id = run.result("Capture", "target")["point"]["id"]
    app.run("set", "image", "deployment/web", "app=nginx:1.26")
    app.rollout_status("deployment/web")
    fixed = app.get("deployment", "web")["spec"]["template"]

    failed = playbook(restore_play(app.store, point=point_id), one_host)
    assert failed.rc != 0
    result = failed.result("Restore", "target")
    assert failed.status("Restore", "target") == "failed" and result["reverted"] is True
    assert "ProgressDeadlineExceeded" in result["msg"] or "progress deadline" in result["msg"], result["msg"]
    assert "re-applied" in result["msg"] and result["component_state"]["kubernetes"] == "reverted to pre-rollback state"
    assert app.get("deployment", "web")["spec"]["template"] == fixed
    app.rollout_status("deployment/web")


def test_overlapping_selectors_restore_one_workload_alone(kube, tmp_path, one_host, playbook):
    labels = {"app": "shop"}
    kube.apply(deployment("shop", "shop:1", labels=labels))
    kube.apply(deployment("shop-canary", "shop:1", labels=labels))
    store = tmp_path / "store"
    run = playbook(capture_play(store, {"kubernetes": {"kubeconfig": kube.config, "wait_timeout": 60,
                                                       "workloads": [{"selector": "app=shop"}]}}), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    kube.run("set", "image", "deployment/shop", "app=shop:2")
    kube.run("set", "image", "deployment/shop-canary", "app=shop:2")
    canary = kube.get("deployment", "shop-canary")
    canary_sets = kube.replicasets("shop-canary")

    done = playbook(restore_play(store, select={"kubernetes": ["deployment/shop"]}), one_host)
    assert done.rc == 0, done.stdout + done.stderr
    assert [c["workload"] for c in done.result("Restore", "target")["plan"]["kubernetes"]["changes"]] == \
        ["Deployment/shop"]
    assert kube.get("deployment", "shop")["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:1"
    now = kube.get("deployment", "shop-canary")
    assert now["spec"] == canary["spec"] and now["metadata"]["resourceVersion"] == canary["metadata"]["resourceVersion"]
    assert kube.replicasets("shop-canary") == canary_sets

    unknown = playbook(restore_play(store, select={"kubernetes": ["web"]}), one_host)
    assert unknown.rc != 0
    assert "Deployment/shop, Deployment/shop-canary" in unknown.result("Restore", "target")["msg"]


def test_secrets_verify_refuses_and_report_warns(app, one_host, playbook):
    run = playbook(capture_play(app.store, {"kubernetes": spec(app, workloads=["web"], secrets="verify")}), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    app.run("set", "image", "deployment/web", "app=nginx:1.26")
    app.secret("web-secret", password="rotated-" + SECRET_VALUE)
    bad = versions(app, "web")

    refused = playbook(restore_play(app.store), one_host)
    assert refused.rc != 0
    msg = refused.result("Restore", "target")["msg"]
    assert "web-secret" in msg and "secrets=verify" in msg and "nothing was changed" in msg
    assert versions(app, "web") == bad

    # The same point restored with report: the workload comes back, the Secret is named in a warning.
    run = playbook(capture_play(app.store, {"kubernetes": spec(app, workloads=["web"])}, label="report"), one_host)
    app.secret("web-secret", password="again-" + SECRET_VALUE)
    app.run("set", "image", "deployment/web", "app=nginx:1.27")
    done = playbook(restore_play(app.store, point=run.result("Capture", "target")["point"]["id"]), one_host,
                    diff=True)
    assert done.rc == 0, done.stdout + done.stderr
    assert any("web-secret" in w for w in done.result("Restore", "target").get("warnings", [])) or \
        "web-secret" in done.stdout
    assert "changed since the point (by salted hash)" in done.stdout
    for text in (store_text(app.store), refused.stdout, done.stdout, json.dumps(done.results)):
        assert SECRET_VALUE not in text


def test_a_wrong_context_or_namespace_is_refused_clearly_and_nothing_changes(app, one_host, playbook):
    bad_context = playbook(capture_play(app.store, {"kubernetes": spec(app, context="nope")}), one_host)
    assert bad_context.rc != 0
    msg = bad_context.result("Capture", "target")["msg"]
    assert "'nope'" in msg and "fake" in msg
    bad_namespace = playbook(capture_play(app.store, {"kubernetes": spec(app, namespace="nope")}), one_host)
    assert bad_namespace.rc != 0
    assert "namespace" in bad_namespace.result("Capture", "target")["msg"] and \
        "'nope'" in bad_namespace.result("Capture", "target")["msg"]
    assert not (app.store / "points").exists() or not os.listdir(app.store / "points")
    missing = playbook(capture_play(app.store, {"kubernetes": spec(app, workloads=[{"selector": "app=none"}])}),
                       one_host)
    assert missing.rc != 0 and "matches no Deployment" in missing.result("Capture", "target")["msg"]

    # A point whose kubeconfig no longer has its context: refused at restore, nothing changed.
    run = playbook(capture_play(app.store, {"kubernetes": spec(app, context="fake")}), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    app.run("set", "image", "deployment/web", "app=nginx:1.26")
    bad = versions(app, "web")
    text = open(app.config, encoding="utf-8").read().replace("fake", "renamed")
    with open(app.config, "w", encoding="utf-8") as stream:
        stream.write(text)
    refused = playbook(restore_play(app.store), one_host)
    assert refused.rc != 0
    assert "'fake'" in refused.result("Restore", "target")["msg"]
    assert versions(app, "web") == bad


def test_bad_specs_are_refused_naming_the_option(kube, tmp_path, one_host, playbook):
    store = tmp_path / "store"
    cases = [
        ({"kubeconfig": kube.config, "workloads": [{"name": "web", "selector": "app=web"}]}, "exactly one of"),
        ({"kubeconfig": kube.config, "workloads": ["cronjob/web"]}, "not a workload kind"),
        ({"kubeconfig": kube.config, "workloads": ["deployment/Web_1"]}, "not a Kubernetes object name"),
        ({"kubeconfig": kube.config, "workloads": ["web"], "api_key": "x"}, "api_key"),
        ({"kubeconfig": kube.config, "workloads": ["web"], "secrets": "store"}, "secrets"),
    ]
    tasks = [("Capture %d" % i, "restore_point", {"store_path": str(store), "components": {"kubernetes": s}})
             for i, (s, _m) in enumerate(cases)]
    run = playbook(play(*tasks).replace("      fleetops", "      ignore_errors: true\n      fleetops"), one_host)
    for index, (_spec, words) in enumerate(cases):
        result = run.result("Capture %d" % index, "target")
        assert run.status("Capture %d" % index, "target") == "failed" and words in result["msg"], result["msg"]
        assert "components.kubernetes" in result["msg"]
