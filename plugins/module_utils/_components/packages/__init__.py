# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `packages` component (the implementation is in component.py)."""

from __future__ import annotations

NAME = "packages"
SUMMARY = ("exact pip versions of virtualenvs (editable and VCS installs included) and apt/dpkg versions of named "
           "packages; a restore uses one pip call and one apt-get call")
# One pip environment; package_snapshot's options for it are these, so both accept and refuse the same values.
PIP_ENVIRONMENT_OPTIONS = dict(
    virtualenv=dict(type="path", description=["The virtualenv directory (absolute); give it or O(executable)."]),
    executable=dict(type="path", description=["A python or pip (absolute) of an environment that is not a virtualenv."]),
    find_links=dict(type="list", elements="str", description=[
        "Wheelhouse directories or URLs where a restore finds the exact versions (pip C(--find-links))."]),
    index_url=dict(type="str", description=["A package index URL (pip C(--index-url)); never with credentials in it."]),
    prune_extra=dict(type="bool", default=True, description=["A restore removes what the point does not have."]),
    build_isolation=dict(type="bool", default=True, description=["pip builds sdists in an isolated environment."]),
    use_pip_config=dict(type="bool", default=False, description=[
        "Let pip read its config files and E(PIP_*) variables (by default they are ignored, so a restore depends "
        "only on the point and the source given)."]),
)
APT_OPTIONS = dict(
    names=dict(type="list", elements="str", required=True, description=["The Debian packages whose versions are pinned."]),
    hold=dict(type="bool", default=False, description=["C(apt-mark hold) them after a restore."]),
    prune_extra=dict(type="bool", default=True, description=[
        "A named package that was not installed at capture is removed by a restore."]),
    dpkg_lock_timeout=dict(type="int", default=300, description=[
        "Seconds to wait for another apt or dpkg run's lock (0 to 3600); then the failure names the process holding "
        "it and changes nothing."]),
)
OPTIONS = dict(
    pip=dict(type="list", elements="dict", options=PIP_ENVIRONMENT_OPTIONS, description=[
        "Python environments, one entry each. See M(fleetops.rollback.package_snapshot) for the details."]),
    apt=dict(type="dict", options=APT_OPTIONS, description=["Debian packages."]),
)
RUNTIME_OPTIONS = {}


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.packages.component import (  # pylint: disable=import-outside-toplevel
        PackagesComponent)
    return PackagesComponent
