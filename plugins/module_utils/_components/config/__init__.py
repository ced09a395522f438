# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `config` component (the implementation is in component.py)."""

from __future__ import annotations

NAME = "config"
SUMMARY = ("files and trees, byte-exact with mode and owner; an optional validate command (such as C(nginx -t -c %s)) "
           "checks each file before it is swapped in")
OPTIONS = dict(
    paths=dict(
        type="list", elements="raw", required=True,
        description=[
            "Absolute files or directories (a directory is captured whole), or V({path, validate}) where C(validate) "
            "is a command with C(%s) run on each candidate file before it is swapped in (for example "
            "C(nginx -t -c %s)).",
        ]),
)
RUNTIME_OPTIONS = {}


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.config.component import (  # pylint: disable=import-outside-toplevel
        ConfigComponent)
    return ConfigComponent
