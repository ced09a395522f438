"""Every module's documentation renders with the real ansible-doc (a YAML slip breaks it silently otherwise)."""
import json
import os
import subprocess
import sys

import pytest

from playbook_runner import ROOT, ansible_env

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "--json",
                           "fleetops.rollback." + module], env=ansible_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["fleetops.rollback." + module]
    assert doc["doc"]["short_description"] and doc["examples"].strip() and doc["return"]
    assert {"check_mode", "diff_mode", "idempotent"} <= set(doc["doc"]["attributes"])
    assert all(isinstance(line, str) for line in doc["doc"]["description"])


FILTERS = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "filter"))
                 if name.endswith(".py") and not name.startswith("_"))


@pytest.mark.parametrize("name", FILTERS)
def test_ansible_doc_renders_filters(name):
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", "filter", "--json",
                           "fleetops.rollback." + name], env=ansible_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["fleetops.rollback." + name]
    assert doc["doc"]["short_description"] and doc["examples"].strip() and doc["return"]
    assert all(isinstance(line, str) for line in doc["doc"]["description"])
