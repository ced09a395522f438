"""Faults and bad input for the Docker side: image_retag and the `images` component of restore_point.

Everything runs against a real Docker engine (tests/integration/docker_env.py starts one when missing) with
images built locally from busybox: v1 is healthy, v2 never gets healthy, `broken` exits at once. Each test works
in its own repository and containers (a Scene), and compares that part of the engine before and after.
"""
import os
import signal
import socket
import sys

import pytest

from harness import assert_clear_failure, assert_no_secret, kill, run_module, start_module, tree_state, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

import docker_env  # noqa: E402  pylint: disable=wrong-import-position

SECRET = "s3cr3t-Tok3n-55d1"


@pytest.fixture(scope="module")
def engine():
    client = docker_env.ensure_engine()
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(engine):
    prefix = "fleetops-fault-%d" % os.getpid()
    repo = prefix + "/app"
    ids = docker_env.build_app_images(engine, repo)
    yield dict(ids, repo=repo)
    docker_env.cleanup(engine, prefix, [repo])


@pytest.fixture
def scene(engine, images, tmp_path):
    one = docker_env.Scene(engine, images, tmp_path)
    yield one
    docker_env.cleanup(engine, one.prefix, one.repos)


@pytest.fixture(scope="module")
def shared_scene(engine, images, tmp_path_factory):
    """One scene for the bad-input cases, none of which may change it: tags previous (v1) and latest (v2), a
    container `web` running latest."""
    one = docker_env.Scene(engine, images, tmp_path_factory.mktemp("images-bad-input"))
    one.tag("v1", "previous")
    one.tag("v2", "latest")
    one.run("web")
    yield one
    docker_env.cleanup(engine, one.prefix, one.repos)


def whole_state(scene):
    """The scene's tags and containers, and every file of the test's directory."""
    return {"engine": scene.state(), "files": tree_state(str(scene.tmp_path))}


# ------------------------------------------------------------------------------------------------ bad input

LONG_TAG = "t" * 200
BAD_RETAG = [
    # name
    ({"name": ""}, ["name", "''"]),
    ({"name": "   "}, ["name", "'   '"]),
    ({"name": "UPPER/case"}, ["name", "'UPPER/case'", "not a valid repository name"]),
    ({"name": "a:b:c"}, ["name", "'a:b:c'"]),
    ({"name": "app@sha256:abc"}, ["name", "malformed digest", "'sha256:abc'"]),
    ({"name": "app\x00x"}, ["name", "'app\\x00x'", "control character"]),
    ({"name": "\u00fcn\u00efc\u00f6de:1"}, ["name", "\u00fcn\u00efc\u00f6de:1"]),
    ({"name": "app; rm -rf /"}, ["name", "'app; rm -rf /'"]),
    ({"name": "$(touch /tmp/pwned)"}, ["name", "$(touch /tmp/pwned)"]),
    ({"name": "../../etc/passwd"}, ["name", "'../../etc/passwd'"]),
    ({"name": "app:" + LONG_TAG}, ["name", LONG_TAG, "not a valid tag"]),
    ({"name": "{repo}:no-such-tag"}, ["name", "no-such-tag", "nothing was changed"]),
    # repository
    ({"repository": []}, ["repository", "at least one"]),
    ({"repository": [""]}, ["repository[0]", "''"]),
    ({"repository": ["App:latest"]}, ["repository[0]", "'App:latest'"]),
    ({"repository": ["{repo}:" + LONG_TAG]}, ["repository[0]", LONG_TAG, "not a valid tag"]),
    ({"repository": ["{repo}@sha256:" + "0" * 64]}, ["repository[0]", "a digest cannot be moved"]),
    ({"repository": ["{repo}:latest\n"]}, ["repository[0]", "control character"]),
    ({"repository": ["a:b:c"]}, ["repository[0]", "'a:b:c'"]),
    ({"repository": ["{repo}:x y"]}, ["repository[0]", "'x y'", "not a valid tag"]),
    # containers
    ({"containers": [""]}, ["containers[0]", "''"]),
    ({"containers": ["web;reboot"]}, ["containers[0]", "'web;reboot'", "container names"]),
    ({"containers": ["-x"]}, ["containers[0]", "'-x'"]),
    ({"containers": ["fleetops-no-such-container"]}, ["fleetops-no-such-container", "nothing was changed"]),
    # numbers
    ({"wait_timeout": 0}, ["wait_timeout", "more than 0"]),
    ({"wait_timeout": -5}, ["wait_timeout", "-5"]),
    ({"wait_timeout": 1e300}, ["wait_timeout", "more than a week"]),
    ({"wait_timeout": "nan"}, ["wait_timeout", "nan"]),
    ({"stop_timeout": -1}, ["stop_timeout", "-1"]),
    ({"timeout": 0}, ["timeout", "more than 0"]),
    ({"timeout": 10 ** 12}, ["timeout", str(10 ** 12)]),
    ({"recreate": "sometimes"}, ["recreate", "sometimes"]),
    # engine and registry
    ({"docker_host": ""}, ["docker_host", "''"]),
    ({"docker_host": "ftp://127.0.0.1:2375"}, ["docker_host", "ftp://127.0.0.1:2375"]),
    ({"docker_host": "unix:///nonexistent/docker.sock"},
     ["docker_host", "/nonexistent/docker.sock", "nothing was changed"]),
    ({"docker_host": "tcp://admin:%s@127.0.0.1:2375" % SECRET}, ["docker_host", "carries credentials"]),
    ({"registry": "https://deploy:%s@127.0.0.1:1" % SECRET, "containers": []}, ["registry", "carries credentials"]),
    ({"registry": "127.0.0.1:5000/some/path", "containers": []}, ["registry", "127.0.0.1:5000/some/path", "without a path"]),
    ({"registry": "bad host:5000", "containers": []}, ["registry", "'bad host:5000'"]),
    ({"registry": "127.0.0.1:5000", "ca_path": "/nonexistent/ca.pem", "containers": []}, ["ca_path", "/nonexistent/ca.pem"]),
    ({"registry": "127.0.0.1:5000", "containers": ["web"]}, ["cannot be used with registry"]),
    ({"registry": "127.0.0.1:5000", "containers": [], "registry_username": "deploy",
      "registry_password": SECRET + "\nX-Injected: 1"}, ["registry_password", "control character"]),
    ({"registry": "127.0.0.1:5000", "containers": [], "registry_username": "de\x00ploy",
      "registry_password": SECRET}, ["registry_username", "'de\\x00ploy'"]),
]


def _fill(scene, value):
    if isinstance(value, str):
        return value.format(repo=scene.repo, prefix=scene.prefix)
    if isinstance(value, list):
        return [_fill(scene, v) for v in value]
    if isinstance(value, dict):
        return {k: _fill(scene, v) for k, v in value.items()}
    return value


@pytest.mark.bad_input("image_retag")
@pytest.mark.parametrize("params, mentions", BAD_RETAG, ids=[str(i) for i in range(len(BAD_RETAG))])
def test_image_retag_bad_input(shared_scene, params, mentions):
    args = {"name": shared_scene.ref("previous"), "repository": [shared_scene.ref("latest")],
            "containers": [shared_scene.name("web")]}
    args.update({key: _fill(shared_scene, value) for key, value in params.items()})
    before = whole_state(shared_scene)
    run = run_module("image_retag", args)
    assert_clear_failure(run, *[_fill(shared_scene, m) for m in mentions], secrets=(SECRET,))
    assert whole_state(shared_scene) == before


BAD_IMAGES_SPEC = [
    ({"refs": []}, ["components.images.refs", "[]"]),
    ({"refs": ["UPPER:x"]}, ["components.images.refs[0]", "'UPPER:x'"]),
    ({"refs": ["a:b:c"]}, ["components.images.refs[0]", "'a:b:c'"]),
    ({"refs": [123]}, ["components.images.refs[0]", "123"]),
    ({"refs": ["app\x00:1"]}, ["components.images.refs[0]", "control character"]),
    ({"refs": ["{repo}:latest"], "containers": [""]}, ["components.images.containers[0]", "''"]),
    ({"refs": ["{repo}:latest"], "containers": 42}, ["components.images.containers", "42"]),
    ({"refs": ["{repo}:latest"], "containers": ["a b"]}, ["components.images.containers[0]", "'a b'"]),
    ({"refs": ["{repo}:latest"], "wait_timeout": -1}, ["components.images.wait_timeout", "-1"]),
    ({"refs": ["{repo}:latest"], "wait_timeout": "soon"}, ["components.images.wait_timeout", "'soon'"]),
    ({"refs": ["{repo}:latest"], "wait_timeout": 10 ** 9}, ["components.images.wait_timeout", "more than a week"]),
    ({"refs": ["{repo}:latest"], "docker_host": "ftp://x"}, ["components.images.docker_host", "ftp://x"]),
    ({"refs": ["{repo}:latest"], "bogus": 1}, ["components.images", "bogus"]),
    ({"refs": ["{repo}:no-such-tag"]}, ["no-such-tag"]),
]


@pytest.mark.bad_input("restore_point")
@pytest.mark.parametrize("spec, mentions", BAD_IMAGES_SPEC, ids=[str(i) for i in range(len(BAD_IMAGES_SPEC))])
def test_images_component_bad_spec(shared_scene, tmp_path, spec, mentions):
    store = str(tmp_path / "store")
    before = whole_state(shared_scene)
    run = run_module("restore_point", {"store_path": store, "components": {"images": _fill(shared_scene, spec)}})
    assert_clear_failure(run, *[_fill(shared_scene, m) for m in mentions])
    assert whole_state(shared_scene) == before


# ------------------------------------------------------------------------------------------------ faults

def dead_socket(path):
    """A unix socket nobody listens on: what DOCKER_HOST points at after dockerd died."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return "unix://" + path


@pytest.mark.fault("docker-engine-unreachable")
def test_image_retag_with_the_engine_unreachable(scene, tmp_path):
    scene.tag("v1", "previous")
    scene.tag("v2", "latest")
    host = dead_socket(str(tmp_path / "docker.sock"))
    before = whole_state(scene)
    run = run_module("image_retag", {"name": scene.ref("previous"), "repository": [scene.ref("latest")]},
                     env={"DOCKER_HOST": host})
    assert_clear_failure(run, "DOCKER_HOST", host, "cannot reach a Docker engine", "nothing was changed")
    assert whole_state(scene) == before


@pytest.mark.fault("docker-engine-unreachable")
def test_images_restore_with_the_engine_unreachable(scene, tmp_path):
    scene.tag("v1", "latest")
    store = str(tmp_path / "store")
    capture = run_module("restore_point", {"store_path": store, "components": {"images": {
        "refs": [scene.ref("latest")], "containers": "none"}}})
    assert not capture.failed, capture.msg
    scene.tag("v2", "latest")
    host = dead_socket(str(tmp_path / "docker.sock"))
    before = whole_state(scene)
    run = run_module("restore_point", {"store_path": store, "state": "restored",
                                       "point": capture.result["point"]["id"]}, env={"DOCKER_HOST": host})
    assert_clear_failure(run, host, "nothing was changed")
    assert whole_state(scene) == before


@pytest.mark.fault("point-image-deleted")
def test_restore_when_the_points_image_was_deleted(scene, engine, tmp_path):
    unique = docker_env.build_unique_image(engine, scene.images["v1"], scene.repo, "gone")
    scene.api.tag(unique, scene.repo, "latest", force=True)
    store = str(tmp_path / "store")
    capture = run_module("restore_point", {"store_path": store, "components": {"images": {
        "refs": [scene.ref("latest")], "containers": "none"}}})
    assert not capture.failed, capture.msg
    scene.tag("v2", "latest")
    scene.api.remove_image(scene.ref("gone"))  # the last name of that image: the engine deletes it
    assert not [i for i in engine.images.list(all=True) if i.id == unique]
    before = whole_state(scene)
    run = run_module("restore_point", {"store_path": store, "state": "restored",
                                       "point": capture.result["point"]["id"]})
    assert_clear_failure(run, unique.split(":")[1][:12], "no longer on this host", "nothing was changed")
    assert whole_state(scene) == before


@pytest.mark.fault("container-fails-after-retag")
def test_a_container_failing_on_the_new_image_is_put_back(scene):
    scene.tag("v1", "latest")
    web = scene.run("web")
    scene.wait_health("web", "healthy")
    before = whole_state(scene)
    run = run_module("image_retag", {"name": scene.ref("broken"), "repository": [scene.ref("latest")],
                                     "containers": [scene.name("web")], "wait_timeout": 60})
    assert_clear_failure(run, scene.name("web"), "did not become ready", "everything was put back")
    assert run.result["tags_state"] == {scene.ref("latest"): scene.images["v1"].split(":")[1][:12]}
    assert "back and started" in run.result["containers_state"][scene.name("web")]
    # The very same container, running its old image again; no rollback tag left behind.
    assert scene.containers()[scene.name("web")][0] == web.id
    scene.wait_health("web", "healthy")
    assert whole_state(scene) == before


def _moment_of_recreate(scene):
    """The old container is set aside and its replacement runs, not yet healthy: the run waits for its health
    check (its first one is a second away), with no engine call that could still land after the signal."""
    names = scene.containers()
    new = names.get(scene.name("web"))
    return scene.name("web") + ".fleetops-old" in names and new is not None and new[2] == "running"


def _recreate_scene(scene, engine):
    good = docker_env.build_unique_image(engine, scene.images["v1"], scene.repo, "good")
    scene.tag("v1", "latest")
    web = scene.run("web")
    scene.wait_health("web", "healthy")
    args = {"name": scene.ref("good"), "repository": [scene.ref("latest")], "containers": [scene.name("web")]}
    return good, web, args


@pytest.mark.fault("sigkill-image-retag-during-recreate")
def test_sigkill_while_recreating_is_reported_by_the_next_run_and_no_tag_is_lost(scene, engine):
    good, web, args = _recreate_scene(scene, engine)
    proc = start_module("image_retag", args)
    wait_for(lambda: _moment_of_recreate(scene) or proc.poll() is not None, timeout=120,
             what="the replacement container to be started")
    assert proc.poll() is None, "the run ended before the moment to kill it"
    kill(proc, signal.SIGKILL)

    # Killed mid-way: the tag moved, and the image it pointed at keeps its rollback tag.
    tags = scene.tags()
    assert tags["latest"] == good
    assert [t for t, image in tags.items() if t.startswith("rollback-") and image == scene.images["v1"]]
    aside = scene.containers()[scene.name("web") + ".fleetops-old"]
    assert aside[0] == web.id

    before = whole_state(scene)
    again = run_module("image_retag", args)
    assert_clear_failure(again, scene.name("web") + ".fleetops-old", "left by an interrupted retag",
                         "Nothing was changed", "docker rm %s.fleetops-old" % scene.name("web"))
    assert whole_state(scene) == before
    # Check mode reports it the same way.
    assert run_module("image_retag", args, check=True).failed
    # Doing what it says (keep the replacement) lets the next run finish.
    scene.api.remove_container(web.id, force=True)
    done = run_module("image_retag", args)
    assert not done.failed, done.msg
    assert scene.containers()[scene.name("web")][1] == good


@pytest.mark.fault("sigterm-image-retag-during-recreate")
def test_sigterm_while_recreating_puts_everything_back(scene, engine):
    _good, web, args = _recreate_scene(scene, engine)
    before = whole_state(scene)
    proc = start_module("image_retag", args)
    wait_for(lambda: _moment_of_recreate(scene) or proc.poll() is not None, timeout=120,
             what="the replacement container to be started")
    assert proc.poll() is None, "the run ended before the moment to stop it"
    run = kill(proc, signal.SIGTERM)
    assert_clear_failure(run, "stopped by SIGTERM while recreating containers", "everything was put back")
    assert scene.containers()[scene.name("web")][0] == web.id
    scene.wait_health("web", "healthy")
    assert whole_state(scene) == before


@pytest.mark.fault("registry-unreachable")
def test_registry_unreachable(scene):
    port = docker_env.free_port()  # nothing listens there
    before = whole_state(scene)
    run = run_module("image_retag", {"registry": "127.0.0.1:%d" % port, "name": "app:previous",
                                     "repository": ["app:latest"], "registry_username": "deploy",
                                     "registry_password": SECRET})
    assert_clear_failure(run, "http://127.0.0.1:%d" % port, "nothing was changed", secrets=(SECRET,))
    assert_no_secret(run, (SECRET,))
    assert whole_state(scene) == before
