"""Every plugin's documentation renders with the real ansible-doc and is complete.

A YAML slip in DOCUMENTATION breaks `ansible-doc` silently otherwise; ansible-test's validate-modules
checks the docs against the argument spec (`make sanity`), this checks what a reader sees.

Every plugin type the collection ships is covered: modules (examples, return values and accurate
attributes check_mode / diff_mode / idempotent / platform), and any filter, test, lookup, callback,
inventory, connection, ... plugins added under plugins/<type>/.
"""
import functools
import json
import os
import subprocess
import sys

import pytest

from playbook_runner import ROOT, ansible_env

COLLECTION = "fleetops.rollback"
ANSIBLE_DOC = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
PLUGINS = os.path.join(ROOT, "plugins")
# Directories under plugins/ that hold no documented plugins of their own (action plugins share their module's docs).
NOT_DOCUMENTED = {"module_utils", "doc_fragments", "plugin_utils", "action", "__pycache__"}
# Plugin types whose files may hold several plugins (one per function); ansible-doc lists their names.
MULTI_PER_FILE = {"filter", "test"}
# Types whose docs show usage examples (a callback or a cache is configured, not called).
WITH_EXAMPLES = {"module", "filter", "test", "lookup", "inventory"}
# Types that document what they return.
WITH_RETURN = {"module", "filter", "test", "lookup"}
MODULE_ATTRIBUTES = ("check_mode", "diff_mode", "idempotent", "platform")


def ansible_doc(*args):
    return subprocess.run([ANSIBLE_DOC] + list(args), env=ansible_env(), capture_output=True, text=True,
                          check=False, timeout=300)


def plugin_type(directory):
    return "module" if directory == "modules" else directory


def files_of(directory):
    path = os.path.join(PLUGINS, directory)
    return sorted(name[:-3] for name in os.listdir(path) if name.endswith(".py") and name != "__init__.py")


def plugins():
    found = []
    for directory in sorted(os.listdir(PLUGINS)):
        if directory in NOT_DOCUMENTED or not os.path.isdir(os.path.join(PLUGINS, directory)):
            continue
        kind = plugin_type(directory)
        if kind in MULTI_PER_FILE:
            proc = ansible_doc("-t", kind, "--list", "--json", COLLECTION)
            assert proc.returncode == 0, proc.stderr
            names = sorted(name.split(".")[-1] for name in json.loads(proc.stdout))
            # A file with no documented plugin at all would not show in the list: name it after its file.
            names = sorted(set(names) | {name for name in files_of(directory) if not names})
        else:
            names = files_of(directory)
        found.extend((kind, name) for name in names)
    return found


PLUGIN_LIST = plugins()


def test_every_module_is_covered():
    assert {name for kind, name in PLUGIN_LIST if kind == "module"} == set(files_of("modules"))


@functools.lru_cache(maxsize=None)
def docs_of(kind):
    """All docs of one type in one ansible-doc call (each call costs seconds); {} if any fails to render."""
    names = ["%s.%s" % (COLLECTION, name) for plugin_kind, name in PLUGIN_LIST if plugin_kind == kind]
    proc = ansible_doc("-t", kind, "--json", *names)
    if proc.returncode != 0 or proc.stderr.strip():
        return {}
    return json.loads(proc.stdout)


def doc_of(kind, name):
    full = "%s.%s" % (COLLECTION, name)
    docs = docs_of(kind)
    if full not in docs:
        proc = ansible_doc("-t", kind, "--json", full)
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
        docs = json.loads(proc.stdout)
    assert full in docs, "ansible-doc -t %s %s returned no documentation" % (kind, full)
    return docs[full]


def text(value):
    if isinstance(value, list):
        return " ".join(value)
    return value or ""


@pytest.mark.parametrize("kind,name", PLUGIN_LIST, ids=["%s:%s" % item for item in PLUGIN_LIST])
def test_plugin_docs_render_complete(kind, name):
    entry = doc_of(kind, name)
    doc = entry["doc"]
    assert doc.get("short_description", "").strip(), "no short_description"
    assert doc.get("description") and all(isinstance(line, str) and line.strip() for line in doc["description"])
    assert doc.get("author"), "no author"
    assert doc.get("version_added"), "no version_added"
    for option, spec in (doc.get("options") or {}).items():
        assert text(spec.get("description")).strip(), "option %s has no description" % option
    if kind in WITH_EXAMPLES:
        assert (entry.get("examples") or "").strip(), "no EXAMPLES"
    if kind in WITH_RETURN:
        assert entry.get("return"), "no RETURN"
        for key, spec in entry["return"].items():
            assert text(spec.get("description")).strip(), "return value %s has no description" % key
            assert spec.get("type"), "return value %s has no type" % key


@pytest.mark.parametrize("name", sorted(files_of("modules")))
def test_module_attributes_are_complete(name):
    doc = doc_of("module", name)["doc"]
    attributes = doc.get("attributes") or {}
    missing = [key for key in MODULE_ATTRIBUTES if key not in attributes]
    assert not missing, "attributes missing: %s" % ", ".join(missing)
    for key, spec in attributes.items():
        assert spec.get("support") in ("full", "partial", "none", "N/A"), (key, spec.get("support"))
        assert text(spec.get("description")).strip(), "attribute %s has no description" % key
    assert attributes["platform"].get("platforms"), "attribute platform names no platforms"
    for key, spec in doc.get("options", {}).items():
        assert spec.get("type"), "option %s has no type" % key


@pytest.mark.parametrize("name", sorted(files_of("modules")))
def test_module_examples_use_the_fqcn(name):
    examples = doc_of("module", name)["examples"]
    assert "%s.%s:" % (COLLECTION, name) in examples, "EXAMPLES never call %s.%s" % (COLLECTION, name)


def test_ansible_doc_text_shows_examples_and_returns():
    """What a person reads: the plain text rendering of one module has every section."""
    proc = ansible_doc("fleetops.rollback.restore_point")
    assert proc.returncode == 0, proc.stderr
    for section in ("OPTIONS", "ATTRIBUTES", "EXAMPLES", "RETURN VALUES", "check_mode", "diff_mode", "idempotent"):
        assert section in proc.stdout, section
