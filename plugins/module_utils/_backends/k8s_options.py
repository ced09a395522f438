# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes connection options: one spec shared by the kubernetes component, k8s_rollout_restore and the
k8s_rollout health check, documented by the generated fleetops.rollback.kubernetes doc fragment.

The names follow kubernetes.core, and so do the environment variables read for an option not given (K8S_AUTH_HOST,
K8S_AUTH_API_KEY, ... see k8s.ENVIRONMENT), so AWX's Kubernetes credential works as it does for kubernetes.core.
This file imports nothing, so declarations can read it without the client.
"""

from __future__ import annotations

ENV_NOTE = "Read from E(%s) when not given."

CONNECTION_OPTIONS = dict(
    kubeconfig=dict(type="path", description=[
        "Path of the kubeconfig file. Default: E(KUBECONFIG), then C(~/.kube/config), as kubectl reads it.",
        "Not needed with O(host) (and O(api_key) when the server asks for a token).",
        ENV_NOTE % "K8S_AUTH_KUBECONFIG"]),
    context=dict(type="str", description=[
        "The kubeconfig context to use. Default: the file's C(current-context). A context the file does not have is "
        "refused with the list of those it has.",
        ENV_NOTE % "K8S_AUTH_CONTEXT"]),
    host=dict(type="str", description=[
        "URL of the API server, for example C(https://127.0.0.1:6443). With a kubeconfig it replaces the context's "
        "server; without one, it is the whole connection.",
        ENV_NOTE % "K8S_AUTH_HOST"]),
    api_key=dict(type="str", no_log=True, description=[
        "A bearer token. Sent in the C(Authorization) header only; never shown in results, diffs or journals.",
        ENV_NOTE % "K8S_AUTH_API_KEY"]),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], description=[
        "Whether the server's TLS certificate is checked. Default: the kubeconfig's setting, else C(true).",
        ENV_NOTE % "K8S_AUTH_VERIFY_SSL"]),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], description=[
        "Path of the CA bundle that signed the server's certificate. Default: the kubeconfig's.",
        ENV_NOTE % "K8S_AUTH_SSL_CA_CERT"]),
    namespace=dict(type="str", description=[
        "The namespace of the workloads. Default: the context's namespace, else C(default). A namespace the "
        "cluster does not have is refused before anything is read or changed.",
        ENV_NOTE % "K8S_AUTH_NAMESPACE"]),
)

# Options a restore point must never store: the component reads them at restore time from restore_point's
# kubernetes_api_key instead.
SECRET_CONNECTION_OPTIONS = ("api_key",)
