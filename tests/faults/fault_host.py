"""The host tree every store fault case starts from: config with a secret, an ansistrano release layout, a store.

Kept out of conftest.py: test modules import from here, and a module named `conftest` is ambiguous when pytest loads
the conftest of several test directories in one process."""
import os

from harness import tree_state

# The secret every host tree below holds; no output of any case may show it.
SECRET = "s3cr3t-Value-9f2c"


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)
    os.chmod(path, mode)


class FaultHost:
    """A host tree in a temporary directory: config with a secret, an ansistrano release layout, and its store."""

    def __init__(self, base):
        self.base = str(base)
        self.root = os.path.join(self.base, "host")
        self.store = os.path.join(self.base, "store")
        self.etc = os.path.join(self.root, "etc", "app")
        self.env_file = os.path.join(self.etc, ".env")
        self.current = os.path.join(self.root, "srv", "app", "current")
        write(self.env_file, ("HOST=db\nDB_PASSWORD=%s\n" % SECRET).encode(), 0o600)
        write(os.path.join(self.etc, "app.conf"), b"workers 4\n")
        for name in ("v1", "v2"):
            write(os.path.join(self.root, "srv", "app", "releases", name, "VERSION"), name.encode())
        os.symlink("releases/v1", self.current)

    def components(self, **extra):
        spec = {"config": {"paths": [self.etc]}, "release": {"path": self.current}}
        spec.update(extra)
        return spec

    def state(self):
        """The whole host tree outside the store."""
        return tree_state(self.base, exclude=[self.store])

    def break_it(self):
        write(self.env_file, b"HOST=db2\nDB_PASSWORD=bad-one-7781\n", 0o600)
        write(os.path.join(self.etc, "extra.conf"), b"extra\n")
        os.unlink(self.current)
        os.symlink("releases/v2", self.current)
