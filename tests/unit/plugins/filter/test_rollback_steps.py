"""The rollback_steps and service_selection filters: every combination of a host's inputs gives the steps the rollback
role's tasks ran on before the filter existed; a one-host batch decides as the host does; a batch is the union of
its hosts; the role's tasks ask the same steps per host and for the batch."""
from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.fleetops.rollback.plugins.filter import rollback_steps as steps_plugin
from ansible_collections.fleetops.rollback.plugins.filter import service_selection as selection_plugin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
ROLE = os.path.join(ROOT, "roles", "rollback")
STEPS = steps_plugin.STEPS
FALLBACK = steps_plugin.FALLBACK
rollback_steps = steps_plugin.FilterModule().filters()["rollback_steps"]
service_selection = selection_plugin.FilterModule().filters()["service_selection"]

APP = {"name": "app", "start": ["appctl", "start"], "stop": ["appctl", "stop"], "restart": ["appctl", "restart"]}
WORKER = {"name": "worker", "manager": "command", "start": ["w", "start"], "stop": ["w", "stop"]}  # no restart argv
NGINX = {"name": "nginx", "manager": "systemd"}
DB = {"name": "db", "manager": "systemd", "restart": ["pg_ctl", "restart"]}  # a restart argv, but not a command service

MODES = ["restart", "stop_start", "bogus"]  # the last only where an unchecked inventory value could put it
RESTART_SERVICES = [True, False, "yes", "no"]
DRAIN = ["", "drain.yml"]
UNDRAIN = ["", "undrain.yml"]
SERVICES_LISTS = [[], [APP], [APP, WORKER], [NGINX], [APP, NGINX], [APP, DB]]
ROLLBACK_SERVICES = [[], ["app"], ["nope"]]
CHECK_MODE = [False, True]
RESTORES = [None, {"changed": True}, {"changed": False}, {"changed": True, "failed": True}]


def truth(value):
    return value in (True, "yes")


def old_conditions(host, check_mode, restore):
    """What the role's tasks decided per host before rollback_steps (their Jinja conditions, in Python)."""
    mode, restart_services = host["rollback_service_mode"], truth(host["rollback_restart_services"])
    every = [dict({"manager": "command"}, **service) for service in host["services_list"]]
    only = host["rollback_services"]
    selected = [s for s in every if s["name"] in only] if only else every
    command = [s for s in selected if s["manager"] == "command"]
    inline = (restart_services and len(selected) > 0 and len(command) == len(selected)
              and len([s for s in command if "restart" in s]) == len(selected))
    restored = restore is None or (restore.get("changed") and not restore.get("failed"))
    restart = restart_services and not inline and len(selected) > 0 and restored
    return {
        "before_restore": len(host["rollback_drain_tasks"]) > 0 or (mode == "stop_start" and not check_mode),
        "drain": len(host["rollback_drain_tasks"]) > 0,
        "stop": mode == "stop_start" and not check_mode,
        "restart_commands": mode == "restart" and inline,
        "services": not check_mode and (mode == "stop_start" or restart),
        "undrain": len(host["rollback_undrain_tasks"]) > 0,
    }


def new_conditions(steps, mode):
    """The same decisions as the role's tasks now take them from rollback_steps (tasks/*.yml)."""
    return {
        "before_restore": bool({"drain", "stop"} & set(steps)),
        "drain": "drain" in steps,
        "stop": "stop" in steps,
        "restart_commands": mode == "restart" and "inline_restart" in steps,
        "services": bool({"start", "restart"} & set(steps)),
        "undrain": "undrain" in steps,
    }


def every_host():
    for mode, restart, drain, undrain, services, only in itertools.product(
            MODES, RESTART_SERVICES, DRAIN, UNDRAIN, SERVICES_LISTS, ROLLBACK_SERVICES):
        yield {"rollback_service_mode": mode, "rollback_restart_services": restart, "rollback_drain_tasks": drain,
               "rollback_undrain_tasks": undrain, "services_list": services, "rollback_services": only}


def test_every_combination_gives_the_steps_the_tasks_ran_on_before():
    checked, wrong = 0, []
    for host in every_host():
        for check_mode, restore in itertools.product(CHECK_MODE, RESTORES):
            steps = rollback_steps(host, check_mode=check_mode, restore=restore)
            assert steps == [step for step in STEPS if step in steps], "not in run order: %r" % steps
            expected = old_conditions(host, check_mode, restore)
            got = new_conditions(steps, host["rollback_service_mode"])
            if got != expected:
                wrong.append((host, check_mode, restore, steps))
            checked += 1
    assert checked == 3 * 4 * 2 * 2 * 6 * 3 * 2 * 4
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("host,check_mode,restore,steps", [
    ({}, False, None, []),  # the role's defaults: restart, with nothing to restart
    ({"services_list": [APP]}, False, None, ["inline_restart"]),
    ({"services_list": [APP, WORKER]}, False, None, ["restart"]),
    ({"services_list": [APP, WORKER]}, False, {"changed": False}, []),
    ({"services_list": [APP, WORKER]}, False, {"changed": True, "failed": True}, []),
    ({"services_list": [APP, WORKER], "rollback_services": ["app"]}, False, None, ["inline_restart"]),
    ({"services_list": [APP, WORKER], "rollback_restart_services": False}, False, None, []),
    ({"services_list": [APP, NGINX]}, True, None, []),
    ({"rollback_service_mode": "stop_start", "services_list": [APP]}, False, {"changed": False}, ["stop", "start"]),
    ({"rollback_service_mode": "stop_start", "services_list": [APP]}, True, None, []),
    ({"rollback_drain_tasks": "d.yml", "rollback_undrain_tasks": "u.yml", "services_list": [APP]}, True, None,
     ["drain", "inline_restart", "undrain"]),
    ({"rollback_drain_tasks": None, "rollback_undrain_tasks": None}, False, None, []),
])
def test_examples(host, check_mode, restore, steps):
    assert rollback_steps(host, check_mode=check_mode, restore=restore) == steps


class HostVars(Mapping):
    """Like hostvars[host]: a read-only mapping that is not a dict."""

    def __init__(self, data):
        self._data = data

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


def test_a_one_host_batch_decides_as_the_host_does():
    for host in every_host():
        for check_mode in CHECK_MODE:
            alone = rollback_steps(host, check_mode=check_mode)
            assert rollback_steps([host], check_mode=check_mode) == alone
            assert rollback_steps([HostVars(host)], defaults=FALLBACK, check_mode=check_mode) == alone
            # A host whose hostvars hold none of the variables decides with the deciding host's values.
            assert rollback_steps([HostVars({})], defaults=host, check_mode=check_mode) == alone


def test_a_batch_needs_the_union_of_its_hosts_steps():
    hosts = list(every_host())[::7]
    for first, second in itertools.product(hosts, hosts[::5]):
        union = set(rollback_steps(first)) | set(rollback_steps(second))
        assert rollback_steps([first, second]) == [step for step in STEPS if step in union]
    # Each host's own value wins over the default; a missing one comes from the default.
    batch = [HostVars({"rollback_drain_tasks": ""}), HostVars({"rollback_service_mode": "stop_start"})]
    assert rollback_steps(batch, defaults={"rollback_drain_tasks": "d.yml"}) == ["drain", "stop", "start"]
    assert rollback_steps([], defaults={"rollback_drain_tasks": "d.yml"}) == []


@pytest.mark.parametrize("call,message", [
    (lambda: rollback_steps("web1"), "expects a host's variables or a list of them"),
    (lambda: rollback_steps(["web1"]), "a host's variables must be a dictionary"),
    (lambda: rollback_steps({}, defaults=["x"]), "defaults must be a dictionary"),
    (lambda: rollback_steps({}, restore="changed"), "restore must be a registered result"),
    (lambda: rollback_steps({"services_list": ["app"]}), r"services_list\[0\] is not a dictionary"),
])
def test_rollback_steps_bad_input(call, message):
    with pytest.raises(AnsibleFilterError, match=message):
        call()


def test_service_selection_defaults_the_manager_and_keeps_declared_order():
    services = [NGINX, APP, WORKER]
    assert [(s["name"], s["manager"]) for s in service_selection(services)] == [
        ("nginx", "systemd"), ("app", "command"), ("worker", "command")]
    assert [s["name"] for s in service_selection(services, ["worker", "nginx"])] == ["nginx", "worker"]
    assert service_selection(services, []) == []
    assert service_selection([], None) == []
    assert [s["name"] for s in service_selection(services, ["app", "nope"])] == ["app"]  # not strict: left out
    assert APP.get("manager") is None  # the input is not changed
    assert service_selection([{"name": "x", "manager": None}])[0]["manager"] is None  # given, even null, is kept


def test_service_selection_strict_names_every_unknown_service_once():
    with pytest.raises(AnsibleFilterError) as err:
        service_selection([APP], ["nope", "app", "typo", "nope"], strict=True, name="services_only")
    assert str(err.value) == "services_only names services that are not in services_list: nope, typo"
    assert service_selection([APP], ["app"], strict=True) == [dict(APP, manager="command")]


@pytest.mark.parametrize("services,only,message", [
    ({"name": "app"}, None, "services_list must be a list"),
    ([APP], "app", "only must be a list of names or null"),
])
def test_service_selection_bad_input(services, only, message):
    with pytest.raises(AnsibleFilterError, match=message):
        service_selection(services, only)


def role_yaml(*parts):
    with open(os.path.join(ROLE, *parts), encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def test_the_role_passes_every_input_and_knows_every_step():
    variables = role_yaml("vars", "main.yml")
    assert set(variables["__rollback_host"]) == set(FALLBACK)
    assert tuple(variables["__rollback_every_step"]) == STEPS
    defaults = role_yaml("defaults", "main.yml")
    assert {key: value for key, value in FALLBACK.items() if key != "services_list"} == {
        key: defaults[key] for key in FALLBACK if key != "services_list"}


def test_each_optional_task_asks_the_same_steps_for_the_host_and_for_the_batch():
    """The drift this filter removes: a task's `when` (this host) and its run_once (the batch) name the same steps."""
    tasks = role_yaml("tasks", "rollback.yml")
    tasks = tasks + [task for block in tasks for task in block.get("always", [])]
    optional = [task for task in tasks if "run_once" in task]
    assert len(optional) == 3
    for task in optional:
        when, run_once = str(task["when"]), str(task["run_once"])
        assert "__rollback_steps" in when and "__rollback_batch_steps" in run_once, task["name"]
        steps = re.findall(r"'(\w+)'", when)
        assert steps and steps == re.findall(r"'(\w+)'", run_once), task["name"]
        assert set(steps) <= set(STEPS), task["name"]
