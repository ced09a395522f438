"""The registry is the one place that names components: everything that lists them agrees with it, or this fails."""
import importlib
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.fleetops.rollback.plugins.module_utils import _components
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import (
    Component, argument_spec, validate_spec)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))))
ORDER = list(_components.ORDER)


def read_yaml(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def module_doc(name):
    module = importlib.import_module("ansible_collections.fleetops.rollback.plugins.modules.%s" % name)
    return yaml.safe_load(module.DOCUMENTATION)


def test_the_restore_order_is_the_order_of_registration():
    assert ORDER == ["migrations", "database", "packages", "config", "release", "images", "kubernetes"]
    assert list(_components.DECLARATIONS) == ORDER


@pytest.mark.parametrize("name", ORDER)
def test_each_declaration_loads_its_own_implementation(name):
    declaration = _components.DECLARATIONS[name]
    assert declaration.__name__.endswith("._components." + name)
    cls = declaration.load()
    assert issubclass(cls, Component) and cls.name == name and cls.declaration is declaration
    # The contract's work is implemented, not inherited from the base that fails.
    for method in ("capture", "scope", "plan", "apply"):
        assert getattr(cls, method) is not getattr(Component, method), "%s does not implement %s" % (name, method)
    # select is either supported and implemented, or the base refuses it clearly.
    assert (getattr(cls, "select") is not Component.select) == cls.supports_select


@pytest.mark.parametrize("name", ORDER)
def test_each_option_is_documented_and_a_valid_argument_spec(name):
    declaration = _components.DECLARATIONS[name]
    assert declaration.SUMMARY and not declaration.SUMMARY.endswith(".")  # a phrase; the docs end it

    def walk(options, where):
        for option, spec in options.items():
            assert spec.get("description"), "%s.%s has no description" % (where, option)
            assert spec.get("type"), "%s.%s has no type" % (where, option)
            walk(spec.get("options") or {}, where + "." + option)

    walk(declaration.OPTIONS, name)
    walk(declaration.RUNTIME_OPTIONS, name + " runtime")
    # An unknown option is refused with the component's name in the message.
    with pytest.raises(RollbackError) as err:
        validate_spec(declaration.OPTIONS, {"no_such_option": 1}, "components." + name)
    assert "components.%s" % name in err.value.msg and "no_such_option" in err.value.msg


def test_runtime_values_live_on_the_instance_of_one_call():
    first = _components.Components(runtime={"database_password": "pw-1"})
    second = _components.Components()
    assert first["database"] is first["database"] and first["database"] is not second["database"]
    assert first["database"].runtime == {"database_password": "pw-1"} and second["database"].runtime == {}
    # A component only sees the runtime values its declaration asks for.
    assert first["config"].runtime == {}


def test_restore_point_options_come_from_the_registry():
    module = importlib.import_module("ansible_collections.fleetops.rollback.plugins.modules.restore_point")
    spec = module.RestorePointModule.argument_spec
    assert spec["only"]["choices"] == ORDER
    assert list(spec["components"]["options"]) == ORDER
    for name in ORDER:
        assert spec["components"]["options"][name]["options"] == argument_spec(_components.DECLARATIONS[name].OPTIONS)
    for declaration in _components.REGISTRY:
        for option in declaration.RUNTIME_OPTIONS:
            assert spec[option] == argument_spec(declaration.RUNTIME_OPTIONS)[option]
    assert module_doc("restore_point")["options"]["only"]["choices"] == ORDER


def test_the_generated_documentation_is_up_to_date():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sync_components.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_role_argument_specs_name_the_registered_components():
    rollback = read_yaml("roles", "rollback", "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert rollback["rollback_components"]["choices"] == ORDER
    restore_point = read_yaml("roles", "restore_point", "meta", "argument_specs.yml")["argument_specs"]["main"]
    text = " ".join(restore_point["options"]["restore_point_components"]["description"])
    assert re.search(r"The components: (.*)\.", text).group(1).split(", ") == ORDER


def test_awx_survey_choices_are_the_registered_components():
    templates = read_yaml("awx", "job_templates.yml")
    found = []
    stack = [templates]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("variable") in ("rollback_components", "recovery_components"):
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    assert found, "no survey question chooses components"
    for question in found:
        assert question["choices"] == ORDER, question["variable"]


@pytest.mark.parametrize("path", [("README.md",), ("docs", "restore-points.md")])
def test_the_guides_name_every_registered_component(path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as stream:
        text = stream.read()
    missing = [name for name in ORDER if "`%s`" % name not in text]
    assert not missing, "%s does not mention %s" % (os.path.join(*path), ", ".join(missing))
