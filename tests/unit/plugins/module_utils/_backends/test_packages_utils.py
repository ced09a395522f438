"""Pure parts of the packages code: specs, comparing snapshots, requirement texts, freeze files, wheel repacking."""
import json
import os
import sys
import zipfile

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import apt as _apt
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pip as _pip
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.packages.component import PackagesComponent
from ansible_collections.fleetops.rollback.plugins.module_utils._components import ORDER, Components

sys.path.insert(0, os.path.abspath(__file__).rsplit(os.sep + 'tests' + os.sep, 1)[0])
from tools.wheels import write_wheel  # noqa: E402

COMPONENT = PackagesComponent()


def pkg(name, version, **extra):
    return dict({"name": name, "version": version}, **extra)


def test_packages_is_registered_before_config():
    assert "packages" in Components() and ORDER.index("packages") < ORDER.index("config")


@pytest.mark.parametrize("spec, needle", [
    ({}, "give pip environments, apt names or both"),
    ({"pip": [{"virtualenv": "venv"}]}, "components.packages.pip[0].virtualenv: 'venv' is not an absolute path"),
    ({"pip": [{"virtualenv": "/a", "executable": "/usr/bin/python3"}]}, "give exactly one of virtualenv"),
    ({"pip": [{"virtualenv": "/a", "colour": 1}]}, "components.packages.pip: unknown option 'colour'"),
    ({"pip": [{"virtualenv": "/a", "find_links": ["wheels"]}]}, "'wheels' is not an absolute path or a URL"),
    ({"pip": [{"virtualenv": "/a", "index_url": "https://bob:s3cret@pypi.example/simple"}]}, "carries credentials"),
    ({"pip": [{"virtualenv": "/a", "prune_extra": "perhaps"}]}, "'perhaps' is not a valid boolean"),
    ({"pip": [{"virtualenv": "/a"}, {"virtualenv": "/a"}]}, "/a is listed twice"),
    ({"apt": {"names": []}}, "non-empty list of Debian package names"),
    ({"apt": {"names": ["Nginx"]}}, "'Nginx' is not a Debian package name"),
    ({"apt": {"names": ["nginx", "nginx"]}}, "lists a package twice"),
    ({"apt": {"names": ["nginx"], "pin": True}}, "components.packages.apt: unknown option 'pin'"),
])
def test_normalize_names_the_bad_value(spec, needle):
    with pytest.raises(RollbackError) as err:
        COMPONENT.normalize(spec)
    assert needle in err.value.msg
    assert "s3cret" not in err.value.msg


def test_normalize_defaults():
    spec = COMPONENT.normalize({"pip": {"virtualenv": "/srv/app/venv/", "find_links": "/srv/wheels"},
                                "apt": {"names": ["nginx", "libssl3"]}})
    assert spec == {"pip": [{"virtualenv": "/srv/app/venv", "executable": None, "find_links": ["/srv/wheels"],
                             "index_url": None, "prune_extra": True, "build_isolation": True, "use_pip_config": False}],
                    "apt": {"names": ["nginx", "libssl3"], "hold": False, "prune_extra": True}}


def test_compare_install_change_remove_and_pip_itself():
    wanted = {"a": pkg("a", "1.0"), "b": pkg("b", "1.0"), "pip": pkg("pip", "23.0")}
    current = {"b": pkg("b", "2.0"), "c": pkg("c", "1.0"), "pip": pkg("pip", "24.0")}
    changes = _pip.compare(wanted, current, prune_extra=True)
    assert [(c["action"], c["name"], c["from"]["version"], c["to"]["version"]) for c in changes] == [
        ("install", "a", None, "1.0"), ("change", "b", "2.0", "1.0"), ("remove", "c", "1.0", None)]
    assert [c["name"] for c in _pip.compare(wanted, current)] == ["a", "b"]
    assert [c["name"] for c in _pip.compare(wanted, current, only=["b"], prune_extra=True)] == ["b"]
    assert "pip" in [c["name"] for c in _pip.compare(wanted, current, exact=True)]
    assert [c["name"] for c in _pip.compare(wanted, current, prune_extra=True, unmanaged=("c",))] == ["a", "b"]


def test_identity_of_editable_vcs_and_url_installs():
    editable = pkg("app", "0.1", editable="/src/app")
    assert _pip.same(editable, pkg("app", "0.2", editable="/src/app")), "an editable install is its tree"
    assert not _pip.same(editable, pkg("app", "0.1"))
    vcs = pkg("lib", "1.0", vcs="git", url="https://git.example/lib", commit="a" * 40)
    assert not _pip.same(vcs, dict(vcs, commit="b" * 40))
    assert _pip.same(pkg("x", "1.0", url="https://h/x.whl"), pkg("x", "", url="https://h/x.whl"))


def test_install_arguments():
    assert _pip.install_args(pkg("black", "23.12.1")) == ["black==23.12.1"]
    assert _pip.install_args(pkg("odd", "2024.custom")) == ["odd===2024.custom"]
    assert _pip.install_args(pkg("app", "0.1", editable="/src/app")) == ["-e", "/src/app"]
    assert _pip.install_args(pkg("lib", "1.0", vcs="git", url="https://git.example/lib", commit="abc1234")) == [
        "lib @ git+https://git.example/lib@abc1234"]
    assert _pip.install_args(pkg("lib", "1.0", vcs="git", url="file:///srv/lib", commit="abc1234")) == [
        "git+file:///srv/lib@abc1234#egg=lib"]
    assert _pip.install_args(pkg("x", "1", url="https://h/x-1-py3-none-any.whl")) == ["x @ https://h/x-1-py3-none-any.whl"]


def test_source_of_reads_pep_610():
    def dist(direct, path="/v/lib/python3.11/site-packages/x-1.dist-info"):
        return {"name": "x", "version": "1", "path": path, "direct_url": direct}
    assert _pip.source_of(dist(None)) == {}
    assert _pip.source_of(dist({"url": "file:///src/x", "dir_info": {"editable": True}})) == {"editable": "/src/x"}
    assert _pip.source_of(dist({"url": "https://tok:x-oauth@git.example/x", "vcs_info": {"vcs": "git", "commit_id": "c0ffee"}})) == {
        "vcs": "git", "url": "https://****@git.example/x", "commit": "c0ffee"}
    assert _pip.source_of(dist({"url": "file:///tmp/x-1.whl", "archive_info": {}})) == {"url": "file:///tmp/x-1.whl"}


def test_parse_freeze_runbook_backup():
    text = """# Editable install with no version control (app==0.3)
-e /srv/app
black==23.12.1
Zope.Interface==6.0
lib @ git+https://git.example/lib@0123456789abcdef0123456789abcdef01234567
-e git+https://git.example/tool@abcdef0#egg=tool
"""
    packages = _pip.parse_freeze(text)
    assert packages["app"] == {"name": "app", "version": "0.3", "editable": "/srv/app"}
    assert packages["black"] == {"name": "black", "version": "23.12.1"}
    assert packages["zope-interface"]["name"] == "Zope.Interface"
    assert packages["lib"]["vcs"] == "git" and packages["lib"]["commit"].startswith("01234")
    assert packages["tool"]["editable"] == "git+https://git.example/tool@abcdef0"
    with pytest.raises(RollbackError, match="line 1: 'black>=23' is not an exact pin"):
        _pip.parse_freeze("black>=23\n")


def test_missing_message_names_package_and_version():
    err = ("ERROR: Could not find a version that satisfies the requirement black==99.0 (from versions: 23.12.1, 24.1.0)\n"
           "ERROR: No matching distribution found for black==99.0\n")
    msg = _pip.missing_message({"find_links": ["/srv/wheels"]}, "", err)
    assert msg == ("pip: black==99.0 is not available from find_links /srv/wheels (available: 23.12.1, 24.1.0); "
                   "nothing was changed")
    assert _pip.missing_message({}, "", "ERROR: something else") is None


def test_repack_round_trips_an_installed_distribution(tmp_path):
    """Unpack a wheel like pip does, then repack it: same files, fresh RECORD, scripts and bytecode left out."""
    wheel = write_wheel(str(tmp_path / "wh"), "demo-pkg", "1.2", modules=2, console_script=True)
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    bindir = tmp_path / "venv" / "bin"
    site.mkdir(parents=True)
    bindir.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        original = {n: archive.read(n) for n in archive.namelist() if not n.endswith("RECORD")}
    (bindir / "demo-pkg").write_text("#!/venv/bin/python\n")
    (site / "demo_pkg" / "__pycache__").mkdir()
    (site / "demo_pkg" / "__pycache__" / "mod000.cpython-311.pyc").write_bytes(b"x")
    info = site / "demo_pkg-1.2.dist-info"
    (info / "INSTALLER").write_text("pip\n")
    (info / "direct_url.json").write_text(json.dumps({"url": "file:///src", "dir_info": {"editable": True}}))
    with open(info / "RECORD", "a", encoding="utf-8") as stream:
        stream.write("../../../bin/demo-pkg,,\ndemo_pkg/__pycache__/mod000.cpython-311.pyc,,\n"
                     "demo_pkg-1.2.dist-info/INSTALLER,,\ndemo_pkg-1.2.dist-info/direct_url.json,,\n")
    dist = {"name": "demo-pkg", "version": "1.2", "path": str(info), "record": True}
    paths = {"scripts": str(bindir), "data": str(tmp_path / "venv")}
    out = _pip.repack(dist, paths, str(tmp_path))
    assert os.path.basename(out) == "demo_pkg-1.2-py3-none-any.whl" and oct(os.stat(out).st_mode & 0o777) == "0o600"
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert {n: archive.read(n) for n in names if not n.endswith(("RECORD", "direct_url.json"))} == original
        assert "demo_pkg-1.2.dist-info/direct_url.json" in names
        assert not any("__pycache__" in n or "INSTALLER" in n or "bin/" in n for n in names)
        record = archive.read("demo_pkg-1.2.dist-info/RECORD").decode()
        assert "demo_pkg/__init__.py,sha256=" in record


def test_repack_refuses_files_outside_the_environment(tmp_path):
    info = tmp_path / "site" / "x-1.dist-info"
    info.mkdir(parents=True)
    (info / "WHEEL").write_text("Wheel-Version: 1.0\n")
    (info / "RECORD").write_text("/etc/x.conf,,\n")
    with pytest.raises(RollbackError, match="outside its environment"):
        _pip.repack({"name": "x", "version": "1", "path": str(info), "record": True},
                    {"scripts": str(tmp_path / "bin"), "data": str(tmp_path / "venv")}, str(tmp_path))
    with pytest.raises(RollbackError, match="has no RECORD"):
        _pip.repack({"name": "x", "version": "1", "path": str(info), "record": False}, {}, str(tmp_path))


def test_summary_and_diff():
    changes = [{"name": "a", "action": "install", "from": {"version": None}, "to": {"version": "1.0"}},
               {"name": "b", "action": "change", "from": {"version": "2.0"}, "to": {"version": "1.0"}},
               {"name": "c", "action": "remove", "from": {"version": "3.0"}, "to": {"version": None}}]
    assert _pip.summary(changes) == {"added": [{"name": "a", "version": "1.0"}],
                                     "removed": [{"name": "c", "version": "3.0"}],
                                     "changed": [{"name": "b", "from": "2.0", "to": "1.0"}]}
    diff = _pip.diff({"virtualenv": "/v"}, changes)[0]
    assert diff["before"] == "b==2.0\nc==3.0\n" and diff["after"] == "a==1.0\nb==1.0\n"


def test_apt_diff_and_deb_names():
    assert _apt._deb_name("libfoo:amd64", "1:2.0-1", "amd64") == "libfoo_1%3a2.0-1_amd64.deb"
    diff = _apt.diff([{"name": "nginx", "action": "change", "from": {"version": "1.2", "held": True},
                       "to": {"version": "1.1", "held": False}}])[0]
    assert diff["before"] == "nginx=1.2 (held)\n" and diff["after"] == "nginx=1.1\n"


def test_apt_errors_keep_dpkg_reason():
    out = ("Setting up x (1.5) ...\ndpkg: error processing package x (--configure):\n installed x package "
           "post-installation script subprocess returned error exit status 1\nErrors were encountered while processing:\n x\n")
    err = "E: Sub-process /usr/bin/dpkg returned an error code (1)\n"
    text = _apt.errors(out, err)
    assert "post-installation script subprocess returned error exit status 1" in text and "E: Sub-process" in text


def test_listing_script_finds_dist_info_egg_info_and_develop_installs(tmp_path):
    """Run the listing script against a fake sys.path: first wins, egg-link develop installs are editable."""
    site = tmp_path / "site"
    src = tmp_path / "proj" / "src"
    (site / "alpha-1.0.dist-info").mkdir(parents=True)
    (site / "alpha-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: Alpha\nVersion: 1.0\n\nName: no\n")
    (site / "alpha-1.0.dist-info" / "RECORD").write_text("")
    (site / "alpha-1.0.dist-info" / "direct_url.json").write_text('{"url": "file:///w/a.whl", "archive_info": {}}')
    (site / "Old_Pkg-0.1-py3.11.egg-info").write_text("Metadata-Version: 1.0\nName: Old_Pkg\nVersion: 0.1\n")
    (site / "devpkg.egg-link").write_text("%s\n../\n" % src)
    (src / "devpkg.egg-info").mkdir(parents=True)
    (src / "devpkg.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: devpkg\nVersion: 2.0\n")
    shadow = tmp_path / "later"
    (shadow / "alpha-9.0.dist-info").mkdir(parents=True)
    (shadow / "alpha-9.0.dist-info" / "METADATA").write_text("Name: alpha\nVersion: 9.0\n")
    # -S: no site-packages; the standard library stays on the path (it holds no distributions).
    script = ("import sys; sys.path[:] = [''] + %r + [p for p in sys.path if p]\n" % [str(site), str(src), str(shadow)]
              + _pip.LIST_SCRIPT)
    proc = __import__("subprocess").run([sys.executable, "-S", "-c", script], capture_output=True, text=True, check=True)
    data = __import__("ast").literal_eval(proc.stdout)
    dists = {d["key"]: d for d in data["dists"]}
    assert set(dists) == {"alpha", "old-pkg", "devpkg"}
    assert dists["alpha"]["version"] == "1.0" and dists["alpha"]["record"] is True
    for dist in dists.values():
        dist["direct_url"] = json.loads(dist["direct_url"]) if dist["direct_url"] else None
    packages = _pip.packages_of({"dists": dists})
    assert packages == {"alpha": {"name": "Alpha", "version": "1.0", "url": "file:///w/a.whl"},
                        "old-pkg": {"name": "Old_Pkg", "version": "0.1"},
                        "devpkg": {"name": "devpkg", "version": "2.0", "editable": str(tmp_path / "proj")}}


def test_safety_scope_keeps_what_the_restore_plan_replaces_without_listing_again(tmp_path):
    """restore() passes its plan to scope(): the safety capture keeps copies of exactly the packages that plan
    changes or removes, per environment and manager, and does not list the environments a second time (the
    virtualenvs here do not exist, so listing them would fail)."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    record = {"pip": [{"virtualenv": one, "packages": []}, {"virtualenv": two, "packages": []}],
              "apt": {"names": ["nginx", "curl"], "packages": {}}}
    changes = [
        {"manager": "pip", "env": one, "key": "alpha", "action": "change"},
        {"manager": "pip", "env": one, "key": "beta", "action": "install"},
        {"manager": "pip", "env": two, "key": "gamma", "action": "remove"},
        {"manager": "apt", "name": "nginx", "action": "change"},
        {"manager": "apt", "name": "curl", "action": "install"},
    ]
    spec = COMPONENT.scope(record, changes)
    assert [env["keep"] for env in spec["pip"]] == [["alpha"], ["gamma"]]
    assert [env["virtualenv"] for env in spec["pip"]] == [one, two]
    assert spec["apt"]["keep"] == ["nginx"] and spec["apt"]["names"] == ["nginx", "curl"]
