"""Pins files: only the version text of matching exact pins changes; every other byte stays."""
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pins as _pins
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError

SNAPSHOT = {
    "black": {"name": "black", "version": "23.12.1"},
    "requests": {"name": "requests", "version": "2.30.0"},
    "zope-interface": {"name": "zope.interface", "version": "6.0"},
    "local-lib": {"name": "local-lib", "version": "1.0", "editable": "/src/local-lib"},
    "pytest": {"name": "pytest", "version": "7.4.0"},
}


def rewrite(text, kind, keys=None):
    return _pins.rewrite_text(text, _pins.wanted_versions(SNAPSHOT, keys), kind)


def test_requirements_pins_rewritten_everything_else_kept():
    text = ("# production pins\r\nblack==24.1.0  # formatter\r\nRequests[socks] == 2.31.0 ; python_version >= '3.8'\r\n"
            "flask>=2\r\n-r other.txt\r\nzope.interface===5.0\nlocal-lib==0.9\n\n   pytest==8.0.0\n")
    new, changes = rewrite(text, "requirements")
    assert new == ("# production pins\r\nblack==23.12.1  # formatter\r\nRequests[socks] == 2.30.0 ; python_version >= '3.8'\r\n"
                   "flask>=2\r\n-r other.txt\r\nzope.interface===6.0\nlocal-lib==0.9\n\n   pytest==7.4.0\n")
    assert [(c["line"], c["name"], c["from"], c["to"]) for c in changes] == [
        (2, "black", "24.1.0", "23.12.1"), (3, "Requests", "2.31.0", "2.30.0"), (6, "zope.interface", "5.0", "6.0"),
        (9, "pytest", "8.0.0", "7.4.0")]


def test_only_the_named_packages_change():
    new, changes = rewrite("black==24.1.0\nrequests==2.31.0\n", "requirements", keys={"black"})
    assert new == "black==23.12.1\nrequests==2.31.0\n" and len(changes) == 1


def test_pins_with_hashes_are_refused():
    text = "black==24.1.0 \\\n    --hash=sha256:0123\nrequests==2.31.0\n"
    with pytest.raises(RollbackError) as err:
        rewrite(text, "requirements")
    assert "line 1 pins black with --hash" in err.value.msg and "nothing was changed" in err.value.msg


def test_pyproject_tables():
    text = '''[build-system]
requires = ["setuptools==65.5.0", "black==24.1.0"]

[project]
name = "app"
dependencies = [
    "black==24.1.0",  # fmt
    'requests[socks]==2.31.0; python_version >= "3.8"', "flask>=2",
]
description = """
black==24.1.0 in a multi-line string stays
"""

[project.optional-dependencies]
dev = ["pytest==8.0.0"]

[tool.poetry.dependencies]
python = "^3.11"
black = "24.1.0"
requests = { version = "==2.31.0", extras = ["socks"] }
pytest = "^8.0"

[tool.other]
x = "black==24.1.0"
'''
    new, changes = rewrite(text, "pyproject")
    expected = (text.replace('    "black==24.1.0",  # fmt', '    "black==23.12.1",  # fmt')
                .replace("'requests[socks]==2.31.0;", "'requests[socks]==2.30.0;")
                .replace('dev = ["pytest==8.0.0"]', 'dev = ["pytest==7.4.0"]')
                .replace('black = "24.1.0"', 'black = "23.12.1"')
                .replace('version = "==2.31.0"', 'version = "==2.30.0"'))
    assert new == expected
    assert len(changes) == 5


def test_plan_and_write_keep_mode_and_owner(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"black==24.1.0\nrequests>=2\n")
    os.chmod(path, 0o640)
    os.chown(path, 65534, 65534)
    old, new, changes = _pins.plan(str(path), SNAPSHOT)
    assert old == b"black==24.1.0\nrequests>=2\n" and new == b"black==23.12.1\nrequests>=2\n" and changes
    _pins.write(str(path), new)
    st_ = path.stat()
    assert path.read_bytes() == new and stat.S_IMODE(st_.st_mode) == 0o640 and (st_.st_uid, st_.st_gid) == (65534, 65534)
    assert sorted(os.listdir(tmp_path)) == ["requirements.txt"]


def test_plan_refuses_what_would_break(tmp_path):
    with pytest.raises(RollbackError, match="not an absolute path"):
        _pins.plan("requirements.txt", SNAPSHOT)
    with pytest.raises(RollbackError, match="cannot read"):
        _pins.plan(str(tmp_path / "missing.txt"), SNAPSHOT)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(RollbackError, match="not UTF-8"):
        _pins.plan(str(binary), SNAPSHOT)


LINES = st.lists(st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40),
    st.sampled_from(["# black==24.1.0", "flask>=2", "-r base.txt", "  ", "black>=24", "--index-url https://x/simple"]),
), max_size=12)


@settings(max_examples=200, deadline=None)
@given(LINES, st.sampled_from(["\n", "\r\n"]))
def test_lines_that_are_not_pins_stay_byte_identical(lines, newline):
    text = newline.join(line for line in lines if "==" not in line) + newline
    for kind in ("requirements", "pyproject"):
        new, changes = rewrite(text, kind)
        if not changes:
            assert new == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["black==24.1.0", "requests==1.0", "flask==2.0", "# c", "", "pytest == 8.0.0 ; os_name == 'posix'"]),
                max_size=10), st.sampled_from(["\n", "\r\n"]))
def test_rewrite_changes_only_version_text(lines, newline):
    text = newline.join(lines) + newline
    new, changes = rewrite(text, "requirements")
    assert new.count(newline) == text.count(newline)
    old_lines, new_lines = text.split(newline), new.split(newline)
    changed = {c["line"] for c in changes}
    for number, (before, after) in enumerate(zip(old_lines, new_lines), 1):
        if number not in changed:
            assert before == after
        else:
            assert before.replace(next(c["from"] for c in changes if c["line"] == number),
                                  next(c["to"] for c in changes if c["line"] == number), 1) == after
    again, more = rewrite(new, "requirements")
    assert again == new and not more
