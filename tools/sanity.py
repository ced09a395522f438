"""Run `ansible-test sanity` on this collection with the project's Python, offline apart from PyPI.

    python tools/sanity.py [ansible-test sanity options...]      e.g. --test pylint, --test validate-modules -v

- ansible-test wants the collection at .../ansible_collections/fleetops/rollback; `make venv` links it
  there under .collections, and ANSIBLE_TEST_CONTENT_ROOT points ansible-test at that path (it would
  otherwise resolve the working directory through the link and refuse the repository root).
- It runs with `--local --python 3.11`: the default test containers cannot be pulled here.
- A full run (no arguments) then runs the `compile` test for every other Python version ansible-test
  supports that this machine has (on PATH or in pyenv): modules and module_utils must compile on the
  targets' Pythons (3.8 and later), the rest on the controller's (3.11 and later). Versions not found
  are named and skipped.
- Each sanity test runs in a virtual environment that ansible-test creates and fills from its own
  exact pins (ansible_test/_data/requirements/sanity.*.txt) through pip from PyPI. They are created
  on the first run (2.5 to 8 minutes here, mostly downloads) and reused afterwards (a full run then takes 1.5 minutes,
  offline). They live in ~/.cache/fleetops/ansible-test (or $FLEETOPS_ANSIBLE_TEST_HOME), which is
  ansible-test's HOME: outside the clone, so a fresh clone on the same machine (CI) reuses them, and
  apart from the user's own ~/.ansible. One run at a time holds a lock there, because ansible-test
  does not guard the creation of its environments against a concurrent run.
- ansible-test bootstraps pip in them with a script from its own CI file server, which is not
  reachable; tools/ansible_test_get_pip.py stands in for it (ensurepip, then the same pip pin).
"""
from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
import time

from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
from ansible_test._internal.python_requirements import get_venv_packages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENT_ROOT = os.path.join(ROOT, ".collections", "ansible_collections", "fleetops", "rollback")
TEST_HOME = os.environ.get("FLEETOPS_ANSIBLE_TEST_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache", "fleetops", "ansible-test")
PYTHON_VERSION = "%d.%d" % sys.version_info[:2]


def bootstrap_pip_version() -> str:
    """The pip version ansible-test bootstraps into its sanity environments (the name of its cached script)."""
    class _Python:  # get_venv_packages only reads .version
        version = PYTHON_VERSION

    return get_venv_packages(_Python())["pip"]


def prepare() -> dict[str, str]:
    if not os.path.isdir(os.path.join(CONTENT_ROOT, "plugins")):
        raise SystemExit("%s is missing: run `make venv` first (it links the collection there)" % CONTENT_ROOT)
    cache = os.path.join(TEST_HOME, ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    script = os.path.join(cache, "get_pip_%s.py" % bootstrap_pip_version().replace(".", "_"))
    shutil.copyfile(os.path.join(ROOT, "tools", "ansible_test_get_pip.py"), script)
    env = dict(os.environ)
    env.update(
        HOME=TEST_HOME,
        ANSIBLE_TEST_CONTENT_ROOT=CONTENT_ROOT,
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", os.defpath),
    )
    # The project's ansible.cfg and collection path are for playbooks, not for ansible-test.
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"):
        env.pop(name, None)
    return env


def main(argv: list[str]) -> int:
    os.makedirs(TEST_HOME, mode=0o700, exist_ok=True)
    with open(os.path.join(TEST_HOME, "run.lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run(argv)


def other_pythons() -> tuple[dict[str, str], list[str]]:
    """The bin directories of the other Python versions ansible-test supports (modules run on older
    targets than the controller), found on PATH or in pyenv, and the versions not found."""
    found, missing = {}, []
    pyenv = os.path.join(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"), "versions")
    for version in SUPPORTED_PYTHON_VERSIONS:
        if version == PYTHON_VERSION:
            continue
        on_path = shutil.which("python" + version)
        candidates = [os.path.dirname(on_path)] if on_path and "/shims" not in on_path else []
        candidates += sorted(glob.glob(os.path.join(pyenv, version + ".*", "bin")), reverse=True)
        usable = [d for d in candidates if os.access(os.path.join(d, "python" + version), os.X_OK)]
        if usable:
            found[version] = usable[0]
        else:
            missing.append(version)
    return found, missing


def ansible_test(args: list[str], env: dict[str, str], what: str) -> int:
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-test"), "sanity", "--color", "no"] + args
    print("+ (cd %s && %s)" % (CONTENT_ROOT, " ".join(command)), flush=True)
    start = time.monotonic()
    rc = subprocess.run(command, cwd=CONTENT_ROOT, env=env, check=False).returncode
    verdict = "passed" if rc == 0 else "FAILED (exit %d)" % rc
    print("%s: %s in %.0f s" % (what, verdict, time.monotonic() - start), flush=True)
    return rc


def ignore_entries() -> list[str]:
    """Entries of tests/sanity/ignore-*.txt: this collection has none, every finding is fixed instead."""
    entries = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "sanity", "ignore-*.txt"))):
        with open(path, encoding="utf-8") as stream:
            entries += ["%s: %s" % (os.path.relpath(path, ROOT), line.strip()) for line in stream
                        if line.strip() and not line.lstrip().startswith("#")]
    return entries


def run(argv: list[str]) -> int:
    entries = ignore_entries()
    if entries:
        print("sanity: ignore entries are not allowed; fix the findings instead:\n  " + "\n  ".join(entries), flush=True)
        return 1
    env = prepare()
    rc = ansible_test(["--local", "--python", PYTHON_VERSION] + argv, env, "ansible-test sanity (Python %s)" % PYTHON_VERSION)
    if argv:
        return rc
    # A full run also compiles for every other supported Python found here: ansible-test checks each file
    # only against the versions it must run on (modules and module_utils: every target version).
    found, missing = other_pythons()
    for version, bin_dir in sorted(found.items(), key=lambda item: [int(n) for n in item[0].split(".")]):
        extra = dict(env, PATH=bin_dir + os.pathsep + env["PATH"])
        # The controller stays this Python (--python would re-run ansible-test itself under that version).
        args = ["--test", "compile", "--controller", "origin:python=" + PYTHON_VERSION, "--target-python", version]
        rc = ansible_test(args, extra, "compile (Python %s)" % version) or rc
    if missing:
        print("compile: no Python %s on this machine, not checked" % ", ".join(missing), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
