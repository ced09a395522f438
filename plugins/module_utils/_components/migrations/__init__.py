# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `migrations` component (the implementation is in component.py)."""

from __future__ import annotations

NAME = "migrations"
SUMMARY = ("the schema revision a command such as C(alembic current) prints, restored with the configured downgrade "
           "command")
OPTIONS = dict(
    current=dict(type="raw", required=True, description=[
        "A command that prints the revision (for example C(alembic current)): a string split like a shell would, or "
        "an argv list; never run through a shell."]),
    downgrade=dict(type="raw", required=True, description=[
        "The command that goes back to the revision, with C(%s) set to it (for example C(alembic downgrade %s))."]),
    upgrade=dict(type="raw", description=[
        "Tried when the downgrade fails (a safety revert may have to go forward), with C(%s) set to the revision."]),
    chdir=dict(type="str", description=["The absolute directory the commands run in."]),
    timeout=dict(type="int", default=600, description=["Seconds each command may take (1 to 86400)."]),
    revision_regex=dict(type="str", description=[
        "A regular expression with a C((?P<revision>...)) group that finds the revision in what C(current) prints; "
        "by default a revision is the first word of a line."]),
    base=dict(type="str", default="base", description=["The target of a downgrade when the point holds no revision."]),
)
RUNTIME_OPTIONS = {}


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.migrations.component import (  # pylint: disable=import-outside-toplevel
        MigrationsComponent)
    return MigrationsComponent
