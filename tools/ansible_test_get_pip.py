"""Stand-in for the pip bootstrap script that ansible-test downloads from its own CI file server.

ansible-test creates one virtual environment per sanity test and puts pip into it by running a
`get-pip.py` it fetches from a host this machine cannot reach; it uses a copy it finds at
`~/.ansible/test/cache/get_pip_<version>.py` instead (the error message says so).
`tools/sanity.py` places this file there. Run inside the new, empty environment with the arguments
ansible-test gives get-pip.py (`pip==24.2 --no-setuptools --no-wheel ...`), it installs the bundled
pip with `ensurepip` (offline) and then exactly the requested packages from the package index,
so the environment ends up as the real bootstrap leaves it.
"""
from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    packages = [arg for arg in argv if not arg.startswith("-")]
    options = [arg for arg in argv if arg.startswith("-")]
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"] + packages,
                   check=True)
    unwanted = [name for name, flag in (("setuptools", "--no-setuptools"), ("wheel", "--no-wheel")) if flag in options]
    installed = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                               check=True, capture_output=True, text=True).stdout
    present = {line.split("==")[0].lower() for line in installed.splitlines()}
    remove = [name for name in unwanted if name in present]
    if remove:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet",
                        "--disable-pip-version-check"] + remove, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
