"""Run `ansible-test sanity` on this collection with the project's Python, offline apart from PyPI.

    python tools/sanity.py [ansible-test sanity options...]      e.g. --test pylint, --test validate-modules -v

- ansible-test wants the collection at .../ansible_collections/fleetops/rollback; `make venv` links it
  there under .collections, and ANSIBLE_TEST_CONTENT_ROOT points ansible-test at that path (it would
  otherwise resolve the working directory through the link and refuse the repository root).
- It runs with `--local --python 3.11`: the default test containers cannot be pulled here.
- Each sanity test runs in a virtual environment that ansible-test creates and fills from its own
  exact pins (ansible_test/_data/requirements/sanity.*.txt) through pip from PyPI. They are created
  on the first run (about 7 minutes here) and reused afterwards (a full run then takes 1.5 minutes,
  offline). They live in ~/.cache/fleetops/ansible-test (or $FLEETOPS_ANSIBLE_TEST_HOME), which is
  ansible-test's HOME: outside the clone, so a fresh clone on the same machine (CI) reuses them, and
  apart from the user's own ~/.ansible. One run at a time holds a lock there, because ansible-test
  does not guard the creation of its environments against a concurrent run.
- ansible-test bootstraps pip in them with a script from its own CI file server, which is not
  reachable; tools/ansible_test_get_pip.py stands in for it (ensurepip, then the same pip pin).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENT_ROOT = os.path.join(ROOT, ".collections", "ansible_collections", "fleetops", "rollback")
TEST_HOME = os.environ.get("FLEETOPS_ANSIBLE_TEST_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache", "fleetops", "ansible-test")
PYTHON_VERSION = "%d.%d" % sys.version_info[:2]


def bootstrap_pip_version() -> str:
    """The pip version ansible-test bootstraps into its sanity environments (the name of its cached script)."""
    from ansible_test._internal.python_requirements import get_venv_packages  # pylint: disable=import-outside-toplevel

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


def run(argv: list[str]) -> int:
    env = prepare()
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-test"), "sanity", "--local",
               "--python", PYTHON_VERSION, "--color", "no"] + argv
    print("+ (cd %s && %s)" % (CONTENT_ROOT, " ".join(command)), flush=True)
    start = time.monotonic()
    rc = subprocess.run(command, cwd=CONTENT_ROOT, env=env, check=False).returncode
    verdict = "passed" if rc == 0 else "FAILED (exit %d)" % rc
    print("ansible-test sanity: %s in %.0f s" % (verdict, time.monotonic() - start), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
