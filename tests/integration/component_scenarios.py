"""One scenario per registered component, for the contract test (test_component_contract.py): real parts only.

A scenario builds a host in a known good state and returns the component's spec, `change()` moves the host to a
bad state the way a deploy would, and `state()` is everything a person could observe of what the component
manages. Registering a component without a scenario here fails the contract test, by name.
"""
from __future__ import annotations

import os
import stat
import sys

import pyenvs


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)
    os.chmod(path, mode)


def tree_state(root):
    """Every entry under root with its mode and, for files, content (pyenvs.tree_state plus modes)."""
    modes = {os.path.relpath(os.path.join(base, name), root): stat.S_IMODE(os.lstat(os.path.join(base, name)).st_mode)
             for base, dirs, files in os.walk(root) for name in dirs + files}
    return pyenvs.tree_state(root), modes


class ConfigScenario:
    def __init__(self, request, tmp_path):
        self.root = str(tmp_path / "etc" / "app")

    def prepare(self):
        write(os.path.join(self.root, "app.conf"), b"workers 4\n")
        write(os.path.join(self.root, ".env"), b"DB_PASSWORD=good\n", 0o600)
        return {"paths": [self.root]}

    def change(self):
        write(os.path.join(self.root, "app.conf"), b"workers 1\n")
        write(os.path.join(self.root, "extra.conf"), b"new\n")

    def state(self):
        return tree_state(self.root)


class ReleaseScenario:
    def __init__(self, request, tmp_path):
        self.app = str(tmp_path / "srv" / "app")
        self.current = os.path.join(self.app, "current")

    def prepare(self):
        for name in ("v1", "v2"):
            write(os.path.join(self.app, "releases", name, "VERSION"), name.encode())
        os.symlink("releases/v1", self.current)
        return {"path": self.current}

    def change(self):
        os.unlink(self.current)
        os.symlink("releases/v2", self.current)

    def state(self):
        return os.readlink(self.current)


MIGRATE = """
import sys
state = sys.argv[1]
if sys.argv[2] == "current":
    print(open(state).read().strip())
else:
    open(state, "w").write(sys.argv[3] + "\\n")
"""


class MigrationsScenario:
    """A real migration tool: a script that keeps its schema revision in a file."""

    def __init__(self, request, tmp_path):
        self.state_file = str(tmp_path / "revision")
        self.script = str(tmp_path / "migrate.py")

    def prepare(self):
        write(self.script, MIGRATE.encode())
        write(self.state_file, b"r1\n")
        tool = [sys.executable, self.script, self.state_file]
        return {"current": tool + ["current"], "downgrade": tool + ["to", "%s"], "upgrade": tool + ["to", "%s"]}

    def change(self):
        write(self.state_file, b"r2\n")

    def state(self):
        with open(self.state_file, encoding="utf-8") as stream:
            return stream.read()


class PackagesScenario:
    """A real virtualenv with wheels written locally (pyenvs): version 1.0, then a deploy upgrades to 2.0."""

    def __init__(self, request, tmp_path):
        self.wheelhouse = str(tmp_path / "wheelhouse")
        self.venv = str(tmp_path / "venv")
        self.template = str(tmp_path / "template")

    def prepare(self):
        os.makedirs(self.wheelhouse)
        for version in ("1.0", "2.0"):
            pyenvs.write_wheel(self.wheelhouse, "fleetops-contract", version, modules=2)
        pyenvs.make_template(self.template)
        pyenvs.clone(self.template, self.venv)
        pyenvs.install(self.venv, self.wheelhouse, "fleetops-contract==1.0")
        return {"pip": [{"virtualenv": self.venv, "find_links": [self.wheelhouse]}]}

    def change(self):
        pyenvs.install(self.venv, self.wheelhouse, "fleetops-contract==2.0")

    def state(self):
        return pyenvs.tree_state(self.venv)


class DatabaseScenario:
    """A real PostgreSQL database (pgbench tables) written to after the capture."""

    def __init__(self, request, tmp_path):
        self.db = request.getfixturevalue("pg_database")

    def prepare(self):
        # recreate: the database is rebuilt from the dump, so a table the bad release added goes too (clean only
        # drops and restores what the dump holds).
        return dict(self.db.login(), format="custom", mode="recreate")

    def runtime(self):
        # Points never store a password: a restore is given it for its own call.
        return {"database_password": self.db.login()["login_password"]}

    def change(self):
        self.db.sql("DELETE FROM pgbench_accounts WHERE aid <= 100")
        self.db.sql("CREATE TABLE deploy_marker (id int)")
        self.db.sql('ALTER TABLE deploy_marker OWNER TO "%s"' % self.db.login()["login_user"])

    def state(self):
        rows = self.db.sql("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
                           "ORDER BY relname")
        counts = [(name, self.db.sql('SELECT count(*) FROM "%s"' % name)[0][0]) for (name,) in rows]
        checksum = self.db.sql("SELECT md5(string_agg(aid::text || ':' || abalance::text, ',' ORDER BY aid)) "
                               "FROM pgbench_accounts")[0][0]
        return counts, checksum


class ImagesScenario:
    """A real Docker engine: app:latest on v1 with a container running it, then a deploy of v2."""

    def __init__(self, request, tmp_path):
        self.scene = request.getfixturevalue("scene")

    def prepare(self):
        self.scene.tag("v1", "latest")
        self.scene.run("web")
        return {"refs": [self.scene.ref("latest")], "containers": "by_image"}

    def change(self):
        self.scene.tag("v2", "latest")
        self.scene.client.api.remove_container(self.scene.name("web"), v=True, force=True)
        self.scene.run("web")

    def state(self):
        tags = {tag: image for tag, image in self.scene.tags().items() if not tag.startswith("rollback-")}
        # A restore recreates containers: their ids change, the image each runs and its state must not.
        containers = {name: (image, status) for name, (_id, image, status) in self.scene.containers().items()}
        return tags, containers


class KubernetesScenario:
    """The Kubernetes API test double, judged by kubectl: a Deployment reading a ConfigMap, then a deploy of a new
    image and a changed ConfigMap."""

    def __init__(self, request, tmp_path):
        import kube_env  # pylint: disable=import-outside-toplevel
        self.kube = request.getfixturevalue("kube")
        self.deployment = kube_env.deployment("web", "nginx:1.25", configmap="web-config", revisionHistoryLimit=1)

    def prepare(self):
        self.kube.configmap("web-config", mode="good")
        self.kube.apply(self.deployment)
        return {"kubeconfig": self.kube.config, "workloads": ["deployment/web"], "wait_timeout": 60}

    def change(self):
        self.kube.run("set", "image", "deployment/web", "app=nginx:1.26")
        self.kube.run("patch", "configmap", "web-config", "-p", '{"data": {"mode": "bad", "extra": "1"}}')

    def state(self):
        deployment = self.kube.get("deployment", "web")
        return (deployment["spec"]["template"], deployment["spec"]["replicas"],
                self.kube.get("configmap", "web-config").get("data"))


SCENARIOS = {
    "config": ConfigScenario,
    "release": ReleaseScenario,
    "migrations": MigrationsScenario,
    "packages": PackagesScenario,
    "database": DatabaseScenario,
    "images": ImagesScenario,
    "kubernetes": KubernetesScenario,
}
