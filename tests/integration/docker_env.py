"""A real Docker engine (and registry) for the tests and the images benchmark, set up from nothing.

- `ensure_engine()`: tools/docker_engine.py installs docker.io when dockerd is missing and starts dockerd in the
  background when no engine answers on the local socket (pidfile /run/fleetops-dockerd.pid, log
  /var/log/fleetops-dockerd.log). It is left running: the next test run or benchmark reuses it.
- `build_app_images(client, repo)` builds the test application with no registry: a scratch image holding a
  static busybox that serves HTTP with `busybox httpd` (tags v1 healthy, v2 unhealthy, broken exits at once).
- `Registry` runs Debian's docker-registry on 127.0.0.1 with a temporary config and storage.

apt-get (tools/system_packages.py) and starting dockerd each run under a machine-wide file lock, so two
pytest-xdist workers, or a test run and `make molecule`, can call these at once.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings

import docker

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tools import docker_engine  # noqa: E402  pylint: disable=wrong-import-position
from tools.system_packages import apt_install  # noqa: E402  pylint: disable=wrong-import-position

SOCKET = "unix://" + docker_engine.SOCKET_PATH


def ensure_engine():
    """A Docker engine answering on the local socket (tools/docker_engine.py installs docker.io and starts
    dockerd when needed, under the lock every caller on the machine shares); returns a docker.DockerClient."""
    try:
        docker_engine.ensure_engine()
    except docker_engine.EngineError as exc:
        raise RuntimeError(str(exc)) from None
    return docker.DockerClient(base_url=SOCKET, version="auto", timeout=120)


def _static_busybox():
    path = "/bin/busybox"
    if not os.path.exists(path):
        return None
    with open(path, "rb") as stream:
        head = stream.read(4096)
    return None if b"ld-linux" in head else path


def ensure_busybox():
    if not _static_busybox():
        apt_install("busybox-static")
    path = _static_busybox()
    if not path:
        raise RuntimeError("/bin/busybox is not statically linked even after installing busybox-static")
    return path


# The application: busybox httpd on 8080 serving /www; /cgi-bin/env shows the environment it runs with.
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/www/cgi-bin", "/data"]
RUN ["/bin/busybox", "--install", "-s"]
ENV PATH=/bin:/usr/bin:/sbin:/usr/sbin APP_VERSION={version} APP_MODE=image-default
LABEL org.fleetops.test.version={version} org.fleetops.test.base=busybox
RUN printf '#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\nenv\\n' > /www/cgi-bin/env \\
 && chmod +x /www/cgi-bin/env && echo {version} > /www/version {health}
HEALTHCHECK --interval=1s --timeout=10s --retries=3 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
VOLUME /data
EXPOSE 8080
CMD {cmd}
"""
SERVE = '["httpd", "-f", "-p", "8080", "-h", "/www"]'
VARIANTS = {
    "v1": {"health": "&& echo ok > /www/health", "cmd": SERVE},      # healthy
    "v2": {"health": "", "cmd": SERVE},                               # serves, but /health is 404: unhealthy
    "broken": {"health": "&& echo ok > /www/health", "cmd": '["false"]'},  # exits at once
}


def build_app_images(client, repo, variants=("v1", "v2", "broken")):
    """Build repo:<variant> for each variant; returns {variant: image id}."""
    busybox = ensure_busybox()
    ids = {}
    with tempfile.TemporaryDirectory(prefix="fleetops-img-") as ctx:
        shutil.copy2(busybox, os.path.join(ctx, "busybox"))
        for variant in variants:
            with open(os.path.join(ctx, "Dockerfile"), "w", encoding="utf-8") as stream:
                stream.write(DOCKERFILE.format(version=variant, **VARIANTS[variant]))
            image, _logs = client.images.build(path=ctx, tag="%s:%s" % (repo, variant), rm=True, forcerm=True)
            ids[variant] = image.id
    return ids


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url, timeout=5):
    """(status, body) of a GET; status None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None, ""


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def health_of(client, name):
    attrs = client.api.inspect_container(name)
    return (attrs["State"].get("Health") or {}).get("Status"), attrs


def cleanup(client, prefix, repos=()):
    """Remove every container whose name starts with prefix, every network and volume named so, and the repos."""
    volumes = set()
    for row in client.api.containers(all=True):
        if any(n.lstrip("/").startswith(prefix) for n in row.get("Names") or []):
            # A recreated container mounts its predecessor's anonymous volume by name, so `rm -v` keeps it.
            volumes |= {m["Name"] for m in row.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")}
            client.api.remove_container(row["Id"], v=True, force=True)
    for net in client.networks.list():
        if net.name.startswith(prefix):
            net.remove()
    for vol in client.volumes.list():
        if vol.name.startswith(prefix) or vol.name in volumes:
            with contextlib.suppress(docker.errors.APIError):
                vol.remove(force=True)
    for image in client.images.list():
        for tag_ in image.tags:
            if any(tag_.startswith(r + ":") for r in repos):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(tag_, noprune=False)


COUNTER = itertools.count()


class Scene:
    """One test's own repository (tags of the shared images), network, volume and containers."""

    def __init__(self, client, images, tmp_path):
        self.client = client
        self.api = client.api
        self.images = images
        self.prefix = "fleetops-test-%d-%d" % (os.getpid(), next(COUNTER))
        self.repo = self.prefix + "/app"
        self.repos = [self.repo]
        self.tmp_path = tmp_path
        for variant in ("v1", "v2", "broken"):
            self.tag(variant, variant)

    def ref(self, tag):
        return "%s:%s" % (self.repo, tag)

    def tag(self, variant, tag):
        self.api.tag(self.images[variant], self.repo, tag, force=True)

    def name(self, short):
        return "%s-%s" % (self.prefix, short)

    def run(self, short, image_tag="latest", port=None, **kwargs):
        options = dict(detach=True, name=self.name(short), init=True)
        if port:
            options["ports"] = {"8080/tcp": ("127.0.0.1", port)}
        options.update(kwargs)
        return self.client.containers.run(self.ref(image_tag), **options)

    def tags(self):
        """{tag: image id} of this scene's repository."""
        out = {}
        for image in self.client.images.list(name=self.repo):
            for ref in image.tags:
                if ref.startswith(self.repo + ":"):
                    out[ref.split(":", 1)[1]] = image.id
        return out

    def containers(self):
        """{name: (id, image id, status)} of this scene's containers."""
        out = {}
        for row in self.api.containers(all=True):
            name = row["Names"][0].lstrip("/")
            if name.startswith(self.prefix):
                out[name] = (row["Id"], row["ImageID"], row["State"])
        return out

    def state(self):
        return {"tags": self.tags(), "containers": self.containers()}

    def wait_health(self, short, wanted, timeout=60):
        return wait_until(lambda: health_of(self.client, self.name(short))[0] == wanted,
                          timeout=timeout, what="%s %s" % (short, wanted))


class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in a temporary directory."""

    def __init__(self, workdir, auth=None):
        self.workdir = str(workdir)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.proc = None
        self.auth = auth  # (username, password): htpasswd (bcrypt) auth, answered with a Basic challenge

    def start(self):
        if not shutil.which("docker-registry"):
            apt_install("docker-registry")
        storage = os.path.join(self.workdir, "storage")
        os.makedirs(storage, exist_ok=True)
        config = os.path.join(self.workdir, "config.yml")
        text = ("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
                "  delete:\n    enabled: true\nhttp:\n  addr: %s\n" % (storage, self.address))
        if self.auth:
            with warnings.catch_warnings():  # deprecated (gone in 3.13), but it is libcrypt's bcrypt, no extra package
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt  # pylint: disable=import-outside-toplevel,deprecated-module
            htpasswd = os.path.join(self.workdir, "htpasswd")
            with open(htpasswd, "w", encoding="utf-8") as stream:
                stream.write("%s:%s\n" % (self.auth[0], crypt.crypt(self.auth[1], crypt.mksalt(crypt.METHOD_BLOWFISH))))
            text += "auth:\n  htpasswd:\n    realm: fleetops-test\n    path: %s\n" % htpasswd
        with open(config, "w", encoding="utf-8") as stream:
            stream.write(text)
        self.log = open(os.path.join(self.workdir, "registry.log"), "ab")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: http_get("http://%s/v2/" % self.address)[0] in (200, 401) or self.proc.poll() is not None,
                   timeout=30, what="registry answering")
        if self.proc.poll() is not None:
            raise RuntimeError("docker-registry exited: see %s" % self.log.name)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    def manifest_digest(self, repo, tag):
        headers = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % self.auth).encode()).decode()
        request = urllib.request.Request("http://%s/v2/%s/manifests/%s" % (self.address, repo, tag), method="HEAD",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def tags(self, repo):
        status, body = http_get("http://%s/v2/%s/tags/list" % (self.address, repo))
        if status != 200:
            return []
        return sorted(json.loads(body).get("tags") or [])


def build_unique_image(client, base_id, repo, tag):
    """An image of its own (the base plus a label no other image has), tagged repo:tag; returns its id.

    Healthy like its base, but deleting or retagging it touches no image another test shares."""
    with tempfile.TemporaryDirectory(prefix="fleetops-img-") as ctx:
        with open(os.path.join(ctx, "Dockerfile"), "w", encoding="utf-8") as stream:
            label = "%s-%s-%d" % (repo.replace("/", "-"), tag, next(COUNTER))
            stream.write("FROM %s\nLABEL org.fleetops.test.unique=%s\n" % (base_id, label))
        image, _logs = client.images.build(path=ctx, tag="%s:%s" % (repo, tag), rm=True, forcerm=True)
    return image.id
