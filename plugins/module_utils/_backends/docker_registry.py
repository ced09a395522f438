# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a tag inside an image registry with the Registry HTTP API v2, without pulling or pushing layers.

GET the manifest by the source reference (the exact bytes and media type), PUT the same bytes under the target
tag: the digest is unchanged. Before a tag moves, its current manifest is PUT under `rollback-<time>` so the move
can be undone. A target in another repository of the same registry gets the blobs by cross-repository mount (a
registry-side operation; nothing is downloaded), and for an index each child manifest is copied by digest.

Auth: anonymous, HTTP basic, or the bearer token flow (`WWW-Authenticate: Bearer realm=...`) with the same
username and password. Credentials are never put in a result or an error message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path
from ansible_collections.fleetops.rollback.plugins.module_utils._backends.docker import (
    check_source_ref, check_target_ref, rollback_tag_for, split_ref)
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_text

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
INDEX_TYPES = MANIFEST_TYPES[1], MANIFEST_TYPES[3]
LOOPBACK = re.compile(r"^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(:\d+)?$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                        r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects (blob storage may redirect) but never carry the Authorization header to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def registry_url(registry):
    """`host[:port]` or a URL -> base URL. Without a scheme: https, except loopback addresses (http)."""
    if not isinstance(registry, str) or not registry.strip():
        raise RollbackError("registry: %r is not a registry; give it as host:port or a URL, for example "
                            "127.0.0.1:5000" % (registry,))
    value = registry.strip().rstrip("/")
    shown = redact_text(value)
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        raise RollbackError("registry: %r holds a space or a control character; give host:port or a URL" % shown)
    netloc = value
    if "://" in value:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RollbackError("registry: %r is not an http(s) URL" % shown)
        if parts.path.strip("/"):
            raise RollbackError("registry: %r should be host[:port] or a URL, without a path" % shown)
        netloc = parts.netloc
    elif "/" in value:
        raise RollbackError("registry: %r should be host[:port] or a URL, without a path" % shown)
    if "@" in netloc:
        raise RollbackError("registry: %r carries credentials; they would show in every message and result. Give "
                            "them as registry_username and registry_password instead" % shown)
    if not _HOST_PORT.fullmatch(netloc):
        raise RollbackError("registry: %r is not host[:port]; give for example 127.0.0.1:5000 or "
                            "https://registry.internal" % shown)
    if "://" in value:
        return "%s://%s" % (value.split("://", 1)[0], netloc)
    return ("http://" if LOOPBACK.match(value) else "https://") + value


class Registry:
    def __init__(self, registry, username=None, password=None, validate_certs=True, ca_path=None, timeout=60):
        self.base = registry_url(registry)
        self.host = urllib.parse.urlsplit(self.base).netloc
        # A control character would end up inside an HTTP header (http.client refuses it, or it splits the header).
        if username is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in username):
            raise RollbackError("registry_username: %r holds a control character (NUL, newline, ...); give the plain "
                                "username" % username)
        if password is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
            raise RollbackError("registry_password: the password given holds a control character (NUL, newline, ...); "
                                "give it without (a trailing newline from a file lookup is a common cause)")
        self.username = username
        self.password = password
        self.timeout = timeout
        context = None
        if ca_path is not None:
            ca_path = check_path("ca_path", ca_path)
            if not os.path.isfile(ca_path):
                raise RollbackError("ca_path: %r is not a file; give the PEM file of the CA that signed the registry's "
                                    "certificate" % ca_path)
        if self.base.startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
            except (ssl.SSLError, OSError) as err:
                raise RollbackError("ca_path: %s holds no usable CA certificate (%s); give a PEM file" % (ca_path, err))
            if not validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirectAuth())
        self.tokens = {}

    # ------------------------------------------------------------------ references
    def repo_ref(self, ref, where):
        """A reference inside this registry: an optional `host/` prefix naming this registry is dropped."""
        ref = check_source_ref(ref, where)
        if ref.startswith(self.host + "/"):
            ref = ref[len(self.host) + 1:]
        return ref

    # ------------------------------------------------------------------ HTTP
    def _auth_header(self, scope_repo):
        if scope_repo in self.tokens:
            return self.tokens[scope_repo]
        return None

    def _basic(self):
        raw = ("%s:%s" % (self.username or "", self.password or "")).encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _login(self, challenge, repo):
        scheme, _space, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.username:
                raise RollbackError("registry %s asks for a username and password; give registry_username and "
                                    "registry_password" % self.base)
            return self._basic()
        if scheme.lower() != "bearer":
            raise RollbackError("registry %s asks for %s authentication, which is not supported" % (self.base, scheme))
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise RollbackError("registry %s sent a bearer challenge without a realm" % self.base)
        query = {"scope": "repository:%s:pull,push" % repo}
        if fields.get("service"):
            query["service"] = fields["service"]
        request = urllib.request.Request(fields["realm"] + ("&" if "?" in fields["realm"] else "?")
                                         + urllib.parse.urlencode(query))
        if self.username:
            request.add_header("Authorization", self._basic())
        try:
            with self.opener.open(request, timeout=self.timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise RollbackError("registry %s: the token service refused us (HTTP %s); check registry_username and "
                                "registry_password" % (self.base, err.code))
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise RollbackError("registry %s: cannot get a token from its token service (%s)" % (self.base, err))
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RollbackError("registry %s: the token service answered without a token" % self.base)
        return "Bearer " + token

    def request(self, method, path, repo, headers=None, body=None, ok=(200,)):
        """One API call; retries once with credentials after a 401. Returns (status, headers, body)."""
        url = self.base + path
        for attempt in (0, 1):
            request = urllib.request.Request(url, data=body, method=method)
            for key, value in (headers or {}).items():
                request.add_header(key, value)
            auth = self._auth_header(repo)
            if auth:
                request.add_header("Authorization", auth)
            try:
                with self.opener.open(request, timeout=self.timeout) as resp:
                    return resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as err:
                if err.code == 401 and attempt == 0 and err.headers.get("WWW-Authenticate"):
                    self.tokens[repo] = self._login(err.headers["WWW-Authenticate"], repo)
                    continue
                if err.code in ok:
                    return err.code, err.headers, err.read()
                detail = redact_text(err.read()[:300].decode("utf-8", "replace"))
                if err.code == 401:
                    raise RollbackError("registry %s refused %s %s (HTTP 401): check registry_username and "
                                        "registry_password" % (self.base, method, path))
                raise RollbackError("registry %s: %s %s answered HTTP %s: %s" % (self.base, method, path, err.code,
                                                                                 detail.strip()), status=err.code)
            except (urllib.error.URLError, OSError) as err:
                raise RollbackError("registry: cannot reach %s (%s); check the registry address, and for a plain HTTP "
                                    "registry give http:// explicitly"
                                    % (self.base, redact_text(str(getattr(err, "reason", err)))))
        raise RollbackError("registry %s: still unauthorized after logging in" % self.base)

    # ------------------------------------------------------------------ manifests
    def get_manifest(self, repo, reference):
        """(digest, media type, exact bytes) or None when the registry has no such manifest."""
        status, headers, body = self.request("GET", "/v2/%s/manifests/%s" % (repo, reference), repo,
                                             headers={"Accept": ", ".join(MANIFEST_TYPES)}, ok=(200, 404))
        if status == 404:
            return None
        media = (headers.get("Content-Type") or "").split(";")[0].strip()
        if media not in MANIFEST_TYPES:
            try:
                media = json.loads(body.decode("utf-8")).get("mediaType") or media
            except ValueError:
                pass
        if media not in MANIFEST_TYPES:
            raise RollbackError("registry %s: %s:%s is a %r manifest; only schema 2 and OCI manifests can be moved "
                                "(a schema 1 manifest is signed with its tag)" % (self.base, repo, reference, media))
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        sent = headers.get("Docker-Content-Digest")
        if sent and sent != digest:
            raise RollbackError("registry %s: the manifest of %s:%s does not match its digest %s"
                                % (self.base, repo, reference, sent))
        return digest, media, body

    def put_manifest(self, repo, reference, media, body):
        _status, headers, _body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, reference), repo,
                                               headers={"Content-Type": media}, body=body, ok=(201, 200))
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        got = headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise RollbackError("registry %s stored %s:%s as %s, not %s" % (self.base, repo, reference, got, digest))
        return digest

    def _blob_exists(self, repo, digest):
        status, _headers, _body = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), repo, ok=(200, 404))
        return status == 200

    def _mount(self, source_repo, target_repo, digest):
        if self._blob_exists(target_repo, digest):
            return
        status, headers, _body = self.request(
            "POST", "/v2/%s/blobs/uploads/?%s" % (target_repo, urllib.parse.urlencode({"mount": digest, "from": source_repo})),
            target_repo, ok=(201, 202))
        if status != 201:
            location = headers.get("Location")
            if location:
                path = urllib.parse.urlsplit(location)
                try:
                    self.request("DELETE", path.path + ("?" + path.query if path.query else ""), target_repo,
                                 ok=(200, 204, 404))
                except RollbackError:
                    pass
            raise RollbackError("registry %s would not mount blob %s from %s into %s; a retag across repositories "
                                "needs cross-repository mounts (layers are never pulled or pushed)"
                                % (self.base, digest, source_repo, target_repo))

    def copy_content(self, source_repo, target_repo, media, body):
        """Make everything a manifest refers to present in target_repo (no-op inside one repository)."""
        if source_repo == target_repo:
            return
        doc = json.loads(body.decode("utf-8"))
        if media in INDEX_TYPES:
            for child in doc.get("manifests") or []:
                got = self.get_manifest(source_repo, child["digest"])
                if got is None:
                    raise RollbackError("registry %s: %s lists %s, which it does not have"
                                        % (self.base, source_repo, child["digest"]))
                self.copy_content(source_repo, target_repo, got[1], got[2])
                self.put_manifest(target_repo, child["digest"], got[1], got[2])
            return
        for blob in [doc.get("config") or {}] + list(doc.get("layers") or []):
            if blob.get("digest"):
                self._mount(source_repo, target_repo, blob["digest"])


def _source(registry, name):
    ref = registry.repo_ref(name, "name")
    repo, tag, digest = split_ref(ref)
    if digest and not _DIGEST_RE.match(digest):
        raise RollbackError("name: %r has a malformed digest" % name)
    return repo, digest or tag or "latest"


def plan(registry, name, targets, now=None):
    """Read-only: the source manifest and, per target, the digest before and after."""
    source_repo, reference = _source(registry, name)
    got = registry.get_manifest(source_repo, reference)
    if got is None:
        raise RollbackError("name: registry %s has no manifest %s:%s; nothing was changed"
                            % (registry.base, source_repo, reference), registry=registry.base)
    digest, media, body = got
    moves = []
    for target in targets:
        ref = check_target_ref(registry.repo_ref(target, "repository"))
        repo, tag, _digest = split_ref(ref)
        current = registry.get_manifest(repo, tag)
        if current is not None and current[0] == digest:
            continue
        moves.append({"ref": ref, "from": current[0] if current else None, "to": digest,
                      "rollback_tag": rollback_tag_for(ref, now) if current else None,
                      "_old": current})
    return {"source": "%s@%s" % (source_repo, digest), "media_type": media, "digest": digest, "body": body,
            "source_repo": source_repo, "moves": moves}


def apply(registry, planned):
    """PUT the source manifest under each target tag, after keeping the old one as its rollback tag."""
    done = []
    try:
        for move in planned["moves"]:
            repo, tag, _digest = split_ref(move["ref"])
            if move["_old"] is not None:
                _old_digest, old_media, old_body = move["_old"]
                registry.put_manifest(repo, split_ref(move["rollback_tag"])[1], old_media, old_body)
            registry.copy_content(planned["source_repo"], repo, planned["media_type"], planned["body"])
            registry.put_manifest(repo, tag, planned["media_type"], planned["body"])
            done.append(move)
    except RollbackError as err:
        undone, failed = [], []
        for move in reversed(done):
            repo, tag, _digest = split_ref(move["ref"])
            try:
                if move["_old"] is not None:
                    registry.put_manifest(repo, tag, move["_old"][1], move["_old"][2])
                    undone.append(move["ref"])
                else:
                    failed.append("%s (new tag; the registry API cannot delete a tag, it stays on %s)"
                                  % (move["ref"], planned["digest"]))
            except RollbackError as undo_err:
                failed.append("%s (%s)" % (move["ref"], undo_err.msg))
        raise RollbackError("%s; tags put back: %s; not put back: %s"
                            % (err.msg, ", ".join(undone) or "none", "; ".join(failed) or "none"))
    return [{k: v for k, v in move.items() if not k.startswith("_")} for move in planned["moves"]]
