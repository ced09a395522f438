"""image_retag end to end: real ansible-playbook runs against a real Docker engine and a real registry.

The application image is built locally (busybox httpd on scratch): v1 is healthy, v2 serves but fails its
HEALTHCHECK, `broken` exits at once. Containers publish on 127.0.0.1 only.
"""
import json

import pytest

import docker_env
from plays import play


def retag_play(**params):
    return play(("Retag", "image_retag", params))


def view(result):
    """What check mode must predict of a real run (rollback tag names carry the time, so only their repo)."""
    return ([(t["ref"], t["from"], t["to"], (t["rollback_tag"] or "").split(":")[0]) for t in result["tags"]],
            [(c["container"], c["before"]["id"], c["before"]["image"], c["after"]["image"]) for c in result["containers"]])


def test_retag_and_recreate_bring_v1_back_with_same_settings(scene, one_host, playbook):
    scene.tag("v1", "previous")
    scene.tag("v2", "latest")
    network = scene.client.networks.create(scene.name("net"))
    port = docker_env.free_port()
    bind_dir = scene.tmp_path / "bind"
    bind_dir.mkdir()
    (bind_dir / "marker").write_text("bound\n")
    web = scene.run("web", port=port, environment={"FOO": "bar", "APP_MODE": "custom"},
                    restart_policy={"Name": "unless-stopped"}, labels={"team": "payments"},
                    volumes={scene.name("vol"): {"bind": "/named", "mode": "rw"}, str(bind_dir): {"bind": "/bind", "mode": "ro"}},
                    command=["httpd", "-f", "-v", "-p", "8080", "-h", "/www"], network=network.name)
    network.disconnect(web)
    network.connect(web, aliases=["backend"])
    worker = scene.run("worker", environment={"ROLE": "worker"})
    other = scene.run("pinned", image_tag="v2")  # configured with app:v2, not app:latest: never touched
    scene.wait_health("web", "unhealthy")
    assert web.exec_run(["sh", "-c", "echo kept > /data/keep && echo kept > /named/keep"]).exit_code == 0
    old = scene.api.inspect_container(web.id)
    before = scene.state()

    check = playbook(retag_play(name=scene.ref("previous"), repository=[scene.ref("latest")], recreate="by_image"),
                     one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    predicted = check.result("Retag", "target")
    assert predicted["changed"] is True
    assert [(t["ref"], t["from"], t["to"]) for t in predicted["tags"]] == [
        (scene.ref("latest"), scene.images["v2"], scene.images["v1"])]
    assert sorted(c["container"] for c in predicted["containers"]) == [scene.name("web"), scene.name("worker")]
    assert scene.images["v1"] in check.stdout and scene.images["v2"] in check.stdout  # the diff shows both ids
    assert scene.state() == before, "check mode changed something"

    real = playbook(retag_play(name=scene.ref("previous"), repository=[scene.ref("latest")], recreate="by_image"),
                    one_host, diff=True)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Retag", "target")
    assert done["changed"] is True
    assert view(done) == view(predicted), "check mode did not predict the real run"

    tags = scene.tags()
    assert tags["latest"] == scene.images["v1"]
    [rollback_tag] = done["rollback_tags"]
    assert rollback_tag.startswith(scene.repo + ":rollback-")
    assert tags[rollback_tag.split(":", 1)[1]] == scene.images["v2"], "the old image keeps a rollback tag"

    after = scene.containers()
    assert after[scene.name("pinned")] == before["containers"][scene.name("pinned")]
    assert after[scene.name("web")][0] != web.id and after[scene.name("worker")][0] != worker.id
    assert {k: v[1] for k, v in after.items()} == {
        scene.name("web"): scene.images["v1"],
        scene.name("worker"): scene.images["v1"],
        scene.name("pinned"): scene.images["v2"],
    }
    assert not [n for n in after if n.endswith(".fleetops-old")]
    # Ready means healthy: the module waited for the HEALTHCHECK, so the app answers at once on the same port.
    assert docker_env.health_of(scene.client, scene.name("web"))[0] == "healthy"
    assert docker_env.http_get("http://127.0.0.1:%d/health" % port) == (200, "ok\n")
    status, env = docker_env.http_get("http://127.0.0.1:%d/cgi-bin/env" % port)
    assert status == 200
    env = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    # The container's own env is kept; what the old image set (APP_VERSION=v2) gives way to the new image's.
    assert env["FOO"] == "bar" and env["APP_MODE"] == "custom" and env["APP_VERSION"] == "v1"

    new = scene.api.inspect_container(scene.name("web"))
    for key in ("PortBindings", "RestartPolicy", "Init", "NetworkMode"):
        assert new["HostConfig"][key] == old["HostConfig"][key], key
    assert set(old["HostConfig"]["Binds"]) <= set(new["HostConfig"]["Binds"])
    assert new["Config"]["Cmd"] == old["Config"]["Cmd"]
    assert new["Config"]["Labels"]["team"] == "payments"
    assert new["Config"]["Labels"]["org.fleetops.test.version"] == "v1"
    assert "backend" in new["NetworkSettings"]["Networks"][network.name]["Aliases"]
    assert {m["Destination"]: m.get("Name") for m in new["Mounts"] if m["Type"] == "volume"} == \
        {m["Destination"]: m.get("Name") for m in old["Mounts"] if m["Type"] == "volume"}, "same volumes, anonymous too"
    fresh = scene.client.containers.get(scene.name("web"))
    assert fresh.exec_run(["cat", "/data/keep", "/named/keep", "/bind/marker"]).output == b"kept\nkept\nbound\n"
    worker_env = scene.api.inspect_container(scene.name("worker"))["Config"]["Env"]
    assert "ROLE=worker" in worker_env and "APP_VERSION=v1" in worker_env

    again = playbook(retag_play(name=scene.ref("previous"), repository=[scene.ref("latest")], recreate="by_image"),
                     one_host)
    assert again.rc == 0, again.stdout + again.stderr
    second = again.result("Retag", "target")
    assert second["changed"] is False and second["tags"] == [] and second["containers"] == []
    assert scene.containers() == after


def test_named_containers_and_a_new_tag(scene, one_host, playbook):
    """`containers` recreates just those; a target tag that did not exist gets no rollback tag."""
    scene.tag("v2", "latest")
    scene.run("a")
    scene.run("b")
    run = playbook(retag_play(name=scene.images["v1"], repository=[scene.ref("latest"), scene.ref("stable")],
                              containers=[scene.name("a")]), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("Retag", "target")
    by_ref = {t["ref"]: t for t in result["tags"]}
    assert by_ref[scene.ref("stable")]["from"] is None and by_ref[scene.ref("stable")]["rollback_tag"] is None
    assert len(result["rollback_tags"]) == 1
    rows = scene.containers()
    assert rows[scene.name("a")][1] == scene.images["v1"]
    assert rows[scene.name("b")][1] == scene.images["v2"]
    assert scene.tags()["stable"] == scene.tags()["latest"] == scene.images["v1"]


BAD_INPUT = [
    ({"name": "{repo}:no-such-tag"}, "the engine has no image"),
    ({"name": "sha256:" + "0" * 64}, "the engine has no image"),
    ({"containers": ["{prefix}-ghost"]}, "no container named"),
    ({"containers": ["{prefix}-pinned"]}, "which is not among the references this task moves"),
    ({"repository": ["Bad Name:latest"]}, "is not a valid repository name"),
    ({"repository": ["{repo}@sha256:" + "0" * 64]}, "a digest cannot be moved"),
    ({"docker_host": "unix:///nonexistent/docker.sock"}, "cannot reach a Docker engine"),
    ({"containers": ["{prefix}-ephemeral"]}, "was started with --rm"),
    ({"containers": ["{prefix}-stale"]}, "left by an interrupted retag"),
]


def test_bad_input_fails_clearly_and_changes_nothing(scene, one_host, playbook):
    """Each bad input is one task of the same playbook, in check mode and for real."""
    scene.tag("v1", "previous")
    scene.tag("v2", "latest")
    scene.run("web")
    scene.run("pinned", image_tag="v2")
    scene.run("ephemeral", auto_remove=True)
    scene.run("stale")
    scene.run("stale.fleetops-old")  # what a run killed half-way leaves: the previous container, set aside
    before = scene.state()

    def fill(value):
        return value.format(repo=scene.repo, prefix=scene.prefix)

    tasks = []
    for index, (params, _needle) in enumerate(BAD_INPUT):
        args = {"name": scene.ref("previous"), "repository": [scene.ref("latest")], "containers": [scene.name("web")]}
        for key, value in params.items():
            args[key] = [fill(v) for v in value] if isinstance(value, list) else fill(value)
        tasks.append({"name": "Bad %d" % index, "fleetops.rollback.image_retag": args, "ignore_errors": True})
    play = json.dumps([{"hosts": "all", "gather_facts": False, "tasks": tasks}]) + "\n"
    for check in (True, False):
        run = playbook(play, one_host, check=check)
        for index, (_params, needle) in enumerate(BAD_INPUT):
            result = run.result("Bad %d" % index, "target")
            assert run.status("Bad %d" % index, "target") == "failed" and needle in result["msg"], (index, result.get("msg"))
        assert scene.state() == before


@pytest.mark.parametrize("target", ["broken", "v2"])
def test_container_failing_on_the_new_image_puts_everything_back(scene, one_host, playbook, target):
    """Rolling onto an image that exits (broken) or never gets healthy (v2): tags and containers come back as
    they were, the very same containers, running and healthy again."""
    scene.tag("v1", "latest")
    scene.tag(target, "candidate")
    port = docker_env.free_port()
    web = scene.run("web", port=port, environment={"FOO": "bar"})
    scene.run("worker")
    scene.wait_health("web", "healthy")
    before = scene.state()

    run = playbook(retag_play(name=scene.ref("candidate"), repository=[scene.ref("latest")], recreate="by_image",
                              wait_timeout=30), one_host)
    assert run.rc != 0
    result = run.result("Retag", "target")
    assert "did not become ready" in result["msg"] and "put back as it was" in result["msg"], result["msg"]
    assert set(result["not_ready"]) == {scene.name("web"), scene.name("worker")}
    assert result["tags_state"] == {scene.ref("latest"): scene.images["v1"].split(":")[1][:12]}

    assert scene.tags() == before["tags"], "the tag is back and no rollback tag is left behind"
    assert scene.containers() == before["containers"], "the same containers, running again"
    assert scene.api.inspect_container(web.id)["Name"] == "/" + scene.name("web")
    scene.wait_health("web", "healthy")
    assert docker_env.http_get("http://127.0.0.1:%d/health" % port) == (200, "ok\n")


@pytest.fixture
def registry(docker_client, tmp_path):
    reg = docker_env.Registry(tmp_path / "registry").start()
    yield reg
    reg.stop()


def test_registry_retag_moves_the_manifest_without_layers(scene, registry, one_host, playbook):
    """Push v1 and v2 to a real registry, then move `latest` from v2 to v1 with the HTTP API v2 alone."""
    remote = "%s/%s" % (registry.address, scene.prefix + "/app")
    other = scene.prefix + "/mirror"
    scene.repos += [remote, "%s/%s" % (registry.address, other)]
    for variant, tag in (("v1", "v1"), ("v2", "v2"), ("v2", "latest")):
        scene.api.tag(scene.images[variant], remote, tag, force=True)
        output = scene.client.images.push(remote, tag)
        assert '"error"' not in output, output
    repo = scene.prefix + "/app"
    v1, v2 = registry.manifest_digest(repo, "v1"), registry.manifest_digest(repo, "v2")
    assert v1 and v2 and v1 != v2 and registry.manifest_digest(repo, "latest") == v2
    params = dict(registry=registry.address, name=repo + ":v1",
                  repository=[repo + ":latest", "%s/%s:stable" % (registry.address, other)])

    check = playbook(retag_play(**params), one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    predicted = check.result("Retag", "target")
    assert predicted["changed"] and predicted["image"]["id"] == v1
    assert [(t["ref"], t["from"], t["to"]) for t in predicted["tags"]] == [
        (repo + ":latest", v2, v1), (other + ":stable", None, v1)]
    assert registry.manifest_digest(repo, "latest") == v2 and registry.manifest_digest(other, "stable") is None

    real = playbook(retag_play(**params), one_host)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Retag", "target")
    assert view(done) == view(predicted)
    assert registry.manifest_digest(repo, "latest") == v1
    assert registry.manifest_digest(other, "stable") == v1, "moved across repositories by blob mount"
    [rollback_tag] = done["rollback_tags"]
    assert registry.manifest_digest(repo, rollback_tag.split(":", 1)[1]) == v2

    again = playbook(retag_play(**params), one_host)
    assert again.rc == 0 and again.result("Retag", "target")["changed"] is False

    # The engine can pull what the registry now serves under the moved tags: the image is whole.
    for ref in ("%s:latest" % remote, "%s/%s:stable" % (registry.address, other)):
        pulled = scene.client.images.pull(ref)
        assert pulled.id == scene.images["v1"]
        scene.api.remove_image(ref)

    missing = playbook(retag_play(registry=registry.address, name=repo + ":v9", repository=[repo + ":latest"]),
                       one_host)
    assert missing.rc != 0
    assert "has no manifest" in missing.result("Retag", "target")["msg"]
    assert registry.manifest_digest(repo, "latest") == v1

    # On the engine, a digest reference names the source too (the push recorded it in the image's RepoDigests).
    local = playbook(retag_play(name="%s@%s" % (remote, v1), repository=[scene.ref("from-digest")]), one_host)
    assert local.rc == 0, local.stdout + local.stderr
    assert local.result("Retag", "target")["image"]["id"] == scene.images["v1"]
    assert scene.tags()["from-digest"] == scene.images["v1"]


def test_registry_retag_with_basic_auth_keeps_the_password_out_of_output(scene, docker_client, one_host, playbook,
                                                                         tmp_path):
    password = "s3cret-registry-pw"
    registry = docker_env.Registry(tmp_path / "registry", auth=("deploy", password)).start()
    try:
        remote = "%s/%s" % (registry.address, scene.prefix + "/app")
        scene.repos.append(remote)
        for variant in ("v1", "v2"):
            scene.api.tag(scene.images[variant], remote, variant, force=True)
            output = scene.client.images.push(remote, variant, auth_config={"username": "deploy", "password": password})
            assert '"error"' not in output, output
        repo = scene.prefix + "/app"
        params = dict(registry=registry.address, name=repo + ":v1", repository=[repo + ":latest"],
                      registry_username="deploy")
        refused = playbook(retag_play(registry_password="wrong", **params), one_host)
        assert refused.rc != 0
        assert "check registry_username and registry_password" in refused.result("Retag", "target")["msg"]
        run = playbook(retag_play(registry_password=password, **params), one_host, args=["-v"])
        assert run.rc == 0, run.stdout + run.stderr
        assert registry.manifest_digest(repo, "latest") == registry.manifest_digest(repo, "v1")
        assert password not in run.stdout + run.stderr + json.dumps(run.results)
    finally:
        registry.stop()
