"""package_snapshot (pip) and the restore point `packages` component, end to end through real ansible-playbook
runs on real virtualenvs, installing wheels written locally in several versions (nothing is downloaded)."""
import json
import os
import shutil
import subprocess

import pytest

import pyenvs
from plays import play, restore_play

PACKAGES = ("fleetops-alpha", "fleetops-beta", "fleetops-gamma", "fleetops-delta")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    """fleetops-alpha..delta in 1.0, 1.1 and 2.0; alpha has a console script."""
    path = tmp_path_factory.mktemp("wheelhouse")
    for name in PACKAGES:
        for version in ("1.0", "1.1", "2.0"):
            pyenvs.write_wheel(str(path), name, version, modules=3, console_script=(name == "fleetops-alpha"))
    return str(path)


@pytest.fixture(scope="session")
def git():
    """git for the VCS install test; a fresh machine may not have it."""
    if not shutil.which("git"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
                        "git"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), check=True, capture_output=True)
    return shutil.which("git")


@pytest.fixture(scope="session")
def template_venv(tmp_path_factory):
    return pyenvs.make_template(tmp_path_factory.mktemp("template") / "venv")


@pytest.fixture
def venv(template_venv, wheelhouse, tmp_path):
    """A real venv with every test package at 1.0."""
    path = pyenvs.clone(template_venv, tmp_path / "venv")
    pyenvs.install(path, wheelhouse, *["%s==1.0" % name for name in PACKAGES])
    return path


def snapshot(venv, dest, **extra):
    return play(("Snapshot", "package_snapshot", dict({"manager": "pip", "virtualenv": venv, "dest": str(dest)}, **extra)))


def restore(venv, src, **extra):
    args = dict({"manager": "pip", "state": "restored", "virtualenv": venv, "src": str(src)}, **extra)
    return play(("Restore", "package_snapshot", args))


def check_real_again(playbook, text, inventory, task="Restore", diff=False):
    """Check mode, then for real, then again: returns (check result, real result, again result)."""
    check = playbook(text, inventory, check=True, diff=diff)
    assert check.rc == 0, check.stdout + check.stderr
    real = playbook(text, inventory, diff=diff)
    assert real.rc == 0, real.stdout + real.stderr
    again = playbook(text, inventory)
    assert again.rc == 0, again.stdout + again.stderr
    return check.result(task, "target"), real.result(task, "target"), again.result(task, "target")


def test_capture_upgrade_restore_matches_pip_freeze(venv, wheelhouse, tmp_path, one_host, playbook):
    dest = tmp_path / "snap.json"
    check = playbook(snapshot(venv, dest, find_links=[wheelhouse]), one_host, check=True)
    assert check.rc == 0 and check.result("Snapshot", "target")["changed"] is True
    assert not dest.exists(), "check mode wrote the snapshot"
    run = playbook(snapshot(venv, dest, find_links=[wheelhouse]), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.result("Snapshot", "target")["changed"] is True
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    captured = pyenvs.freeze(venv)
    data = json.loads(dest.read_text())
    assert {k: v["version"] for k, v in data["packages"].items()} == {k: v.split("==")[1] for k, v in captured.items()}
    again = playbook(snapshot(venv, dest, find_links=[wheelhouse]), one_host)
    assert again.result("Snapshot", "target")["changed"] is False

    # The upgrade: two packages move, one appears.
    pyenvs.install(venv, wheelhouse, "fleetops-alpha==2.0", "fleetops-gamma==1.1")
    pyenvs.write_wheel(wheelhouse, "fleetops-extra", "0.1")
    pyenvs.install(venv, wheelhouse, "fleetops-extra==0.1")
    upgraded = pyenvs.tree_state(venv)

    check, real, again = check_real_again(playbook, restore(venv, dest, prune_extra=True), one_host, diff=True)
    assert check["changed"] is True and real["changed"] is True and again["changed"] is False
    assert check["packages"] == real["packages"], "check mode did not predict the real run"
    assert real["packages"] == {
        "added": [],
        "removed": [{"name": "fleetops-extra", "version": "0.1"}],
        "changed": [{"name": "fleetops-alpha", "from": "2.0", "to": "1.0"},
                    {"name": "fleetops-gamma", "from": "1.1", "to": "1.0"}]}
    assert pyenvs.freeze(venv) == captured, "pip freeze differs from the capture after the restore"
    assert pyenvs.tree_state(venv) != upgraded
    # The console script of the restored version works.
    out = subprocess.run([os.path.join(venv, "bin", "fleetops-alpha")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1.0"


def test_check_mode_changes_nothing_and_shows_the_diff(venv, wheelhouse, tmp_path, one_host, playbook):
    dest = tmp_path / "snap.json"
    assert playbook(snapshot(venv, dest), one_host).rc == 0
    pyenvs.install(venv, wheelhouse, "fleetops-beta==2.0")
    before = pyenvs.tree_state(venv)
    run = playbook(restore(venv, dest, find_links=[wheelhouse]), one_host, check=True, diff=True)
    assert run.rc == 0, run.stdout + run.stderr
    assert pyenvs.tree_state(venv) == before
    assert run.result("Restore", "target")["packages"]["changed"] == [{"name": "fleetops-beta", "from": "2.0", "to": "1.0"}]
    assert "-fleetops-beta==2.0" in run.stdout and "+fleetops-beta==1.0" in run.stdout


def test_partial_rollback_leaves_everything_else_untouched(venv, wheelhouse, tmp_path, one_host, playbook):
    dest = tmp_path / "snap.json"
    assert playbook(snapshot(venv, dest), one_host).rc == 0
    pyenvs.install(venv, wheelhouse, *["%s==2.0" % name for name in PACKAGES])
    untouched = {name: pyenvs.package_files(venv, name) for name in PACKAGES if name != "fleetops-beta"}
    pyproject = tmp_path / "pyproject.toml"
    original = ('[project]\r\nname = "app"\r\ndependencies = [\r\n  "fleetops-alpha==2.0",  # keep\r\n'
                '  "fleetops-beta == 2.0 ; python_version >= \'3.8\'",\r\n  "fleetops-gamma>=1",\r\n]\r\n'
                '[tool.other]\r\nx = "fleetops-beta==2.0"\r\n')
    pyproject.write_bytes(original.encode())
    os.chmod(pyproject, 0o640)

    text = restore(venv, dest, only=["fleetops-beta"], find_links=[wheelhouse], pins_file=str(pyproject))
    check = playbook(text, one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout
    assert pyproject.read_bytes() == original.encode()
    real = playbook(text, one_host)
    assert real.rc == 0, real.stdout + real.stderr
    result = real.result("Restore", "target")
    assert result["packages"]["changed"] == [{"name": "fleetops-beta", "from": "2.0", "to": "1.0"}]
    assert result["pins_file"] == check.result("Restore", "target")["pins_file"]
    assert pyenvs.versions(venv)["fleetops-beta"] == "1.0"
    for name, files in untouched.items():
        assert pyenvs.package_files(venv, name) == files, "%s was touched by a partial rollback" % name
    # Only the version text of the matching pin changed; every other byte (CRLF, comments, other tables) stayed.
    assert pyproject.read_bytes() == original.replace('"fleetops-beta == 2.0 ;', '"fleetops-beta == 1.0 ;').encode()
    assert oct(pyproject.stat().st_mode & 0o777) == "0o640"
    again = playbook(text, one_host)
    assert again.result("Restore", "target")["changed"] is False


def test_unknown_version_fails_naming_it_and_changes_nothing(venv, wheelhouse, tmp_path, one_host, playbook):
    dest = tmp_path / "snap.json"
    assert playbook(snapshot(venv, dest), one_host).rc == 0
    data = json.loads(dest.read_text())
    data["packages"]["fleetops-gamma"]["version"] = "9.9"
    dest.write_text(json.dumps(data))
    pyenvs.install(venv, wheelhouse, "fleetops-alpha==2.0")
    before = pyenvs.tree_state(venv)
    for check in (True, False):
        run = playbook(restore(venv, dest, find_links=[wheelhouse]), one_host, check=check)
        assert run.rc != 0
        msg = run.result("Restore", "target")["msg"]
        assert "fleetops-gamma==9.9 is not available from find_links %s" % wheelhouse in msg, msg
        assert "available: 1.0, 1.1, 2.0" in msg and "nothing was changed" in msg
        assert pyenvs.tree_state(venv) == before


def test_pip_failure_midway_puts_the_environment_back_exactly(venv, wheelhouse, tmp_path, one_host, playbook):
    dest = tmp_path / "snap.json"
    assert playbook(snapshot(venv, dest), one_host).rc == 0
    pyenvs.install(venv, wheelhouse, *["%s==2.0" % name for name in PACKAGES])
    pyenvs.install(venv, wheelhouse, "fleetops-gamma==1.1")
    broken = tmp_path / "broken-wheelhouse"
    shutil.copytree(wheelhouse, broken)
    # pip installs the pins in the reverse of their order (alphabetical here): the first one is installed last,
    # so damaging its payload fails the run after the others were already replaced.
    pyenvs.corrupt_payload(str(broken / "fleetops_alpha-1.0-py3-none-any.whl"))
    before = pyenvs.tree_state(venv)
    frozen = pyenvs.freeze(venv)

    run = playbook(restore(venv, dest, find_links=[str(broken)]), one_host)
    assert run.rc != 0
    result = run.result("Restore", "target")
    assert result["reverted"] is True, result["msg"]
    assert set(result["midway"]) >= {"fleetops-beta", "fleetops-delta"}, "the failure was not midway: %s" % result
    assert "put back exactly as it was before the restore" in result["msg"]
    assert pyenvs.freeze(venv) == frozen
    assert pyenvs.tree_state(venv) == before, "the environment is not byte-identical to before the restore"


def test_prune_extra_and_not(venv, wheelhouse, tmp_path, one_host, playbook):
    dest = tmp_path / "snap.json"
    assert playbook(snapshot(venv, dest), one_host).rc == 0
    pyenvs.write_wheel(wheelhouse, "fleetops-stray", "3.0")
    pyenvs.install(venv, wheelhouse, "fleetops-stray==3.0")
    keep = playbook(restore(venv, dest), one_host)
    assert keep.rc == 0 and keep.result("Restore", "target")["changed"] is False
    assert "fleetops-stray" in pyenvs.freeze(venv)
    prune = playbook(restore(venv, dest, prune_extra=True), one_host)
    assert prune.rc == 0, prune.stdout
    assert prune.result("Restore", "target")["packages"]["removed"] == [{"name": "fleetops-stray", "version": "3.0"}]
    assert "fleetops-stray" not in pyenvs.freeze(venv)
    assert "pip" in pyenvs.freeze(venv) and "setuptools" in pyenvs.freeze(venv)


def test_editable_and_vcs_installs_are_recorded_and_restored_as_such(venv, wheelhouse, tmp_path, one_host, playbook,
                                                                     git):
    project = pyenvs.write_project(str(tmp_path / "editable-src"), "fleetops-editable", "0.5")
    repo = pyenvs.write_project(str(tmp_path / "vcs-src"), "fleetops-vcs", "1.0", value="first")
    subprocess.run([git, "init", "-q", repo], check=True)
    git = [git, "-C", repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "first"], check=True)
    first = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(repo, "fleetops_vcs", "__init__.py"), "w", encoding="utf-8") as stream:
        stream.write("VALUE = 'second'\n")
    subprocess.run(git + ["commit", "-qam", "second"], check=True)
    second = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    pyenvs.pip(venv, "install", "--no-deps", "--no-index", "-e", project, "git+file://%s@%s#egg=fleetops-vcs" % (repo, first))

    dest = tmp_path / "snap.json"
    assert playbook(snapshot(venv, dest), one_host).rc == 0
    packages = json.loads(dest.read_text())["packages"]
    assert packages["fleetops-editable"] == {"name": "fleetops-editable", "version": "0.5", "editable": project}
    assert packages["fleetops-vcs"] == {"name": "fleetops-vcs", "version": "1.0", "vcs": "git",
                                        "url": "file://" + repo, "commit": first}
    captured = pyenvs.freeze(venv)
    assert captured["fleetops-editable"] == "-e " + project

    # Move the VCS install to the second commit and replace the editable install with a plain one.
    pyenvs.pip(venv, "install", "--no-deps", "--force-reinstall", "--no-index",
               "git+file://%s@%s#egg=fleetops-vcs" % (repo, second))
    pyenvs.write_wheel(wheelhouse, "fleetops-editable", "0.5")
    pyenvs.pip(venv, "install", "--no-deps", "--force-reinstall", "--no-index", "--find-links", wheelhouse,
               "fleetops-editable==0.5")
    check, real, again = check_real_again(playbook, restore(venv, dest), one_host)
    changed = {c["name"]: c for c in real["changes"]}
    assert set(changed) == {"fleetops-editable", "fleetops-vcs"} and again["changed"] is False
    assert changed["fleetops-vcs"]["from"]["commit"] == second and changed["fleetops-vcs"]["to"]["commit"] == first
    assert check["changes"] == real["changes"]
    assert pyenvs.freeze(venv) == captured
    value = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import fleetops_vcs; print(fleetops_vcs.VALUE)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert value == "first"


def test_restore_from_a_pip_freeze_file(venv, wheelhouse, tmp_path, one_host, playbook):
    frozen = tmp_path / "requirements-backup.txt"
    frozen.write_text(pyenvs.pip(venv, "freeze").stdout)
    captured = pyenvs.freeze(venv)
    pyenvs.install(venv, wheelhouse, "fleetops-delta==2.0")
    check, real, again = check_real_again(playbook, restore(venv, frozen, find_links=[wheelhouse], prune_extra=True),
                                          one_host)
    assert real["packages"]["changed"] == [{"name": "fleetops-delta", "from": "2.0", "to": "1.0"}]
    assert real["packages"]["removed"] == [], "pip/setuptools are not in a freeze file and must never be pruned"
    assert check["packages"] == real["packages"] and again["changed"] is False
    assert pyenvs.freeze(venv) == captured


def test_bad_input_names_the_value(venv, tmp_path, one_host, playbook):
    cases = [
        (dict(manager="pip", virtualenv=str(tmp_path / "nope"), dest=str(tmp_path / "s.json")), "has no bin/python"),
        (dict(manager="pip", virtualenv=venv, dest=str(tmp_path / "s.json"), index_url="https://u:pw@example.invalid/simple"),
         "carries credentials"),
        (dict(manager="pip", virtualenv=venv, dest=str(tmp_path / "s.json"), names=["x"]), "names: is for manager=apt"),
        (dict(manager="apt", virtualenv=venv), "virtualenv: is for manager=pip"),
        (dict(manager="pip", virtualenv=venv, dest=str(tmp_path / "s.json"), find_links=["relative/dir"]),
         "'relative/dir' is not an absolute path"),
    ]
    for args, needle in cases:
        run = playbook(play(("Snapshot", "package_snapshot", args)), one_host)
        assert run.rc != 0
        msg = run.result("Snapshot", "target")["msg"]
        assert needle in msg, msg
        assert "pw" not in msg
    assert not (tmp_path / "s.json").exists()


# ------------------------------------------------------------------------------------------- restore points

def rp_capture(store, venv, wheelhouse, config_paths=None):
    """Capture through the restore_point role, as playbooks/snapshot.yml does, with the inventory-style variables."""
    hostvars = {"rollback_store_path": str(store), "restore_point_label": "good", "restore_point_keep": 0,
                "rollback_package_sets": {"pip": [{"virtualenv": venv, "find_links": [wheelhouse]}]}}
    if config_paths:
        hostvars["rollback_config_paths"] = config_paths
    return ("- hosts: all\n  gather_facts: false\n  vars: %s\n  roles:\n    - fleetops.rollback.restore_point\n"
            % json.dumps(hostvars))


def test_restore_point_packages_component(venv, wheelhouse, tmp_path, one_host, playbook):
    store = tmp_path / "store"
    capture = playbook(rp_capture(store, venv, wheelhouse), one_host)
    assert capture.rc == 0, capture.stdout + capture.stderr
    assert capture.result("Capture a restore point", "target")["point"]["components"] == ["packages"]
    captured = pyenvs.freeze(venv)
    pyenvs.install(venv, wheelhouse, "fleetops-alpha==2.0", "fleetops-beta==1.1")
    upgraded = pyenvs.freeze(venv)
    upgraded_tree = pyenvs.tree_state(venv)

    check, real, again = check_real_again(playbook, restore_play(store), one_host)
    assert check["plan"]["packages"]["changes"] == real["plan"]["packages"]["changes"]
    assert {c["name"]: (c["from"]["version"], c["to"]["version"]) for c in real["plan"]["packages"]["changes"]} == {
        "fleetops-alpha": ("2.0", "1.0"), "fleetops-beta": ("1.1", "1.0")}
    assert again["changed"] is False
    assert pyenvs.freeze(venv) == captured
    safety = real["safety_point"]
    assert safety

    # The safety point kept wheels of what the restore replaced: it restores offline even when the wheelhouse no
    # longer has those versions.
    kept = sorted(os.listdir(store / "dumps" / safety / "pip-0"))
    assert kept == ["fleetops_alpha-2.0-py3-none-any.whl", "fleetops_beta-1.1-py3-none-any.whl"]
    for name in ("fleetops_alpha-2.0-py3-none-any.whl", "fleetops_beta-1.1-py3-none-any.whl"):
        os.rename(os.path.join(wheelhouse, name), os.path.join(wheelhouse, name + ".away"))
    try:
        back = playbook(restore_play(store, point=safety), one_host)
        assert back.rc == 0, back.stdout + back.stderr
    finally:
        for name in ("fleetops_alpha-2.0-py3-none-any.whl", "fleetops_beta-1.1-py3-none-any.whl"):
            os.rename(os.path.join(wheelhouse, name + ".away"), os.path.join(wheelhouse, name))
    assert pyenvs.freeze(venv) == upgraded
    assert pyenvs.tree_state(venv) == upgraded_tree


def test_package_snapshot_point_partial_restore(venv, wheelhouse, tmp_path, one_host, playbook):
    store = tmp_path / "store"
    args = {"manager": "pip", "virtualenv": venv, "find_links": [wheelhouse], "store_path": str(store), "label": "pkgs",
            "status": "known_good"}
    first = playbook(play(("Snapshot", "package_snapshot", args)), one_host)
    assert first.rc == 0, first.stdout + first.stderr
    reused = playbook(play(("Snapshot", "package_snapshot", args)), one_host)
    assert reused.result("Snapshot", "target")["changed"] is False
    pyenvs.install(venv, wheelhouse, "fleetops-alpha==2.0", "fleetops-gamma==2.0")
    gamma = pyenvs.package_files(venv, "fleetops-gamma")
    text = play(("Restore", "package_snapshot", {"manager": "pip", "state": "restored", "virtualenv": venv,
                                                 "store_path": str(store), "only": ["fleetops-alpha"]}))
    check, real, again = check_real_again(playbook, text, one_host)
    expected = {"added": [], "removed": [], "changed": [{"name": "fleetops-alpha", "from": "2.0", "to": "1.0"}]}
    assert check["packages"] == real["packages"] == expected
    assert real["safety_point"] and again["changed"] is False
    assert pyenvs.versions(venv)["fleetops-alpha"] == "1.0"
    assert pyenvs.package_files(venv, "fleetops-gamma") == gamma


def test_later_component_failure_reverts_packages_through_the_safety_point(venv, wheelhouse, tmp_path, one_host, playbook):
    """config applies after packages; when its validation fails, the packages already restored are put back."""
    store = tmp_path / "store"
    conf = tmp_path / "app.conf"
    conf.write_text("good\n")
    marker = tmp_path / "validator-ok"
    marker.write_text("")
    capture = playbook(rp_capture(store, venv, wheelhouse, [{"path": str(conf), "validate": "test -e %s -a -f %%s" % marker}]),
                       one_host)
    assert capture.rc == 0, capture.stdout + capture.stderr
    pyenvs.install(venv, wheelhouse, "fleetops-delta==2.0")
    conf.write_text("changed\n")
    marker.unlink()  # the config body now fails validation, after the packages were already restored
    before = pyenvs.tree_state(venv)
    run = playbook(restore_play(store), one_host)
    assert run.rc != 0
    result = run.result("Restore", "target")
    assert result["failed_component"] == "config", result
    assert result["component_state"]["packages"] == "reverted to pre-rollback state", result
    assert pyenvs.tree_state(venv) == before
    assert conf.read_text() == "changed\n"


def test_rollback_partial_playbook_rolls_back_one_package(venv, wheelhouse, tmp_path, one_host, playbook):
    # playbooks/rollback_partial.yml -e '{"rollback_packages": [...]}': only that package goes back; the other
    # upgraded package stays upgraded, and a name no snapshot holds fails before anything changes.
    store = tmp_path / "store"
    capture = playbook(rp_capture(store, venv, wheelhouse), one_host)
    assert capture.rc == 0, capture.stdout + capture.stderr
    pyenvs.install(venv, wheelhouse, "fleetops-alpha==2.0", "fleetops-beta==1.1")
    upgraded = pyenvs.freeze(venv)
    partial = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "playbooks", "rollback_partial.yml")
    common = {"rollback_store_path": str(store), "rollback_gate": False, "rollback_restart_services": False}

    unknown = playbook(partial, one_host, extra_vars=dict(common, rollback_packages=["fleetops-nosuch"]))
    assert unknown.rc != 0
    assert "fleetops-nosuch not in this point's package snapshots" in \
        unknown.result("Restore the host to its restore point", "target")["msg"]
    assert pyenvs.freeze(venv) == upgraded

    run = playbook(partial, one_host, extra_vars=dict(common, rollback_packages=["fleetops_alpha"]))
    assert run.rc == 0, run.stdout + run.stderr
    changes = run.result("Restore the host to its restore point", "target")["plan"]["packages"]["changes"]
    assert [(c["name"], c["from"]["version"], c["to"]["version"]) for c in changes] == [("fleetops-alpha", "2.0", "1.0")]
    after = pyenvs.freeze(venv)
    assert after["fleetops-alpha"] == "fleetops-alpha==1.0" and after["fleetops-beta"] == "fleetops-beta==1.1"
    assert {k: v for k, v in after.items() if k != "fleetops-alpha"} == \
        {k: v for k, v in upgraded.items() if k != "fleetops-alpha"}
