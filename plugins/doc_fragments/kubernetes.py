# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by tools/sync_components.py from the component registry (plugins/module_utils/_components): do not edit.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - 'Path of the kubeconfig file. Default: E(KUBECONFIG), then C(~/.kube/config), as kubectl reads it.'
      - Not needed with O(host) (and O(api_key) when the server asks for a token).
      - Read from E(K8S_AUTH_KUBECONFIG) when not given.
    type: path
  context:
    description:
      - 'The kubeconfig context to use. Default: the file''s C(current-context). A context the file does not have
        is refused with the list of those it has.'
      - Read from E(K8S_AUTH_CONTEXT) when not given.
    type: str
  host:
    description:
      - URL of the API server, for example C(https://127.0.0.1:6443). With a kubeconfig it replaces the context's
        server; without one, it is the whole connection.
      - Read from E(K8S_AUTH_HOST) when not given.
    type: str
  api_key:
    description:
      - A bearer token. Sent in the C(Authorization) header only; never shown in results, diffs or journals.
      - Read from E(K8S_AUTH_API_KEY) when not given.
    type: str
  validate_certs:
    description:
      - 'Whether the server''s TLS certificate is checked. Default: the kubeconfig''s setting, else C(true).'
      - Read from E(K8S_AUTH_VERIFY_SSL) when not given.
    type: bool
    aliases:
      - verify_ssl
  ca_cert:
    description:
      - 'Path of the CA bundle that signed the server''s certificate. Default: the kubeconfig''s.'
      - Read from E(K8S_AUTH_SSL_CA_CERT) when not given.
    type: path
    aliases:
      - ssl_ca_cert
  namespace:
    description:
      - 'The namespace of the workloads. Default: the context''s namespace, else C(default). A namespace the cluster
        does not have is refused before anything is read or changed.'
      - Read from E(K8S_AUTH_NAMESPACE) when not given.
    type: str
requirements:
  - the Python package C(kubernetes) on the host that talks to the API server (the controller for a cluster host
    with C(ansible_connection=local))
"""
