"""Unit tests for the engine-free parts of _docker.py, _registry.py and the images component.

The engine-facing parts (tagging, recreating, waiting, undoing) run against a real engine in
tests/integration/test_image_retag.py and test_images_component.py.
"""

from datetime import datetime, timezone

import pytest
from hypothesis import assume, given, strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import docker as _docker
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.images.component import ImagesComponent
from ansible_collections.fleetops.rollback.plugins.module_utils._backends.docker_registry import registry_url

# ---------------------------------------------------------------------------------------- references


@pytest.mark.parametrize("ref, parts", [
    ("app", ("app", None, None)),
    ("app:previous", ("app", "previous", None)),
    ("localhost:5000/team/app", ("localhost:5000/team/app", None, None)),
    ("localhost:5000/team/app:1.2", ("localhost:5000/team/app", "1.2", None)),
    ("app@sha256:" + "a" * 64, ("app", None, "sha256:" + "a" * 64)),
    ("reg.io:443/app:v1@sha256:" + "b" * 64, ("reg.io:443/app", "v1", "sha256:" + "b" * 64)),
])
def test_split_ref(ref, parts):
    assert _docker.split_ref(ref) == parts


@pytest.mark.parametrize("one, other", [
    ("app", "app:latest"),
    ("docker.io/library/nginx:1", "nginx:1"),
    ("index.docker.io/library/nginx", "nginx:latest"),
    ("docker.io/team/app:v2", "team/app:v2"),
])
def test_normal_ref_treats_spellings_of_one_reference_alike(one, other):
    assert _docker.normal_ref(one) == _docker.normal_ref(other)


def test_normal_ref_keeps_ids_and_registries():
    image_id = "sha256:" + "c" * 64
    assert _docker.normal_ref(image_id) == image_id
    assert _docker.normal_ref("localhost:5000/app") == "localhost:5000/app:latest"
    assert _docker.normal_ref("app:v1") != _docker.normal_ref("app:v2")


@pytest.mark.parametrize("ref, expected", [
    ("app", "app:latest"),
    (" app:v1 ", "app:v1"),
    ("Registry.Example:5000/team/app:rc_1.2-3", "Registry.Example:5000/team/app:rc_1.2-3"),
])
def test_check_target_ref_accepts(ref, expected):
    assert _docker.check_target_ref(ref) == expected


@pytest.mark.parametrize("ref, needle", [
    ("", "is not an image reference"),
    ("App:latest", "not a valid repository name"),
    ("app:-bad", "is not a valid tag"),
    ("app@sha256:" + "0" * 64, "a digest cannot be moved"),
    ("app:" + "x" * 129, "is not a valid tag"),
])
def test_check_target_ref_rejects_and_names_the_value(ref, needle):
    with pytest.raises(RollbackError) as err:
        _docker.check_target_ref(ref, "repository[3]")
    assert needle in err.value.msg and err.value.msg.startswith("repository[3]")


def test_rollback_tag_is_a_valid_tag_that_sorts_by_time():
    early = _docker.rollback_tag_for("reg:5000/app:latest", datetime(2026, 1, 2, 3, 4, 5, 6, timezone.utc))
    late = _docker.rollback_tag_for("reg:5000/app:latest", datetime(2026, 1, 2, 3, 4, 5, 7, timezone.utc))
    assert early == "reg:5000/app:rollback-20260102T030405.000006Z"
    assert early < late
    assert _docker.check_target_ref(early) == early


@given(st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+)?", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
def test_target_refs_round_trip(repo, tag):
    assume(len(repo) <= 255)  # a longer repository name is refused, as the registry API does
    ref = "%s:%s" % (repo, tag)
    assert _docker.check_target_ref(ref) == ref
    assert _docker.split_ref(ref) == (repo, tag, None)


# ---------------------------------------------------------------------------------------- create config

IMAGE = {"Config": {
    "Env": ["PATH=/bin", "APP_VERSION=v2", "APP_MODE=image-default"],
    "Labels": {"org.app.version": "v2", "org.app.base": "busybox"},
    "Cmd": ["httpd", "-f"], "Entrypoint": None, "WorkingDir": "", "User": "",
    "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/data": {}},
    "Healthcheck": {"Test": ["CMD", "wget", "http://127.0.0.1:8080/health"], "Interval": 1000000000},
}}
CID = "0123456789ab" + "f" * 52


def container(**overrides):
    attrs = {
        "Id": CID, "Name": "/web", "Image": "sha256:" + "2" * 64,
        "Config": {
            "Image": "app:latest", "Hostname": CID[:12],
            "Env": ["FOO=bar", "APP_MODE=custom", "PATH=/bin", "APP_VERSION=v2"],
            "Labels": {"org.app.version": "v2", "org.app.base": "busybox", "team": "payments"},
            "Cmd": ["httpd", "-f"], "Entrypoint": None, "WorkingDir": "", "User": "",
            "ExposedPorts": {"8080/tcp": {}, "9090/tcp": {}}, "Volumes": {"/data": {}},
            "Healthcheck": IMAGE["Config"]["Healthcheck"], "Tty": False, "OpenStdin": False,
        },
        "HostConfig": {
            "Binds": ["/srv/conf:/conf:ro"], "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}, "NetworkMode": "appnet",
            "Links": ["/db:/web/database"], "Init": True,
        },
        "Mounts": [
            {"Type": "bind", "Source": "/srv/conf", "Destination": "/conf", "RW": False},
            {"Type": "volume", "Name": "abc123", "Destination": "/data", "RW": True},
        ],
        "NetworkSettings": {"Networks": {
            "appnet": {"Aliases": ["backend", CID[:12]], "IPAMConfig": {"IPv4Address": "10.9.0.5"}},
            "metrics": {"Aliases": [CID[:12]], "IPAMConfig": None},
        }},
        "State": {"Running": True, "Status": "running"},
    }
    for key, value in overrides.items():
        attrs[key] = dict(attrs[key], **value) if isinstance(value, dict) else value
    return attrs


def test_create_config_keeps_what_the_container_set_and_drops_image_defaults():
    config, extra = _docker.create_config(container(), IMAGE)
    assert config["Image"] == "app:latest"
    assert config["Env"] == ["FOO=bar", "APP_MODE=custom"]  # the old image's APP_VERSION=v2 and PATH go
    assert config["Labels"] == {"team": "payments"}
    assert "Cmd" not in config and "Entrypoint" not in config and "Healthcheck" not in config
    assert config["ExposedPorts"] == {"9090/tcp": {}}
    assert "Hostname" not in config  # the generated one
    host = config["HostConfig"]
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert host["RestartPolicy"]["Name"] == "unless-stopped" and host["Init"] is True
    assert host["Links"] == ["db:database"]
    assert host["Binds"] == ["/srv/conf:/conf:ro", "abc123:/data"], "the anonymous volume comes along by name"
    assert config["NetworkingConfig"] == {"EndpointsConfig": {"appnet": {"Aliases": ["backend"],
                                                                         "IPAMConfig": {"IPv4Address": "10.9.0.5"}}}}
    assert extra == {"metrics": {}}


def test_create_config_keeps_an_overridden_command_entrypoint_and_healthcheck():
    attrs = container(Config={"Cmd": ["httpd", "-f", "-v"], "Healthcheck": {"Test": ["NONE"]}, "Hostname": "web1",
                              "User": "1000"})
    config, _networks = _docker.create_config(attrs, IMAGE, image="sha256:" + "1" * 64)
    assert config["Image"] == "sha256:" + "1" * 64
    assert config["Cmd"] == ["httpd", "-f", "-v"] and "Entrypoint" not in config
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    assert config["Hostname"] == "web1" and config["User"] == "1000"
    attrs = container(Config={"Entrypoint": ["/bin/sh", "-c"], "Cmd": None})
    config, _networks = _docker.create_config(attrs, IMAGE)
    assert config["Entrypoint"] == ["/bin/sh", "-c"] and config["Cmd"] is None


def test_create_config_on_default_bridge_and_shared_namespace():
    attrs = container(HostConfig={"NetworkMode": "default"},
                      NetworkSettings={"Networks": {"bridge": {"Aliases": None}, "appnet": {"Aliases": ["api"]}}})
    config, extra = _docker.create_config(attrs, IMAGE)
    assert "NetworkingConfig" not in config and extra == {"appnet": {"Aliases": ["api"]}}
    attrs = container(HostConfig={"NetworkMode": "container:" + "9" * 64}, NetworkSettings={"Networks": {}})
    config, extra = _docker.create_config(attrs, IMAGE)
    assert config["HostConfig"]["NetworkMode"] == "container:" + "9" * 64 and extra == {}


def test_create_config_does_not_double_mount_a_volume_already_bound():
    attrs = container(HostConfig={"Binds": ["appdata:/data"]},
                      Mounts=[{"Type": "volume", "Name": "appdata", "Destination": "/data", "RW": True}])
    config, _networks = _docker.create_config(attrs, IMAGE)
    assert config["HostConfig"]["Binds"] == ["appdata:/data"]


# ---------------------------------------------------------------------------------------- readiness


@pytest.mark.parametrize("state, health_test, verdict", [
    ({"Running": True, "Status": "running"}, None, (True, None)),
    ({"Running": True, "Status": "running", "Health": {"Status": "starting"}}, ["CMD", "x"], (False, None)),
    ({"Running": True, "Status": "running", "Health": {"Status": "healthy"}}, ["CMD", "x"], (True, None)),
    ({"Running": True, "Status": "running"}, ["NONE"], (True, None)),
    ({"Running": False, "Status": "created", "FinishedAt": "0001-01-01T00:00:00Z"}, None, (False, None)),
])
def test_container_verdict_ready_or_pending(state, health_test, verdict):
    attrs = {"State": state, "Config": {"Healthcheck": {"Test": health_test} if health_test else None}, "RestartCount": 0}
    assert _docker.container_verdict(attrs) == verdict


@pytest.mark.parametrize("state, restarts, needle", [
    ({"Running": False, "Status": "exited", "ExitCode": 1}, 0, "exited with exit code 1"),
    ({"Running": True, "Status": "running", "Restarting": True, "ExitCode": 2}, 3, "restarting"),
    ({"Running": True, "Status": "running", "Health": {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "404"}]}},
     0, "unhealthy (last check exit 1: 404)"),
])
def test_container_verdict_failures_are_final(state, restarts, needle):
    attrs = {"State": state, "Config": {"Healthcheck": {"Test": ["CMD", "x"]}}, "RestartCount": restarts}
    done, problem = _docker.container_verdict(attrs)
    assert done and needle in problem


# ---------------------------------------------------------------------------------------- registry and component


@pytest.mark.parametrize("value, url", [
    ("127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("localhost:5000", "http://localhost:5000"),
    ("registry.example:5000", "https://registry.example:5000"),
    ("http://registry.example:5000/", "http://registry.example:5000"),
    ("https://127.0.0.1:5443", "https://127.0.0.1:5443"),
])
def test_registry_url(value, url):
    assert registry_url(value) == url


@pytest.mark.parametrize("value", ["", "ftp://x", "registry.example/path"])
def test_registry_url_rejects(value):
    with pytest.raises(RollbackError):
        registry_url(value)


def test_images_component_normalize():
    component = ImagesComponent()
    assert component.normalize(["app", "web:v1"]) == {"refs": ["app:latest", "web:v1"], "containers": "by_image",
                                                      "docker_host": None, "wait_timeout": 120.0}
    spec = component.normalize({"refs": "app:latest", "containers": ["/web", "worker"], "wait_timeout": 30})
    assert spec["containers"] == ["web", "worker"] and spec["wait_timeout"] == 30.0
    assert component.normalize({"refs": ["app"], "containers": "none"})["containers"] == []
    for bad, needle in [({"refs": ["app", "app:latest"]}, "listed twice"), ({"refs": []}, "non-empty"),
                        ({"refs": ["app"], "containers": [""]}, "container names"),
                        ({"refs": ["app"], "wait_timeout": "soon"}, "wait_timeout"),
                        ({"refs": ["app"], "extra": 1}, "unknown option 'extra'")]:
        with pytest.raises(RollbackError) as err:
            component.normalize(bad)
        assert needle in err.value.msg and "components.images" in err.value.msg


def test_a_container_started_with_rm_is_refused():
    _docker.check_recreatable(container())
    with pytest.raises(RollbackError) as err:
        _docker.check_recreatable(container(HostConfig={"AutoRemove": True}), "containers")
    assert "'web' was started with --rm" in err.value.msg and "nothing was changed" in err.value.msg
