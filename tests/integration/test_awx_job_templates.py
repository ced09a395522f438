"""AWX / Automation Controller job templates (awx/job_templates.yml through awx/configure.yml): one per playbook, each
accepted by the real argument spec of awx.awx.job_template, each survey valid controller survey JSON whose variables
the playbooks read. No controller runs here: configure.yml renders the exact arguments with fleetops_awx_render_to."""
import json
import os
import re

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from playbook_runner import ROOT, local_inventory, run_playbook

AWX_DIR = os.path.join(ROOT, "awx")
CONFIGURE = os.path.join(AWX_DIR, "configure.yml")
PLAYBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "playbooks")) if f.endswith(".yml"))

# What the controller's survey_spec endpoint accepts (AWX JobTemplateSurveySpec): question types and the Python
# types their defaults may have.
SURVEY_TYPES = {"text": (str,), "textarea": (str,), "password": (str,), "multiplechoice": (str,),
                "multiselect": (str,), "integer": (int,), "float": (float, int)}


class _Captured(Exception):
    pass


def real_argument_spec(module_name):
    """The argument_spec an awx.awx module builds in main(), captured before it would contact a controller."""
    module = __import__("ansible_collections.awx.awx.plugins.modules." + module_name, fromlist=["main"])

    class Capture:  # pylint: disable=too-few-public-methods
        def __init__(self, argument_spec=None, **_kwargs):
            raise _Captured(argument_spec)

    original = module.ControllerAPIModule
    module.ControllerAPIModule = Capture
    try:
        module.main()
    except _Captured as captured:
        return captured.args[0]
    finally:
        module.ControllerAPIModule = original
    raise AssertionError("%s.main() did not build its module" % module_name)


def validate_args(spec, params):
    """Error messages of ansible's own argument validation (types, choices, unknown keys)."""
    result = ArgumentSpecValidator(spec).validate(dict(params))
    return result.error_messages


def survey_errors(survey):
    """Every reason the controller would refuse this survey spec (empty when it accepts it)."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(survey.get(field), kind):
            errors.append("survey %s must be a %s" % (field, kind.__name__))
    if errors:
        return errors
    if not survey["spec"]:
        errors.append("spec has no questions")
    seen = set()
    for index, question in enumerate(survey["spec"]):
        where = "question %d (%s)" % (index, question.get("variable"))
        for field in ("type", "question_name", "variable"):
            if not isinstance(question.get(field), str):
                errors.append("%s: %s must be a string" % (where, field))
        if not isinstance(question.get("required"), bool):
            errors.append("%s: required must be a boolean" % where)
        if question.get("variable") in seen:
            errors.append("%s: variable used twice" % where)
        seen.add(question.get("variable"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(question.get("variable"))):
            errors.append("%s: not a valid variable name" % where)
        kind = question.get("type")
        if kind not in SURVEY_TYPES:
            errors.append("%s: type %r is not a survey type" % (where, kind))
            continue
        default = question.get("default", "")
        if default != "" and not isinstance(default, SURVEY_TYPES[kind]):
            errors.append("%s: default %r does not fit type %s" % (where, default, kind))
        for key in ("min", "max"):
            if key in question and question[key] is not None and not isinstance(question[key], int):
                errors.append("%s: %s must be an integer" % (where, key))
        if kind in ("multiplechoice", "multiselect"):
            choices = question.get("choices")
            if isinstance(choices, str):
                choices = [c for c in choices.splitlines() if c.strip()]
            if not choices or not isinstance(choices, list):
                errors.append("%s: %s needs choices" % (where, kind))
                continue
            defaults = [d for d in str(default).splitlines() if d.strip()]
            if kind == "multiplechoice" and len(defaults) > 1:
                errors.append("%s: a multiple choice has one default" % where)
            if any(d not in choices for d in defaults):
                errors.append("%s: default %r is not among the choices" % (where, default))
        if kind in ("text", "textarea", "password", "integer") and question.get("required") and \
                "min" in question and "max" in question and question["min"] > question["max"]:
            errors.append("%s: min above max" % where)
    return errors


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The job template arguments exactly as configure.yml would pass them to awx.awx.job_template."""
    tmp = tmp_path_factory.mktemp("awx")
    out = tmp / "job_templates.json"
    run = run_playbook(CONFIGURE, local_inventory(tmp / "inventory.ini", {"localhost": {}}),
                       extra_vars={"fleetops_awx_render_to": str(out)})
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    with open(out, encoding="utf-8") as stream:
        return json.load(stream)


@pytest.fixture(scope="module")
def job_template_spec():
    return real_argument_spec("job_template")


def test_one_template_per_playbook_and_a_dry_run_twin_per_rollback(rendered):
    by_playbook = {}
    for template in rendered:
        by_playbook.setdefault(os.path.basename(template["playbook"]), []).append(template)
    assert sorted(by_playbook) == PLAYBOOKS, "every playbook in playbooks/ needs a job template in awx/job_templates.yml"
    for template in rendered:
        assert os.path.isfile(os.path.join(ROOT, template["playbook"])), template["playbook"]
    names = [t["name"] for t in rendered]
    assert len(names) == len(set(names))
    for playbook, templates in by_playbook.items():
        kinds = sorted(t["job_type"] for t in templates)
        if playbook.startswith("rollback_") and playbook != "rollback_drill.yml" or playbook == "rollback.yml":
            assert kinds == ["check", "run"], playbook
            [dry] = [t for t in templates if t["job_type"] == "check"]
            assert dry["name"].endswith(" (dry run)") and dry["ask_job_type_on_launch"] is False
        else:
            assert kinds == ["run"], playbook
    for template in rendered:
        # A dry run is always possible: prompted job type (Check) or the twin; diff mode shows what would change.
        assert template["job_type"] == "check" or template["ask_job_type_on_launch"] is True
        assert template["diff_mode"] is True
        assert template["ask_limit_on_launch"] is True
        assert template["survey_enabled"] is True


def test_every_template_passes_the_awx_job_template_argument_spec(rendered, job_template_spec):
    for template in rendered:
        assert validate_args(job_template_spec, template) == [], template["name"]
    # The check has teeth: a wrong type, a bad choice and an unknown key are refused.
    bad = dict(rendered[0], job_type="dry", forks="many", survey="x")
    messages = " ".join(validate_args(job_template_spec, bad))
    assert "job_type" in messages and "forks" in messages and "survey" in messages


def test_configure_passes_every_key_to_the_module(rendered):
    with open(CONFIGURE, encoding="utf-8") as stream:
        [play] = yaml.safe_load(stream)
    tasks = [t for block in play["tasks"] for t in block.get("block", [block])]
    [task] = [t for t in tasks if "awx.awx.job_template" in t]
    args = task["awx.awx.job_template"]
    used = set().union(*(t.keys() for t in rendered))
    assert used <= set(args), sorted(used - set(args))
    for key, value in args.items():
        assert re.fullmatch(r"\{\{ item\.%s( \| default\(omit\))? \}\}" % key, value), (key, value)
    optional = {k for k in args if "default(omit)" in args[k]}
    assert optional == {k for k in used if not all(k in t for t in rendered)}


@pytest.mark.parametrize("module_name, task_name", [("execution_environment", "Register the execution environment"),
                                                    ("project", "Register the project")])
def test_configure_registers_its_ee_and_project_with_valid_arguments(module_name, task_name):
    with open(CONFIGURE, encoding="utf-8") as stream:
        [play] = yaml.safe_load(stream)
    tasks = [t for block in play["tasks"] for t in block.get("block", [block])]
    [task] = [t for t in tasks if t["name"] == task_name]
    assert validate_args(real_argument_spec(module_name), task["awx.awx." + module_name]) == []


def test_surveys_are_valid_controller_survey_json(rendered):
    for template in rendered:
        assert survey_errors(template["survey_spec"]) == [], template["name"]
    # and the validator refuses what the controller refuses
    assert survey_errors({"name": "x", "description": "", "spec": []})
    assert survey_errors({"name": "x", "description": "", "spec": [
        {"type": "multiplechoice", "question_name": "q", "variable": "v", "required": True, "choices": ["a"],
         "default": "b"}]})
    assert survey_errors({"name": "x", "description": "", "spec": [
        {"type": "integer", "question_name": "q", "variable": "v", "required": True, "default": "5"}]})


def test_surveys_ask_what_the_brief_asks_and_the_playbooks_read_it(rendered):
    by_name = {t["name"]: t for t in rendered}
    variables = {name: {q["variable"]: q for q in t["survey_spec"]["spec"]} for name, t in by_name.items()}
    # rollback type, components, restore point, limit (hosts) on the rollbacks; type on the dispatcher and drill.
    assert variables["fleetops rollback"]["rollback_type"]["choices"] == ["immediate", "standard", "partial",
                                                                          "failed_recovery"]
    assert variables["fleetops rollback drill"]["drill_rollback_type"]["choices"] == ["immediate", "standard"]
    for name in ["fleetops rollback - immediate", "fleetops rollback - standard", "fleetops rollback - partial"]:
        assert {"rollback_hosts", "rollback_point", "rollback_components", "rollback_reason"} <= set(variables[name])
    assert variables["fleetops rollback - partial"]["rollback_components"]["required"] is True
    assert {"rollback_hosts", "emergency_point", "recovery_components"} <= \
        set(variables["fleetops rollback - failed recovery"])
    for name, questions in variables.items():
        assert questions["rollback_hosts"]["required"] is True, name
    # Every survey variable is read by the playbook or a role it uses.
    sources = ""
    for base in ("playbooks", "roles"):
        for root, _dirs, files in os.walk(os.path.join(ROOT, base)):
            for name in files:
                if name.endswith((".yml", ".j2")):
                    with open(os.path.join(root, name), encoding="utf-8") as stream:
                        sources += stream.read()
    for name, questions in variables.items():
        for variable in questions:
            assert re.search(r"\b%s\b" % variable, sources), (name, variable)
