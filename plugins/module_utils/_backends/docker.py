# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving image tags on a Docker engine and recreating the containers that run them.

The work is split in two steps so check mode can stop after the first:

- `plan_moves` / `plan_containers` read the engine and say what would change (image ids before and after,
  containers to recreate). Bad input (a missing source image, a missing container) fails here, before anything
  is touched.
- `execute` makes it so. Before a tag moves, the image it pointed to gets a `rollback-<time>` tag. A container
  is stopped and renamed aside (never removed) until its replacement is running, and healthy when it has a
  health check. If any step fails, the tags are put back, the new containers are removed and the old ones are
  renamed back and started again, and the error says what state each one is in.

The Docker SDK for Python is imported lazily: hosts without it can still run every other component.
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ansible_collections.fleetops.rollback.plugins.module_utils._common import PROGRESS, RollbackError, Terminated
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_text

try:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
except ImportError:  # pragma: no cover - reported by require_sdk()
    docker = None
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    class DockerException(Exception):
        pass

    APIError = ImageNotFound = NotFound = DockerException
else:
    DOCKER_IMPORT_ERROR = None

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
ROLLBACK_TAG_PREFIX = "rollback-"
ASIDE_SUFFIX = ".fleetops-old"
DEFAULT_NETWORKS = ("default", "bridge", "host", "none")
# Poll intervals while waiting for containers: short at first (most containers answer within a second), capped.
POLL_FIRST, POLL_MAX = 0.05, 0.25
PARALLEL = 8

_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_ID_RE = re.compile(r"(sha256:)?[0-9a-f]{12,64}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_REPO_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                      r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Docker's own rule for container names (a leading / is how the API spells them).
_CONTAINER_RE = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# The engine refuses a repository name longer than this.
MAX_NAME = 255
# Upper bounds of the number options: past them a value is a typo, and the SDK or the clock would overflow.
MAX_SECONDS = 7 * 24 * 3600


# ---------------------------------------------------------------------------------------------- references
def split_ref(ref):
    """`[registry/]repo[:tag][@digest]` -> (repository, tag or None, digest or None)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1:]
    return ref, tag, digest


def _registry_host(first):
    return "." in first or ":" in first or first == "localhost"


def _text(value, where, what):
    """A string option that must be printable text: refused, naming it, when it is not."""
    if not isinstance(value, str) or not value.strip():
        raise RollbackError("%s: %r is not %s" % (where, value, what))
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise RollbackError("%s: %r holds a control character (NUL, newline, ...); give %s" % (where, value, what))
    return value.strip()


def _check_repo(repo, where, ref):
    if len(repo) > MAX_NAME:
        raise RollbackError("%s: %r is not a valid image reference: the repository name is longer than %d characters"
                            % (where, ref, MAX_NAME))
    first, _slash, rest = repo.partition("/")
    # As the engine reads it: a first part that looks like a host names the registry.
    path = rest if rest and _registry_host(first) and _HOST_RE.fullmatch(first) else repo
    if not _REPO_RE.fullmatch(path):
        raise RollbackError("%s: %r is not a valid repository name (lowercase letters, digits, '.', '_', '-' and "
                            "'/'); give repo:tag, for example app:latest" % (where, ref))


def check_target_ref(ref, where="repository"):
    """A reference a tag can be set on: `repo[:tag]` (tag defaults to latest). Returns `repo:tag`."""
    ref = _text(ref, where, "an image reference (repo:tag, for example app:latest)")
    repo, tag, digest = split_ref(ref)
    if digest is not None:
        raise RollbackError("%s: %r holds a digest; a digest cannot be moved, give repo:tag" % (where, ref))
    _check_repo(repo, where, ref)
    tag = "latest" if tag is None else tag
    if not _TAG_RE.fullmatch(tag):
        raise RollbackError("%s: tag %r of %r is not a valid tag (letters, digits, '_', '.', '-'; at most 128)"
                            % (where, tag, ref))
    return "%s:%s" % (repo, tag)


def check_source_ref(ref, where="name"):
    """The image to point tags at: `repo[:tag]`, `repo@sha256:<64 hex>` or an image id. Returns it stripped."""
    ref = _text(ref, where, "an image reference (repo:tag, repo@sha256:<digest> or an image id)")
    if _ID_RE.fullmatch(ref):
        return ref
    repo, tag, digest = split_ref(ref)
    if digest is not None and not _DIGEST_RE.fullmatch(digest):
        raise RollbackError("%s: %r has a malformed digest %r; a digest is sha256: and 64 hex digits"
                            % (where, ref, digest))
    _check_repo(repo, where, ref)
    if tag is not None and not _TAG_RE.fullmatch(tag):
        raise RollbackError("%s: tag %r of %r is not a valid tag (letters, digits, '_', '.', '-'; at most 128)"
                            % (where, tag, ref))
    return ref


def check_container_name(name, where="containers"):
    name = _text(name, where, "a container name (container names are letters, digits, '_', '.', '-')")
    if not _CONTAINER_RE.fullmatch(name):
        raise RollbackError("%s: %r is not a container name (container names are letters, digits, '_', '.', '-'; at "
                            "least 2 characters)" % (where, name))
    return name.lstrip("/")


def check_seconds(value, where, allow_zero=False):
    """A number of seconds: above 0 (or 0 when allowed) and at most a week."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise RollbackError("%s: %r is not a number of seconds" % (where, value))
    if value < 0 or (value == 0 and not allow_zero):
        raise RollbackError("%s: %r must be %s seconds" % (where, value, "0 or more" if allow_zero else "more than 0"))
    if value > MAX_SECONDS:
        raise RollbackError("%s: %r seconds is more than a week (%d); give a sensible number of seconds"
                            % (where, value, MAX_SECONDS))
    return value


def check_docker_host(value, where="docker_host"):
    """An engine address: unix://, tcp://, http(s)://, ssh:// (no credentials in it)."""
    value = _text(value, where, "an engine address such as unix:///var/run/docker.sock")
    scheme = value.split("://", 1)[0].lower() if "://" in value else None
    if scheme not in ("unix", "tcp", "http", "https", "ssh", "npipe") or not value.split("://", 1)[1]:
        raise RollbackError("%s: %r is not an engine address; give unix:///path/to/docker.sock, tcp://host:port or "
                            "ssh://user@host" % (where, redact_text(value)))
    if scheme != "ssh" and re.search(r"://[^/@]*:[^/@]*@", value):
        raise RollbackError("%s: %r carries credentials; an engine address never does (use TLS client certificates "
                            "for a tcp:// engine)" % (where, redact_text(value)))
    return value


def normal_ref(ref):
    """The form two spellings of one reference share: no docker.io/library prefix, an explicit tag."""
    if not ref or _ID_RE.fullmatch(ref):
        return ref
    repo, tag, digest = split_ref(ref)
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            if repo.startswith("library/") and repo.count("/") == 1:
                repo = repo[len("library/"):]
            break
    if digest:
        return "%s@%s" % (repo, digest)
    return "%s:%s" % (repo, tag or "latest")


def rollback_tag_for(ref, now=None):
    """`repo:rollback-<UTC time>` for the image a tag points to before it is moved."""
    repo = split_ref(ref)[0]
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
    return "%s:%s%s" % (repo, ROLLBACK_TAG_PREFIX, stamp)


def short_id(image_id):
    if not image_id:
        return None
    return image_id.split(":", 1)[-1][:12]


# ---------------------------------------------------------------------------------------------- engine
def require_sdk():
    if docker is None:
        raise RollbackError("the Docker SDK for Python is not installed for %s on this host; install it (pip install "
                            "docker) in the interpreter Ansible uses here" % sys.executable,
                            exception=DOCKER_IMPORT_ERROR)


def connect(docker_host=None, timeout=60):
    """An APIClient for docker_host (default: $DOCKER_HOST or the local socket), after a ping."""
    require_sdk()
    if docker_host is not None:
        base_url, where = check_docker_host(docker_host), "docker_host"
    elif os.environ.get("DOCKER_HOST"):
        base_url, where = check_docker_host(os.environ["DOCKER_HOST"], "DOCKER_HOST"), "DOCKER_HOST"
    else:
        base_url, where = DEFAULT_DOCKER_HOST, "docker_host"
    check_seconds(timeout, "timeout")
    shown = redact_text(base_url)
    if base_url.startswith("unix://"):
        path = base_url[len("unix://"):]
        problem = None
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                problem = "%s is not a socket" % path
        except OSError as err:
            problem = "%s: %s" % (path, err.strerror)
        if problem:
            raise RollbackError("%s: cannot reach a Docker engine at %s (%s); start dockerd or give the right "
                                "docker_host; nothing was changed" % (where, shown, problem), docker_host=shown)
    try:
        client = docker.APIClient(base_url=base_url, version="auto", timeout=timeout)
        client.ping()
    except (DockerException, OSError, ValueError, OverflowError) as err:
        raise RollbackError("%s: cannot reach a Docker engine at %s (%s); start dockerd or give the right "
                            "docker_host; nothing was changed" % (where, shown, redact_text(str(err))), docker_host=shown)
    return client


class engine_errors:  # pylint: disable=invalid-name
    """Report an engine failure while reading it (planning): the step, the engine's words, and that nothing was
    changed. A RollbackError passes through as it is."""

    def __init__(self, step):
        self.step = step

    def __enter__(self):
        PROGRESS.at(self.step)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, (DockerException, OSError)) \
                and not issubclass(exc_type, RollbackError):
            raise RollbackError("the Docker engine failed while %s: %s; nothing was changed"
                                % (self.step, redact_text(_error_text(exc)))) from None
        return False


def image_id(client, ref):
    """The id a reference (repo:tag, id or digest) resolves to, or None if the engine has no such image."""
    try:
        return client.inspect_image(ref)["Id"]
    except (ImageNotFound, NotFound):
        return None
    except APIError as err:
        if getattr(err, "status_code", None) in (400, 404):
            return None
        raise


def tag(client, image, ref):
    repo, tag_, _digest = split_ref(ref)
    if not client.tag(image, repo, tag_, force=True):
        raise RollbackError("docker refused to tag %s as %s" % (short_id(image), ref))


def untag(client, ref):
    """Remove one tag; the image itself stays while other tags or containers use it."""
    try:
        client.remove_image(ref, noprune=True)
    except (ImageNotFound, NotFound):
        pass


def _container_name(attrs):
    return attrs["Name"].lstrip("/")


def inspect_container(client, name):
    try:
        return client.inspect_container(name)
    except NotFound:
        return None


# ---------------------------------------------------------------------------------------------- planning
def plan_moves(client, wanted, now=None):
    """wanted: [(target ref, image id or None)] -> the tag moves needed, each with its rollback tag.

    A move is {ref, from, to, rollback_tag}; `from` is the image the tag points at now (None if the tag is new),
    `to` None removes the tag (only a safety revert asks for that)."""
    moves = []
    now = now or datetime.now(timezone.utc)
    for ref, want in wanted:
        have = image_id(client, ref)
        if have == want:
            continue
        moves.append({"ref": ref, "from": have, "to": want,
                      "rollback_tag": rollback_tag_for(ref, now) if have else None})
    return moves


def containers_by_image(client, refs):
    """Every container (any state) whose configured image reference is one of refs: {name: attrs summary}."""
    wanted = {normal_ref(r) for r in refs}
    found = []
    for row in client.containers(all=True):
        if row.get("State") in ("removing", "dead"):
            continue
        # The listing shows an image id once the reference has moved away from the container's image: read the
        # configured reference itself.
        attrs = inspect_container(client, row["Id"])
        if attrs and normal_ref(attrs["Config"].get("Image")) in wanted \
                and not _container_name(attrs).endswith(ASIDE_SUFFIX):
            found.append(_container_name(attrs))
    return sorted(found)


def _describe(attrs):
    state = attrs.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    return "id %s, image %s, %s%s" % (attrs["Id"][:12], short_id(attrs.get("Image")), state.get("Status"),
                                      ", %s" % health if health else "")


def check_interrupted(client, names, refs, where="containers"):
    """Refuse to go on while a container of this task is still set aside by an interrupted run (killed between
    stopping the old container and proving the new one): the aside one is the only copy of the previous
    container, and the one under the real name may never have been started. Nothing is changed; the message says
    what each container is and how to finish either way."""
    wanted = {normal_ref(r) for r in refs}
    for row in client.containers(all=True):
        aside = next((n.lstrip("/") for n in row.get("Names") or [] if n.endswith(ASIDE_SUFFIX)), None)
        if aside is None:
            continue
        attrs = inspect_container(client, row["Id"])
        base = aside[:-len(ASIDE_SUFFIX)]
        if attrs is None:
            continue
        current = inspect_container(client, base)
        # Ours when its container is part of this task, or when that container is gone (killed before the
        # replacement was created) and the set-aside one runs a reference this task moves.
        if base not in names and (current is not None or normal_ref(attrs["Config"].get("Image")) not in wanted):
            continue
        now = ("%s (%s)" % (base, _describe(current))) if current else "missing (the run stopped before creating it)"
        raise RollbackError(
            "%s: a container named %r exists, left by an interrupted retag: it is the container %r ran before (%s), "
            "set aside while its replacement was made; %r is now %s. Nothing was changed by this run. To keep the "
            "replacement: docker rm %s, then run again. To go back to the previous container: docker rm -f %s; docker "
            "rename %s %s; docker start %s"
            % (where, aside, base, _describe(attrs), base, now, aside, base, aside, base, base),
            container=aside, interrupted=True)


def plan_containers(client, names, planned, where="containers"):
    """Which of the named containers need recreating.

    planned: {normal ref: image id} the references will point at after the moves. Returns a list of
    {container, id, image_ref, from, to, running}; a container already on its image is left out. A missing
    container, or one whose image reference is not among the moved ones, fails before anything changes."""
    out = []
    for name in names:
        attrs = inspect_container(client, name)
        if attrs is None:
            raise RollbackError("%s: there is no container named %r on this engine; nothing was changed"
                                % (where, name), container=name)
        ref = attrs["Config"].get("Image")
        key = normal_ref(ref)
        if key not in planned:
            raise RollbackError("%s: container %r runs %r, which is not among the references this task moves (%s); "
                                "recreating it would not change its image; nothing was changed"
                                % (where, name, ref, ", ".join(sorted(planned)) or "none"), container=name)
        if attrs["Image"] == planned[key]:
            continue
        check_recreatable(attrs, where)
        check_no_aside(client, attrs, where)
        out.append({"container": _container_name(attrs), "id": attrs["Id"], "image_ref": ref,
                    "from": attrs["Image"], "to": planned[key], "running": bool(attrs["State"].get("Running"))})
    return out


def check_recreatable(attrs, where="containers"):
    """Refuse, before anything changes, a container that cannot be kept aside until its replacement is proven."""
    if (attrs.get("HostConfig") or {}).get("AutoRemove"):
        raise RollbackError("%s: container %r was started with --rm (AutoRemove): stopping it deletes it, so it could "
                            "not be put back if its replacement failed; recreate it yourself; nothing was changed"
                            % (where, _container_name(attrs)), container=_container_name(attrs))


def check_no_aside(client, attrs, where="containers"):
    """A `<name>.fleetops-old` left by an interrupted run is the previous container: never overwrite it."""
    aside = _container_name(attrs) + ASIDE_SUFFIX
    if inspect_container(client, aside) is not None:
        raise RollbackError("%s: a container named %r exists, left by an interrupted retag: it is the container %r ran "
                            "before; check which one to keep, remove the other or rename it back, then run again; "
                            "nothing was changed" % (where, aside, _container_name(attrs)), container=aside)


# ---------------------------------------------------------------------------------------------- container spec
def _differs(container_value, image_value):
    return (container_value or None) != (image_value or None)


def create_config(attrs, image_attrs, image=None):
    """The create request that gives a container like `attrs` again, on `image` (default: its image reference).

    Values the container only has because its old image set them (Env, Labels, Cmd, Entrypoint, WorkingDir,
    User, ExposedPorts, Volumes, Healthcheck, StopSignal) are left out, so the new image's defaults apply;
    what was set on the container itself is kept. Anonymous volumes are re-attached by name so no data is
    left behind. Networks other than the first are returned separately: the API connects them after create.
    Returns (config, extra_networks {name: endpoint settings})."""
    cfg = attrs.get("Config") or {}
    icfg = (image_attrs or {}).get("Config") or {}
    host = dict(attrs.get("HostConfig") or {})
    config = {"Image": image or cfg.get("Image")}

    image_env = set(icfg.get("Env") or [])
    env = [item for item in cfg.get("Env") or [] if item not in image_env]
    if env:
        config["Env"] = env
    image_labels = icfg.get("Labels") or {}
    labels = {k: v for k, v in (cfg.get("Labels") or {}).items() if image_labels.get(k) != v}
    if labels:
        config["Labels"] = labels
    if _differs(cfg.get("Entrypoint"), icfg.get("Entrypoint")):
        # An explicit entrypoint resets the image's command: keep both exactly as the container had them.
        config["Entrypoint"] = cfg.get("Entrypoint") or [""]
        config["Cmd"] = cfg.get("Cmd")
    elif _differs(cfg.get("Cmd"), icfg.get("Cmd")):
        config["Cmd"] = cfg.get("Cmd")
    for key in ("WorkingDir", "User", "StopSignal", "Healthcheck"):
        if _differs(cfg.get(key), icfg.get(key)):
            config[key] = cfg.get(key)
    for key in ("ExposedPorts", "Volumes"):
        extra = {k: v for k, v in (cfg.get(key) or {}).items() if k not in (icfg.get(key) or {})}
        if extra:
            config[key] = extra
    if cfg.get("Hostname") and cfg["Hostname"] != attrs.get("Id", "")[:12]:
        config["Hostname"] = cfg["Hostname"]
    # Settings only a container has (OnBuild, Shell and ArgsEscaped are image build settings and stay out).
    for key in ("Domainname", "Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr",
                "StopTimeout", "MacAddress"):
        if cfg.get(key) not in (None, "", False, []):
            config[key] = cfg[key]

    # Legacy links come back from inspect as "/db:/web/db"; create wants "db:db".
    if host.get("Links"):
        host["Links"] = ["%s:%s" % (src.lstrip("/"), dst.rsplit("/", 1)[-1])
                         for src, dst in (link.split(":", 1) for link in host["Links"])]
    # Anonymous volumes: give the new container the same ones, by name.
    taken = {b.split(":")[1] if ":" in b else b for b in host.get("Binds") or []}
    taken |= {m.get("Target") for m in host.get("Mounts") or []}
    binds = list(host.get("Binds") or [])
    for mount in attrs.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Destination") not in taken and mount.get("Name"):
            binds.append("%s:%s%s" % (mount["Name"], mount["Destination"], "" if mount.get("RW", True) else ":ro"))
    if binds:
        host["Binds"] = binds
    config["HostConfig"] = host

    networks = dict((attrs.get("NetworkSettings") or {}).get("Networks") or {})
    mode = host.get("NetworkMode") or "default"
    own_alias = attrs.get("Id", "")[:12]
    endpoints = {}
    for net, settings in networks.items():
        endpoint = {}
        aliases = [a for a in settings.get("Aliases") or [] if a != own_alias]
        if aliases and net not in DEFAULT_NETWORKS:
            endpoint["Aliases"] = aliases
        if settings.get("IPAMConfig"):
            endpoint["IPAMConfig"] = settings["IPAMConfig"]
        if settings.get("Links"):
            endpoint["Links"] = settings["Links"]
        if settings.get("DriverOpts"):
            endpoint["DriverOpts"] = settings["DriverOpts"]
        endpoints[net] = endpoint
    extra = {}
    primary = "bridge" if mode == "default" else mode
    if primary in endpoints and not primary.startswith("container:"):
        if endpoints[primary]:
            config["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints[primary]}}
        extra = {net: ep for net, ep in endpoints.items() if net != primary}
    elif not mode.startswith("container:") and mode not in ("host", "none"):
        extra = endpoints
    return config, extra


# ---------------------------------------------------------------------------------------------- waiting
def _health_wanted(attrs):
    test = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


def container_verdict(attrs, ready=True):
    """(done, problem) for a just-started container: done when running (and healthy if it has a check).
    With ready=False (putting back a state exactly as it was, which may have been a failing container), done as
    soon as it has started, whatever became of it."""
    state = attrs.get("State") or {}
    status = state.get("Status")
    if not ready:
        return bool(state.get("StartedAt", "0001")[:4] != "0001" or state.get("Running")), None
    if status in ("exited", "dead") or (status == "created" and state.get("FinishedAt", "0001")[:4] != "0001"):
        return True, "%s with exit code %s%s" % (status, state.get("ExitCode"),
                                                 (": " + redact_text(state["Error"])) if state.get("Error") else "")
    if state.get("Restarting") or attrs.get("RestartCount"):
        return True, "restarting (restarted %s times; exit code %s)" % (attrs.get("RestartCount"), state.get("ExitCode"))
    if not state.get("Running"):
        return False, None
    if _health_wanted(attrs):
        health = state.get("Health") or {}
        if health.get("Status") == "healthy":
            return True, None
        if health.get("Status") == "unhealthy":
            log = (health.get("Log") or [{}])[-1]
            output = redact_text((log.get("Output") or "").strip()[:200])
            return True, "unhealthy (last check exit %s: %s)" % (log.get("ExitCode"), output)
        return False, None
    return True, None


def wait_ready(client, ids, deadline, ready=True):
    """Poll each container until running (and healthy when it has a check) or failed, or the deadline passes.

    Returns {id: problem or None}."""
    pending = list(ids)
    outcome = {}
    delay = POLL_FIRST
    while pending:
        for cid in list(pending):
            try:
                attrs = client.inspect_container(cid)
            except NotFound:
                outcome[cid] = "the container disappeared"
                pending.remove(cid)
                continue
            done, problem = container_verdict(attrs, ready)
            if done:
                outcome[cid] = problem
                pending.remove(cid)
            elif time.monotonic() >= deadline:
                state = attrs.get("State") or {}
                outcome[cid] = "not ready before the deadline (status %s, health %s)" % (
                    state.get("Status"), (state.get("Health") or {}).get("Status", "none"))
                pending.remove(cid)
        if pending:
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())) or 0.01)
            delay = min(delay * 2, POLL_MAX)
    return outcome


# ---------------------------------------------------------------------------------------------- execution
def _parallel(func, items):
    """Run func on each item (at most PARALLEL at once); return [(item, exception or None)] in order."""
    if not items:
        return []

    def guarded(item):
        try:
            func(item)
            return None
        except Exception as err:  # pylint: disable=broad-except
            return err

    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(items))) as pool:
        return list(zip(items, pool.map(guarded, items)))


def _error_text(err):
    text = getattr(err, "msg", None) or getattr(err, "explanation", None) or "%s: %s" % (type(err).__name__, err)
    return redact_text(str(text))


class Recreation:
    """One container being replaced: the old one kept aside until the new one is proven."""

    def __init__(self, item):
        self.item = item
        self.name = item["container"]
        self.old_id = item["id"]
        self.was_running = item["running"]
        self.start = item.get("start", True)
        self.stopped = self.renamed = False
        self.new_id = None
        self.seconds = None
        self.began = None


def execute(client, moves, recreations, wait_timeout=120.0, stop_timeout=None, ready=True):
    """Apply tag moves then recreate containers; undo everything on failure. `ready=False` puts back a state exactly
    as it was (a safety point): the containers need to start, not to become healthy, as they may not have been.

    Returns {tags, rollback_tags, containers, leftovers}. Raises RollbackError saying what state things are in.
    An interruption (KeyboardInterrupt, SystemExit) is undone the same way and then re-raised."""
    tags_done, rollback_tags = [], []
    work = [Recreation(item) for item in recreations]
    try:
        for move in moves:
            PROGRESS.at("moving tag %s" % move["ref"], state=_progress_state(tags_done, rollback_tags, work))
            if move["from"] and move["rollback_tag"]:
                tag(client, move["from"], move["rollback_tag"])
                rollback_tags.append(move["rollback_tag"])
            if move["to"]:
                tag(client, move["to"], move["ref"])
            else:
                untag(client, move["ref"])
            tags_done.append(move)
        if work:
            PROGRESS.at("recreating containers %s" % ", ".join(rec.name for rec in work),
                        state=_progress_state(tags_done, rollback_tags, work))
            _recreate(client, work, wait_timeout, stop_timeout, ready)
    except BaseException as err:  # pylint: disable=broad-except
        if isinstance(err, Terminated):
            message = "stopped by SIGTERM while %s" % PROGRESS.step
        else:
            message = redact_text(_error_text(err))
        PROGRESS.at("putting tags and containers back after: %s" % message,
                    state="tags and containers partly changed: %s" % _progress_state(tags_done, rollback_tags, work))
        state = _undo(client, tags_done, rollback_tags, work, wait_timeout)
        if not isinstance(err, Exception):
            raise
        details = dict(getattr(err, "details", {}) or {})
        details.update(state)
        if state["undo_errors"]:
            raise RollbackError("%s; putting things back ALSO failed: %s. Current state: %s"
                                % (message, "; ".join(state["undo_errors"]), _state_text(state)), **details)
        raise RollbackError("%s; everything was put back as it was (%s)" % (message, _state_text(state)), **details)
    # Proven: the old containers can go (their anonymous volumes stay, the new containers use them).
    leftovers = []
    PROGRESS.at("removing the replaced containers", state="tags moved and containers recreated; the replaced "
                "containers are still there, named <name>%s" % ASIDE_SUFFIX)
    for rec in work:
        try:
            client.remove_container(rec.old_id, v=False, force=True)
        except APIError as err:
            leftovers.append("%s (%s)" % (rec.name + ASIDE_SUFFIX, _error_text(err)))
    report = [{"container": rec.name, "action": "recreate", "before": {"id": rec.old_id, "image": rec.item["from"]},
               "after": {"id": rec.new_id, "image": rec.item["to"]}, "started": rec.start,
               "seconds": rec.seconds} for rec in work]
    return {"tags": moves, "rollback_tags": rollback_tags, "containers": report, "leftovers": leftovers}


def _recreate(client, work, wait_timeout, stop_timeout, ready=True):
    specs = {}
    for rec in work:
        attrs = client.inspect_container(rec.old_id)
        image_attrs = client.inspect_image(attrs["Image"])
        specs[rec.name] = create_config(attrs, image_attrs, image=_image_for(client, rec.item))
        rec.stop_timeout = stop_timeout if stop_timeout is not None else (attrs["Config"].get("StopTimeout") or 10)

    def replace(rec):
        # One container at a time through stop, set aside, create and start: each one's downtime and health
        # clock start as early as possible, and the containers go through in parallel.
        rec.began = time.monotonic()
        if rec.was_running:
            client.stop(rec.old_id, timeout=rec.stop_timeout)
            rec.stopped = True
        client.rename(rec.old_id, rec.name + ASIDE_SUFFIX)
        rec.renamed = True
        config, extra = specs[rec.name]
        created = client.create_container_from_config(config, name=rec.name)
        rec.new_id = created["Id"]
        for net, endpoint in extra.items():
            ipam = endpoint.get("IPAMConfig") or {}
            client.connect_container_to_network(
                rec.new_id, net, aliases=endpoint.get("Aliases"), links=endpoint.get("Links"),
                ipv4_address=ipam.get("IPv4Address") or None, ipv6_address=ipam.get("IPv6Address") or None,
                link_local_ips=ipam.get("LinkLocalIPs") or None, driver_opt=endpoint.get("DriverOpts"))
        got = client.inspect_container(rec.new_id)["Image"]
        if got != rec.item["to"]:
            raise RollbackError("container %s was created on image %s, not the expected %s (did the tag move "
                                "meanwhile?)" % (rec.name, short_id(got), short_id(rec.item["to"])))
        if rec.start:
            client.start(rec.new_id)

    _raise_first(_parallel(replace, work), "recreating")
    started = [rec for rec in work if rec.start]
    outcome = wait_ready(client, [rec.new_id for rec in started], time.monotonic() + wait_timeout, ready)
    for rec in work:
        rec.seconds = round(time.monotonic() - rec.began, 3)
    bad = ["%s: %s" % (rec.name, outcome[rec.new_id]) for rec in started if outcome.get(rec.new_id)]
    if bad:
        raise RollbackError("recreated containers did not become ready on the new image: %s" % "; ".join(bad),
                            not_ready={rec.name: outcome[rec.new_id] for rec in started if outcome.get(rec.new_id)})


def _image_for(client, item):
    """Create on the container's own reference when it now resolves to the wanted image, else on the id."""
    ref = item.get("image_ref")
    if ref and image_id(client, ref) == item["to"]:
        return ref
    return item["to"]


def _raise_first(results, what):
    errors = ["%s: %s" % (rec.name, _error_text(err)) for rec, err in results if err is not None]
    if errors:
        raise RollbackError("%s containers failed: %s" % (what, "; ".join(errors)))


def _undo(client, tags_done, rollback_tags, work, wait_timeout):
    """Put back tags and old containers. Returns {tags_state, containers_state, undo_errors}."""
    errors = []
    containers_state = {}
    for rec in work:
        try:
            if rec.new_id:
                client.remove_container(rec.new_id, v=False, force=True)
            if rec.renamed:
                client.rename(rec.old_id, rec.name)
            if rec.stopped:
                client.start(rec.old_id)
            containers_state[rec.name] = "old container %s back%s" % (rec.old_id[:12], " and started" if rec.stopped else "")
        except Exception as err:  # pylint: disable=broad-except
            containers_state[rec.name] = "UNKNOWN (old container %s, new %s)" % (rec.old_id[:12], (rec.new_id or "none")[:12])
            errors.append("container %s: %s" % (rec.name, _error_text(err)))
    restarted = [rec for rec in work if rec.stopped and "UNKNOWN" not in containers_state[rec.name]]
    if restarted:
        outcome = wait_ready(client, [rec.old_id for rec in restarted], time.monotonic() + wait_timeout)
        for rec in restarted:
            if outcome.get(rec.old_id):
                containers_state[rec.name] += " but %s" % outcome[rec.old_id]
                errors.append("container %s after restart: %s" % (rec.name, outcome[rec.old_id]))
    tags_state = {}
    kept = set()
    for move in reversed(tags_done):
        try:
            if move["from"]:
                tag(client, move["from"], move["ref"])
            else:
                untag(client, move["ref"])
            tags_state[move["ref"]] = short_id(move["from"]) or "absent"
        except Exception as err:  # pylint: disable=broad-except
            tags_state[move["ref"]] = "UNKNOWN"
            errors.append("tag %s: %s" % (move["ref"], _error_text(err)))
            # The tag was not put back: its rollback tag is the one name left on the image it pointed at.
            if move["rollback_tag"]:
                kept.add(move["rollback_tag"])
                errors.append("%s kept: it names the image %s pointed at" % (move["rollback_tag"], move["ref"]))
    for ref in rollback_tags:
        if ref in kept:
            continue
        try:
            untag(client, ref)
        except Exception as err:  # pylint: disable=broad-except
            errors.append("rollback tag %s left in place: %s" % (ref, _error_text(err)))
    return {"tags_state": tags_state, "containers_state": containers_state, "undo_errors": errors}


def _progress_state(tags_done, rollback_tags, work):
    """What has changed so far, for a failure that gets no chance to put it back."""
    parts = ["tag %s moved from %s to %s" % (m["ref"], short_id(m["from"]) or "(absent)", short_id(m["to"]) or "(absent)")
             for m in tags_done]
    if rollback_tags:
        parts.append("previous images kept as %s" % ", ".join(rollback_tags))
    for rec in work:
        if rec.renamed:
            parts.append("container %s set aside as %s%s, replacement %s" % (
                rec.name, rec.name, ASIDE_SUFFIX, (rec.new_id or "not created")[:12]))
        elif rec.stopped:
            parts.append("container %s stopped" % rec.name)
    return "; ".join(parts) or "nothing on the host was changed"


def _state_text(state):
    parts = ["%s -> %s" % kv for kv in sorted(state["tags_state"].items())]
    parts += ["%s: %s" % kv for kv in sorted(state["containers_state"].items())]
    return "; ".join(parts) or "nothing had changed yet"


# ---------------------------------------------------------------------------------------------- diff
def diff_text(moves, containers, after):
    lines = []
    for move in moves:
        lines.append("%s -> %s\n" % (move["ref"], (move["to"] if after else move["from"]) or "(absent)"))
    for item in containers:
        lines.append("container %s: %s\n" % (item["container"], item["to"] if after else item["from"]))
    return "".join(lines)
