"""package_snapshot (apt) and the apt part of the `packages` component on a real local apt repository.

The repository is built here with dpkg-deb and apt-ftparchive (apt-utils is installed if missing) and holds
test packages in several versions. The fixture adds a [trusted=yes] file: source, updates only that source,
and afterwards removes the source, its lists and every test package. All apt tests live in this one file:
dpkg has one lock per host.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import plays

PROBE = "fleetops-probe"
EXTRA = "fleetops-probe-extra"
SOURCE = "/etc/apt/sources.list.d/fleetops-test-probe.list"
LOCK = ["-o", "DPkg::Lock::Timeout=300"]
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")


def sh(*argv, check=True):
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=ENV, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


def apt(*argv, deadline=600):
    """apt-get, retried while another apt holds a lock that DPkg::Lock::Timeout does not cover (the lists lock)."""
    give_up = time.monotonic() + deadline
    while True:
        proc = sh("apt-get", *argv, *LOCK, check=False)
        if proc.returncode == 0 or "Could not get lock" not in proc.stderr or time.monotonic() > give_up:
            break
        time.sleep(1)  # poll the lock; the deadline bounds the wait
    if proc.returncode != 0:
        raise AssertionError("apt-get %s failed (%d):\n%s\n%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


def dpkg_state(name):
    """(version, state): state is "installed" for a cleanly installed package (held or not), else dpkg's status."""
    proc = sh("dpkg-query", "-W", "-f=${Version}\t${db:Status-Abbrev}", name, check=False)
    if proc.returncode != 0 or "\t" not in proc.stdout:
        return None, "unknown"
    version, status = proc.stdout.split("\t")
    if status[1:2] in ("n", "c"):
        return None, "not-installed"
    return version, "installed" if status[1:3] == "i " else status.strip()


def held(name):
    return name in sh("apt-mark", "showhold").stdout.split()


def build_deb(workdir, name, version, postinst_fails=False):
    root = os.path.join(workdir, "%s-%s" % (name, version))
    os.makedirs(os.path.join(root, "DEBIAN"))
    os.makedirs(os.path.join(root, "usr", "share", name))
    with open(os.path.join(root, "usr", "share", name, "VERSION"), "w", encoding="utf-8") as stream:
        stream.write(version + "\n")
    with open(os.path.join(root, "DEBIAN", "control"), "w", encoding="utf-8") as stream:
        stream.write("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: fleetops tests <t@example.invalid>\n"
                     "Priority: optional\nSection: misc\nDescription: fleetops rollback test package\n" % (name, version))
    if postinst_fails:
        path = os.path.join(root, "DEBIAN", "postinst")
        with open(path, "w", encoding="utf-8") as stream:
            stream.write("#!/bin/sh\necho 'postinst of %s fails on purpose' >&2\nexit 1\n" % version)
        os.chmod(path, 0o755)
    sh("dpkg-deb", "--build", "--root-owner-group", root, os.path.join(workdir, "%s_%s_all.deb" % (name, version)))
    shutil.rmtree(root)


def purge_test_packages():
    for name in (PROBE, EXTRA):
        sh("apt-mark", "unhold", name, check=False)
        sh("dpkg", "--purge", name, check=False)


def lists_of(repo):
    prefix = "_" + repo.strip("/").replace("/", "_")
    return [os.path.join("/var/lib/apt/lists", f) for f in os.listdir("/var/lib/apt/lists") if f.startswith(prefix)]


def update_test_source():
    apt("update", "-q", "-o", "Dir::Etc::sourcelist=" + SOURCE, "-o", "Dir::Etc::sourceparts=-",
        "-o", "APT::Get::List-Cleanup=0")


@pytest.fixture(scope="module")
def apt_repo():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("the apt tests need root on a Debian-family host (apt-get, dpkg)")
    if not shutil.which("apt-ftparchive"):
        try:
            apt("install", "-y", "-q", "--no-install-recommends", "apt-utils")
        except AssertionError:  # a fresh machine may have no package lists yet
            apt("update", "-q")
            apt("install", "-y", "-q", "--no-install-recommends", "apt-utils")
    purge_test_packages()
    # apt reads file: sources as its sandbox user, so the repository lives in a world-readable place.
    repo = tempfile.mkdtemp(prefix="fleetops-apt-repo-", dir="/var/tmp")
    os.chmod(repo, 0o755)
    try:
        for version in ("1.0", "2.0"):
            build_deb(repo, PROBE, version)
        build_deb(repo, PROBE, "1.5", postinst_fails=True)
        build_deb(repo, EXTRA, "1.0")
        for index in ("packages", "release"):
            out = subprocess.run(["apt-ftparchive", index, "."], cwd=repo, capture_output=True, text=True, check=True)
            with open(os.path.join(repo, index.capitalize()), "w", encoding="utf-8") as stream:
                stream.write(out.stdout)
        for name in os.listdir(repo):
            os.chmod(os.path.join(repo, name), 0o644)
        with open(SOURCE, "w", encoding="utf-8") as stream:
            stream.write("deb [trusted=yes] file:%s ./\n" % repo)
        update_test_source()
        yield repo
    finally:
        purge_test_packages()
        if os.path.exists(SOURCE):
            os.unlink(SOURCE)
        for path in lists_of(repo):
            os.unlink(path)
        shutil.rmtree(repo, ignore_errors=True)


@pytest.fixture
def probe(apt_repo):
    """fleetops-probe installed at 1.0, fleetops-probe-extra absent, nothing held; cleaned up afterwards."""
    purge_test_packages()
    # --allow-downgrades: a purge that lost a race for the dpkg lock must not leave the fixture unusable.
    apt("install", "-y", "-q", "--allow-downgrades", "%s=1.0" % PROBE)
    yield
    purge_test_packages()


def install(version, name=PROBE):
    apt("install", "-y", "-q", "--allow-downgrades", "%s=%s" % (name, version))


def play(name, module, args):
    return plays.play((name, module, args))


def snapshot_to(dest, names=(PROBE,)):
    return play("Snapshot", "package_snapshot", {"manager": "apt", "names": list(names), "dest": str(dest)})


def restore_from(src, **extra):
    return play("Restore", "package_snapshot", dict({"manager": "apt", "state": "restored", "src": str(src)}, **extra))


def test_install_v2_restore_v1(probe, tmp_path, one_host, playbook):
    dest = tmp_path / "apt.json"
    run = playbook(snapshot_to(dest, names=(PROBE, EXTRA)), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    assert json.loads(dest.read_text())["packages"][PROBE]["version"] == "1.0"
    assert json.loads(dest.read_text())["packages"][EXTRA]["version"] is None
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    install("2.0")
    install("1.0", EXTRA)

    text = restore_from(dest, prune_extra=True)
    check = playbook(text, one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    assert dpkg_state(PROBE)[0] == "2.0" and dpkg_state(EXTRA)[0] == "1.0", "check mode changed dpkg"
    real = playbook(text, one_host, diff=True)
    assert real.rc == 0, real.stdout + real.stderr
    again = playbook(text, one_host)
    assert again.rc == 0
    predicted, done = check.result("Restore", "target"), real.result("Restore", "target")
    assert predicted["packages"] == done["packages"] == {
        "added": [], "removed": [{"name": EXTRA, "version": "1.0"}],
        "changed": [{"name": PROBE, "from": "2.0", "to": "1.0"}]}
    assert again.result("Restore", "target")["changed"] is False
    assert dpkg_state(PROBE) == ("1.0", "installed")
    assert dpkg_state(EXTRA)[0] is None
    assert "-fleetops-probe=2.0" in check.stdout and "+fleetops-probe=1.0" in check.stdout
    with open("/usr/share/%s/VERSION" % PROBE, encoding="utf-8") as stream:
        assert stream.read() == "1.0\n"


def test_missing_version_is_refused_and_nothing_changes(probe, tmp_path, one_host, playbook):
    src = tmp_path / "wanted.txt"
    src.write_text("# name=version, as apt-get takes them\n%s=3.0\n" % PROBE)
    install("2.0")
    for check in (True, False):
        run = playbook(restore_from(src), one_host, check=check)
        assert run.rc != 0
        msg = run.result("Restore", "target")["msg"]
        assert "fleetops-probe=3.0 not available from any configured source" in msg, msg
        assert "fleetops-probe offers 2.0, 1.5, 1.0" in msg and "nothing was changed" in msg, msg
        assert dpkg_state(PROBE) == ("2.0", "installed")


def test_failure_midway_puts_the_installed_version_back(probe, tmp_path, one_host, playbook):
    """1.5's postinst fails: dpkg has already unpacked it, so the kept 2.0 .deb is installed again."""
    install("2.0")
    src = tmp_path / "wanted.txt"
    src.write_text("%s=1.5\n" % PROBE)
    run = playbook(restore_from(src), one_host)
    assert run.rc != 0
    result = run.result("Restore", "target")
    assert result["reverted"] is True, result["msg"]
    assert result["midway"] == [PROBE]
    assert "post-installation script subprocess returned error exit status 1" in result["msg"], result["msg"]
    assert dpkg_state(PROBE) == ("2.0", "installed")
    with open("/usr/share/%s/VERSION" % PROBE, encoding="utf-8") as stream:
        assert stream.read() == "2.0\n"


def test_restore_point_component_with_hold_and_kept_debs(probe, tmp_path, one_host, playbook):
    store = tmp_path / "store"
    capture = play("Capture", "restore_point", {
        "store_path": str(store), "label": "apt-good", "status": "known_good",
        "components": {"packages": {"apt": {"names": [PROBE], "hold": True}}}})
    assert playbook(capture, one_host).rc == 0
    install("2.0")
    text = play("Restore", "restore_point", {"store_path": str(store), "state": "restored"})
    check = playbook(text, one_host, check=True)
    assert check.rc == 0, check.stdout
    assert dpkg_state(PROBE)[0] == "2.0" and not held(PROBE)
    real = playbook(text, one_host)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert [(c["action"], c["name"]) for c in done["plan"]["packages"]["changes"]] == [("change", PROBE), ("hold", PROBE)]
    assert check.result("Restore", "target")["plan"] == {k: {"changed": v["changed"], "changes": v["changes"]}
                                                         for k, v in done["plan"].items()}
    assert dpkg_state(PROBE) == ("1.0", "installed") and held(PROBE)
    assert playbook(text, one_host).result("Restore", "target")["changed"] is False
    # The safety point kept the replaced 2.0 as a .deb and restores it (and the unheld mark) exactly.
    kept = os.listdir(store / "dumps" / done["safety_point"] / "apt")
    assert kept == ["%s_2.0_all.deb" % PROBE]
    back = playbook(play("Restore", "restore_point", {"store_path": str(store), "state": "restored",
                                                      "point": done["safety_point"]}), one_host)
    assert back.rc == 0, back.stdout + back.stderr
    assert dpkg_state(PROBE) == ("2.0", "installed") and not held(PROBE)


def test_package_snapshot_point_and_bad_names(probe, tmp_path, one_host, playbook):
    store = tmp_path / "store"
    args = {"manager": "apt", "names": [PROBE], "store_path": str(store), "label": "pkgs", "status": "known_good"}
    assert playbook(play("Snapshot", "package_snapshot", args), one_host).rc == 0
    install("2.0")
    sh("apt-mark", "hold", PROBE)  # a hold the restore does not manage stays
    text = play("Restore", "package_snapshot", {"manager": "apt", "state": "restored", "store_path": str(store)})
    check = playbook(text, one_host, check=True)
    real = playbook(text, one_host)
    assert check.rc == 0 and real.rc == 0, real.stdout + real.stderr
    assert check.result("Restore", "target")["packages"] == real.result("Restore", "target")["packages"]
    assert dpkg_state(PROBE) == ("1.0", "installed") and held(PROBE)
    assert playbook(text, one_host).result("Restore", "target")["changed"] is False
    bad = playbook(play("Snapshot", "package_snapshot", {"manager": "apt", "names": ["Bad_Name"],
                                                         "dest": str(tmp_path / "x.json")}), one_host)
    assert bad.rc != 0 and "'Bad_Name' is not a Debian package name" in bad.result("Snapshot", "target")["msg"]
