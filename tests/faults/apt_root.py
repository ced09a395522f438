"""An apt environment with its own root, for fault cases that must never touch the machine's dpkg state.

apt reads APT_CONFIG, dpkg and dpkg-query read DPKG_ROOT and DPKG_ADMINDIR: with those pointing into a temporary
directory, `apt-get install` unpacks there, records there and locks <root>/var/lib/dpkg/lock-frontend, while the
module under test runs its ordinary argv. The repository is a flat file: repository of .debs built with dpkg-deb,
its Packages and Release written here (no apt-utils needed).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

PROBE = "fleetops-fault-probe"


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


class AptRoot:
    def __init__(self, base, versions=("1.0", "2.0")):
        self.root = os.path.join(str(base), "aptroot")
        self.repo = os.path.join(self.root, "repo")
        self.admindir = os.path.join(self.root, "var", "lib", "dpkg")
        for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/apt/lists/partial",
                    "var/cache/apt/archives/partial", "etc/apt/apt.conf.d", "etc/apt/preferences.d",
                    "etc/apt/sources.list.d", "var/log/apt", "repo"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        for name in ("status", "available"):
            _write(os.path.join(self.admindir, name), "")
        for version in versions:
            self.build_deb(PROBE, version)
        self.index()
        self.config = os.path.join(self.root, "apt.conf")
        root = self.root
        _write(self.config, "".join([
            'Dir "%s/";\n' % root,
            'Dir::State::status "%s/var/lib/dpkg/status";\n' % root,
            'Dir::Etc::sourcelist "%s/etc/apt/sources.list";\n' % root,
            'Dir::Etc::sourceparts "%s/etc/apt/sources.list.d";\n' % root,
            'Dir::Etc::main "%s/etc/apt/apt.conf";\n' % root,
            'Dir::Etc::parts "%s/etc/apt/apt.conf.d";\n' % root,
            'Dir::Etc::preferences "%s/etc/apt/preferences";\n' % root,
            'Dir::Etc::preferencesparts "%s/etc/apt/preferences.d";\n' % root,
            'Dir::Bin::dpkg "%s";\n' % shutil.which("dpkg"),
            'DPkg::Options { "--root=%s"; "--admindir=%s"; "--force-script-chrootless"; };\n' % (root, self.admindir),
            'APT::Sandbox::User "root";\n',
        ]))
        _write(os.path.join(root, "etc", "apt", "sources.list"), "deb [trusted=yes] file:%s ./\n" % self.repo)
        self.env = {"APT_CONFIG": self.config, "DPKG_ROOT": self.root, "DPKG_ADMINDIR": self.admindir}
        self.run("apt-get", "update", "-q")

    @property
    def lock_path(self):
        return os.path.join(self.admindir, "lock-frontend")

    def build_deb(self, name, version):
        tree = os.path.join(self.repo, "%s-%s" % (name, version))
        _write(os.path.join(tree, "usr", "share", name, "VERSION"), version + "\n")
        _write(os.path.join(tree, "DEBIAN", "control"),
               "Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: fleetops tests <t@example.invalid>\n"
               "Priority: optional\nSection: misc\nDescription: fleetops fault test package\n" % (name, version))
        subprocess.run(["dpkg-deb", "--build", "--root-owner-group", tree,
                        os.path.join(self.repo, "%s_%s_all.deb" % (name, version))], check=True, capture_output=True)
        shutil.rmtree(tree)

    def index(self):
        stanzas = []
        for name in sorted(os.listdir(self.repo)):
            if not name.endswith(".deb"):
                continue
            path = os.path.join(self.repo, name)
            control = subprocess.run(["dpkg-deb", "-f", path], capture_output=True, text=True, check=True).stdout
            with open(path, "rb") as stream:
                data = stream.read()
            stanzas.append("%s\nFilename: ./%s\nSize: %d\nSHA256: %s\n" % (
                control.strip(), name, len(data), hashlib.sha256(data).hexdigest()))
        packages = "\n".join(stanzas)
        _write(os.path.join(self.repo, "Packages"), packages)
        _write(os.path.join(self.repo, "Release"), "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n %s %d Packages\n" % (
            hashlib.sha256(packages.encode()).hexdigest(), len(packages.encode())))

    def run(self, *argv, check=True):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8", **self.env)
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def install(self, version, name=PROBE):
        self.run("apt-get", "install", "-y", "-q", "--allow-downgrades", "%s=%s" % (name, version))

    def version(self, name=PROBE):
        proc = self.run("dpkg-query", "-W", "-f=${Version}\t${db:Status-Abbrev}", name, check=False)
        if proc.returncode != 0 or "\t" not in proc.stdout:
            return None
        version, status = proc.stdout.split("\t")
        return version if status[1:2] not in ("n", "c") else None

    def hold_lock(self):
        """A helper process holding a real fcntl lock on this root's dpkg frontend lock until released."""
        holder = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-c", "import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)\n"
             "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()\n", self.lock_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        return holder

    @staticmethod
    def release(holder):
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
