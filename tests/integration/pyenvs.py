"""Real virtualenvs and locally written wheelhouses for the pip tests (nothing is downloaded).

Creating a venv with pip takes seconds, so a session makes one template and each test gets a copy: a venv's
`bin/python` is a symlink to the base interpreter and site-packages holds no absolute paths, so a copied venv
is a real, independent venv once the #! lines of its scripts name the new place.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.wheels import corrupt_payload, wheel_name, write_project, write_wheel  # noqa: E402,F401  pylint: disable=unused-import

# Base interpreter of the test runner's own venv, so test venvs do not nest.
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable


def isolated_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def make_template(path):
    subprocess.run([BASE_PYTHON, "-m", "venv", str(path)], check=True, env=isolated_env())
    return str(path)


def clone(template, dest):
    """Copy a venv and point its scripts at the copy."""
    template, dest = str(template), str(dest)
    shutil.copytree(template, dest, symlinks=True)
    bindir = os.path.join(dest, "bin")
    for name in os.listdir(bindir):
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as stream:
            data = stream.read()
        if data.startswith(b"#!") or name.startswith("activate"):
            new = data.replace(template.encode(), dest.encode())
            if new != data:
                with open(path, "wb") as stream:
                    stream.write(new)
    return dest


def pip(venv, *args, check=True):
    proc = subprocess.run([os.path.join(str(venv), "bin", "python"), "-m", "pip"] + list(args), env=isolated_env(),
                          capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("pip %s failed:\n%s\n%s" % (" ".join(args), proc.stdout, proc.stderr))
    return proc


def install(venv, wheelhouse, *reqs):
    return pip(venv, "install", "--no-deps", "--no-index", "--find-links", str(wheelhouse), *reqs)


def freeze(venv):
    """`pip freeze --all` as {name: line}."""
    out = pip(venv, "freeze", "--all").stdout
    lines = {}
    pending = None
    for line in out.splitlines():
        if line.startswith("#"):
            pending = line
            continue
        name = line.split("==")[0].split(" @ ")[0].strip()
        if line.startswith("-e"):
            name = pending.split("(")[1].split("==")[0] if pending else line
        lines[name.lower().replace("_", "-")] = line
        pending = None
    return lines


def versions(venv):
    return {name: line.split("==", 1)[1] for name, line in freeze(venv).items() if "==" in line and not line.startswith("-e")}


def tree_state(venv):
    """Every file of the venv with its sha256, except bytecode and RECORD (pip writes those itself)."""
    state = {}
    for base, dirs, files in os.walk(str(venv)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(base, name)
            if name == "RECORD" or name.endswith(".pyc"):
                continue
            if os.path.islink(path):
                state[os.path.relpath(path, str(venv))] = "-> " + os.readlink(path)
            else:
                with open(path, "rb") as stream:
                    state[os.path.relpath(path, str(venv))] = hashlib.sha256(stream.read()).hexdigest()
    return state


def package_files(venv, package):
    """The files of one importable package (and its dist-info) with hashes."""
    key = package.replace("-", "_").lower()
    return {k: v for k, v in tree_state(venv).items()
            if "/site-packages/%s/" % key in "/" + k or "/site-packages/%s-" % key in "/" + k}
