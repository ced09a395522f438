"""Faults and bad input for the package side: package_snapshot and the `packages` component of restore_point.

Real virtualenvs with wheels written locally (nothing downloaded), and for apt a private apt root (apt_root.py):
the machine's own dpkg state is never read for a change nor written.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile

import pytest

from apt_root import PROBE, AptRoot
from harness import assert_clear_failure, kill, run_module, start_module, tree_state, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

import pyenvs  # noqa: E402  pylint: disable=wrong-import-position

SECRET = "s3cr3t-Ind3x-71ac"
PACKAGES = ("fleetops-alpha", "fleetops-beta", "fleetops-gamma")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("wheelhouse"))
    for name in PACKAGES:
        for version in ("1.0", "2.0"):
            pyenvs.write_wheel(path, name, version, modules=2)
    return path


@pytest.fixture(scope="module")
def template_venv(tmp_path_factory):
    return pyenvs.make_template(tmp_path_factory.mktemp("template") / "venv")


def make_venv(template, wheelhouse, path):
    pyenvs.clone(template, path)
    pyenvs.install(path, wheelhouse, *["%s==1.0" % name for name in PACKAGES])
    return str(path)


@pytest.fixture(scope="module")
def shared_venv(template_venv, wheelhouse, tmp_path_factory):
    """A venv the bad-input cases use and none may change."""
    return make_venv(template_venv, wheelhouse, tmp_path_factory.mktemp("shared") / "venv")


class Ctx:
    """What one bad-input case points at: odd files of every kind, in the test's own directory."""

    def __init__(self, tmp_path, venv, wheelhouse):
        self.tmp = str(tmp_path)
        self.venv = venv
        self.wheelhouse = wheelhouse
        self.file = os.path.join(self.tmp, "a-file")
        with open(self.file, "w", encoding="utf-8") as stream:
            stream.write("not a venv\n")
        self.fifo = os.path.join(self.tmp, "a-fifo")
        os.mkfifo(self.fifo)
        self.dangling = os.path.join(self.tmp, "dangling")
        os.symlink(os.path.join(self.tmp, "gone"), self.dangling)
        self.nobin = os.path.join(self.tmp, "not-a-venv")
        os.makedirs(os.path.join(self.nobin, "lib"))
        self.missing = os.path.join(self.tmp, "missing")

    def src(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
        return path

    def snapshot(self, packages):
        return self.src("snap.json", json.dumps({"format": "fleetops.rollback/package_snapshot/1", "manager": "pip",
                                                 "packages": packages}))

    def state(self):
        """The test's directory (its store left out) and the venv."""
        return {"tmp": tree_state(self.tmp, exclude=[os.path.join(self.tmp, "store")]), "venv": tree_state(self.venv)}


def pip_args(ctx, **extra):
    args = {"manager": "pip", "virtualenv": ctx.venv, "dest": os.path.join(ctx.tmp, "out.json")}
    args.update(extra)
    return args


def restore_args(ctx, src, **extra):
    args = {"manager": "pip", "state": "restored", "virtualenv": ctx.venv, "src": src}
    args.update(extra)
    return args


def apt_restore(ctx, text):
    return {"manager": "apt", "state": "restored", "src": ctx.src("apt.txt", text)}


# Each case: (args builder, mentions builder). Values are those of the test's own directory.
BAD_PACKAGE_SNAPSHOT = [
    (lambda c: pip_args(c, virtualenv=""), lambda c: ["virtualenv", "''"]),
    (lambda c: pip_args(c, virtualenv="relative/venv"), lambda c: ["virtualenv", "'relative/venv'", "absolute"]),
    (lambda c: pip_args(c, virtualenv=c.tmp + "/v\x00env"), lambda c: ["virtualenv", "NUL"]),
    (lambda c: pip_args(c, virtualenv=c.file), lambda c: ["virtualenv", c.file, "is a regular file, not a directory"]),
    (lambda c: pip_args(c, virtualenv=c.fifo), lambda c: ["virtualenv", c.fifo, "a FIFO"]),
    (lambda c: pip_args(c, virtualenv=c.dangling), lambda c: ["virtualenv", c.dangling, "dangling symlink"]),
    (lambda c: pip_args(c, virtualenv=c.nobin), lambda c: ["virtualenv", c.nobin, "no bin/python"]),
    (lambda c: pip_args(c, virtualenv=c.tmp + "/x/../nope"), lambda c: ["virtualenv", "nope", "does not exist"]),
    (lambda c: pip_args(c, virtualenv=c.tmp + "/\u00fcn\u00efc\u00f6de-venv"),
     lambda c: ["virtualenv", "\u00fcn\u00efc\u00f6de-venv", "does not exist"]),
    (lambda c: dict(pip_args(c, executable=""), virtualenv=None), lambda c: ["executable", "''"]),
    (lambda c: dict(pip_args(c, executable=c.fifo), virtualenv=None), lambda c: ["executable", c.fifo, "FIFO"]),
    (lambda c: dict(pip_args(c, executable="no-such-python-$(id)"), virtualenv=None),
     lambda c: ["executable", "no-such-python-$(id)", "not an absolute path"]),
    (lambda c: pip_args(c, find_links=[c.missing]), lambda c: ["find_links[0]", c.missing, "does not exist"]),
    (lambda c: pip_args(c, find_links=[c.file]), lambda c: ["find_links[0]", c.file, "not a directory"]),
    (lambda c: pip_args(c, find_links=["relative/wheels"]), lambda c: ["find_links[0]", "'relative/wheels'"]),
    (lambda c: pip_args(c, find_links=["ftp://127.0.0.1/wheels"]), lambda c: ["find_links[0]", "ftp://127.0.0.1/wheels"]),
    (lambda c: pip_args(c, find_links=["https://deploy:%s@127.0.0.1/wheels" % SECRET]),
     lambda c: ["find_links[0]", "carries credentials"]),
    (lambda c: pip_args(c, index_url="https://deploy:%s@127.0.0.1/simple" % SECRET),
     lambda c: ["index_url", "carries credentials"]),
    (lambda c: pip_args(c, index_url="https://%s@127.0.0.1/simple" % SECRET),
     lambda c: ["index_url", "carries credentials"]),
    (lambda c: pip_args(c, index_url="not a url"), lambda c: ["index_url", "'not a url'"]),
    (lambda c: pip_args(c, index_url="https://127.0.0.1/simple; rm -rf /"), lambda c: ["index_url", "rm -rf"]),
    (lambda c: pip_args(c, dest=c.tmp), lambda c: ["dest", c.tmp, "a directory"]),
    (lambda c: pip_args(c, dest=c.fifo), lambda c: ["dest", c.fifo, "a FIFO"]),
    (lambda c: pip_args(c, dest="relative.json"), lambda c: ["dest", "'relative.json'"]),
    (lambda c: pip_args(c, dpkg_lock_timeout=5), lambda c: ["dpkg_lock_timeout", "manager=apt"]),
    (lambda c: restore_args(c, c.fifo), lambda c: ["src", c.fifo, "a FIFO"]),
    (lambda c: restore_args(c, c.tmp), lambda c: ["src", c.tmp, "a directory"]),
    (lambda c: restore_args(c, c.dangling), lambda c: ["src", c.dangling, "dangling symlink"]),
    (lambda c: restore_args(c, c.tmp + "/../" + os.path.basename(c.tmp) + "/none.txt"),
     lambda c: ["src", "none.txt", "does not exist"]),
    (lambda c: restore_args(c, c.src("freeze.txt", "fleetops-alpha==1.0; rm -rf /\n")),
     lambda c: ["line 1", "fleetops-alpha==1.0; rm -rf /", "not an exact pin"]),
    (lambda c: restore_args(c, c.src("freeze.txt", "fleetops-alpha==not a version\n")),
     lambda c: ["line 1", "not a version"]),
    (lambda c: restore_args(c, c.src("freeze.txt", "fleetops-alpha==1.0&&id\n")),
     lambda c: ["fleetops-alpha", "'1.0&&id'", "is not a version"]),
    (lambda c: restore_args(c, c.snapshot({"fleetops-alpha": {"name": "fleetops-alpha", "version": "1.0 $(id)"}})),
     lambda c: ["fleetops-alpha", "'1.0 $(id)'", "is not a version"]),
    (lambda c: restore_args(c, c.snapshot({"fleetops-alpha": {"name": "other", "version": "1.0"}})),
     lambda c: ["fleetops-alpha", "not a package entry"]),
    (lambda c: restore_args(c, c.src("list.json", "[1, 2]")), lambda c: ["src", "not a package_snapshot file"]),
    (lambda c: restore_args(c, c.snapshot({}), pins_file=c.fifo), lambda c: ["pins_file", c.fifo, "not a regular file"]),
    (lambda c: restore_args(c, c.snapshot({}), only=["bad name;x"]), lambda c: ["only", "'bad name;x'"]),
    # apt: names and versions are refused before dpkg or apt is asked anything
    (lambda c: {"manager": "apt", "names": ["nginx; rm -rf /"], "dest": c.tmp + "/a.json"},
     lambda c: ["names[0]", "'nginx; rm -rf /'", "not a Debian package name"]),
    (lambda c: {"manager": "apt", "names": ["two words"], "dest": c.tmp + "/a.json"}, lambda c: ["'two words'"]),
    (lambda c: {"manager": "apt", "names": ["Upper"], "dest": c.tmp + "/a.json"}, lambda c: ["'Upper'"]),
    (lambda c: {"manager": "apt", "names": [""], "dest": c.tmp + "/a.json"}, lambda c: ["names[0]", "''"]),
    (lambda c: {"manager": "apt", "names": ["nginx\n"], "dest": c.tmp + "/a.json"}, lambda c: ["'nginx\\n'"]),
    (lambda c: {"manager": "apt", "names": ["nginx"], "dest": c.tmp + "/a.json", "dpkg_lock_timeout": 99999},
     lambda c: ["dpkg_lock_timeout", "99999"]),
    (lambda c: apt_restore(c, "nginx=1.0;id\n"), lambda c: ["nginx", "'1.0;id'", "not a Debian version"]),
    (lambda c: apt_restore(c, "nginx=not a version\n"), lambda c: ["line 1", "not NAME=VERSION"]),
    (lambda c: apt_restore(c, "Bad_Name=1.0\n"), lambda c: ["'Bad_Name'", "not a Debian package name"]),
    (lambda c: {"manager": "apt", "names": ["nginx"], "virtualenv": c.venv}, lambda c: ["virtualenv", "manager=pip"]),
]


@pytest.mark.bad_input("package_snapshot")
@pytest.mark.parametrize("case", range(len(BAD_PACKAGE_SNAPSHOT)))
def test_package_snapshot_bad_input(case, tmp_path, shared_venv, wheelhouse):
    build, mentions = BAD_PACKAGE_SNAPSHOT[case]
    ctx = Ctx(tmp_path, shared_venv, wheelhouse)
    args = {k: v for k, v in build(ctx).items() if v is not None}
    args.setdefault("store_path", os.path.join(ctx.tmp, "store"))
    before = ctx.state()
    run = run_module("package_snapshot", args, timeout=120)
    assert_clear_failure(run, *mentions(ctx), secrets=(SECRET,))
    assert ctx.state() == before


BAD_PACKAGES_SPEC = [
    (lambda c: {"pip": [{"virtualenv": "rel/venv"}]}, lambda c: ["components.packages.pip[0].virtualenv", "'rel/venv'"]),
    (lambda c: {"pip": [{"virtualenv": c.venv, "prune_extra": "perhaps"}]}, lambda c: ["prune_extra", "'perhaps'"]),
    (lambda c: {"pip": "x"}, lambda c: ["components.packages.pip", "'x'"]),
    (lambda c: {"pip": [{"virtualenv": c.venv, "executable": "/usr/bin/python3"}]}, lambda c: ["exactly one of"]),
    (lambda c: {"pip": [{"virtualenv": c.fifo}]}, lambda c: ["virtualenv", c.fifo, "FIFO"]),
    (lambda c: {"pip": [{"virtualenv": c.venv, "find_links": [c.missing]}]},
     lambda c: ["find_links[0]", c.missing, "does not exist"]),
    (lambda c: {"pip": [{"virtualenv": c.venv, "find_links": 7}]}, lambda c: ["find_links", "7"]),
    (lambda c: {"pip": [{"virtualenv": c.venv, "index_url": "https://u:%s@127.0.0.1/simple" % SECRET}]},
     lambda c: ["index_url", "carries credentials"]),
    (lambda c: {"apt": {"names": "a b"}}, lambda c: ["components.packages.apt.names[0]", "'a b'"]),
    (lambda c: {"apt": {"names": ["nginx"], "dpkg_lock_timeout": -1}}, lambda c: ["dpkg_lock_timeout", "-1"]),
    (lambda c: {"apt": {"names": ["nginx"], "hold": "sometimes"}}, lambda c: ["hold", "'sometimes'"]),
]


@pytest.mark.bad_input("restore_point")
@pytest.mark.parametrize("case", range(len(BAD_PACKAGES_SPEC)))
def test_packages_component_bad_spec(case, tmp_path, shared_venv, wheelhouse):
    build, mentions = BAD_PACKAGES_SPEC[case]
    ctx = Ctx(tmp_path, shared_venv, wheelhouse)
    before = ctx.state()
    run = run_module("restore_point", {"store_path": os.path.join(ctx.tmp, "store"),
                                       "components": {"packages": build(ctx)}}, timeout=120)
    assert_clear_failure(run, *mentions(ctx))
    # Credentials in a component spec are refused; restore_point's echo of its arguments is the lead's to mask.
    assert SECRET not in run.msg
    assert ctx.state() == before


# ------------------------------------------------------------------------------------------------ faults

@pytest.fixture
def venv(template_venv, wheelhouse, tmp_path):
    return make_venv(template_venv, wheelhouse, tmp_path / "venv")


@pytest.fixture
def own_wheelhouse(wheelhouse, tmp_path):
    path = str(tmp_path / "wheels")
    shutil.copytree(wheelhouse, path)
    return path


def host_state(tmp_path, venv, store):
    """Everything of the test outside the store; the venv without bytecode and RECORD (pip writes those)."""
    return {"files": tree_state(str(tmp_path), exclude=[store, venv]), "venv": pyenvs.tree_state(venv)}


def capture_point(store, venv, wheels):
    run = run_module("restore_point", {"store_path": store, "label": "good", "status": "known_good",
                                       "components": {"packages": {"pip": [{"virtualenv": venv,
                                                                            "find_links": [wheels]}]}}})
    assert not run.failed, run.msg
    return run.result["point"]["id"]


@pytest.mark.fault("pip-wheel-missing-after-capture")
def test_a_wheel_gone_from_find_links_after_capture(venv, own_wheelhouse, tmp_path):
    store = str(tmp_path / "store")
    capture_point(store, venv, own_wheelhouse)
    pyenvs.install(venv, own_wheelhouse, "fleetops-alpha==2.0", "fleetops-beta==2.0")
    os.unlink(os.path.join(own_wheelhouse, pyenvs.wheel_name("fleetops-alpha", "1.0")))
    before = host_state(tmp_path, venv, store)
    for check in (True, False):
        run = run_module("restore_point", {"store_path": store, "state": "restored"}, check=check)
        assert_clear_failure(run, "fleetops-alpha==1.0", "is not available from find_links %s" % own_wheelhouse,
                             "nothing was changed")
        assert host_state(tmp_path, venv, store) == before


def failing_sdist(directory, name, version, secret):
    """An sdist whose build backend fails, printing a token the way a misbehaving build script does."""
    project = os.path.join(directory, "build-%s-%s" % (name, version))
    pyenvs.write_project(project, name, version)
    with open(os.path.join(project, "fleetops_backend.py"), "a", encoding="utf-8") as stream:
        stream.write("\ndef build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
                     "    import sys\n    sys.stderr.write('compiling with API_TOKEN=%s\\n')\n"
                     "    raise RuntimeError('the C extension does not compile')\n" % secret)
    base = "%s-%s" % (name.replace("-", "_"), version)
    with tarfile.open(os.path.join(directory, base + ".tar.gz"), "w:gz") as archive:
        archive.add(project, arcname=base)
    shutil.rmtree(project)


@pytest.mark.fault("pip-wheel-fails-to-build")
def test_a_wheel_that_fails_to_build(venv, own_wheelhouse, tmp_path):
    store = str(tmp_path / "store")
    capture_point(store, venv, own_wheelhouse)
    pyenvs.install(venv, own_wheelhouse, "fleetops-gamma==2.0")
    os.unlink(os.path.join(own_wheelhouse, "fleetops_gamma-1.0-py3-none-any.whl"))
    failing_sdist(own_wheelhouse, "fleetops-gamma", "1.0", SECRET)
    before = host_state(tmp_path, venv, store)
    run = run_module("restore_point", {"store_path": store, "state": "restored"})
    assert_clear_failure(run, "fleetops-gamma==1.0", "fleetops_gamma-1.0.tar.gz", "the C extension does not compile",
                         "nothing was changed", secrets=(SECRET,))
    assert host_state(tmp_path, venv, store) == before


@pytest.mark.fault("pip-install-fails-midway")
def test_pip_failing_midway_is_reverted_through_the_safety_point(venv, own_wheelhouse, tmp_path):
    store = str(tmp_path / "store")
    capture_point(store, venv, own_wheelhouse)
    pyenvs.install(venv, own_wheelhouse, *["%s==2.0" % name for name in PACKAGES])
    # pip installs the pins last to first: a damaged alpha fails after beta and gamma were replaced.
    pyenvs.corrupt_payload(os.path.join(own_wheelhouse, "fleetops_alpha-1.0-py3-none-any.whl"))
    before = host_state(tmp_path, venv, store)
    frozen = pyenvs.freeze(venv)
    run = run_module("restore_point", {"store_path": store, "state": "restored"})
    assert_clear_failure(run, "failed in packages", "already changed", "back in its pre-rollback state")
    assert run.result["component_state"] == {"packages": "reverted to pre-rollback state"}
    assert pyenvs.freeze(venv) == frozen
    assert host_state(tmp_path, venv, store) == before


@pytest.mark.fault("package-index-unreachable")
def test_package_index_unreachable(venv, own_wheelhouse, tmp_path):
    dest = str(tmp_path / "snap.json")
    assert not run_module("package_snapshot", {"manager": "pip", "virtualenv": venv, "dest": dest}).failed
    pyenvs.install(venv, own_wheelhouse, "fleetops-beta==2.0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    before = host_state(tmp_path, venv, str(tmp_path / "store"))
    run = run_module("package_snapshot", {"manager": "pip", "state": "restored", "virtualenv": venv, "src": dest,
                                          "use_pip_config": True, "store_path": str(tmp_path / "store")},
                     env={"PIP_INDEX_URL": "http://deploy:%s@127.0.0.1:%d/simple" % (SECRET, port),
                          "PIP_RETRIES": "0", "PIP_TIMEOUT": "5"})
    assert_clear_failure(run, "fleetops-beta==1.0", "nothing was changed", secrets=(SECRET,))
    assert host_state(tmp_path, venv, str(tmp_path / "store")) == before


@pytest.fixture
def full_tmpfs(tmp_path):
    """A small tmpfs of the test's own (mounted as root, unmounted afterwards)."""
    if os.geteuid() != 0:
        pytest.fail("the full-filesystem case mounts a tmpfs and needs root")
    mount = tmp_path / "small-fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mount)], check=True)
    yield str(mount)
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.fault("venv-filesystem-full")
def test_restore_into_a_venv_on_a_full_filesystem(template_venv, tmp_path, full_tmpfs):
    wheels = str(tmp_path / "wheels")
    pyenvs.write_wheel(wheels, "fleetops-big", "1.0", data_bytes=8 * 1024 * 1024)
    pyenvs.write_wheel(wheels, "fleetops-big", "2.0")
    venv = pyenvs.clone(template_venv, os.path.join(full_tmpfs, "venv"))
    pyenvs.install(venv, wheels, "fleetops-big==1.0")
    dest = str(tmp_path / "snap.json")
    assert not run_module("package_snapshot", {"manager": "pip", "virtualenv": venv, "dest": dest}).failed
    pyenvs.install(venv, wheels, "fleetops-big==2.0")
    # Fill what is left but 1 MiB: the 8 MiB version no longer fits.
    free = os.statvfs(full_tmpfs)
    filler = os.path.join(full_tmpfs, "filler")
    with open(filler, "wb") as stream:
        stream.write(b"\0" * max(0, free.f_bavail * free.f_frsize - 1024 * 1024))
    frozen = pyenvs.freeze(venv)
    before = {"files": tree_state(str(tmp_path), exclude=[venv]), "venv": pyenvs.tree_state(venv)}
    run = run_module("package_snapshot", {"manager": "pip", "state": "restored", "virtualenv": venv, "src": dest,
                                          "find_links": [wheels], "store_path": str(tmp_path / "store")})
    assert_clear_failure(run, "No space left on device", "the filesystem holding %s is full" % venv,
                         "free space on it and run again")
    assert "unchanged" in run.msg or run.result.get("reverted") is True, run.msg
    assert pyenvs.freeze(venv) == frozen
    assert {"files": tree_state(str(tmp_path), exclude=[venv]), "venv": pyenvs.tree_state(venv)} == before


@pytest.fixture
def apt_root(tmp_path):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("the apt fault cases need root on a Debian-family host (apt-get, dpkg)")
    return AptRoot(tmp_path)


@pytest.mark.fault("dpkg-lock-held")
def test_dpkg_lock_held_by_another_process(apt_root, tmp_path):
    apt_root.install("1.0")
    dest = str(tmp_path / "apt.json")
    snap = run_module("package_snapshot", {"manager": "apt", "names": [PROBE], "dest": dest}, env=apt_root.env)
    assert not snap.failed, snap.msg
    apt_root.install("2.0")
    holder = apt_root.hold_lock()
    try:
        # apt's caches and logs are rewritten by every run; the installed state and everything else may not change.
        logs = [os.path.join(apt_root.root, "var", "cache", "apt"), os.path.join(apt_root.root, "var", "log")]
        before = tree_state(str(tmp_path), exclude=logs)
        run = run_module("package_snapshot", {"manager": "apt", "state": "restored", "src": dest,
                                              "dpkg_lock_timeout": 1, "store_path": str(tmp_path / "store")},
                         env=apt_root.env)
        assert_clear_failure(run, "dpkg lock is held by process %d" % holder.pid, "nothing was changed",
                             "wait for it to finish")
        assert apt_root.version() == "2.0"
        assert tree_state(str(tmp_path), exclude=logs) == before
    finally:
        apt_root.release(holder)
    # Once the lock is free, the same restore goes through.
    done = run_module("package_snapshot", {"manager": "apt", "state": "restored", "src": dest,
                                           "dpkg_lock_timeout": 1, "store_path": str(tmp_path / "store")},
                      env=apt_root.env)
    assert not done.failed, done.msg
    assert apt_root.version() == "1.0"


def _pip_child_running(venv):
    """A `pip install` of this venv is running (read from /proc, as ps would)."""
    python = os.path.join(venv, "bin", "python")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as stream:
                argv = stream.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace") == python and b"install" in argv:
            return True
    return False


def _site_packages(venv):
    lib = os.path.join(venv, "lib")
    site = os.path.join(lib, os.listdir(lib)[0], "site-packages")
    return sorted(os.listdir(site))


@pytest.mark.fault("sigterm-package-snapshot-during-pip-install")
def test_sigterm_while_pip_installs_puts_the_venv_back(template_venv, tmp_path):
    wheels = str(tmp_path / "wheels")
    for name in PACKAGES:
        for version in ("1.0", "2.0"):
            # Enough code that pip takes a while to replace each package.
            pyenvs.write_wheel(wheels, name, version, modules=80, module_bytes=3000)
    venv = make_venv(template_venv, wheels, tmp_path / "venv")
    dest = str(tmp_path / "snap.json")
    assert not run_module("package_snapshot", {"manager": "pip", "virtualenv": venv, "dest": dest}).failed
    pyenvs.install(venv, wheels, *["%s==2.0" % name for name in PACKAGES])
    frozen = pyenvs.freeze(venv)
    before = host_state(tmp_path, venv, str(tmp_path / "store"))
    listing = _site_packages(venv)
    proc = start_module("package_snapshot", {"manager": "pip", "state": "restored", "virtualenv": venv, "src": dest,
                                             "find_links": [wheels], "store_path": str(tmp_path / "store")})
    # The moment: pip is running and has begun replacing packages in site-packages.
    wait_for(lambda: proc.poll() is not None or (_pip_child_running(venv) and _site_packages(venv) != listing),
             timeout=120, what="pip to start replacing packages")
    assert proc.poll() is None, "the restore ended before the moment to stop it"
    run = kill(proc, signal.SIGTERM)
    assert_clear_failure(run, "stopped by SIGTERM while installing", venv)
    assert run.result.get("reverted") is True or "unchanged" in run.msg, run.msg
    assert pyenvs.freeze(venv) == frozen, run.msg
    assert host_state(tmp_path, venv, str(tmp_path / "store")) == before
