"""A Docker engine and locally built Debian images for the molecule drills (no registry, no pull).

    docker_engine.py ensure                              install docker.io / start dockerd when needed
    docker_engine.py base-image NAME                     debootstrap bookworm (minbase + python3), docker import
    docker_engine.py image NAME --from BASE --apt PKG..  BASE plus Debian packages, committed as NAME

Every command is idempotent: an engine that answers is left alone, an image that exists is not rebuilt
(change the tag to rebuild). Shared steps (apt/dpkg, starting dockerd) run under the same file lock as
the integration tests' Docker bootstrap, so concurrent runs do not race. Stdlib only: it runs before
the venv has anything in it, and with any python3.

Exit codes: 0 done (or nothing to do), 1 failed (the message says what and where the log is), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import system_packages  # noqa: E402  pylint: disable=wrong-import-position
from tools.system_packages import file_lock  # noqa: E402  pylint: disable=wrong-import-position

# Shared with tests/integration/docker_env.py: one dockerd start at a time (apt has its own lock).
BOOTSTRAP_LOCK = os.path.join(tempfile.gettempdir(), "fleetops-docker-bootstrap.lock")
IMAGES_LOCK = os.path.join(tempfile.gettempdir(), "fleetops-molecule-images.lock")
PIDFILE = "/run/fleetops-dockerd.pid"
LOG = "/var/log/fleetops-dockerd.log"
SOCKET_PATH = "/var/run/docker.sock"
ENGINE_DEADLINE = 90.0

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")


class EngineError(Exception):
    """A failure with a message for the operator."""


def log(message):
    print("docker_engine: %s" % message, flush=True)


def run(argv, **kwargs):
    """Run argv; raise EngineError with the tail of its output when it fails."""
    kwargs.setdefault("capture_output", True)
    proc = subprocess.run(argv, text=True, check=False, **kwargs)  # pylint: disable=subprocess-run-check
    if proc.returncode != 0:
        out = ((proc.stdout or "") + (proc.stderr or ""))[-3000:]
        raise EngineError("%s exited %d:\n%s" % (" ".join(argv), proc.returncode, out))
    return proc


def apt_install(*packages):
    try:
        system_packages.apt_install(*packages)
    except system_packages.AptError as exc:
        raise EngineError(str(exc)) from None


# --- engine ----------------------------------------------------------------------------------------

def ping(timeout=5.0):
    """True when an engine answers GET /_ping on the local socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(SOCKET_PATH)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]


def _pid_alive(path):
    try:
        with open(path, encoding="ascii") as stream:
            pid = int(stream.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def ensure_engine():
    """Install docker.io when dockerd or the CLI is missing, start dockerd when nothing answers."""
    if ping() and shutil.which("docker"):
        return "engine already answering on %s" % SOCKET_PATH
    if not (shutil.which("dockerd") and shutil.which("docker")):
        log("installing docker.io with apt-get")
        apt_install("docker.io")
    with file_lock(BOOTSTRAP_LOCK):
        if ping():
            return "engine answering on %s" % SOCKET_PATH
        if not _pid_alive(PIDFILE):
            log("starting dockerd (log %s)" % LOG)
            with open(LOG, "ab") as out:
                subprocess.Popen(  # pylint: disable=consider-using-with
                    ["dockerd", "--pidfile", PIDFILE, "--host", "unix://" + SOCKET_PATH],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True)
        started = time.monotonic()
        delay = 0.05
        while not ping():
            if time.monotonic() - started > ENGINE_DEADLINE:
                with open(LOG, "rb") as stream:
                    tail = stream.read()[-3000:].decode("utf-8", "replace")
                raise EngineError("dockerd did not answer on %s within %.0f s; %s ends with:\n%s"
                                  % (SOCKET_PATH, ENGINE_DEADLINE, LOG, tail))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        return "dockerd answering on %s after %.1f s" % (SOCKET_PATH, time.monotonic() - started)


# --- images ----------------------------------------------------------------------------------------

def image_exists(name):
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", name],
                          capture_output=True, check=False).returncode == 0


def _changes():
    out = []
    for pair in IMAGE_ENV:
        out += ["--change", "ENV %s" % pair.replace("=", " ", 1)]
    return out


def build_base_image(name):
    """debootstrap --variant=minbase --include=python3 bookworm, imported as NAME (skipped if it exists)."""
    ensure_engine()
    with file_lock(IMAGES_LOCK):
        if image_exists(name):
            return "image %s exists" % name
        if not shutil.which("debootstrap"):
            log("installing debootstrap with apt-get")
            apt_install("debootstrap")
        started = time.monotonic()
        root = tempfile.mkdtemp(prefix="fleetops-rootfs-", dir="/var/tmp")
        try:
            log("debootstrap %s into %s (about a minute)" % (SUITE, root))
            run(["debootstrap", "--variant=minbase", "--include=python3", SUITE, root, MIRROR])
            # Smaller image, and no host-specific leftovers.
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in os.listdir(os.path.join(root, sub)):
                    path = os.path.join(root, sub, entry)
                    if os.path.isfile(path):
                        os.unlink(path)
            log("importing %s" % name)
            tar = subprocess.Popen(["tar", "--numeric-owner", "-C", root, "-c", "."],  # pylint: disable=consider-using-with
                                   stdout=subprocess.PIPE)
            try:
                run(["docker", "import"] + _changes() + ["-", name], stdin=tar.stdout)
            finally:
                tar.stdout.close()
                if tar.wait() != 0:
                    raise EngineError("tar of %s exited %d" % (root, tar.returncode))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return "built %s in %.1f s" % (name, time.monotonic() - started)


# Keeps package postinst scripts from starting services inside the build container.
_POLICY_RC_D = "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d"


def build_apt_image(name, base, packages):
    """BASE plus Debian packages (apt-get in a container on the host network), committed as NAME."""
    ensure_engine()
    if not packages:
        raise EngineError("--apt needs at least one package")
    with file_lock(IMAGES_LOCK):
        if image_exists(name):
            return "image %s exists" % name
        if not image_exists(base):
            raise EngineError("base image %s does not exist; run `base-image %s` first" % (base, base))
        started = time.monotonic()
        container = "fleetops-molecule-build-%d" % os.getpid()
        script = " && ".join([
            "set -e",
            _POLICY_RC_D,
            "apt-get update -q",
            "apt-get install --no-install-recommends %s %s" % (" ".join(system_packages.APT_OPTS), " ".join(packages)),
            "apt-get clean",
            "rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d",
        ])
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        try:
            log("installing %s into %s (container %s)" % (" ".join(packages), base, container))
            run(["docker", "run", "--name", container, "--network", "host",
                 "-e", "DEBIAN_FRONTEND=noninteractive", base, "bash", "-c", script])
            run(["docker", "commit"] + _changes() + [container, name])
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        return "built %s in %.1f s" % (name, time.monotonic() - started)


def main(argv=None):
    top = argparse.ArgumentParser(description="Docker engine and local images for the molecule drills.")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="install docker.io and start dockerd when no engine answers")
    p = sub.add_parser("base-image", help="build NAME with debootstrap (bookworm minbase + python3) if missing")
    p.add_argument("name")
    p = sub.add_parser("image", help="build NAME from BASE plus Debian packages if missing")
    p.add_argument("name")
    p.add_argument("--from", dest="base", required=True, help="an image built by base-image")
    p.add_argument("--apt", nargs="+", default=[], metavar="PKG", help="Debian packages to install")
    args = top.parse_args(argv)
    if os.geteuid() != 0:
        print("docker_engine: must run as root (apt-get, dockerd, debootstrap)", file=sys.stderr)
        return 2
    try:
        if args.command == "ensure":
            log(ensure_engine())
        elif args.command == "base-image":
            log(build_base_image(args.name))
        else:
            log(build_apt_image(args.name, args.base, args.apt))
    except EngineError as exc:
        print("docker_engine %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
