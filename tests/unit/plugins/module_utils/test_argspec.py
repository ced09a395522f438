"""Unit tests for _argspec: typed options refused in words that name the option's full path and its value."""

import json
import os
import subprocess
import sys

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.fleetops.rollback.plugins.module_utils._argspec import (
    dict_option_problem, messages, secret_values)

SPEC = {
    "label": {"type": "str"},
    "components": {"type": "dict", "options": {
        "database": {"type": "dict", "options": {
            "db": {"type": "str", "required": True},
            "port": {"type": "int", "default": 5432},
            "format": {"type": "str", "choices": ["custom", "directory"]},
            "login_password": {"type": "str", "no_log": True},
        }},
        "packages": {"type": "dict", "options": {
            "pip": {"type": "list", "elements": "dict", "options": {
                "virtualenv": {"type": "path"},
                "prune_extra": {"type": "bool"},
            }},
        }},
    }},
}


@pytest.mark.parametrize("params, message", [
    ({"components": "config"}, "components: give a dict of options (database, packages), got a str ('config')"),
    ({"components": 5}, "components: give a dict of options (database, packages), got an int (5)"),
    ({"components": {"database": ["x"]}}, "components.database: give a dict of options"),
    ({"components": {"packages": {"pip": ["x"]}}}, "components.packages.pip[0]: give a dict of options"),
    ({"components": {"database": {"port": 1}}}, "components.database.db is required"),
    ({"components": {"database": {"db": "a", "port": "abc"}}}, "components.database.port: give an int, got a str ('abc')"),
    ({"components": {"database": {"db": "a", "format": "tar"}}},
     "components.database.format: 'tar' is not one of custom, directory"),
    ({"components": {"kernel": {}}}, "components: unknown option 'kernel'; known options: database, packages"),
    ({"components": {"database": {"db": "a", "colour": 1}}}, "components.database: unknown option 'colour'"),
    ({"components": {"packages": {"pip": "x"}}}, "components.packages.pip: each element must be a dict, got a str ('x')"),
    ({"components": {"packages": {"pip": [{"prune_extra": "perhaps"}]}}}, "prune_extra: give a bool, got a str"),
    ({"components": {"database": {"db": ["app"]}}}, "components.database.db: give a string, got a list (['app'])"),
    ({"label": {"a": 1}}, "label: give a string, got a dict ({'a': 1})"),
])
def test_problems_name_the_path_and_the_value(params, message):
    problem = dict_option_problem(SPEC, params)
    assert problem is not None and message in problem, problem


def test_a_secret_given_the_wrong_type_is_not_shown():
    problem = dict_option_problem(SPEC, {"components": {"database": {"db": "a", "login_password": ["hunter2"]}}})
    assert problem == "components.database.login_password: give a string, got a list"


@pytest.mark.parametrize("params", [
    {}, {"label": "x"}, {"components": None},
    {"components": {"database": {"db": "a", "port": "5432"}}},  # Ansible's conversions stay accepted
    {"components": {"packages": {"pip": [{"virtualenv": "/srv/venv", "prune_extra": "yes"}]}}},
])
def test_good_values_pass(params):
    assert dict_option_problem(SPEC, params) is None


def test_messages_keep_a_where_prefix_for_a_component_spec():
    options = SPEC["components"]["options"]["database"]["options"]
    result = ArgumentSpecValidator(options).validate({"db": "a", "port": "x", "colour": 1})
    found = messages(result.errors, "components.database", root={"db": "a", "port": "x", "colour": 1})
    assert "components.database: unknown option 'colour'; known options: db, format, login_password, port" in found
    assert "components.database.port: give an int, got a str ('x')" in found


def test_secret_values_are_found_whatever_their_shape():
    params = {"components": {"database": {"db": "a", "login_password": "s3cret"}, "packages": "junk"}}
    assert secret_values(SPEC, params) == {"s3cret"}
    assert secret_values(SPEC, {"components": {"database": {"login_password": ["p1", "p2"]}}}) == {"p1", "p2"}
    assert secret_values(SPEC, {"components": 5}) == set()


def _run_module(name, args, tmp_path):
    """A module run as Ansible runs it (its arguments in a file), returning its JSON result."""
    root = os.path.abspath(__file__).rsplit(os.sep + "tests" + os.sep, 1)[0]
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, os.path.join(root, "plugins", "modules", name + ".py"), str(path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, PYTHONPATH=os.path.join(root, ".collections")))
    return json.loads(done.stdout)


def test_arguments_read_again_untyped_keep_their_aliases_and_secrets(tmp_path):
    """A number Ansible cannot read (an infinite float for an int) makes the module read its arguments again untyped:
    an option given by its alias (login_port) is still known, and a password is still masked."""
    result = _run_module("pg_dump", {"db": "app", "login_port": float("inf"), "login_password": "hunter2-secret",
                                     "dest": str(tmp_path / "app.dump"), "format": "custom"}, tmp_path)
    assert result["failed"] is True
    assert "could not be read" in result["msg"] and "Unsupported parameters" not in result["msg"], result["msg"]
    assert "hunter2-secret" not in str(result)


def test_a_malformed_dict_of_options_is_refused_with_its_secrets_masked(tmp_path):
    result = _run_module("restore_point", {"store_path": str(tmp_path / "store"), "components": {
        "database": {"db": "app", "port": "abc", "login_password": "hunter2-secret"}}}, tmp_path)
    assert result["msg"] == "components.database.port: give an int, got a str ('abc')"
    assert "hunter2-secret" not in str(result)
    assert not (tmp_path / "store").exists()
