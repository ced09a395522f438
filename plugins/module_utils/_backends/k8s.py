# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A connection to a Kubernetes API server, through the `kubernetes` client's configuration and transport.

Only the client's kubeconfig loading, TLS, authentication and HTTP pool are used; requests and answers are plain
JSON dicts (the objects as the server sends them, so a template read here can be sent back unchanged). Reads are
retried with backoff on throttling and server errors; a failure carries the server's own Status message.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote, urlencode

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError

try:
    from kubernetes import client as _client
    from kubernetes import config as _config
    from kubernetes.config.config_exception import ConfigException
    import urllib3
    HAS_KUBERNETES = True
    IMPORT_ERROR = None
except ImportError as err:  # pragma: no cover - reported by require()
    HAS_KUBERNETES = False
    IMPORT_ERROR = err
    ConfigException = Exception

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

# Answers worth another try for a read: throttling and a server or proxy that is briefly unwell.
RETRY_STATUSES = (429, 500, 502, 503, 504)
READ_ATTEMPTS = 4
REQUEST_TIMEOUT = 30.0


class KubeError(RollbackError):
    """A request the API server refused or could not answer; `status` is the HTTP status (0: no answer)."""

    def __init__(self, msg, status=0, reason="", **details):
        super().__init__(msg, status=status, reason=reason, **details)
        self.status = status
        self.reason = reason


def require():
    if not HAS_KUBERNETES:
        raise RollbackError("the Python package `kubernetes` is needed on the host that talks to the cluster (the "
                            "controller for a cluster host): pip install kubernetes (import error: %s)" % IMPORT_ERROR)


def _contexts(kubeconfig):
    try:
        contexts, active = _config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError, ValueError):
        return [], None
    return sorted(c["name"] for c in contexts or []), (active or {}).get("name")


# Where each option is read from when not given: the variables kubernetes.core reads, which AWX's "OpenShift or
# Kubernetes API Bearer Token" credential sets.
ENVIRONMENT = {"kubeconfig": "K8S_AUTH_KUBECONFIG", "context": "K8S_AUTH_CONTEXT", "host": "K8S_AUTH_HOST",
               "api_key": "K8S_AUTH_API_KEY", "validate_certs": "K8S_AUTH_VERIFY_SSL",
               "ca_cert": "K8S_AUTH_SSL_CA_CERT", "namespace": "K8S_AUTH_NAMESPACE"}


def with_environment(options, environ=None):
    """The options with each one not given read from its K8S_AUTH_* variable."""
    environ = os.environ if environ is None else environ
    out = dict(options)
    for name, variable in ENVIRONMENT.items():
        if out.get(name) in (None, "") and environ.get(variable):
            value = environ[variable]
            if name == "validate_certs":
                value = value.strip().lower() not in ("0", "false", "no", "off")
            out[name] = value
    return out


def _configuration(options, api_key):
    """A client Configuration from the connection options; returns (configuration, namespace, label)."""
    configuration = _client.Configuration()
    kubeconfig, context, host = options.get("kubeconfig"), options.get("context"), options.get("host")
    namespace, label = None, host
    if kubeconfig or context or not host:
        names, active = _contexts(kubeconfig)
        where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        if context and names and context not in names:
            raise RollbackError("context: %r is not in %s; its contexts are %s; give one of them, or fix the "
                                "kubeconfig" % (context, where, ", ".join(names)), context=context)
        try:
            _config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration,
                                     persist_config=False)
        except (ConfigException, OSError, TypeError, ValueError) as err:
            raise RollbackError("kubeconfig: could not load %s%s: %s; give kubeconfig (and context), or host"
                                % (where, " (context %r)" % context if context else "", err)) from None
        chosen = context or active
        label = "context %r" % chosen if chosen else where
        try:
            contexts, current = _config.list_kube_config_contexts(config_file=kubeconfig)
            entry = next((c for c in contexts if c["name"] == chosen), current)
            namespace = ((entry or {}).get("context") or {}).get("namespace")
        except (ConfigException, OSError, TypeError, ValueError, StopIteration):
            namespace = None
    if host:
        configuration.host = host.rstrip("/")
    if api_key:
        configuration.api_key = {"BearerToken": api_key}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    if options.get("validate_certs") is not None:
        configuration.verify_ssl = bool(options["validate_certs"])
    if options.get("ca_cert"):
        configuration.ssl_ca_cert = options["ca_cert"]
    return configuration, options.get("namespace") or namespace or "default", label


class Cluster:
    """One API server and namespace. `request()` answers parsed JSON or raises KubeError."""

    def __init__(self, api_client, namespace, label, sleep=time.sleep):
        self.api = api_client
        self.namespace = namespace
        self.label = label
        self.sleep = sleep

    @property
    def server(self):
        return self.api.configuration.host

    def where(self):
        return "%s (%s)" % (self.server, self.label) if self.label and self.label != self.server else self.server

    def request(self, method, path, query=None, body=None, content_type=None, timeout=REQUEST_TIMEOUT):
        url = path + ("?" + urlencode(query, doseq=True) if query else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        attempts = READ_ATTEMPTS if method == "GET" else 1
        for attempt in range(attempts):
            try:
                status, data = self._send(method, url, headers, body, timeout)
            except KubeError as err:
                if attempt + 1 < attempts and err.status in RETRY_STATUSES + (0,):
                    self.sleep(min(0.25 * 2 ** attempt, 2.0))
                    continue
                raise
            return data if status != 204 else {}
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method, url, headers, body, timeout):
        try:
            serialized = self.api.param_serialize(method, url, header_params=dict(headers), body=body,
                                                  auth_settings=["BearerToken"])
            response = self.api.call_api(*serialized, _request_timeout=timeout)
            raw = response.read() if hasattr(response, "read") else response.data
            status = response.status
        except _client.exceptions.ApiException as err:
            raw, status = err.body, err.status
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeError("cannot reach the Kubernetes API at %s: %s" % (self.where(), _reason(err))) from None
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = None
        if status >= 400 or data is None:
            message = (data or {}).get("message") if isinstance(data, dict) else None
            reason = (data or {}).get("reason", "") if isinstance(data, dict) else ""
            raise KubeError("%s %s: %s (HTTP %s%s)" % (method, url.split("?")[0], message or text[:300].strip()
                                                        or "no answer", status, ", " + reason if reason else ""),
                            status=status, reason=reason)
        return status, data

    # ---------------------------------------------------------------- verbs
    def get(self, path, query=None, missing_ok=False):
        try:
            return self.request("GET", path, query)
        except KubeError as err:
            if missing_ok and err.status == 404:
                return None
            raise

    def items(self, path, query=None):
        return self.request("GET", path, query).get("items") or []

    def patch(self, path, body, content_type=JSON_PATCH, dry_run=False):
        return self.request("PATCH", path, {"dryRun": "All"} if dry_run else None, body, content_type)

    def create(self, path, body, dry_run=False):
        return self.request("POST", path, {"dryRun": "All"} if dry_run else None, body)

    def check_namespace(self):
        """Refuse a namespace the cluster does not have, naming it and the cluster. A token that may not read
        namespaces (403) is not an error: the first read of a workload will tell."""
        try:
            self.request("GET", "/api/v1/namespaces/%s" % quote(self.namespace, safe=""))
        except KubeError as err:
            if err.status == 404:
                raise KubeError("namespace: %r does not exist on %s; give an existing namespace (kubectl get "
                                "namespaces)" % (self.namespace, self.where()), status=404,
                                namespace=self.namespace) from None
            if err.status != 403:
                raise


def _reason(err):
    reason = getattr(err, "reason", None) or err
    return str(reason).split(": ", 1)[-1] if "NewConnectionError" in str(reason) else str(reason)


def connect(options, api_key=None, check=True, sleep=time.sleep):
    """A Cluster from the connection options (see k8s_options); `check` refuses a missing namespace at once."""
    require()
    options = with_environment(dict(options, api_key=api_key or options.get("api_key")))
    configuration, namespace, label = _configuration(options, options.get("api_key"))
    cluster = Cluster(_client.ApiClient(configuration=configuration), namespace, label, sleep=sleep)
    if check:
        cluster.check_namespace()
    return cluster
