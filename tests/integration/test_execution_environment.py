"""The execution environment definition: `ansible-builder create` writes its build context (the collection tarball,
Python and system requirements, a Containerfile installing pinned ansible-core and ansible-runner), and the
collection's meta/execution-environment.yml is what ansible-builder's own introspection finds in an installed copy."""
import os
import re
import shutil
import subprocess

import pytest
import yaml

from playbook_runner import BIN, ROOT

EE_FILE = os.path.join(ROOT, "execution-environment.yml")


def pins(path):
    """{name: version} of the exact pins in a requirements or constraints file."""
    found = {}
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                found[name.strip().lower()] = version.strip()
    return found


def bindep_lines(path):
    with open(path, encoding="utf-8") as stream:
        return [line.split("#", 1)[0].strip() for line in stream if line.split("#", 1)[0].strip()]


def run(argv, **kwargs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env, **kwargs)
    return proc


@pytest.fixture(scope="module")
def definition():
    with open(EE_FILE, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


@pytest.fixture(scope="module")
def context(tmp_path_factory, definition):
    """The EE definition and the files it names, with a freshly built tarball, through `ansible-builder create`."""
    work = tmp_path_factory.mktemp("ee")
    for rel in ["execution-environment.yml", definition["dependencies"]["python"],
                definition["dependencies"]["system"]]:
        os.makedirs(os.path.dirname(os.path.join(work, rel)), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), os.path.join(work, rel))
    out = work / "dist"
    out.mkdir()
    built = run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), ROOT],
                cwd=str(out))
    assert built.returncode == 0, built.stdout + built.stderr
    [tarball] = list(out.glob("fleetops-rollback-*.tar.gz"))
    [extra] = definition["additional_build_files"]
    target = work / extra["src"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tarball, target)
    ctx = work / "context"
    created = run([os.path.join(BIN, "ansible-builder"), "create", "-f", str(work / "execution-environment.yml"),
                   "--context", str(ctx), "--output-filename", "Containerfile"], cwd=str(work))
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Complete! The build context can be found at" in created.stdout
    return {"dir": ctx, "tarball": str(tarball), "work": work}


def test_definition_is_ansible_builder_v3_with_the_project_pins(definition):
    constraints = pins(os.path.join(ROOT, "constraints.txt"))
    assert definition["version"] == 3
    deps = definition["dependencies"]
    core = re.fullmatch(r"ansible-core==(\S+)", deps["ansible_core"]["package_pip"])
    runner = re.fullmatch(r"ansible-runner==(\S+)", deps["ansible_runner"]["package_pip"])
    assert core and core.group(1) == constraints["ansible-core"]
    assert runner and runner.group(1) == constraints["ansible-runner"]
    # The modules' Python packages, at the versions the tests ran.
    ee_pins = pins(os.path.join(ROOT, deps["python"]))
    assert set(ee_pins) == {"psycopg2-binary", "docker", "kubernetes"}
    assert all(constraints[name] == version for name, version in ee_pins.items())


def test_collection_metadata_points_at_the_same_requirements(definition):
    with open(os.path.join(ROOT, "meta", "execution-environment.yml"), encoding="utf-8") as stream:
        meta = yaml.safe_load(stream)
    assert meta["dependencies"] == {"python": definition["dependencies"]["python"],
                                    "system": definition["dependencies"]["system"]}


def test_create_writes_the_build_context(context, definition):
    ctx = context["dir"]
    build = ctx / "_build"
    containerfile = (ctx / "Containerfile").read_text(encoding="utf-8")
    assert 'ARG EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="%s %s"' % (definition["dependencies"]["ansible_core"]["package_pip"],
                                                 definition["dependencies"]["ansible_runner"]["package_pip"]) \
        in containerfile
    for stage in ["AS base", "AS galaxy", "AS builder", "AS final"]:
        assert stage in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect.py introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert pins(build / "requirements.txt") == pins(os.path.join(ROOT, definition["dependencies"]["python"]))
    assert bindep_lines(build / "bindep.txt") == bindep_lines(os.path.join(ROOT, definition["dependencies"]["system"]))
    assert (build / "exclude-collections.txt").read_text(encoding="utf-8").split() == ["fleetops.rollback"]
    # The galaxy stage installs the tarball that the context carries, from where the stage sees it (/build).
    requirements = yaml.safe_load((build / "requirements.yml").read_text(encoding="utf-8"))
    [entry] = requirements["collections"]
    assert entry["type"] == "file"
    assert entry["name"].startswith("/build/")
    packed = build / os.path.relpath(entry["name"], "/build")
    assert packed.is_file()
    with open(packed, "rb") as one, open(context["tarball"], "rb") as other:
        assert one.read() == other.read()


def test_introspection_of_the_installed_collection_finds_its_requirements(context, tmp_path):
    """What ansible-builder adds for this collection when another EE installs it."""
    path = tmp_path / "collections"
    installed = run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "-p",
                     str(path), context["tarball"]], cwd=str(tmp_path))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = context["dir"] / "_build" / "scripts" / "introspect.py"
    pip_out, bindep_out = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    proc = run([os.path.join(BIN, "python"), str(script), "introspect", str(path), "--write-pip", str(pip_out),
                "--write-bindep", str(bindep_out)], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = yaml.safe_load(proc.stdout)
    assert [line.split("#")[0].strip() for line in found["python"]] == \
        list(bindep_lines(os.path.join(ROOT, "meta", "ee-requirements.txt")))
    assert [line.split("#")[0].strip() for line in found["system"]] == bindep_lines(os.path.join(ROOT, "bindep.txt"))
    assert all(line.endswith("# from collection fleetops.rollback") for line in
               pip_out.read_text(encoding="utf-8").splitlines() + bindep_out.read_text(encoding="utf-8").splitlines())


def test_bindep_reads_the_system_requirements_on_this_platform():
    """bindep parses the file and, on this Debian machine, selects only the dpkg names (it lists the missing ones)."""
    proc = run([os.path.join(BIN, "bindep"), "--brief", "--file", os.path.join(ROOT, "bindep.txt")], cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: something is missing here, which is fine
    assert set(proc.stdout.split()) <= {"postgresql-client", "git"}, proc.stdout
    assert "postgresql\n" not in proc.stdout  # the rpm name is not chosen on Debian
