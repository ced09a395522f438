# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `images` component (the implementation is in component.py)."""

from __future__ import annotations

NAME = "images"
SUMMARY = ("Docker C(repo:tag -> image id) and the containers running them; a restore retags, recreates the containers "
           "with their own settings and waits until they run and are healthy")
OPTIONS = dict(
    refs=dict(type="list", elements="raw", required=True, description=[
        "Docker C(repo:tag) references whose image ids are recorded. A restore points each back; the image it pointed "
        "at keeps a C(rollback-<time>) tag."]),
    containers=dict(type="raw", default="by_image", description=[
        "C(by_image) (every container configured with one of the refs), C(none), or a list of container names: the "
        "containers recreated on the recorded images with their own settings."]),
    docker_host=dict(type="str", description=[
        "The Docker engine: a C(unix://) socket or C(tcp://127.0.0.1:PORT); default E(DOCKER_HOST) or the local "
        "socket. Needs the Docker SDK for Python on the host."]),
    wait_timeout=dict(type="float", default=120.0, description=[
        "Seconds to wait for the recreated containers to run (and be healthy, with a HEALTHCHECK)."]),
)
RUNTIME_OPTIONS = {}


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.images.component import (  # pylint: disable=import-outside-toplevel
        ImagesComponent)
    return ImagesComponent
