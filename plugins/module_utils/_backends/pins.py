# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrite exact pins in requirements.txt or pyproject.toml to match a snapshot.

Only the version text of an exact pin (`name==1.2`, `name[extra] === 1.2 ; marker`, poetry `name = "1.2"` /
`"==1.2"` / `{version = "1.2"}`) of a package in the snapshot changes; every other byte of the file stays
as it was: comments, order, spacing, line endings, ranges, markers, other tables. A pin that carries
`--hash` cannot be rewritten truthfully and is refused before anything changes.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import atomic_write

NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
VERSION = r"[A-Za-z0-9][A-Za-z0-9.+!_-]*"
REQ_PIN = re.compile(r"^(\s*)(%s)(\s*\[[^\]]*\])?(\s*===?\s*)(%s)(?=\s*(?:;|#|\\|$))" % (NAME, VERSION))
STRING_PIN = re.compile(r"^(\s*)(%s)(\s*\[[^\]]*\])?(\s*===?\s*)(%s)(\s*(?:;.*)?)$" % (NAME, VERSION))
QUOTED = re.compile(r"\"([^\"\\\n]*)\"|'([^'\n]*)'")
HEADER = re.compile(r"^\s*\[\[?\s*([^\]\"']+?)\s*\]\]?\s*(?:#.*)?$")
POETRY_LINE = re.compile(r"^(\s*)([\"']?)(%s)\2(\s*=\s*)([\"'])(==)?(%s)\5" % (NAME, VERSION))
POETRY_INLINE = re.compile(r"^(\s*)([\"']?)(%s)\2(\s*=\s*\{.*?\bversion\s*=\s*)([\"'])(==)?(%s)\5" % (NAME, VERSION))
PEP508_TABLES = ("project", "project.optional-dependencies", "dependency-groups")
POETRY_TABLE = re.compile(r"^tool\.poetry(?:\.group\.[^.]+)?\.(?:dev-)?dependencies$")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _exact(version):
    return bool(re.match(r"^[0-9][A-Za-z0-9.+!_-]*$", version))


def wanted_versions(packages, keys=None):
    """{canonical name: version} for the plain version entries of a snapshot (optionally only `keys`)."""
    out = {}
    for key, pkg in packages.items():
        if keys is not None and key not in keys:
            continue
        if pkg.get("editable") or pkg.get("vcs") or pkg.get("url") or not pkg.get("version"):
            continue
        out[key] = pkg["version"]
    return out


def rewrite_text(text, versions, kind):
    """(new text, changes) with the pins of `versions` rewritten; kind is `requirements` or `pyproject`."""
    lines = text.splitlines(True)
    changes = []
    if kind == "pyproject":
        _pyproject(lines, versions, changes)
    else:
        _requirements(lines, versions, changes)
    return "".join(lines), changes


def _requirements(lines, versions, changes):
    for index, line in enumerate(lines):
        body = line.rstrip("\r\n")
        found = REQ_PIN.match(body)
        if not found:
            continue
        key = canonical(found.group(2))
        if key not in versions or found.group(5) == versions[key]:
            continue
        continued = [body]
        follow = index
        while continued[-1].rstrip().endswith("\\") and follow + 1 < len(lines):
            follow += 1
            continued.append(lines[follow])
        if any("--hash" in part for part in continued):
            raise RollbackError("pins_file line %d pins %s with --hash; hashes of another version cannot be written "
                                "here. Regenerate the file (pip-compile --generate-hashes) instead; nothing was changed"
                                % (index + 1, found.group(2)), line=index + 1)
        new = body[:found.start(5)] + versions[key] + body[found.end(5):]
        lines[index] = new + line[len(body):]
        changes.append({"line": index + 1, "name": found.group(2), "from": found.group(5), "to": versions[key]})


def _pyproject(lines, versions, changes):
    table = None
    in_multiline = None
    for index, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if in_multiline:
            if in_multiline in body:
                in_multiline = None
            continue
        for quote in ('"""', "'''"):
            if body.count(quote) % 2 == 1:
                in_multiline = quote
        if in_multiline:
            continue
        header = HEADER.match(body)
        if header:
            table = header.group(1).replace(" ", "")
            continue
        if table in PEP508_TABLES:
            new = _rewrite_strings(body, versions, changes, index)
        elif table and POETRY_TABLE.match(table):
            new = _rewrite_poetry(body, versions, changes, index)
        else:
            continue
        if new != body:
            lines[index] = new + line[len(body):]


def _rewrite_strings(body, versions, changes, index):
    out, last = [], 0
    for quoted in QUOTED.finditer(body):
        group = 1 if quoted.group(1) is not None else 2
        value = quoted.group(group)
        found = STRING_PIN.match(value)
        if not found:
            continue
        key = canonical(found.group(2))
        if key not in versions or found.group(5) == versions[key]:
            continue
        start = quoted.start(group) + found.start(5)
        end = quoted.start(group) + found.end(5)
        out.append(body[last:start])
        out.append(versions[key])
        last = end
        changes.append({"line": index + 1, "name": found.group(2), "from": found.group(5), "to": versions[key]})
    out.append(body[last:])
    return "".join(out)


def _rewrite_poetry(body, versions, changes, index):
    for pattern in (POETRY_INLINE, POETRY_LINE):
        found = pattern.match(body)
        if not found:
            continue
        key = canonical(found.group(3))
        old = found.group(7)
        if key not in versions or not _exact(old) or old == versions[key]:
            return body
        changes.append({"line": index + 1, "name": found.group(3), "from": old, "to": versions[key]})
        return body[:found.start(7)] + versions[key] + body[found.end(7):]
    return body


def kind_of(path):
    return "pyproject" if path.endswith(".toml") else "requirements"


def plan(path, packages, keys=None):
    """(old bytes, new bytes, changes) for a pins file; raises when it cannot be rewritten truthfully."""
    path = check_path("pins_file", path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise RollbackError("pins_file: cannot read %r: %s; give an existing requirements.txt or pyproject.toml; nothing "
                            "was changed" % (path, "it is a dangling symlink" if os.path.islink(path) else
                                             "it does not exist" if err.errno == errno.ENOENT else err.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise RollbackError("pins_file: %r is not a regular file (a directory, FIFO or device); give a requirements.txt "
                            "or pyproject.toml; nothing was changed" % path)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as err:
        raise RollbackError("pins_file: cannot read %s (%s); nothing was changed" % (path, err.strerror or err))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RollbackError("pins_file: %s is not UTF-8 text; nothing was changed" % path)
    new_text, changes = rewrite_text(text, wanted_versions(packages, keys), kind_of(path))
    new = new_text.encode("utf-8")
    if changes and kind_of(path) == "pyproject":
        _check_toml(path, new)
    return data, new, changes


def _check_toml(path, data):
    try:
        import tomllib  # Python 3.11+ only; elsewhere the text edit stands on its own
    except ImportError:
        return
    try:
        tomllib.loads(data.decode("utf-8"))
    except ValueError as err:
        raise RollbackError("pins_file: rewriting the pins of %s would leave invalid TOML (%s); nothing was changed"
                            % (path, err))


def write(path, data):
    """Replace the file atomically (through a symlink to its target), keeping its mode and owner."""
    path = os.path.realpath(path)
    st = os.stat(path)
    atomic_write(path, data, mode=st.st_mode & 0o7777, owner=(st.st_uid, st.st_gid), prefix=".fleetops-pins-")
