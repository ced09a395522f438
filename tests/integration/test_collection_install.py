"""The collection as a user gets it: `ansible-galaxy collection build` makes a tarball without development files,
it installs offline into an empty collections path, and its playbooks run by FQCN from there against a local fleet,
with nothing of this repository on the collections path."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from playbook_runner import BIN, HERE, ROOT

sys.path.insert(0, ROOT)
from tools import fleet as local_fleet  # noqa: E402  pylint: disable=wrong-import-position

with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as _stream:
    GALAXY = yaml.safe_load(_stream)
VERSION = GALAXY["version"]
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if f.endswith(".py") and not f.startswith("_"))
PLAYBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "playbooks")) if f.endswith(".yml"))
ROLES = sorted(os.listdir(os.path.join(ROOT, "roles")))

# Development files that must never be packed, planted in a copy of the tree to prove build_ignore holds.
DECOYS = [
    ".venv/bin/python", ".collections/ansible_collections/x/y/galaxy.yml", ".fleet/inventory.ini",
    ".cache/pip/x", ".pytest_cache/v/cache/nodeids", ".hypothesis/examples/x", ".ansible/tmp/x",
    "benchmarks/results/run.json", "tests/output/junit.xml", "build/ee/fleetops-rollback.tar.gz",
    "plugins/modules/__pycache__/restore_point.cpython-311.pyc", "old-fleetops-rollback-0.0.1.tar.gz",
    "changelogs/.plugin-cache.yaml",
]
FORBIDDEN = re.compile(r"^(\.venv|\.collections|\.fleet|\.cache|\.pytest_cache|\.hypothesis|\.ansible|\.ci|\.git"
                       r"|benchmarks|tests|tools|sample_app|molecule|build|changelogs/fragments)(/|$)"
                       r"|__pycache__|\.pyc$|\.tar\.gz$|^(Makefile|ansible\.cfg|pytest\.ini|requirements\.txt"
                       r"|constraints\.txt|changelogs/\.plugin-cache\.yaml)$")


def clean_env(**extra):
    """The environment of a user's shell: no ANSIBLE_* from the test run, the venv's tools on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, **kwargs)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (argv, proc.returncode, proc.stdout[-3000:],
                                                              proc.stderr[-3000:])
    return proc


def build(source, dest):
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dest), str(source)],
        cwd=str(dest), env=clean_env())
    [tarball] = [os.path.join(dest, f) for f in os.listdir(dest) if f.endswith(".tar.gz")]
    return tarball


def members(tarball):
    with tarfile.open(tarball) as tar:
        return sorted(m.name for m in tar.getmembers())


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The tarball built from this repository as it is (its .venv and .collections are there)."""
    out = tmp_path_factory.mktemp("build")
    return build(ROOT, out)


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    """The tarball installed offline, without dependencies, into an empty collections path."""
    path = tmp_path_factory.mktemp("installed") / "collections"
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
         "-p", str(path), tarball], env=clean_env(), cwd=str(path.parent))  # not the repo's ansible.cfg
    return str(path)


def installed_env(installed, tmp_path, **extra):
    """ONLY the install dir on the collections path: no repository link, no site-packages collections, and a
    configuration file of our own instead of the repository's ansible.cfg."""
    cfg = tmp_path / "ansible.cfg"
    if not cfg.exists():
        cfg.write_text("[defaults]\ngathering = explicit\nforks = 20\nretry_files_enabled = false\n"
                       "interpreter_python = auto_silent\n", encoding="utf-8")
    return clean_env(ANSIBLE_CONFIG=str(cfg), ANSIBLE_COLLECTIONS_PATH=installed,
                     ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
                     ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
                     ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "plugins", "callback"),
                     ANSIBLE_CALLBACKS_ENABLED="result_collector", **extra)


def test_tarball_holds_the_collection_and_no_development_files(tarball):
    names = members(tarball)
    assert os.path.basename(tarball) == "fleetops-rollback-%s.tar.gz" % VERSION
    for module in MODULES:
        assert "plugins/modules/%s.py" % module in names
    for playbook in PLAYBOOKS:
        assert "playbooks/" + playbook in names
    for role in ROLES:
        assert "roles/%s/meta/argument_specs.yml" % role in names
    for needed in ["MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "meta/runtime.yml",
                   "meta/execution-environment.yml", "meta/ee-requirements.txt", "bindep.txt",
                   "execution-environment.yml", "changelogs/changelog.yaml", "playbooks/templates/rollback_summary.j2",
                   "playbooks/tasks/escalate.yml"]:
        assert needed in names, needed
    assert [n for n in names if FORBIDDEN.search(n)] == []


def test_build_ignore_keeps_out_caches_fleets_and_results(tmp_path):
    """A copy of the tree with every kind of development leftover planted in it still builds a clean tarball."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(".git", ".venv", ".collections",
                                                                            "__pycache__", ".pytest_cache"))
    for decoy in DECOYS:
        path = src / decoy
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("decoy\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    names = members(build(src, out))
    assert [n for n in names if FORBIDDEN.search(n)] == []
    assert "plugins/modules/restore_point.py" in names


def test_installs_offline_and_documents_itself_from_the_install_dir(installed, tmp_path):
    root = os.path.join(installed, "ansible_collections", "fleetops", "rollback")
    with open(os.path.join(root, "MANIFEST.json"), encoding="utf-8") as stream:
        manifest = json.load(stream)["collection_info"]
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == ("fleetops", "rollback", VERSION)
    env = installed_env(installed, tmp_path)
    listing = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "fleetops.rollback", "--format",
                   "json"], env=env)
    assert json.loads(listing.stdout) == {os.path.join(installed, "ansible_collections"): {
        "fleetops.rollback": {"version": VERSION}}}
    doc = run([os.path.join(BIN, "ansible-doc"), "--json"] + ["fleetops.rollback." + m for m in MODULES], env=env)
    docs = json.loads(doc.stdout)
    assert sorted(docs) == ["fleetops.rollback." + m for m in MODULES]
    for name, entry in docs.items():
        assert entry["doc"]["filename"].startswith(root + os.sep), (name, entry["doc"]["filename"])
    # Nothing from the repository is reachable: without the install dir the collection is unknown.
    missing = subprocess.run([os.path.join(BIN, "ansible-doc"), "fleetops.rollback.restore_point"],
                             env=dict(env, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "empty")),
                             capture_output=True, text=True, check=False)
    assert "fleetops.rollback.restore_point was not found" in missing.stderr, missing.stdout[:500] + missing.stderr


def fqcn_playbook(installed, tmp_path, name, inventory, extra_vars=None, check=False):
    results = tmp_path / ("results-%s-%d.jsonl" % (name, len(list(tmp_path.glob("results-*")))))
    argv = [os.path.join(BIN, "ansible-playbook"), "fleetops.rollback." + name, "-i", inventory]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv += ["--check", "--diff"]
    proc = subprocess.run(argv, cwd=str(tmp_path), env=installed_env(installed, tmp_path,
                                                                     FLEETOPS_TEST_RESULTS=str(results)),
                          capture_output=True, text=True, check=False, timeout=900)
    rows = []
    if results.exists():
        rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    return proc, rows


def recap(stdout):
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP."""
    found = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            found[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return found


@pytest.mark.slow
def test_installed_playbooks_snapshot_and_roll_back_a_fleet_by_fqcn(installed, tmp_path):
    fleet = local_fleet.create(str(tmp_path / "fleet"), hosts=3, base_port=0)
    try:
        assert all(ok for unused, ok, unused in local_fleet.deploy(fleet, 1, action="restart"))
        assert local_fleet.wait_healthy(fleet, timeout=120)[0]
        names = sorted(h.name for h in fleet.hosts)

        snap, rows = fqcn_playbook(installed, tmp_path, "snapshot", fleet.inventory,
                                   {"restore_point_label": "release-1"})
        assert snap.returncode == 0, snap.stdout[-3000:] + snap.stderr
        captured = [r for r in rows if r["action"] == "fleetops.rollback.restore_point" and r["status"] == "changed"]
        assert sorted(r["host"] for r in captured) == names

        local_fleet.deploy(fleet, 2, action="restart")  # release 2 is broken: /health answers 503
        assert local_fleet.wait_answering(fleet, timeout=60)[0]
        assert {r["version"] for r in local_fleet.status(fleet)} == {"2.0.0"}

        check, rows = fqcn_playbook(installed, tmp_path, "rollback_immediate", fleet.inventory,
                                    {"rollback_reason": "INC-FQCN"}, check=True)
        assert check.returncode == 0, check.stdout[-3000:] + check.stderr
        planned = {r["host"] for r in rows if r["task"].endswith("Restore the host to its restore point")
                   and r["status"] == "changed"}
        assert planned == set(names)
        assert {r["version"] for r in local_fleet.status(fleet)} == {"2.0.0"}  # check mode changed nothing

        real, rows = fqcn_playbook(installed, tmp_path, "rollback_immediate", fleet.inventory,
                                   {"rollback_reason": "INC-FQCN"})
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr
        assert {r["host"] for r in rows if r["task"].endswith("Restore the host to its restore point")
                and r["status"] == "changed"} == set(names)
        rows_after = local_fleet.status(fleet)
        assert {(r["health"], r["version"]) for r in rows_after} == {(200, "1.0.0")}

        again, unused = fqcn_playbook(installed, tmp_path, "rollback_immediate", fleet.inventory,
                                      {"rollback_reason": "INC-FQCN"})
        assert again.returncode == 0, again.stdout[-3000:]
        counts = recap(again.stdout)
        assert sorted(counts) == names
        assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts
    finally:
        local_fleet.stop(fleet)
