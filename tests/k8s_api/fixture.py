"""Start the Kubernetes API test double for a test and write kubeconfigs pointing kubectl at it.

    server = start_server()
    server.write_kubeconfig(tmp_path / "kubeconfig", namespace="default")
    ... kubectl --kubeconfig PATH ...
    server.stop()

The pytest fixture `k8s_api` (importable into a conftest.py) does the same and stops the server after the test.
"""
import os

import pytest

from .server import FakeApiServer


class RunningServer:
    """A started FakeApiServer: .url, .store, .controller, .write_kubeconfig(), .errors(), .stop()."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.store = server.store
        self.controller = server.controller

    def write_kubeconfig(self, path, namespace="default", context="fake"):
        """Write a kubeconfig (plain HTTP, no credentials) for this server; returns the path as a string."""
        path = os.fspath(path)
        text = "\n".join([
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- name: %s" % context,
            "  cluster:",
            "    server: %s" % self.url,
            "users:",
            "- name: %s" % context,
            "  user: {}",
            "contexts:",
            "- name: %s" % context,
            "  context:",
            "    cluster: %s" % context,
            "    user: %s" % context,
            "    namespace: %s" % namespace,
            "current-context: %s" % context,
            "",
        ])
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        return path

    def errors(self):
        """Unexpected exceptions inside the double (its own bugs): request handlers and the controller's ticker."""
        return list(self.server.errors) + list(self.controller.errors)

    def stop(self):
        self.server.stop()


def start_server(tick=0.05, log=False):
    """Start a test double of the Kubernetes API on 127.0.0.1 and a free port."""
    return RunningServer(FakeApiServer(host="127.0.0.1", port=0, tick=tick, log=log).start())


@pytest.fixture
def k8s_api():
    server = start_server()
    yield server
    server.stop()
    assert not server.errors(), server.errors()
