# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaration of the `kubernetes` component (the implementation is in component.py)."""

from __future__ import annotations

from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_options import (
    CONNECTION_OPTIONS, SECRET_CONNECTION_OPTIONS)

NAME = "kubernetes"
SUMMARY = ("Deployments, StatefulSets and DaemonSets of one namespace: the pod template, replicas and revision, the "
           "ConfigMaps they read by content and the Secrets by salted hash; a restore patches the recorded template "
           "back (ConfigMaps first) and waits for the rollout")


def _connection_options():
    """The connection options less api_key: a point never stores a token (it is given at run time as
    kubernetes_api_key, which the descriptions then name)."""
    out = {}
    for name, option in CONNECTION_OPTIONS.items():
        if name not in SECRET_CONNECTION_OPTIONS:
            out[name] = dict(option, description=[text.replace("O(api_key)", "O(kubernetes_api_key)")
                                                  for text in option["description"]])
    return out


OPTIONS = _connection_options()
OPTIONS.update(
    workloads=dict(type="list", elements="raw", required=True, description=[
        "The workloads captured: each a dict with C(kind) (C(Deployment) by default, C(StatefulSet), C(DaemonSet) "
        "or kubectl's short names C(deploy), C(sts), C(ds)) and exactly one of C(name) or C(selector) (a label "
        "selector in kubectl's syntax, such as C(app=web,tier!=cache)), or a string C(deployment/web), C(sts/db) "
        "or C(web) (a Deployment).",
        "A selector that matches nothing is refused when the point is captured."]),
    configmaps=dict(type="bool", default=True, description=[
        "Whether the ConfigMaps the pod templates reference are captured by content and restored, before the "
        "workloads. An immutable ConfigMap whose data differs from the point is refused, naming it."]),
    secrets=dict(type="str", default="report", choices=["report", "verify", "ignore"], description=[
        "What is done with the Secrets the pod templates reference. Their values are never stored: a point holds "
        "each one's name, type and a salted sha256 of its data only, so no Secret value can leak from a store, a "
        "result, a diff or a journal. Restoring Secrets is a separate, explicit step with your secret manager.",
        "C(report): a Secret whose data changed since the capture is reported in the plan and a warning; "
        "C(verify): the restore is refused before anything changes; C(ignore): Secrets are not looked at."]),
    replicas=dict(type="bool", default=True, description=[
        "Whether the recorded C(spec.replicas) is restored. Set C(false) when a HorizontalPodAutoscaler owns the "
        "replica count."]),
    wait_timeout=dict(type="float", default=300.0, description=[
        "Seconds to wait for each restored rollout to complete (observed generation, every replica updated, ready "
        "and available). A rollout that reports C(ProgressDeadlineExceeded) or misses this deadline fails the "
        "restore, and the safety point is re-applied."]),
)
RUNTIME_OPTIONS = dict(
    kubernetes_api_key=dict(type="str", no_log=True, description=[
        "With O(state=restored) or a capture, the bearer token for the kubernetes component's API server, for this "
        "run only: points never store tokens. Without it, the kubeconfig's credentials apply."]),
)


def load():
    from ansible_collections.fleetops.rollback.plugins.module_utils._components.kubernetes.component import (  # pylint: disable=import-outside-toplevel
        KubernetesComponent)
    return KubernetesComponent
