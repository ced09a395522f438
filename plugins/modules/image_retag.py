#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_retag
short_description: Point image tags back at a known good image and recreate the containers that run them
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - The rollback of C(docker tag app:previous app:latest && docker compose up -d app) as one safe, idempotent step.
  - Points each reference in O(repository) at the image O(name) resolves to, on the Docker engine at O(docker_host).
    Parameters follow C(community.docker.docker_image_tag).
  - Before a tag moves, the image it pointed to is tagged C(<repo>:rollback-<UTC time>). That tag is kept and
    returned in RV(rollback_tags), so the move can be undone by retagging it.
  - With O(containers) or O(recreate=by_image), the containers are stopped, set aside under a temporary name,
    and recreated on the new image with the same environment, ports, mounts (anonymous volumes included), restart
    policy, labels, networks and command. Values the old image supplied (its C(ENV), C(LABEL), C(CMD), ...) are
    not carried over, so the new image's own defaults apply.
  - It then waits until each new container is running, and healthy when its image (or the container) has a
    C(HEALTHCHECK), polling until O(wait_timeout). If any container fails, the tags are put back, the new containers
    removed and the old ones renamed back and started; the task fails saying so. Only after every new container is
    ready are the old ones removed.
  - With O(registry), the tag is moved inside an image registry instead, with the Registry HTTP API v2 (GET the
    manifest by O(name), PUT it under each target tag). No layer is pulled or pushed and no engine is needed.
options:
  name:
    description:
      - The image to point the tags at, the known good one; a C(repo:tag), an image id or a digest reference
        (C(repo@sha256:...)), for example C(app:previous).
      - A missing image fails the task and changes nothing.
    type: str
    required: true
  repository:
    description:
      - The references to point at O(name), each C(repo:tag) (a bare C(repo) means C(repo:latest)), for example
        C(app:latest).
    type: list
    elements: str
    required: true
  containers:
    description:
      - Names of containers to recreate on the new image. Each must exist and be configured with one of the
        O(repository) references (as Compose and C(docker run app:latest) do); otherwise the task fails and changes
        nothing.
      - A container already running the new image is left alone. Recreated containers are started.
    type: list
    elements: str
    default: []
  recreate:
    description:
      - C(by_image) also recreates every container (in any state) configured with one of the O(repository)
        references that does not already run the new image. C(none) recreates only O(containers).
    type: str
    choices: [none, by_image]
    default: none
  wait_timeout:
    description:
      - Seconds to wait for the recreated containers to be running (and healthy) before putting everything back.
      - More than 0 and at most a week, as are O(timeout) and O(stop_timeout) (which may be 0).
    type: float
    default: 120
  stop_timeout:
    description: Seconds a container gets to stop before it is killed. Default is its own C(StopTimeout), or 10.
    type: int
  docker_host:
    description:
      - The Docker engine API. Defaults to C($DOCKER_HOST), else C(unix:///var/run/docker.sock).
    type: str
  timeout:
    description: Seconds an engine or registry API call may take.
    type: int
    default: 60
  registry:
    description:
      - Move the tags inside this registry instead of on an engine, as C(host:port) or a URL. Without a scheme the
        registry is reached over https, except loopback addresses (C(127.0.0.1:5000), C(localhost:5000)) over http.
      - O(name) and O(repository) are then references inside the registry (a C(host/) prefix naming it is dropped).
        A target in another repository of the same registry gets its blobs by cross-repository mount.
      - O(containers) and O(recreate) cannot be used with it.
    type: str
  registry_username:
    description: Username for the registry (basic auth, or the bearer token flow).
    type: str
  registry_password:
    description: Password or token for the registry.
    type: str
  validate_certs:
    description: Verify the registry's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: A CA bundle to verify the registry's certificate with.
    type: path
attributes:
  check_mode:
    support: full
    description: Resolves every image, tag and container and returns what would change (image ids before and after,
      containers to recreate) without changing anything.
  diff_mode:
    support: full
    description: Shows each tag's image id (or registry digest) and each container's image id before and after.
  idempotent:
    support: full
    description: When every tag already points at O(name) and every selected container runs it, nothing changes.
extends_documentation_fragment:
  - fleetops.rollback.attributes.platform
requirements:
  - Docker SDK for Python (C(docker)) on the host, unless O(registry) is used.
notes:
  - A container that shares another's network namespace (C(--network container:...)) keeps pointing at that
    container's id; recreate them together with care.
  - An environment variable or label set on the container with exactly the value the old image had is taken as the
    image's default, and the new image's value applies.
  - The registry HTTP API cannot delete a tag; a failed registry move puts back every tag that existed before and
    says which new tags remain.
  - Every reference, container name, number and address is checked before the engine is asked anything; a bad
    one fails naming the value and changes nothing. Credentials in O(docker_host) or O(registry) are refused (give
    O(registry_username) and O(registry_password)) and never shown.
  - A run stopped by SIGTERM puts the tags and containers back, as after any failure. A run killed outright
    (SIGKILL, power loss) while recreating leaves the previous container as C(<name>.fleetops-old) and the moved tags
    with their C(rollback-<time>) tags; the next run changes nothing, says what each container is, and how to keep
    the replacement or go back.
seealso:
  - module: fleetops.rollback.restore_point
  - module: fleetops.rollback.health_gate
  - module: community.docker.docker_image_tag
"""

EXAMPLES = r"""
- name: Roll the backend back to the previous image and recreate its containers
  fleetops.rollback.image_retag:
    name: app_backend:previous
    repository:
      - app_backend:latest
    recreate: by_image
  register: rolled

- name: Undo that rollback later (the tag the old image kept)
  fleetops.rollback.image_retag:
    name: "{{ rolled.rollback_tags[0] }}"
    repository: [app_backend:latest]
    containers: [backend]

- name: Move a tag inside a registry, no layers pulled or pushed
  fleetops.rollback.image_retag:
    registry: registry.internal:5000
    name: app_backend@sha256:4f1c0e0e8d3c7b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a
    repository: [app_backend:stable]
    registry_username: deploy
    registry_password: "{{ vault_registry_password }}"
"""

RETURN = r"""
image:
  description: The image O(name) resolved to (its id, or with O(registry) its manifest digest).
  returned: success
  type: dict
  sample: {name: app:previous, id: "sha256:9f2c..."}
tags:
  description: Each tag moved (or that would be), with the image id (or digest) before and after and its rollback tag.
  returned: success
  type: list
  elements: dict
  sample: [{ref: "app:latest", from: "sha256:77ab...", to: "sha256:9f2c...", rollback_tag: "app:rollback-20261122T031500.123456Z"}]
rollback_tags:
  description: The C(rollback-<time>) tags created, one per moved tag that pointed somewhere. They are kept.
  returned: success
  type: list
  elements: str
containers:
  description:
    - Each container recreated (or that would be) with its old and new container id and image id, and seconds
      from stop to ready. In check mode the new id is null.
  returned: success
  type: list
  elements: dict
  sample:
    - {container: backend, action: recreate, before: {id: "3c1d...", image: "sha256:77ab..."},
       after: {id: "8e0f...", image: "sha256:9f2c..."}, seconds: 1.4}
seconds:
  description: Time the whole retag (and recreation, and waiting) took on the host.
  returned: changed and not check mode
  type: float
leftovers:
  description: Old containers that could not be removed after a successful recreate (named C(<name>.fleetops-old)).
  returned: success
  type: list
  elements: str
tags_state:
  description: After a failure, where each touched tag points now.
  returned: failure
  type: dict
containers_state:
  description: After a failure, the state of each touched container.
  returned: failure
  type: dict
"""

import time

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError, url_credentials
from ansible_collections.fleetops.rollback.plugins.module_utils._components import images as images_declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import argument_spec as spec_of
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import docker as _docker
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import docker_registry as _registry


IMAGES_SPEC = spec_of(images_declaration.OPTIONS)


class ImageRetagModule(ModuleBase):
    uses_store = False
    argument_spec = dict(
        name=dict(type="str", required=True),
        repository=dict(type="list", elements="str", required=True),
        containers=dict(type="list", elements="str", default=[]),
        recreate=dict(type="str", choices=["none", "by_image"], default="none"),
        # The images component's own options: accepted or refused here as in a restore point.
        wait_timeout=IMAGES_SPEC["wait_timeout"],
        stop_timeout=dict(type="int"),
        docker_host=IMAGES_SPEC["docker_host"],
        timeout=dict(type="int", default=60),
        registry=dict(type="str"),
        registry_username=dict(type="str"),
        registry_password=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
    )

    def run(self):
        # A password written into docker_host or registry must not come back in the echoed module arguments.
        self.module.no_log_values.update(url_credentials([self.params["docker_host"], self.params["registry"]]))
        started = time.monotonic()
        result = self.retag()
        if result["changed"] and not self.check_mode:
            result["seconds"] = round(time.monotonic() - started, 3)
        return result

    def retag(self):
        params = self.params
        if not params["repository"]:
            raise RollbackError("repository: give at least one target reference, for example [app:latest]")
        _docker.check_seconds(params["wait_timeout"], "wait_timeout")
        _docker.check_seconds(params["timeout"], "timeout")
        if params["stop_timeout"] is not None:
            _docker.check_seconds(params["stop_timeout"], "stop_timeout", allow_zero=True)
        if params["registry"]:
            return self.in_registry()
        source = _docker.check_source_ref(params["name"], "name")
        targets = []
        for i, ref in enumerate(params["repository"]):
            target = _docker.check_target_ref(ref, "repository[%d]" % i)
            if target not in targets:
                targets.append(target)
        names = []
        for i, name in enumerate(params["containers"]):
            name = _docker.check_container_name(name, "containers[%d]" % i)
            if name not in names:
                names.append(name)
        self.progress.at("connecting to the Docker engine")
        client = _docker.connect(params["docker_host"], params["timeout"])
        with _docker.engine_errors("reading images and containers from the engine"):
            source_id = _docker.image_id(client, source)
            if source_id is None:
                raise RollbackError("name: the engine has no image %r (tag, id or digest); build, pull or load it "
                                    "first, or name another; nothing was changed" % source,
                                    image={"name": source, "id": None})
            moves = _docker.plan_moves(client, [(ref, source_id) for ref in targets])
            planned = {_docker.normal_ref(ref): source_id for ref in targets}
            if params["recreate"] == "by_image":
                names += [n for n in _docker.containers_by_image(client, targets) if n not in names]
            _docker.check_interrupted(client, names, targets)
            recreations = _docker.plan_containers(client, names, planned)
        result = {"changed": bool(moves or recreations), "image": {"name": source, "id": source_id},
                  "tags": moves, "rollback_tags": [m["rollback_tag"] for m in moves if m["rollback_tag"]],
                  "containers": [self.preview(item) for item in recreations], "leftovers": []}
        if self.diff_mode:
            result["diff"] = {"before_header": "images", "after_header": "images",
                              "before": _docker.diff_text(moves, recreations, after=False),
                              "after": _docker.diff_text(moves, recreations, after=True)}
        if self.check_mode or not result["changed"]:
            return result
        done = _docker.execute(client, moves, recreations, params["wait_timeout"], params["stop_timeout"])
        result.update(tags=done["tags"], rollback_tags=done["rollback_tags"], containers=done["containers"],
                      leftovers=done["leftovers"])
        if done["leftovers"]:
            self.module.warn("old containers left behind after a successful recreate: %s" % ", ".join(done["leftovers"]))
        return result

    @staticmethod
    def preview(item):
        return {"container": item["container"], "action": "recreate",
                "before": {"id": item["id"], "image": item["from"]}, "after": {"id": None, "image": item["to"]},
                "started": True, "seconds": None}

    def in_registry(self):
        if self.params["containers"] or self.params["recreate"] != "none":
            raise RollbackError("containers/recreate: cannot be used with registry; a registry retag moves the tag "
                                "only. Run a second task without registry to recreate containers")
        registry = _registry.Registry(self.params["registry"], self.params["registry_username"],
                                      self.params["registry_password"], self.params["validate_certs"],
                                      self.params["ca_path"], self.params["timeout"])
        try:
            planned = _registry.plan(registry, self.params["name"], self.params["repository"])
        except RollbackError as err:
            if "nothing was changed" not in err.msg:
                err.msg += "; nothing was changed"
            raise
        moves = [{k: v for k, v in m.items() if not k.startswith("_")} for m in planned["moves"]]
        image = {"name": self.params["name"], "id": planned["digest"], "media_type": planned["media_type"]}
        result = {"changed": bool(moves), "image": image,
                  "registry": registry.base, "tags": moves, "containers": [], "leftovers": [],
                  "rollback_tags": [m["rollback_tag"] for m in moves if m["rollback_tag"]]}
        if self.diff_mode:
            result["diff"] = {"before_header": registry.base, "after_header": registry.base,
                              "before": _docker.diff_text(moves, [], after=False),
                              "after": _docker.diff_text(moves, [], after=True)}
        if self.check_mode or not moves:
            return result
        result["tags"] = _registry.apply(registry, planned)
        return result


def main():
    ImageRetagModule().main()


if __name__ == "__main__":
    main()
