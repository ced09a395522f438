"""The one schema of a health check: what derives from it (the argument spec, the key table, the parsers' defaults
and required keys), and the health_checks doc fragment, which must document exactly what it declares."""
from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.fleetops.rollback.plugins.doc_fragments.health_checks import ModuleDocFragment
from ansible_collections.fleetops.rollback.plugins.module_utils._health import parse
from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import HealthInputError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.schema import (
    CHECK_OPTIONS,
    CHECK_TYPES,
    COMMON_KEYS,
    SCHEMA,
    TYPE_KEYS,
    TYPES,
)

# Minimal valid checks of each type: only the keys the type requires.
MINIMAL = {
    "http": {"url": "http://127.0.0.1:8080/health"},
    "tcp": {"port": 5432},
    "command": {"argv": ["true"]},
    "prometheus": {"url": "http://127.0.0.1:9090", "query": "up", "max": 1},
    "k8s_rollout": {"name": "web"},
}
# A line of a key's description that says which types take it: "For V(http) and V(prometheus) checks, required."
FOR_TYPES = re.compile(r"^For (.+?) checks(, required)?\.")


def declared_types(name):
    """{type: required} for the check types that declare the key."""
    return {kind.name: kind_key.required for kind in TYPES for kind_key in kind.keys if kind_key.name == name}


def fragment_keys():
    """Where the fragment documents the keys of a check: health_gate's one-target checks, and every target's."""
    one = yaml.safe_load(ModuleDocFragment.CHECKS)["options"]["checks"]
    many = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["targets"]["suboptions"]["checks"]
    return {"checks": one["suboptions"], "targets[].checks": many["suboptions"]}


def description(doc):
    lines = doc["description"]
    return [lines] if isinstance(lines, str) else lines


def shown(value):
    """A default as the documentation writes it: V(true), V([200]), V(GET)."""
    if isinstance(value, bool):
        return "V(%s)" % str(value).lower()
    if isinstance(value, (list, tuple)):
        return "V([%s])" % ", ".join(str(item) for item in value)
    return "V(%s)" % value


# --------------------------------------------------------------------------------------- what derives from it

def test_the_argument_spec_derives_from_the_declarations():
    assert list(CHECK_TYPES) == ["http", "tcp", "command", "prometheus", "k8s_rollout"]
    assert CHECK_OPTIONS["type"] == {"type": "str", "required": True}
    assert CHECK_OPTIONS["request_timeout"] == {"type": "float", "default": 5.0}
    for name, spec in CHECK_OPTIONS.items():
        if name in ("type", "request_timeout"):
            continue
        # A key of a type has no default and is never required in the argument spec: that depends on the type.
        assert "default" not in spec and "required" not in spec, name
        kinds = [kind for kind in TYPES for key in kind.keys if key.name == name]
        assert kinds, "%s is in the argument spec but no type declares it" % name
    assert CHECK_OPTIONS["headers"]["no_log"] is True
    assert CHECK_OPTIONS["api_key"]["no_log"] is True
    assert CHECK_OPTIONS["on_empty"]["choices"] == ["fail", "pass", "zero"]


def test_every_type_takes_the_common_keys_then_its_own_in_order():
    common = tuple(key.name for key in COMMON_KEYS)
    for kind in TYPES:
        assert TYPE_KEYS[kind.name] == common + tuple(key.name for key in kind.keys)
    assert TYPE_KEYS["tcp"] == ("type", "request_timeout", "host", "port")


def test_every_type_has_a_parser():
    assert set(parse._PARSERS) == set(CHECK_TYPES)  # pylint: disable=protected-access


@pytest.mark.parametrize("kind", CHECK_TYPES)
def test_parsers_apply_the_declared_defaults(kind):
    check = parse.parse_check(dict(MINIMAL[kind], type=kind), "checks[0]")
    assert check.request_timeout == 5.0
    for key in SCHEMA[kind].keys:
        if key.default is None:
            continue
        value = getattr(check, key.name)
        assert value == (tuple(key.default) if isinstance(key.default, (list, tuple)) else key.default), key.name


@pytest.mark.parametrize("kind,name", [(kind.name, key.name) for kind in TYPES for key in kind.keys if key.required])
def test_a_missing_required_key_is_named_with_its_type(kind, name):
    raw = dict(MINIMAL[kind], type=kind)
    del raw[name]
    with pytest.raises(HealthInputError) as err:
        parse.parse_check(raw, "checks[2]")
    assert str(err.value).startswith("checks[2].%s: required for %s" % (name, SCHEMA[kind].phrase))


# --------------------------------------------------------------------------------------- the doc fragment

@pytest.mark.parametrize("where", ["checks", "targets[].checks"])
def test_the_fragment_documents_every_declared_key_and_nothing_else(where):
    documented = fragment_keys()[where]
    assert not sorted(set(CHECK_OPTIONS) - set(documented)), "declared but not documented"
    assert not sorted(set(documented) - set(CHECK_OPTIONS)), "documented but not declared"
    for name, spec in CHECK_OPTIONS.items():
        doc = documented[name]
        shape = {field: doc.get(field) for field in ("type", "elements", "choices", "default")}
        assert shape == {field: spec.get(field) for field in shape}, name
        assert bool(doc.get("required")) == bool(spec.get("required")), name


@pytest.mark.parametrize("where", ["checks", "targets[].checks"])
def test_the_fragment_says_which_types_take_and_require_each_key(where):
    documented = fragment_keys()[where]
    common = {key.name for key in COMMON_KEYS}
    for name, doc in documented.items():
        said = {}
        for line in description(doc):
            match = FOR_TYPES.match(line)
            if match:
                for kind in re.findall(r"V\((\w+)\)", match.group(1)):
                    said[kind] = bool(match.group(2))
        expected = {} if name in common else declared_types(name)
        assert said == expected, "%s: the description says %s, the schema declares %s" % (name, said, expected)


@pytest.mark.parametrize("where", ["checks", "targets[].checks"])
def test_the_fragment_names_the_defaults_and_the_secrets(where):
    documented = fragment_keys()[where]
    for kind in TYPES:
        for key in kind.keys:
            text = " ".join(description(documented[key.name]))
            if key.default is not None:
                assert shown(key.default) in text and "default" in text.lower(), (kind.name, key.name)
            if key.no_log:
                assert "secret" in text, key.name
    said = description(documented["type"])[0]
    assert re.findall(r"V\((\w+)\)", said) == list(CHECK_TYPES)


def test_references_point_into_their_own_option():
    for where, documented in fragment_keys().items():
        for name, doc in documented.items():
            for ref in re.findall(r"O\(([^)#]+)\)", " ".join(description(doc))):
                assert ref.startswith(where + "[]."), (where, name, ref)
                assert ref[len(where) + 3:] in CHECK_OPTIONS, (where, name, ref)
