# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The k8s_rollout check: a Deployment, StatefulSet or DaemonSet (by name, or every one a label selector matches)
has finished its rollout and no pod of its current revision is stuck.

The judgement is the backend's (k8s_workloads.rollout_state, as `kubectl rollout status` judges; stuck_pods); this
file only reads, combines and words it. The kubernetes client is imported on the first sample, so the modules need
the package only when a k8s_rollout check is given. The connection is made once per check and reused; every
request of a sample, retries included, ends within the sample's time budget.
"""

from __future__ import annotations

import time

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.checks import Check

DONE = "done"
# How bad a workload's state is; the check reports the worst.
STATE_RANK = {DONE: 0, "progressing": 1, "failed": 2}


def stuck_text(stuck):
    """One line per stuck container: `pod web-abc-xyz container web: CrashLoopBackOff (4 restarts)`."""
    pod, container, reason, restarts = stuck
    return "pod %s container %s: %s (%s restart%s)" % (pod, container, reason, restarts, "" if restarts == 1 else "s")


def judge(workload, stuck):
    """(state, texts) of one workload read from the server and its stuck pods: the state is rollout_state's,
    except that a done rollout with a stuck pod counts as progressing (it is not healthy, and may still recover).
    The first text is rollout_state's message, then one per stuck container."""
    from ansible_collections.fleetops.rollback.plugins.module_utils._backends.k8s_workloads import rollout_state
    state, message = rollout_state(workload)
    if state == DONE and stuck:
        state = "progressing"
        pods = len({item[0] for item in stuck})
        message += (", but 1 pod of the current revision is stuck" if pods == 1
                    else ", but %d pods of the current revision are stuck" % pods)
    return state, [message] + [stuck_text(item) for item in stuck]


class K8sRolloutCheck(Check):
    """Every selected workload rolled out (observedGeneration current, all replicas updated and available, no old
    ones left) and no pod of its current revision stuck (CrashLoopBackOff, ImagePullBackOff, ...)."""

    type = "k8s_rollout"

    def __init__(self, kind, name, selector, connection, request_timeout):
        super().__init__(request_timeout)
        self.kind = kind
        self.name = name
        self.selector = selector
        # The connection options given (k8s_options names); api_key among them, never shown.
        self.connection = dict(connection)
        self._cluster = None
        self._namespace_checked = False

    def __repr__(self):
        # Never the connection: it holds the token.
        return "K8sRolloutCheck(%s)" % self.label()

    def label(self):
        if self.name is not None:
            what = "%s/%s" % (self.kind.lower(), self.name)
        else:
            what = "%ss -l %s" % (self.kind.lower(), self.selector)
        namespace = self.connection.get("namespace")
        return "k8s_rollout %s%s" % (what, " (namespace %s)" % namespace if namespace else "")

    def _connect(self):
        """The check's Cluster, made on the first sample and kept (a failed attempt is tried again next sample)."""
        if self._cluster is None:
            from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s
            self._cluster = k8s.connect(self.connection, check=False)
        return self._cluster

    def _workloads(self, cluster):
        from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads
        if self.name is not None:
            found = k8s_workloads.read(cluster, self.kind, self.name, missing_ok=True)
            if found is None:
                raise RollbackError("%s %r not found in namespace %s on %s" % (
                    self.kind.lower(), self.name, cluster.namespace, cluster.where()))
            return [found]
        found = k8s_workloads.select(cluster, self.kind, self.selector)
        if not found:
            raise RollbackError("no %s matches the selector %r in namespace %s on %s" % (
                self.kind.lower(), self.selector, cluster.namespace, cluster.where()))
        return found

    @staticmethod
    def _stuck(cluster, workload):
        """The stuck containers of the pods of the workload's current revision (all its pods when the controller
        has not made that revision yet)."""
        from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_workloads
        current = k8s_workloads.current_revision(workload, k8s_workloads.history(cluster, workload))
        return k8s_workloads.stuck_pods(k8s_workloads.pods(cluster, workload, current))

    def sample(self, budget):
        started = time.monotonic()
        try:
            cluster = self._connect()
            with cluster.bounded(budget - (time.monotonic() - started)):
                if not self._namespace_checked:
                    cluster.check_namespace()
                    self._namespace_checked = True
                judged = [(workload, judge(workload, self._stuck(cluster, workload)))
                          for workload in self._workloads(cluster)]
        except RollbackError as err:
            return False, str(err), {"state": None}
        state = max((verdict[0] for _workload, verdict in judged), key=STATE_RANK.__getitem__)
        extra = {"state": state, "workloads": len(judged)}
        shown = judged if state == DONE else [item for item in judged if item[1][0] != DONE]
        texts = []
        for workload, (_state, lines) in shown:
            if self.name is not None:
                # The label names the one workload already.
                prefix = "%s/%s: " % (workload["kind"].lower(), workload["metadata"]["name"])
                lines = [lines[0][len(prefix):] if lines[0].startswith(prefix) else lines[0]] + lines[1:]
            texts.extend(lines)
        return state == DONE, "; ".join(texts), extra
