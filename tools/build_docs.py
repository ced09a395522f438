"""Build the module and role reference of fleetops.rollback into docs/reference with antsibull-docs.

    python tools/build_docs.py [--dest docs/reference] [--strict]

antsibull-docs renders what `ansible-doc` reads from the collection on .collections (this repository), one
reStructuredText page per module and role plus an index. A plugin whose DOCUMENTATION does not pass antsibull-docs'
schema gets an error page instead; those are listed at the end, and --strict makes them fail the build.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MALFORMED = "was malformed"


def build(dest, strict=False):
    """Write the pages into dest (replacing it); returns (pages, malformed pages)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    with tempfile.TemporaryDirectory(prefix="fleetops-docs-") as tmp:
        argv = [os.path.join(BIN, "antsibull-docs"), "collection", "--use-current", "--squash-hierarchy",
                "--output-format", "simplified-rst", "--no-add-antsibull-docs-version", "--dest-dir", tmp,
                "fleetops.rollback"]
        proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("antsibull-docs failed (%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
        pages = sorted(name for name in os.listdir(tmp) if name.endswith(".rst"))
        malformed = []
        for name in pages:
            with open(os.path.join(tmp, name), encoding="utf-8") as stream:
                if MALFORMED in stream.read():
                    malformed.append(name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        shutil.copytree(tmp, dest)
    return pages, malformed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=os.path.join(ROOT, "docs", "reference"))
    parser.add_argument("--strict", action="store_true", help="fail when a plugin's documentation is malformed")
    args = parser.parse_args(argv)
    pages, malformed = build(args.dest, args.strict)
    print("%d pages in %s" % (len(pages), os.path.relpath(args.dest, os.getcwd())))
    for name in malformed:
        print("malformed documentation, error page written: %s" % name)
    if malformed and args.strict:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
