"""The `images` component of restore points, end to end through ansible-playbook on a real Docker engine.

Capture while v1 runs healthy, deploy the bad v2 the way a runbook does (docker tag + recreate), then restore:
check mode predicts the real run, the real run brings v1 back on the same port, a second run changes nothing.
"""
import json

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store

import docker_env
from plays import capture_play, restore_play


def deploy(scene, variant, names, ports):
    """What a plain deploy does: move latest, remove and run the containers again (no health wait)."""
    scene.tag(variant, "latest")
    for short in names:
        scene.client.api.remove_container(scene.name(short), v=True, force=True)
        scene.run(short, port=ports.get(short), environment={"FOO": short}, restart_policy={"Name": "unless-stopped"})


def plan_view(plan):
    return {name: [(c["action"], c.get("ref") or c.get("container"), json.dumps(c["from"], sort_keys=True),
                    json.dumps(c["to"], sort_keys=True)) for c in comp["changes"]] for name, comp in plan.items()}


@pytest.fixture
def app(scene, tmp_path):
    """v1 running healthy in two containers configured with app:latest, plus one pinned to app:v2."""
    scene.tag("v1", "latest")
    ports = {"web": docker_env.free_port()}
    for short in ("web", "worker"):
        scene.run(short, port=ports.get(short), environment={"FOO": short}, restart_policy={"Name": "unless-stopped"})
    scene.run("pinned", image_tag="v2")
    scene.wait_health("web", "healthy")
    scene.ports = ports
    scene.store = tmp_path / "store"
    return scene


def test_capture_and_restore_round_trip(app, one_host, playbook):
    components = {"images": {"refs": [app.ref("latest")], "containers": "by_image", "wait_timeout": 60}}
    run = playbook(capture_play(app.store, components), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    point = json.loads((app.store / "points" / run.result("Capture", "target")["point"]["id"] / "manifest.json").read_text())
    record = point["components"]["images"]
    assert record["refs"] == [{"ref": app.ref("latest"), "image": app.images["v1"]}]
    assert sorted((c["name"], c["image"], c["running"]) for c in record["containers"]) == [
        (app.name("web"), app.images["v1"], True), (app.name("worker"), app.images["v1"], True)]
    good = app.state()

    # The same capture again reuses the point (idempotent snapshot).
    again = playbook(capture_play(app.store, components), one_host)
    assert again.rc == 0 and again.result("Capture", "target")["changed"] is False

    deploy(app, "v2", ["web", "worker"], app.ports)
    app.wait_health("web", "unhealthy")
    broken = app.state()

    check = playbook(restore_play(app.store), one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    predicted = check.result("Restore", "target")
    assert predicted["changed"] is True and predicted["safety_point"] is None
    actions = plan_view(predicted["plan"])["images"]
    assert [(a[0], a[1]) for a in actions] == [("retag", app.ref("latest")), ("recreate", app.name("web")),
                                               ("recreate", app.name("worker"))]
    assert app.images["v1"] in check.stdout and app.images["v2"] in check.stdout
    assert app.state() == broken, "check mode changed something"

    real = playbook(restore_play(app.store), one_host, diff=True)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert done["changed"] is True and done["safety_point"]
    assert plan_view(done["plan"]) == plan_view(predicted["plan"]), "check mode did not predict the real run"
    now = app.state()
    assert now["tags"]["latest"] == app.images["v1"]
    assert [t for t in now["tags"] if t.startswith("rollback-")], "the bad image keeps a rollback tag"
    assert {n: c[1] for n, c in now["containers"].items()} == {n: c[1] for n, c in good["containers"].items()}
    assert now["containers"][app.name("pinned")] == good["containers"][app.name("pinned")]
    assert docker_env.health_of(app.client, app.name("web"))[0] == "healthy"
    assert docker_env.http_get("http://127.0.0.1:%d/health" % app.ports["web"]) == (200, "ok\n")
    assert "FOO=web" in app.api.inspect_container(app.name("web"))["Config"]["Env"]

    second = playbook(restore_play(app.store), one_host)
    assert second.rc == 0, second.stdout + second.stderr
    assert second.result("Restore", "target")["changed"] is False
    assert app.state() == now

    # The safety point holds v2, which never got healthy: restoring it puts that state back exactly as it was
    # (containers started, not waited on for a health they never had), which is what a failed-rollback recovery
    # asks for; a second restore of it changes nothing.
    back = playbook(restore_play(app.store, point=done["safety_point"]), one_host)
    assert back.rc == 0, back.stdout + back.stderr
    assert back.result("Restore", "target")["changed"] is True
    assert app.state()["tags"]["latest"] == app.images["v2"]
    assert {n: c[1] for n, c in app.state()["containers"].items()} == {n: c[1] for n, c in broken["containers"].items()}
    again = playbook(restore_play(app.store, point=done["safety_point"]), one_host)
    assert again.rc == 0 and again.result("Restore", "target")["changed"] is False, again.stdout


def test_restore_with_named_containers_and_config(app, one_host, playbook, tmp_path):
    """images next to config in one point: both come back in one call."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.env").write_text("MODE=good\n")
    components = {"config": {"paths": [str(etc)]},
                  "images": {"refs": [app.ref("latest")], "containers": [app.name("web")]}}
    assert playbook(capture_play(app.store, components), one_host).rc == 0
    (etc / "app.env").write_text("MODE=bad\n")
    deploy(app, "v2", ["web", "worker"], app.ports)

    real = playbook(restore_play(app.store), one_host)
    assert real.rc == 0, real.stdout + real.stderr
    plan = real.result("Restore", "target")["plan"]
    assert [c.get("container") for c in plan["images"]["changes"]] == [None, app.name("web")]
    assert (etc / "app.env").read_text() == "MODE=good\n"
    rows = app.containers()
    assert rows[app.name("web")][1] == app.images["v1"]
    assert rows[app.name("worker")][1] == app.images["v2"], "only the named container is part of this point"


BAD_CAPTURE = [
    ({"images": {"refs": ["{repo}:nope"]}}, "the engine has no image"),
    ({"images": {"refs": ["{repo}:latest"], "containers": ["{prefix}-ghost"]}}, "no container named"),
    ({"images": {"refs": ["{repo}:latest"], "containers": ["{prefix}-pinned"]}}, "which is not among refs"),
    ({"images": {"refs": []}}, "non-empty list"),
    ({"images": {"refs": ["{repo}:latest"], "wait_timeout": 0}}, "wait_timeout"),
    ({"images": {"refs": ["{repo}:latest"], "colour": "blue"}}, "components.images: unknown option 'colour'"),
]


def test_bad_capture_input_names_the_value_and_writes_nothing(app, one_host, playbook):
    tasks = []
    for index, (components, _needle) in enumerate(BAD_CAPTURE):
        text = json.dumps(components).replace("{repo}", app.repo).replace("{prefix}", app.prefix)
        tasks.append({"name": "Bad %d" % index, "ignore_errors": True,
                      "fleetops.rollback.restore_point": {"store_path": str(app.store), "components": json.loads(text)}})
    run = playbook(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": tasks}]) + "\n", one_host)
    for index, (_components, needle) in enumerate(BAD_CAPTURE):
        result = run.result("Bad %d" % index, "target")
        assert run.status("Bad %d" % index, "target") == "failed" and needle in result["msg"], (index, result.get("msg"))
    assert not app.store.exists()


def test_restore_refuses_when_the_image_is_gone(app, one_host, playbook):
    """A point whose image was pruned since fails the plan with a clear message and changes nothing."""
    components = {"images": {"refs": [app.ref("latest")]}}
    assert playbook(capture_play(app.store, components), one_host).rc == 0
    # Point the record at an image id this engine never had.
    point_dir = next((app.store / "points").iterdir())
    manifest = json.loads((point_dir / "manifest.json").read_text())
    ghost = "sha256:" + "1" * 64
    manifest["components"]["images"]["refs"][0]["image"] = ghost
    Store(str(app.store)).write_manifest(manifest)
    before = app.state()
    run = playbook(restore_play(app.store), one_host)
    assert run.rc != 0
    assert "is no longer on this host" in run.result("Restore", "target")["msg"]
    assert app.state() == before


def test_restore_point_role_captures_images(app, one_host, playbook):
    """The restore_point role captures the images component from `rollback_images` (as snapshot.yml does)."""
    run = playbook("""
- hosts: all
  gather_facts: false
  roles:
    - role: fleetops.rollback.restore_point
      vars:
        rollback_store_path: %s
        rollback_images: [%s]
        restore_point_label: release-1
""" % (app.store, app.ref("latest")), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    point = run.result("Capture a restore point", "target")["point"]
    assert point["components"] == ["images"] and point["status"] == "known_good"
