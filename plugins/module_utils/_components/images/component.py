# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `images` component: Docker `repository:tag -> image id`, and the containers that run them.

Capture records which image each reference points at and, for each container configured with one of the
references, the image it runs and whether it was running. A restore points the references back (the image a
reference pointed at first gets a `rollback-<time>` tag) and recreates the containers on the recorded images
with their own configuration, through the same code as the `image_retag` module: old containers are kept aside
until their replacements are running and healthy, and everything is put back if one is not.
"""

from __future__ import annotations

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import docker as _docker
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components import images as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component

DEFAULT_WAIT = 120.0


def _distinct(values, check, where):
    """Each value checked (and normalized) by check(value, where[i]); one listed twice is refused."""
    out = []
    for index, value in enumerate(values):
        value = check(value, "%s[%d]" % (where, index))
        if value in out:
            raise RollbackError("%s[%d]: %r is listed twice" % (where, index, value))
        out.append(value)
    return out


class ImagesComponent(Component):
    name = "images"
    declaration = declaration
    previewable = True

    def __init__(self, runtime=None):
        super().__init__(runtime)
        # Engine connections of this call only (one per docker_host), closed with the module process.
        self._clients = {}

    def client(self, record):
        host = record.get("docker_host")
        if host not in self._clients:
            self._clients[host] = _docker.connect(host)
        return self._clients[host]

    # ---------------------------------------------------------------- spec
    def normalize(self, spec, where=None):
        # A list of references alone is the short form of {refs: [...]}.
        return super().normalize({"refs": spec} if isinstance(spec, (list, str)) else spec, where)

    def check_spec(self, spec, where):
        refs = spec.get("refs")
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not refs:
            raise RollbackError("%s.refs: give a non-empty list of image references (repo:tag), got %r" % (where, refs))
        out = _distinct(refs, _docker.check_target_ref, where + ".refs")
        containers = spec.get("containers", "by_image")
        if containers in (None, "none", []):
            containers = []
        elif containers != "by_image":
            if isinstance(containers, str):
                containers = [containers]
            if not isinstance(containers, list):
                raise RollbackError("%s.containers: give by_image, none or a list of container names, got %r"
                                    % (where, containers))
            containers = _distinct(containers, _docker.check_container_name, where + ".containers")
        wait = spec.get("wait_timeout", DEFAULT_WAIT)
        _docker.check_seconds(wait, "%s.wait_timeout" % where)
        host = spec.get("docker_host")
        if host is not None:
            host = _docker.check_docker_host(host, "%s.docker_host" % where)
        return {"refs": out, "containers": containers, "docker_host": host, "wait_timeout": float(wait)}

    def check_capturable(self, spec):
        with _docker.engine_errors("checking the images component on the engine"):
            self._check_capturable(spec)

    def _check_capturable(self, spec):
        client = self.client(spec)
        for ref in spec["refs"]:
            if _docker.image_id(client, ref) is None:
                raise RollbackError("components.images.refs: the engine has no image %r; capture only references that "
                                    "exist, or build or pull it first" % ref)
        if spec["containers"] != "by_image":
            for name in spec["containers"]:
                attrs = _docker.inspect_container(client, name)
                if attrs is None:
                    raise RollbackError("components.images.containers: there is no container named %r" % name)
                if _docker.normal_ref(attrs["Config"].get("Image")) not in {_docker.normal_ref(r) for r in spec["refs"]}:
                    raise RollbackError("components.images.containers: container %r runs %r, which is not among refs "
                                        "(%s); add its reference to refs" % (name, attrs["Config"].get("Image"),
                                                                             ", ".join(spec["refs"])))

    def scope(self, record, changes=None):  # pylint: disable=unused-argument
        return {"refs": [r["ref"] for r in record["refs"]], "containers": record["containers_spec"],
                "docker_host": record.get("docker_host"), "wait_timeout": record.get("wait_timeout", DEFAULT_WAIT)}

    # ---------------------------------------------------------------- capture
    def _names(self, client, spec):
        if spec["containers"] == "by_image":
            return _docker.containers_by_image(client, spec["refs"])
        return list(spec["containers"])

    def capture(self, store, spec, point_id=None):
        with _docker.engine_errors("reading images and containers from the engine"):
            return self._capture(spec)

    def _capture(self, spec):
        client = self.client(spec)
        refs = [{"ref": ref, "image": _docker.image_id(client, ref)} for ref in spec["refs"]]
        containers = []
        for name in self._names(client, spec):
            attrs = _docker.inspect_container(client, name)
            if attrs is None:
                continue  # gone between listing and inspecting, or a safety capture of a container now missing
            containers.append({"name": attrs["Name"].lstrip("/"), "image_ref": attrs["Config"].get("Image"),
                               "image": attrs["Image"], "running": bool(attrs["State"].get("Running"))})
        return {"refs": refs, "containers": containers, "containers_spec": spec["containers"],
                "docker_host": spec.get("docker_host"), "wait_timeout": spec.get("wait_timeout", DEFAULT_WAIT)}

    # ---------------------------------------------------------------- plan
    def plan(self, store, record, point_id=""):
        with _docker.engine_errors("planning the images restore of point %s" % point_id):
            return self._plan(record, point_id)

    def _plan(self, record, point_id):
        client = self.client(record)
        exact = record.get("exact")
        changes = []
        wanted = {}
        for item in record["refs"]:
            wanted[_docker.normal_ref(item["ref"])] = item["image"]
            now = _docker.image_id(client, item["ref"])
            if now == item["image"]:
                continue
            if item["image"] and _docker.image_id(client, item["image"]) is None:
                raise RollbackError("point %s: image %s, which %s pointed at, is no longer on this host (removed or "
                                    "pruned); load it again or choose another point; nothing was changed"
                                    % (point_id, _docker.short_id(item["image"]), item["ref"]), image=item["image"])
            changes.append({"action": "retag" if item["image"] else "untag", "ref": item["ref"],
                            "from": {"image": now}, "to": {"image": item["image"]}})
        recorded = {c["name"]: c for c in record["containers"]}
        names = list(recorded)
        if record.get("containers_spec") == "by_image" and not exact:
            names += [n for n in _docker.containers_by_image(client, [r["ref"] for r in record["refs"]])
                      if n not in recorded]
        _docker.check_interrupted(client, [n for n in names if not n.endswith(_docker.ASIDE_SUFFIX)],
                                  [r["ref"] for r in record["refs"]], "point %s: components.images" % point_id)
        for name in names:
            attrs = _docker.inspect_container(client, name)
            item = recorded.get(name)
            if attrs is None:
                if item is not None and record.get("containers_spec") != "by_image" and not exact:
                    raise RollbackError("point %s: container %r no longer exists; this tool recreates containers but "
                                        "does not invent them; recreate it or restore without images; nothing was "
                                        "changed" % (point_id, name), container=name)
                continue
            key = _docker.normal_ref(attrs["Config"].get("Image"))
            want = item["image"] if item else wanted.get(key)
            if item and key not in wanted:
                # Its reference is not one of the point's: recreate it on the recorded image id.
                want = item["image"]
            if want is None or attrs["Image"] == want:
                continue
            if _docker.image_id(client, want) is None:
                raise RollbackError("point %s: image %s that container %r ran is no longer on this host; nothing was "
                                    "changed" % (point_id, _docker.short_id(want), name), image=want)
            _docker.check_recreatable(attrs, "point %s: components.images" % point_id)
            _docker.check_no_aside(client, attrs, "point %s: components.images" % point_id)
            running = bool(attrs["State"].get("Running"))
            changes.append({"action": "recreate", "container": name,
                            "from": {"image": attrs["Image"], "id": attrs["Id"], "running": running},
                            "to": {"image": want, "running": item["running"] if item else running},
                            "image_ref": attrs["Config"].get("Image")})
        return changes

    # ---------------------------------------------------------------- apply
    def apply(self, store, record, changes):
        if not changes:
            return
        client = self.client(record)
        moves = _docker.plan_moves(client, [(c["ref"], c["to"]["image"]) for c in changes
                                            if c["action"] in ("retag", "untag")])
        recreations = [{"container": c["container"], "id": c["from"]["id"], "image_ref": c["image_ref"],
                        "from": c["from"]["image"], "to": c["to"]["image"], "running": c["from"]["running"],
                        "start": c["to"]["running"]} for c in changes if c["action"] == "recreate"]
        # A safety point (exact) puts back what was there, healthy or not: its containers need only start again.
        _docker.execute(client, moves, recreations, record.get("wait_timeout", DEFAULT_WAIT),
                        ready=not record.get("exact"))

    # ---------------------------------------------------------------- diff
    def diff(self, store, record, changes):
        if not changes:
            return []
        before, after = [], []
        for change in changes:
            label = change.get("ref") or "container %s" % change["container"]
            before.append("%s: %s\n" % (label, change["from"]["image"] or "(absent)"))
            after.append("%s: %s\n" % (label, change["to"]["image"] or "(absent)"))
        return [{"before_header": "images", "after_header": "images", "before": "".join(before),
                 "after": "".join(after)}]
