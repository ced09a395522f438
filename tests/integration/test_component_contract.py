"""The contract every registered component passes, on real parts (files, a virtualenv, PostgreSQL, Docker).

A component gets these tests by being registered (plugins/module_utils/_components/__init__.py) and having a
scenario in component_scenarios.py. For each:
- check mode's plan is the real run's plan, and check mode changes neither the host nor the store;
- the real restore brings the captured state back, and a second restore changes nothing;
- a failure right after the component applied is reverted exactly by the safety point;
- a bad spec is refused with a message naming the component, and nothing changes.
"""
import json

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils import _components
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store

from component_scenarios import SCENARIOS, tree_state


def plan_of(result):
    """A restore's plan without timings, comparable between check mode and the real run."""
    return json.dumps({name: entry["changes"] for name, entry in result["plan"].items()}, sort_keys=True, default=str)


class Contract:
    """One registered component's scenario, captured known good in its own store."""

    def __init__(self, name, scenario, store):
        self.name, self.scenario, self.store = name, scenario, store
        self.spec = scenario.prepare()
        with _points.locked(store, {}, "contract", create=True):
            parts = self.parts()
            _points.capture(store, _points.normalize_components({name: self.spec}, parts), label="good",
                            status="known_good", parts=parts)

    def parts(self):
        """The components of one call, with the values a restore is given at run time (a database password)."""
        return _components.Components(runtime=getattr(self.scenario, "runtime", dict)())

    def restore(self, check=False, **options):
        options.setdefault("parts", self.parts())
        if check:
            return _points.restore(self.store, "known_good", check=True, diff=True, **options)
        with _points.locked(self.store, {}, "contract"):
            return _points.restore(self.store, "known_good", **options)


@pytest.fixture(params=list(_components.ORDER))
def contract(request, tmp_path):
    name = request.param
    assert name in SCENARIOS, "component %s is registered but has no contract scenario in component_scenarios.py" % name
    return Contract(name, SCENARIOS[name](request, tmp_path), Store(str(tmp_path / "store")))


def test_check_mode_predicts_the_restore_and_a_second_restore_changes_nothing(contract):
    name, scenario, store = contract.name, contract.scenario, contract.store
    good = scenario.state()
    scenario.change()
    bad = scenario.state()
    assert bad != good, "the scenario's change changed nothing"
    store_before = tree_state(store.path)

    predicted = contract.restore(check=True)
    assert predicted["changed"] and predicted["plan"][name]["changed"]
    assert scenario.state() == bad, "check mode changed the host"
    assert tree_state(store.path) == store_before, "check mode changed the store"

    real = contract.restore()
    assert plan_of(real) == plan_of(predicted)
    assert scenario.state() == good

    again = contract.restore()
    assert again["changed"] is False and again["safety_point"] is None
    assert scenario.state() == good


def test_a_failure_after_the_component_applied_is_reverted_exactly(contract):
    name, scenario = contract.name, contract.scenario
    scenario.change()
    bad = scenario.state()
    parts = contract.parts()
    real_apply = parts[name].apply

    failed = []

    def apply_then_fail(store_, record, changes):
        real_apply(store_, record, changes)
        if not failed:  # the restore fails once; the revert that follows applies for real
            failed.append(name)
            raise RuntimeError("injected after %s applied" % name)

    parts[name].apply = apply_then_fail
    with pytest.raises(RollbackError) as err:
        contract.restore(parts=parts)
    assert err.value.details["component_state"][name] == "reverted to pre-rollback state"
    assert err.value.details["reverted"] is True and "injected after" in err.value.msg
    assert scenario.state() == bad


def test_a_bad_spec_is_refused_naming_the_component_and_nothing_changes(contract):
    name, scenario, store = contract.name, contract.scenario, contract.store
    store_before = tree_state(store.path)
    host_before = scenario.state()
    with pytest.raises(RollbackError) as err:
        parts = contract.parts()
        spec = _points.normalize_components({name: dict(contract.spec, no_such_option=1)}, parts)
        with _points.locked(store, {}, "contract"):
            _points.capture(store, spec, label="bad", parts=parts)
    assert "components.%s" % name in err.value.msg and "no_such_option" in err.value.msg
    assert tree_state(store.path) == store_before and scenario.state() == host_before
