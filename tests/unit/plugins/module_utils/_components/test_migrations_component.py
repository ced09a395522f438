"""Unit tests for the migrations component, against a real migration tool: a script that keeps its schema revision
in a file and can be told to fail, print several heads, hang or print a secret."""

import os
import stat
import sys
import textwrap

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.migrations.component import (
    MigrationsComponent)

MIGRATIONS = MigrationsComponent()

TOOL = textwrap.dedent("""\
    #!{python}
    import os, sys, time
    here = os.path.dirname(os.path.abspath(__file__))
    state = os.path.join(here, "revision")
    log = os.path.join(here, "calls")
    with open(log, "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    def flag(name):
        return os.path.exists(os.path.join(here, name))
    if sys.argv[1] == "current":
        if flag("hang"):
            time.sleep(60)
        if flag("broken"):
            sys.stderr.write("cannot connect: password=hunter2-secret\\n")
            sys.exit(2)
        revision = open(state).read().strip() if os.path.exists(state) else ""
        if revision:
            print("INFO  [alembic] context")
            print(revision + " (head)")
        if flag("two_heads"):
            print("ffff01 (head)")
        sys.exit(0)
    if flag("fail_" + sys.argv[1]):
        sys.stderr.write(sys.argv[1] + " failed: token=abc123-secret\\n")
        sys.exit(3)
    if flag("lie"):
        sys.exit(0)
    target = sys.argv[2]
    with open(state, "w") as f:
        f.write("" if target == "base" else target)
    """)


@pytest.fixture
def tool(tmp_path):
    """A migration tool in its own directory, at revision bbbb02."""
    root = tmp_path / "app"
    root.mkdir()
    path = root / "migrate"
    path.write_text(TOOL.format(python=sys.executable))
    path.chmod(stat.S_IRWXU)
    (root / "revision").write_text("bbbb02")
    return root


def spec(tool, **extra):
    value = {"current": [str(tool / "migrate"), "current"], "downgrade": [str(tool / "migrate"), "downgrade", "%s"],
             "chdir": str(tool)}
    value.update(extra)
    return MIGRATIONS.normalize(value)


def revision(tool):
    return (tool / "revision").read_text()


def calls(tool):
    return (tool / "calls").read_text().splitlines() if (tool / "calls").exists() else []


def test_capture_records_the_revision_the_tool_prints(tool):
    record = MIGRATIONS.capture(None, spec(tool))
    assert record["revision"] == "bbbb02"
    assert MIGRATIONS.scope(record) == {key: record[key] for key in record if key != "revision"}
    assert MIGRATIONS.plan(None, record, "p1") == []


def test_no_revision_is_the_base_and_a_downgrade_goes_there(tool):
    (tool / "revision").write_text("")
    record = MIGRATIONS.capture(None, spec(tool))
    assert record["revision"] is None
    (tool / "revision").write_text("cccc03")
    changes = MIGRATIONS.plan(None, record, "p1")
    assert changes[0]["command"][-1] == "base"
    MIGRATIONS.apply(None, record, changes)
    assert revision(tool) == "" and MIGRATIONS.plan(None, record, "p1") == []


def test_plan_apply_and_a_second_plan_is_empty(tool):
    record = MIGRATIONS.capture(None, spec(tool, upgrade=[str(tool / "migrate"), "upgrade", "%s"]))
    (tool / "revision").write_text("cccc03")
    changes = MIGRATIONS.plan(None, record, "p1")
    assert changes == [{"action": "downgrade", "path": str(tool), "from": {"revision": "cccc03"},
                        "to": {"revision": "bbbb02"}, "command": [str(tool / "migrate"), "downgrade", "bbbb02"],
                        "if_downgrade_fails": [str(tool / "migrate"), "upgrade", "bbbb02"]}]
    # Planning only reads: the tool was asked for its revision and nothing else.
    assert all(call == "current" for call in calls(tool))
    MIGRATIONS.apply(None, record, changes)
    assert revision(tool) == "bbbb02"
    assert [c for c in calls(tool) if c != "current"] == ["downgrade bbbb02"]
    assert MIGRATIONS.plan(None, record, "p1") == []
    diff = MIGRATIONS.diff(None, record, changes)
    assert diff[0]["before"] == "revision: cccc03\n" and diff[0]["after"] == "revision: bbbb02\n"


def test_a_failed_downgrade_tries_the_upgrade(tool):
    record = MIGRATIONS.capture(None, spec(tool, upgrade=[str(tool / "migrate"), "upgrade", "%s"]))
    (tool / "revision").write_text("aaaa01")
    (tool / "fail_downgrade").write_text("")
    MIGRATIONS.apply(None, record, MIGRATIONS.plan(None, record, "p1"))
    assert revision(tool) == "bbbb02"
    assert [c for c in calls(tool) if c != "current"] == ["downgrade bbbb02", "upgrade bbbb02"]


def test_both_commands_failing_say_both_with_secrets_redacted(tool):
    record = MIGRATIONS.capture(None, spec(tool, upgrade=[str(tool / "migrate"), "upgrade", "%s"]))
    (tool / "revision").write_text("cccc03")
    (tool / "fail_downgrade").write_text("")
    (tool / "fail_upgrade").write_text("")
    with pytest.raises(RollbackError) as err:
        MIGRATIONS.apply(None, record, MIGRATIONS.plan(None, record, "p1"))
    message = str(err.value)
    assert "downgrade bbbb02 exited 3" in message and "then" in message and "upgrade bbbb02 exited 3" in message
    assert "abc123-secret" not in message
    assert revision(tool) == "cccc03"


def test_a_command_that_exits_0_without_moving_the_revision_is_a_failure(tool):
    record = MIGRATIONS.capture(None, spec(tool))
    (tool / "revision").write_text("cccc03")
    (tool / "lie").write_text("")
    with pytest.raises(RollbackError, match="after the migration command the revision is cccc03, not bbbb02"):
        MIGRATIONS.apply(None, record, MIGRATIONS.plan(None, record, "p1"))


def test_several_heads_are_refused(tool):
    (tool / "two_heads").write_text("")
    with pytest.raises(RollbackError, match=r"several revisions \(bbbb02, ffff01\).*merge the heads"):
        MIGRATIONS.capture(None, spec(tool))


def test_a_failing_current_command_is_reported_redacted(tool):
    (tool / "broken").write_text("")
    with pytest.raises(RollbackError) as err:
        MIGRATIONS.check_capturable(spec(tool))
    assert "current exited 2" in str(err.value) and "hunter2-secret" not in str(err.value)


def test_a_hanging_command_is_stopped_at_its_timeout(tool):
    (tool / "hang").write_text("")
    with pytest.raises(RollbackError, match="gave no answer within 1 s"):
        MIGRATIONS.capture(None, spec(tool, timeout=1))


def test_a_downgrade_program_that_is_gone_is_refused_before_anything_runs(tool):
    record = MIGRATIONS.capture(None, spec(tool, downgrade=[str(tool / "gone"), "downgrade", "%s"]))
    (tool / "revision").write_text("cccc03")
    with pytest.raises(RollbackError, match="gone"):
        MIGRATIONS.plan(None, record, "p1")
    assert revision(tool) == "cccc03"


def test_a_string_command_is_split_like_a_shell_but_not_run_by_one(tool):
    normalized = spec(tool, current="%s current" % (tool / "migrate"), downgrade="'%s' downgrade %%s" % (tool / "migrate"))
    assert normalized["current"] == [str(tool / "migrate"), "current"]
    assert normalized["downgrade"] == [str(tool / "migrate"), "downgrade", "%s"]


@pytest.mark.parametrize("extra, message", [
    ({"downgrade": "alembic downgrade head"}, "must contain %s"),
    ({"upgrade": ["alembic", "upgrade"]}, "upgrade: .* must contain %s"),
    ({"current": []}, "give a command as a string or an argv list"),
    ({"current": ["alembic", {"x": 1}]}, "give a command as a string or an argv list"),
    ({"current": ["alembic\x00", "current"]}, "NUL byte"),
    ({"timeout": 0}, "timeout: 0 is not a number of seconds"),
    ({"timeout": 90000}, "timeout: 90000 is not a number of seconds"),
    ({"revision_regex": "("}, "is not a regular expression"),
    ({"revision_regex": "^(\\w+)$"}, "needs a \\(\\?P<revision>...\\) group"),
    ({"chdir": "relative/dir"}, "chdir"),
    ({"colour": "blue"}, "unknown option 'colour'"),
])
def test_bad_specs_are_refused_by_name(tool, extra, message):
    with pytest.raises(RollbackError, match="components.migrations.*" + message):
        spec(tool, **extra)
    assert calls(tool) == []


def test_a_missing_chdir_is_refused_before_capture(tool):
    with pytest.raises(RollbackError, match="chdir: .* is not a directory"):
        MIGRATIONS.check_capturable(spec(tool, chdir=str(tool / "nowhere")))
    assert not os.path.exists(tool / "calls")
