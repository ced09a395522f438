#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_rollout_restore
short_description: Undo a Deployment, StatefulSet or DaemonSet rollout to a revision named by number, hash or restore point
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - The runbook's C(kubectl rollout undo [--to-revision=N]) and C(kubectl rollout status) as one safe, idempotent step.
  - The target revision is named by its number (O(to_revision)), by its template hash (O(template_hash)) or by the
    restore point that recorded it (O(point)); none of them means the previous revision, as C(kubectl rollout undo)
    does. A hash or a point names the same template after any renumbering, so undoing twice does not flip back.
  - The history is the ReplicaSets (Deployment) or ControllerRevisions (StatefulSet, DaemonSet) the workload owns,
    found by their ownerReferences, never by label selector, so another workload with an overlapping selector
    cannot be mixed in.
  - A revision that does not exist is refused with the list of those that do (number, hashes, images, which is
    current), saying when the history was pruned by C(revisionHistoryLimit); nothing is changed.
  - The change is one JSON patch that replaces C(spec.template) with the target's template (without the
    controller's hash label) and adds the annotation C(fleetops.rollback/restored-from). Every other annotation and
    label is kept. The patch first tests C(metadata.resourceVersion), so a workload changed by someone else meanwhile
    is not overwritten.
  - A workload that already holds the target template is left alone (C(changed=false), no new revision), as kubectl
    says C(skipped rollback).
  - With O(wait), it then waits until the rollout is complete (the controller observed it; every replica updated,
    ready and available). When the rollout fails (C(ProgressDeadlineExceeded)) or O(wait_timeout) passes, the
    template that was there before is put back (O(revert_on_failure)) and the task fails saying so.
options:
  kind:
    description:
      - The kind of the workload. kubectl's short names (C(deploy), C(sts), C(ds)) and plurals are accepted.
    type: str
    default: Deployment
  name:
    description: The name of the workload, in O(namespace).
    type: str
    required: true
  to_revision:
    description:
      - The revision number to go back to, as C(kubectl rollout history) lists it now (C(kubectl rollout undo
        --to-revision)).
      - Numbers move when a revision is rolled back to (it becomes the newest number). O(template_hash) and O(point)
        do not.
      - At most one of O(to_revision), O(template_hash) and O(point).
    type: int
  template_hash:
    description:
      - The template to go back to, by hash. Either ours (16 hex digits, the C(hash) of RV(to) this module returns
        and a restore point records) or the controller's label value on the revision (C(pod-template-hash) of a
        ReplicaSet, C(controller-revision-hash) of a ControllerRevision).
    type: str
  point:
    description:
      - The restore point id whose capture recorded the revision (the C(fleetops.rollback/point) annotation of the
        ReplicaSet or ControllerRevision lists it).
    type: str
  wait:
    description: Wait for the rollout to complete after the patch.
    type: bool
    default: true
  wait_timeout:
    description: Seconds the rollout may take (more than 0, at most a week).
    type: float
    default: 300
  revert_on_failure:
    description:
      - When the rollout to the target fails (C(ProgressDeadlineExceeded)) or does not complete within
        O(wait_timeout), put back the template that was there before and fail saying so.
      - With C(false), the workload is left on the target template and the task fails.
    type: bool
    default: true
extends_documentation_fragment:
  - fleetops.rollback.kubernetes
  - fleetops.rollback.attributes
  - fleetops.rollback.attributes.platform
attributes:
  check_mode:
    support: full
    description: Sends the same patch with server-side dry-run (C(dryRun=All)), so the server validates it, and
      returns what a real run returns (target, revision numbers); nothing is changed.
  diff_mode:
    support: full
    description: Shows the revision, template hash and images before and after.
  idempotent:
    support: partial
    details: With O(template_hash) or O(point) a second run reports C(changed=false). The previous revision (no
      target option) flips back and forth on every run, as C(kubectl rollout undo) does, and a revision number moves
      once rolled back to.
notes:
  - Every option is checked before the first request; a bad value fails naming the option and the value.
  - A wrong context or namespace, or a server that cannot be reached, fails with a clear message and changes nothing.
  - Only the pod template is restored; ConfigMaps and Secrets it reads are not. Restore points of the
    C(kubernetes) component (M(fleetops.rollback.restore_point)) restore those with the template.
seealso:
  - module: fleetops.rollback.restore_point
  - module: fleetops.rollback.health_gate
"""

EXAMPLES = r"""
- name: Undo the last rollout of the web Deployment (kubectl rollout undo deployment/web) and wait for it
  fleetops.rollback.k8s_rollout_restore:
    name: web
    namespace: prod

- name: Go back to revision 3, as kubectl rollout history lists it
  fleetops.rollback.k8s_rollout_restore:
    name: web
    namespace: prod
    to_revision: 3

- name: Go back to the template a restore point recorded, whatever its number is now
  fleetops.rollback.k8s_rollout_restore:
    kind: StatefulSet
    name: db
    context: prod-cluster
    point: "{{ known_good.point.id }}"
    wait_timeout: 600
  register: undone

- name: Go back to a template by hash (ours, or the pod-template-hash label)
  fleetops.rollback.k8s_rollout_restore:
    name: web
    host: https://127.0.0.1:6443
    api_key: "{{ vault_k8s_token }}"
    ca_cert: /etc/fleetops/k8s-ca.pem
    template_hash: 5d59d67564
"""

RETURN = r"""
kind:
  description: The workload's kind.
  returned: always
  type: str
  sample: Deployment
name:
  description: The workload's name.
  returned: always
  type: str
namespace:
  description: The namespace it is in.
  returned: always
  type: str
from:
  description: The revision the workload held before (number, our template hash, images by container).
  returned: always
  type: dict
  sample: {revision: 3, hash: 0f1e2d3c4b5a6978, images: {web: "nginx:v3"}}
to:
  description:
    - The target revision, with the number it had when it was chosen, our template hash, the holder (ReplicaSet or
      ControllerRevision) and images by container.
  returned: always
  type: dict
  sample: {revision: 1, hash: 8a7b6c5d4e3f2a1b, holder: web-6b8f9c7d5, images: {web: "nginx:v1"}}
revision:
  description:
    - The number the target revision has after the undo (the controller renumbers it as the newest). In check mode,
      the number it will have. Unchanged when the workload already held the target.
  returned: always
  type: int
  sample: 4
rollout:
  description: C(done) (waited and complete), C(failed) or C(not waited) (O(wait=false), check mode, nothing to do).
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
reverted:
  description: After a failed rollout, whether the template that was there before was put back.
  returned: failure of the rollout
  type: bool
revisions:
  description: When the target does not exist, the revisions that do (number, hash, holder, images, current).
  returned: failure
  type: list
  elements: dict
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase
from ansible_collections.fleetops.rollback.plugins.module_utils._components.base import argument_spec as spec_of
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s
from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_options import CONNECTION_OPTIONS
from ansible_collections.fleetops.rollback.plugins.module_utils import _k8s_rollout_restore as rollout


class K8sRolloutRestoreModule(ModuleBase):
    uses_store = False
    argument_spec = dict(
        spec_of(CONNECTION_OPTIONS),
        kind=dict(type="str", default="Deployment"),
        name=dict(type="str", required=True),
        to_revision=dict(type="int"),
        template_hash=dict(type="str"),
        point=dict(type="str"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="float", default=300.0),
        revert_on_failure=dict(type="bool", default=True),
    )

    def run(self):
        kind, selector = rollout.check_params(self.params)
        self.progress.at("connecting to the Kubernetes API")
        cluster = k8s.connect({key: self.params.get(key) for key in CONNECTION_OPTIONS})
        return rollout.Undo(cluster, kind, self.params["name"], selector, check_mode=self.check_mode,
                            diff_mode=self.diff_mode, wait=self.params["wait"],
                            wait_timeout=self.params["wait_timeout"],
                            revert_on_failure=self.params["revert_on_failure"], progress=self.progress).run()


def main():
    K8sRolloutRestoreModule().main()


if __name__ == "__main__":
    main()
