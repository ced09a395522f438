# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `release` component: a `current` symlink over release directories, flipped atomically."""

from __future__ import annotations

import os

from ansible_collections.fleetops.rollback.plugins.module_utils._commands import run_validate, show_command
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path
from ansible_collections.fleetops.rollback.plugins.module_utils._components import release as declaration
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import Component
from ansible_collections.fleetops.rollback.plugins.module_utils._components.config.component import validate_argv
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import fsync_dir


def _resolve(link_path, target):
    return os.path.normpath(os.path.join(os.path.dirname(link_path), target))


class ReleaseComponent(Component):
    name = "release"
    declaration = declaration
    previewable = True

    def check_spec(self, spec, where):
        path = check_path(where + ".path", spec["path"])
        validate = spec.get("validate")
        if validate is not None:
            validate_argv(validate, where + ".validate", "the release directory")
        return {"path": path, "validate": validate}

    def check_capturable(self, spec):
        path = spec["path"]
        if not os.path.islink(path):
            what = "does not exist" if not os.path.lexists(path) else "is not a symlink"
            raise RollbackError("components.release.path: %r %s; the release component manages a `current` symlink "
                                "that points at a release directory" % (path, what))
        if not os.path.isdir(path):
            raise RollbackError("components.release.path: %r points at %r, which is not a directory"
                                % (path, os.readlink(path)))

    def scope(self, record, changes=None):  # pylint: disable=unused-argument
        return {"path": record["path"], "validate": record.get("validate")}

    def capture(self, store, spec, point_id=None):
        target = self.current(spec)
        return {"path": spec["path"], "validate": spec.get("validate"), "target": target,
                "release": os.path.basename(_resolve(spec["path"], target)) if target else None}

    def current(self, record):
        path = record["path"]
        if os.path.islink(path):
            return os.readlink(path)
        if os.path.lexists(path):
            raise RollbackError("release: %r is no longer a symlink; move it aside by hand, this tool will not "
                                "replace a real directory" % path)
        return None

    def plan(self, store, record, point_id=""):
        now = self.current(record)
        if now == record["target"]:
            return []
        if record["target"] is None:
            return [{"path": record["path"], "action": "remove", "from": {"target": now}, "to": {"target": None}}]
        resolved = _resolve(record["path"], record["target"])
        # A safety point (exact) may hold a dangling link: putting that back is the faithful revert.
        if not record.get("exact") and not os.path.isdir(resolved):
            raise RollbackError("point %s: release directory %s no longer exists; redeploy it or choose another point; "
                                "nothing was changed" % (point_id, resolved), path=resolved)
        if record.get("validate") and not record.get("exact"):
            # The validator must be able to run before the safety point is taken and the link is flipped.
            validate_argv(record["validate"], "point %s: release.validate" % point_id, "the release directory",
                          runnable=True)
        return [{"path": record["path"], "action": "switch",
                 "from": {"target": now, "release": os.path.basename(_resolve(record["path"], now)) if now else None},
                 "to": {"target": record["target"], "release": record["release"]}}]

    def apply(self, store, record, changes):
        if not changes:
            return
        path = record["path"]
        if record["target"] is None:
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
            return
        resolved = _resolve(path, record["target"])
        if record.get("validate") and not record.get("exact"):
            problem = run_validate(record["validate"], resolved)
            if problem:
                raise RollbackError("release: %s failed validation (%s) with %s" % (resolved, show_command(record["validate"]), problem),
                                    path=resolved)
        with store.staging([os.path.dirname(path)]) as stage_name:
            tmp = stage_name(os.path.dirname(path))
            os.symlink(record["target"], tmp)
            os.replace(tmp, path)
        fsync_dir(os.path.dirname(path))

    def diff(self, store, record, changes):
        return [{"before_header": c["path"], "after_header": c["path"],
                 "before": "-> %s\n" % (c["from"]["target"] or "(absent)"),
                 "after": "-> %s\n" % (c["to"]["target"] or "(absent)")} for c in changes]
