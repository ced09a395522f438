# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import yaml


class ModuleDocFragment:
    # Several targets, each with its checks (health_gate and rollback_watch); a module gives the description of
    # O(targets) when it says more than this one.
    # The keys of a check are written here, once. Their names, types and the check types that take them are declared
    # in module_utils/_health/schema.py (the argument spec derives from it); a unit test fails when the two disagree.
    # A key of a check type starts "For V(<type>) checks" (", required" when the type requires it) and names its
    # default there.
    DOCUMENTATION = r"""
options:
  targets:
    description:
      - Several targets, each with a name and its own checks.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The target's name (usually the inventory host name); unique among the targets.
        type: str
        required: true
      checks:
        description:
          - The target's checks, a non-empty list; each has a O(targets[].checks[].type) and the keys of that type.
        type: list
        elements: dict
        required: true
        suboptions:
          type:
            description:
              - The kind of check, one of V(http), V(tcp), V(command), V(prometheus) or V(k8s_rollout) (anything else
                fails with a message naming the value).
              - V(http) requests O(targets[].checks[].url) and checks the status, the body and the latency.
              - V(tcp) opens a TCP connection to O(targets[].checks[].host):O(targets[].checks[].port).
              - V(command) runs O(targets[].checks[].argv) (never through a shell) and checks its return code and
                output.
              - V(prometheus) runs the instant query O(targets[].checks[].query) through the HTTP API
                (C(/api/v1/query)) of the Prometheus server at O(targets[].checks[].url) and compares the value with
                O(targets[].checks[].max) and/or O(targets[].checks[].min), or with the value of
                O(targets[].checks[].baseline_query) as a ratio (O(targets[].checks[].max_ratio)). Give a threshold, a
                baseline ratio, or both (then both must pass).
              - V(k8s_rollout) reads a Kubernetes workload (O(targets[].checks[].kind) named O(targets[].checks[].name),
                or every one O(targets[].checks[].selector) matches) and passes when its rollout is complete, as
                C(kubectl rollout status) judges (the controller has observed the latest generation, every replica is
                updated and available, no old replica is left), and no pod of its current revision is stuck
                (C(CrashLoopBackOff), C(ImagePullBackOff), C(ErrImagePull) and the like). A rollout past its progress
                deadline (C(ProgressDeadlineExceeded)) fails the sample with the controller's message; the errors name
                the workload and the pod, container and reason. Needs the Python package C(kubernetes) on the host
                that runs the module (only when such a check is given); the connection is made once per check. Its
                connection keys are those of kubernetes.core; one not given is read from the same environment variable
                (E(K8S_AUTH_KUBECONFIG), E(K8S_AUTH_CONTEXT), E(K8S_AUTH_HOST), E(K8S_AUTH_API_KEY), ...).
            type: str
            required: true
          request_timeout:
            description:
              - Seconds one sample of this check may take before it counts as failed. Greater than 0, at most 3600.
              - Always capped by the time the module has left (the O(fleetops.rollback.health_gate#module:timeout) of
                health_gate, the round's O(fleetops.rollback.rollback_watch#module:request_timeout) of
                rollback_watch).
            type: float
            default: 5.0
          url:
            description:
              - For V(http) checks, required. The V(http://) or V(https://) URL to request.
              - For V(prometheus) checks, required. The Prometheus server, for example V(http://prometheus:9090) (a
                path prefix such as V(http://proxy/prometheus) is kept; C(/api/v1/query) is added).
              - Redirects are followed; the proxy environment variables apply.
              - Do not put credentials in the URL; send them in O(targets[].checks[].headers). A URL with credentials,
                a space or a control character, non-ASCII characters in its path (percent-encode them), or a port that
                is not 1-65535 is refused before anything runs, with the password hidden.
            type: str
          method:
            description:
              - For V(http) checks. The HTTP method. Defaults to V(GET).
            type: str
          status:
            description:
              - For V(http) checks. The status codes that count as passing. Defaults to V([200]).
            type: list
            elements: int
          body:
            description:
              - For V(http) checks. A regular expression that must match (search) the response body (its first MiB).
            type: str
          max_latency:
            description:
              - For V(http) checks. Seconds; a response that takes longer than this counts as a failed sample even
                when its status and body are right.
            type: float
          headers:
            description:
              - For V(http) and V(prometheus) checks. Request headers, name to value (an C(Authorization) header for a
                Prometheus behind a proxy, say).
              - Header values are treated as secrets (C(no_log)) and never appear in results or logs. Ansible
                masks every occurrence of a C(no_log) value in the output, so a short header value (like V(1))
                masks that text wherever it appears in the result.
            type: dict
          validate_certs:
            description:
              - For V(http), V(prometheus) and V(k8s_rollout) checks. Whether to verify the server's TLS certificate.
                Defaults to V(true); for V(k8s_rollout) checks, to the kubeconfig's setting, else V(true).
            type: bool
          host:
            description:
              - For V(tcp) and V(k8s_rollout) checks.
              - For V(tcp) checks, the host name or address to connect to. Defaults to V(127.0.0.1). A host name or an
                IP address only (IPv6 without brackets); a URL, a C(host:port) or anything else is refused with a
                message saying what to give instead.
              - For V(k8s_rollout) checks, the URL of the Kubernetes API server, for example
                V(https://127.0.0.1:6443). With a kubeconfig it replaces the context's server; without one, it is the
                whole connection. A URL with credentials is refused (give the token in O(targets[].checks[].api_key)).
            type: str
          port:
            description:
              - For V(tcp) checks, required. The TCP port.
            type: int
          argv:
            description:
              - For V(command) checks, required. The program and its arguments, run directly, never through a shell;
                C(;), C($(...)) and the like reach the program as text.
              - A program path that is a FIFO, a device, a directory or a dangling link, a missing program whose name
                holds a space (a shell line given as one item), or an argument with a NUL byte is refused before
                anything runs. A program that is missing is a failed sample (it may be installed later).
            type: list
            elements: str
          rc:
            description:
              - For V(command) checks. The return code that counts as passing. Defaults to V(0).
              - 0 to 255, or minus the number of the signal that killed the command (V(-9) for SIGKILL).
            type: int
          stdout:
            description:
              - For V(command) checks. A regular expression that must match (search) the standard output.
            type: str
          query:
            description:
              - For V(prometheus) checks, required. A PromQL expression with an instant value, a scalar or a vector,
                such as a sum of rates.
              - A range vector (C(metric[5m]) without a function) fails the sample with a message saying so.
              - With O(targets[].checks[].max) or O(targets[].checks[].min), every series of the result must be within
                them (the worst one is reported). With O(targets[].checks[].baseline_query), the query must return one
                value (aggregate it with C(sum), C(max) or C(avg)).
              - A NaN value (0/0, such as an error ratio without any traffic) counts as no data, see
                O(targets[].checks[].on_empty). Appending "or vector(0)" to a sum of error rates turns "no errors yet"
                into 0.
            type: str
          max:
            description:
              - For V(prometheus) checks. The highest value that passes.
            type: float
          min:
            description:
              - For V(prometheus) checks. The lowest value that passes.
            type: float
          baseline_query:
            description:
              - For V(prometheus) checks. A PromQL expression giving the baseline, one value (the same measure over an
                earlier window with C(offset), or on the hosts still on the known good release).
              - The check passes when the value of O(targets[].checks[].query) divided by this is at most
                O(targets[].checks[].max_ratio). A baseline of 0 gives a ratio of 1 when the value is 0 too, else an
                infinite one.
              - Requires O(targets[].checks[].max_ratio).
            type: str
          max_ratio:
            description:
              - For V(prometheus) checks. The highest ratio of the value to the baseline that passes (V(1.5) allows
                50% more than the baseline). Requires O(targets[].checks[].baseline_query).
            type: float
          on_empty:
            description:
              - For V(prometheus) checks. What a query that returns no data (no series, or only NaN) means, for
                O(targets[].checks[].query) and O(targets[].checks[].baseline_query) alike.
              - V(fail) (the default) fails the sample, since no data is no proof of health; V(pass) passes it;
                V(zero) counts the missing value as 0 and compares that.
            type: str
            choices: [fail, pass, zero]
          kind:
            description:
              - For V(k8s_rollout) checks. The kind of workload, V(Deployment) (the default), V(StatefulSet) or
                V(DaemonSet); the short names V(deploy), V(sts) and V(ds) and the lower case and plural spellings are
                taken too.
            type: str
          name:
            description:
              - For V(k8s_rollout) checks. The name of the workload. Give this or O(targets[].checks[].selector), not
                both. A workload that does not exist fails the sample, naming it, the namespace and the server.
            type: str
          selector:
            description:
              - For V(k8s_rollout) checks. A label selector in kubectl's syntax, such as V(app=web) or
                V(tier in (web,api)); every workload of O(targets[].checks[].kind) it matches must pass, and no match
                fails the sample.
            type: str
          kubeconfig:
            description:
              - For V(k8s_rollout) checks. Path of the kubeconfig file. Default E(KUBECONFIG), then
                C(~/.kube/config), as kubectl reads it. A path that is not a file is refused before anything runs.
            type: path
          context:
            description:
              - For V(k8s_rollout) checks. The kubeconfig context. Default the file's C(current-context); a context the
                file does not have fails the sample with the list of those it has.
            type: str
          api_key:
            description:
              - For V(k8s_rollout) checks. A bearer token for the API server.
              - A secret (C(no_log)), sent in the C(Authorization) header only; it never appears in results, errors,
                the watch's decisions or reports.
            type: str
          ca_cert:
            description:
              - For V(k8s_rollout) checks. Path of the CA bundle that signed the API server's certificate. Default the
                kubeconfig's.
            type: path
          namespace:
            description:
              - For V(k8s_rollout) checks. The namespace of the workload. Default the context's namespace, else
                V(default). A namespace the cluster does not have fails the sample, naming it.
            type: str
"""


def _one_target(documentation):
    """The checks of one target, O(checks): the keys of a target's checks, their references moved to O(checks[])."""
    keys = yaml.safe_load(documentation)["options"]["targets"]["suboptions"]["checks"]["suboptions"]
    keys = json.loads(json.dumps(keys).replace("O(targets[].checks[].", "O(checks[]."))
    # JSON is YAML: ansible-doc reads it as it reads the other fragments.
    return json.dumps({"options": {"checks": {
        "description": ["The checks of one target."], "type": "list", "elements": "dict", "suboptions": keys}}})


# health_gate's O(checks), derived from DOCUMENTATION rather than written twice. It is set after the class because
# ansible-test's yamllint reads every assignment in the class body as a YAML string literal.
ModuleDocFragment.CHECKS = _one_target(ModuleDocFragment.DOCUMENTATION)
