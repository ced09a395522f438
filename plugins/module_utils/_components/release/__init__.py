# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `release` component (the implementation is in component.py)."""

from __future__ import annotations

NAME = "release"
SUMMARY = "a C(current) symlink over release directories (the ansistrano / capistrano layout), flipped atomically"
OPTIONS = dict(
    path=dict(type="str", required=True,
              description=["The C(current) symlink over release directories (an absolute path)."]),
    validate=dict(type="str",
                  description=["A command run with C(%s) set to the release directory before the flip."]),
)
RUNTIME_OPTIONS = {}


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.release.component import (  # pylint: disable=import-outside-toplevel
        ReleaseComponent)
    return ReleaseComponent
