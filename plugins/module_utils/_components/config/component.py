# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `config` component: files and directory trees, byte-exact, with mode and owner.

Restores stage every file body next to its destination and run the optional validate command on
it before anything is swapped, so a body that fails validation changes nothing. Then extras are
removed, directories made, bodies renamed into place and attributes set.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat

from ansible_collections.fleetops.rollback.plugins.module_utils._commands import run_validate, show_command
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path, check_program
from ansible_collections.fleetops.rollback.plugins.module_utils._components import config as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import CHUNK, describe_path, fsync_dir, sha256_file
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import (
    TEXT_LIMIT, is_secret_file, printable_text, redact_pair, short_digest)
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import STAGE_PREFIX


def _mode(value):
    return "%04o" % value


def _under(rel, parent):
    return parent == "." or rel == parent or rel.startswith(parent + "/")


def _depth(rel):
    return 0 if rel == "." else rel.count("/") + 1


def _join(root, rel):
    return root if rel == "." else os.path.join(root, rel)


def walk(root):
    """Entries of a path as {rel: entry} from lstat alone (types, modes, owners, sizes, link targets): no file is
    read, so a tree that cannot be captured (a FIFO, a device, a socket) is refused before anything is written."""
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        return {".": {"rel": ".", "type": "absent"}}
    entries = {}
    pending = [(".", top)]
    while pending:
        rel, st = pending.pop()
        path = _join(root, rel)
        entry = {"rel": rel, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
        if stat.S_ISLNK(st.st_mode):
            entry.update(type="link", target=os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            entry.update(type="file", size=st.st_size)
        elif stat.S_ISDIR(st.st_mode):
            entry["type"] = "dir"
            with os.scandir(path) as children:
                for child in children:
                    if child.name.startswith(STAGE_PREFIX):
                        continue  # a restore's staged file; the store's staging intents account for it
                    child_rel = child.name if rel == "." else rel + "/" + child.name
                    pending.append((child_rel, child.stat(follow_symlinks=False)))
        else:
            raise RollbackError("config: %s is %s, not a regular file, directory or symlink; nothing was changed; "
                                "exclude it from components.config.paths" % (path, describe_path(path)), path=path)
        entries[rel] = entry
    return entries


def _read_bodies(root, entries, store=None):
    """With a store, copy each file's body in (`blob`); without, only hash it (`sha256`)."""
    for rel, entry in entries.items():
        if entry["type"] == "file":
            path = _join(root, rel)
            if store is not None:
                entry["blob"] = store.put_file(path)
            else:
                entry["sha256"] = sha256_file(path)
    return entries


def scan(root, store=None):
    """Entries of a path as {rel: entry}, with their bodies copied into the store or hashed (_read_bodies)."""
    return _read_bodies(root, walk(root), store)


def _stored_bytes(entries):
    return sum(e.get("size", 0) for e in entries.values() if e["type"] == "file")


def summary(entry):
    """What a person needs to see of an entry in a plan. A file's sha256 is shown by its first 12 hex digits:
    enough to tell two bodies apart, while the full hash of a short secret file would let anyone who reads the
    result confirm guesses of it offline. Plans reach results, so the code that needs the full hash (the blob
    check of plan(), apply) takes it from the record, never from a plan entry."""
    if not entry or entry["type"] == "absent":
        return {"type": "absent"}
    out = {"type": entry["type"], "owner": "%d:%d" % (entry["uid"], entry["gid"])}
    if entry["type"] != "link":
        out["mode"] = _mode(entry["mode"])
    if entry["type"] == "file":
        out["sha256"] = short_digest(entry.get("blob") or entry.get("sha256"))
        out["size"] = entry["size"]
    elif entry["type"] == "link":
        out["target"] = entry["target"]
    return out


def _attrs_differ(want, have):
    if (want["uid"], want["gid"]) != (have["uid"], have["gid"]):
        return True
    return want["type"] != "link" and want["mode"] != have["mode"]


def compare(root, wanted, current):
    """The changes that turn `current` into `wanted` for one root, in a stable order."""
    changes = []
    if wanted["."]["type"] == "absent":
        wanted = {}
    for rel in sorted(wanted, key=lambda r: (_depth(r), r)):
        want, have = wanted[rel], current.get(rel)
        if have is None or have["type"] == "absent":
            action = "create"
        elif have["type"] != want["type"]:
            action = "replace"
        elif want["type"] == "file" and want["blob"] != have["sha256"]:
            action = "update"
        elif want["type"] == "link" and want["target"] != have["target"]:
            action = "update"
        elif _attrs_differ(want, have):
            action = "attrs"
        else:
            continue
        changes.append({"path": _join(root, rel), "action": action,
                        "from": summary(have), "to": summary(want)})
    for rel in sorted(current, key=lambda r: (-_depth(r), r)):
        if rel not in wanted and current[rel]["type"] != "absent":
            changes.append({"path": _join(root, rel), "action": "remove",
                            "from": summary(current[rel]), "to": {"type": "absent"}})
    return changes


class ConfigComponent(Component):
    name = "config"
    declaration = declaration
    previewable = True
    supports_select = True

    # ---------------------------------------------------------------- spec
    def check_spec(self, spec, where):
        paths = spec["paths"]
        if not paths:
            raise RollbackError("%s.paths: give a non-empty list of absolute paths, got %r" % (where, paths))
        out, seen = [], set()
        for index, item in enumerate(paths):
            label = "%s.paths[%d]" % (where, index)
            if isinstance(item, str):
                item = {"path": item}
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or set(item) - {"path", "validate"}:
                raise RollbackError("%s: expected a path or {path, validate}, got %r" % (label, item))
            path = check_path(label, item["path"])
            if path == "/":
                raise RollbackError("%s: refusing to manage '/' as a config tree" % label)
            if path in seen:
                raise RollbackError("%s: %r is listed twice" % (label, path))
            seen.add(path)
            validate = item.get("validate")
            if validate is not None:
                validate_argv(validate, label + ".validate", "the candidate file")
            out.append({"path": path, "validate": validate})
        for one in seen:
            for other in seen:
                if one != other and other.startswith(one.rstrip("/") + "/"):
                    raise RollbackError("%s.paths: %r is inside %r; list the outer path only" % (where, other, one))
        return {"paths": out}

    def check_capturable(self, spec):
        """Fail before anything is written when a path cannot be captured."""
        for item in spec["paths"]:
            if not os.path.lexists(item["path"]):
                raise RollbackError("components.config.paths: %r does not exist; create it or remove it from the list"
                                    % item["path"])

    def scope(self, record, changes=None):  # pylint: disable=unused-argument
        return {"paths": [{"path": r["path"], "validate": r.get("validate")} for r in record["paths"]]}

    def select(self, record, items):
        """The record limited to the given roots (a partial, config-only rollback)."""
        if not items:
            return record
        wanted = [os.path.normpath(p) for p in items]
        known = [r["path"] for r in record["paths"]]
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise RollbackError("paths: %s not captured in this point; captured: %s" % (", ".join(unknown), ", ".join(known)))
        return {"paths": [r for r in record["paths"] if r["path"] in wanted]}

    # ---------------------------------------------------------------- capture
    def capture(self, store, spec, point_id=None):
        """The record of a capture. Without a store (check mode's preview) nothing is copied, and each file's
        sha256 stands where its blob id would be: the record is the one a real capture would write.
        Every tree is walked first (lstat only): a special file is refused, and the store's free space checked
        against the bytes to copy, before the first body is written."""
        walked = {item["path"]: walk(item["path"]) for item in spec["paths"]}
        if store is not None:
            store.require_space(sum(_stored_bytes(e) for e in walked.values()),
                                "the config of %s" % ", ".join(sorted(walked)))
        paths = []
        for item in spec["paths"]:
            entries = sorted(_read_bodies(item["path"], walked[item["path"]], store).values(), key=lambda e: e["rel"])
            if store is None:
                entries = [dict({k: v for k, v in e.items() if k != "sha256"}, blob=e["sha256"]) if "sha256" in e else e
                           for e in entries]
            paths.append({"path": item["path"], "validate": item["validate"], "entries": entries})
        return {"paths": paths}

    # ---------------------------------------------------------------- plan
    def plan(self, store, record, point_id=""):
        changes, bodies = [], {}
        for root in record["paths"]:
            wanted = {e["rel"]: e for e in root["entries"]}
            found = compare(root["path"], wanted, scan(root["path"]))
            if root.get("validate") and not record.get("exact") and \
                    any(c["action"] in ("create", "replace", "update") and c["to"]["type"] == "file" for c in found):
                # The validator must be able to run before the safety point is taken and anything is staged.
                validate_argv(root["validate"], "point %s: validate of %s" % (point_id, root["path"]), "the candidate file",
                              runnable=True)
            changes += found
            bodies.update((_join(root["path"], rel), e["blob"]) for rel, e in wanted.items() if e.get("blob"))
        for change in changes:
            # The full hash comes from the record: a plan entry shows only its prefix (see summary()).
            sha = bodies.get(change["path"]) if change["to"].get("type") == "file" else None
            if sha and change["action"] in ("create", "replace", "update") and not store.blob_ok(sha):
                raise RollbackError("point %s: the stored copy of %s (blob %s) is missing or fails its sha256 check; "
                                    "nothing was changed; choose another point"
                                    % (point_id, change["path"], short_digest(sha)),
                                    corrupt_blob=short_digest(sha), path=change["path"])
        return changes

    # ---------------------------------------------------------------- apply
    def apply(self, store, record, changes):
        by_root = {r["path"]: r for r in record["paths"]}
        roots = sorted(by_root, key=len, reverse=True)

        def root_of(path):
            return next(r for r in roots if path == r or path.startswith(r.rstrip("/") + "/"))

        entries = {}
        for root in record["paths"]:
            for entry in root["entries"]:
                entries[_join(root["path"], entry["rel"])] = entry

        bodies = [c for c in changes if c["action"] in ("create", "replace", "update") and c["to"]["type"] == "file"]
        links = [c for c in changes if c["action"] != "attrs" and c["action"] != "remove" and c["to"]["type"] == "link"]
        # Every directory a staged name may appear in is on record in the store before the first one is made.
        directories = [_staging_parent(c["path"]) for c in bodies] + [os.path.dirname(c["path"]) for c in links]
        with store.staging(directories) as stage_name:
            staged = {}
            for change in bodies:
                entry = entries[change["path"]]
                staged[change["path"]] = self._stage(store, stage_name, change["path"], entry,
                                                     by_root[root_of(change["path"])])
            self._commit(changes, entries, staged, stage_name)

    def _stage(self, store, stage_name, path, entry, root):
        tmp = stage_name(_staging_parent(path))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out, store.open_blob(entry["blob"]) as body:
            shutil.copyfileobj(body, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chown(tmp, entry["uid"], entry["gid"])
        os.chmod(tmp, entry["mode"])
        if sha256_file(tmp) != entry["blob"]:
            raise RollbackError("config: the staged copy of %s does not match its sha256; nothing was changed" % path)
        if root.get("validate"):
            problem = run_validate(root["validate"], tmp)
            if problem:
                raise RollbackError("config: %s failed validation (%s) with %s; nothing was changed"
                                    % (path, show_command(root["validate"]), problem), path=path)
        return tmp

    @staticmethod
    def _remove(path):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _commit(self, changes, entries, staged, stage_name):
        touched_dirs = set()
        # Bottom-up: extras and whatever changes type go first.
        for change in changes:
            if change["action"] in ("remove", "replace") and os.path.lexists(change["path"]):
                self._remove(change["path"])
                touched_dirs.add(os.path.dirname(change["path"]))
        # Top-down: directories, then files and links.
        for change in sorted(changes, key=lambda c: c["path"].count("/")):
            path, action = change["path"], change["action"]
            if action == "remove":
                continue
            entry = entries[path]
            if entry["type"] == "dir" and action in ("create", "replace"):
                os.mkdir(path, 0o700)
                touched_dirs.add(os.path.dirname(path))
            elif entry["type"] == "file" and path in staged:
                os.replace(staged.pop(path), path)
                touched_dirs.add(os.path.dirname(path))
            elif entry["type"] == "link" and action != "attrs":
                tmp = stage_name(os.path.dirname(path))
                os.symlink(entry["target"], tmp)
                os.replace(tmp, path)
                touched_dirs.add(os.path.dirname(path))
        # Attributes last, deepest first, so a read-only directory is closed after its children are in.
        for change in sorted(changes, key=lambda c: -c["path"].count("/")):
            if change["action"] == "remove":
                continue
            entry = entries[change["path"]]
            os.chown(change["path"], entry["uid"], entry["gid"], follow_symlinks=False)
            if entry["type"] != "link":
                os.chmod(change["path"], entry["mode"])
        for directory in touched_dirs:
            if os.path.isdir(directory):
                fsync_dir(directory)

    # ---------------------------------------------------------------- diff
    def diff(self, store, record, changes):
        out = []
        entries = {}
        for root in record["paths"]:
            for entry in root["entries"]:
                entries[_join(root["path"], entry["rel"])] = entry
        for change in changes:
            before, after = change["from"], change["to"]
            if "file" not in (before["type"], after["type"]) or change["action"] == "attrs":
                out.append({"before_header": change["path"], "after_header": change["path"],
                            "before": _describe(before), "after": _describe(after)})
                continue
            old = _read(change["path"]) if before["type"] == "file" else b""
            new = b""
            if after["type"] == "file":
                with store.open_blob(entries[change["path"]]["blob"]) as stream:
                    new = stream.read(TEXT_LIMIT + 1)  # more than the limit is too large to show anyway
            old_text, new_text = printable_text(old), printable_text(new)
            if old_text is None or new_text is None:
                old_text, new_text = _body_line(before), _body_line(after)
            else:
                # Both sides at once: a secret whose value differs (a rotated key) is masked differently on each
                # side, so the diff shows its line as a change without showing either value. A file that is secret
                # by its name (redis.pass) has its bare lines masked too.
                old_text, new_text = redact_pair(old_text, new_text, secret_file=is_secret_file(change["path"]))
            out.append({"before_header": change["path"], "after_header": change["path"],
                        "before": old_text, "after": new_text})
        return out


def validate_argv(command, where, what, runnable=False):
    """A validate command as given: text holding %s (where `what` goes) that splits into arguments; with `runnable`
    (before a restore changes anything), its program must also exist."""
    if not isinstance(command, str) or "%s" not in command:
        raise RollbackError("%s: %r must be a command containing %%s (%s)"
                            % (where, show_command(command) if isinstance(command, str) else command, what))
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise RollbackError("%s: %r cannot be split into arguments (%s); check its quotes"
                            % (where, show_command(command), err))
    if not argv or "\x00" in command:
        raise RollbackError("%s: %r is not a command" % (where, command))
    if runnable:
        check_program(argv[0], where)
    return argv


def _staging_parent(path):
    """The real directory a file is staged in: its parent, or the nearest existing ancestor when the parent is a
    symlink (which the restore may replace: staging through it would write the body somewhere else entirely) or
    does not exist yet."""
    parent = os.path.dirname(path)
    while os.path.islink(parent) or not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return parent


def _describe(entry):
    """An entry's summary as diff text, a "key: value" line each (a file's sha256 already cut to its prefix)."""
    return "".join("%s: %s\n" % (k, short_digest(entry[k]) if k == "sha256" else entry[k]) for k in sorted(entry))


def _body_line(entry):
    if entry.get("type") != "file":
        return _describe(entry)
    return "binary or large content (%s bytes), sha256 %s\n" % (entry.get("size"), short_digest(entry.get("sha256")))


def _read(path, limit=TEXT_LIMIT):
    """Up to `limit` + 1 bytes of the file at `path` (more means too large to show), b"" when it cannot be read.
    It never follows a link nor waits on a FIFO that took the file's place since the plan was made."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)
