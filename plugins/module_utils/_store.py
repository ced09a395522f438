# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore point store on a host.

    <store>/points/<id>/manifest.json   the point; carries the sha256 of its own canonical form
    <store>/blobs/sha256/<2>/<62>       content-addressed file bodies
    <store>/dumps/<id>/                 large per-point artefacts (database dumps)
    <store>/known_good                  id of the point last marked known good
    <store>/journal.jsonl               append-only audit events
    <store>/lock                        see _lock.py

Everything is 0700 / 0600: the store holds copies of secrets.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from datetime import datetime, timedelta, timezone

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import (
    CHUNK, append_line, atomic_write, canonical_json, fsync_dir, private_dir, sha256_bytes, sha256_file)
from ansible_collections.fleetops.rollback.plugins.module_utils._lock import StoreLock
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_data

MANIFEST_FORMAT = 1
STATUSES = ("candidate", "known_good", "bad", "safety")
ID_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
ID_PATTERN = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-([0-9a-f]{4})$")
SHA_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def utc_now():
    return datetime.now(timezone.utc)


def actor():
    """Who is acting, for the journal: an explicit FLEETOPS_ACTOR, the sudo caller, or the user."""
    for name in ("FLEETOPS_ACTOR", "SUDO_USER"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "uid:%d" % os.getuid()


def blob_refs(data):
    """Every blob sha256 a component record refers to (under keys named `blob`)."""
    found = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "blob" and isinstance(value, str):
                    found.add(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def seal(manifest):
    """Return the manifest with its own sha256 set over every other field."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    body["sha256"] = sha256_bytes(canonical_json(body))
    return body


class Store:
    def __init__(self, path):
        if not os.path.isabs(path):
            raise RollbackError("store_path: %r is not an absolute path; give the full path of the store" % path)
        self.path = os.path.normpath(path)
        self.points_dir = os.path.join(self.path, "points")
        self.blobs_dir = os.path.join(self.path, "blobs", "sha256")
        self.dumps_dir = os.path.join(self.path, "dumps")
        self.known_good_path = os.path.join(self.path, "known_good")
        self.journal_path = os.path.join(self.path, "journal.jsonl")
        self.lock_path = os.path.join(self.path, "lock")

    # ---------------------------------------------------------------- layout
    def exists(self):
        return os.path.isdir(self.points_dir)

    def ensure(self):
        for directory in (self.path, self.points_dir, self.blobs_dir, self.dumps_dir):
            private_dir(directory)
        private_dir(os.path.join(self.path, "blobs"))
        return self

    def lock(self, owner="", timeout=0.0, force=False):
        self.ensure()
        return StoreLock(self.lock_path, owner=owner, timeout=timeout, force=force)

    # ---------------------------------------------------------------- ids
    def point_ids(self):
        if not os.path.isdir(self.points_dir):
            return []
        return sorted(name for name in os.listdir(self.points_dir) if ID_PATTERN.match(name))

    def new_id(self, now=None):
        """An id that sorts by creation time; strictly after every existing id even if the clock steps back."""
        now = (now or utc_now()).astimezone(timezone.utc)
        existing = self.point_ids()
        if existing:
            last = datetime.strptime(ID_PATTERN.match(existing[-1]).group(1), ID_TIME_FORMAT).replace(tzinfo=timezone.utc)
            if now <= last:
                now = last + timedelta(microseconds=1)
        return "%s-%s" % (now.strftime(ID_TIME_FORMAT), secrets.token_hex(2))

    # ---------------------------------------------------------------- blobs
    def blob_path(self, sha):
        if not SHA_PATTERN.match(sha or ""):
            raise RollbackError("invalid blob reference %r in a manifest" % (sha,))
        return os.path.join(self.blobs_dir, sha[:2], sha[2:])

    def put_file(self, src):
        """Copy a file's bytes into the store; return its sha256. Identical bodies are stored once."""
        private_dir(self.blobs_dir)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=self.blobs_dir)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(src, "rb") as stream:
                for chunk in iter(lambda: stream.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.blob_path(sha)
            if os.path.exists(final):
                os.unlink(tmp)
            else:
                private_dir(os.path.dirname(final))
                os.chmod(tmp, 0o600)
                os.rename(tmp, final)
            return sha
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def blob_ok(self, sha):
        path = self.blob_path(sha)
        return os.path.isfile(path) and sha256_file(path) == sha

    def open_blob(self, sha):
        return open(self.blob_path(sha), "rb")

    # ---------------------------------------------------------------- manifests
    def manifest_path(self, point_id):
        return os.path.join(self.points_dir, point_id, "manifest.json")

    def write_manifest(self, manifest):
        sealed = seal(manifest)
        directory = private_dir(os.path.join(self.points_dir, sealed["id"]))
        atomic_write(os.path.join(directory, "manifest.json"), canonical_json(sealed) + b"\n")
        fsync_dir(self.points_dir)
        return sealed

    def load(self, point_id):
        path = self.manifest_path(point_id)
        try:
            with open(path, "rb") as stream:
                manifest = json.loads(stream.read().decode("utf-8"))
        except FileNotFoundError:
            raise RollbackError("point %r does not exist in %s" % (point_id, self.path))
        except (OSError, ValueError) as err:
            raise RollbackError("the manifest of point %r is unreadable (%s); choose another point" % (point_id, err))
        if not isinstance(manifest, dict) or seal(manifest).get("sha256") != manifest.get("sha256"):
            raise RollbackError("the manifest of point %r fails its sha256 check: it was modified or corrupted; "
                                "choose another point" % point_id, point=point_id)
        return manifest

    def points(self):
        """Every readable point, oldest first; unreadable ones are reported, not hidden."""
        good, broken = [], []
        for point_id in self.point_ids():
            try:
                good.append(self.load(point_id))
            except RollbackError as err:
                broken.append({"id": point_id, "error": err.msg})
        return good, broken

    # ---------------------------------------------------------------- known good
    def known_good_id(self):
        try:
            with open(self.known_good_path, encoding="utf-8") as stream:
                value = stream.read().strip()
        except FileNotFoundError:
            return None
        return value or None

    def set_known_good(self, point_id):
        if point_id is None:
            if os.path.exists(self.known_good_path):
                os.unlink(self.known_good_path)
                fsync_dir(self.path)
            return
        atomic_write(self.known_good_path, (point_id + "\n").encode("ascii"))

    # ---------------------------------------------------------------- lookups
    def resolve(self, ref="known_good"):
        """A point by id, by label (newest with it), `known_good`, or `latest_safety` (the newest safety point,
        which holds the state a host had just before its last rollback)."""
        ref = (ref or "known_good").strip()
        if ref == "latest_safety":
            safety = [m for m in self.points()[0] if m["status"] == "safety"]
            if not safety:
                raise RollbackError("point: latest_safety: no safety point in %s; no rollback has run on this host "
                                    "yet, name a point id or label instead" % self.path)
            return safety[-1]
        if ref == "known_good":
            point_id = self.known_good_id()
            if not point_id:
                raise RollbackError("point: no point is marked known_good in %s; capture one with "
                                    "status=known_good or name a point id or label" % self.path)
            return self.load(point_id)
        if ID_PATTERN.match(ref):
            if os.path.exists(self.manifest_path(ref)):
                return self.load(ref)
        else:
            matches = [m for m in self.points()[0] if m.get("label") == ref]
            if matches:
                return matches[-1]
        available = ["%s (%s, %s)" % (m["id"], m.get("label") or "no label", m["status"]) for m in self.points()[0][-5:]]
        raise RollbackError("point: %r matches no point id or label in %s; newest points: %s"
                            % (ref, self.path, ", ".join(available) or "none"), point=ref)

    # ---------------------------------------------------------------- status
    def set_status(self, manifest, status):
        if status not in STATUSES:
            raise RollbackError("status: %r is not one of %s" % (status, ", ".join(STATUSES)))
        updated = dict(manifest, status=status)
        updated = self.write_manifest(updated)
        if status == "known_good":
            self.set_known_good(updated["id"])
        elif self.known_good_id() == updated["id"]:
            # The pointer never names a point that is no longer good: fall back to the newest good one.
            older = [m["id"] for m in self.points()[0] if m["status"] == "known_good" and m["id"] != updated["id"]]
            self.set_known_good(older[-1] if older else None)
        return updated

    def point_dumps_dir(self, point_id):
        """The 0700 directory for one point's large artefacts; removed with the point."""
        if not ID_PATTERN.match(point_id or ""):
            raise RollbackError("invalid point id %r" % (point_id,))
        path = os.path.join(self.dumps_dir, point_id)
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        return path

    def discard_dumps(self, point_id):
        path = os.path.join(self.dumps_dir, point_id)
        if os.path.isdir(path):
            shutil.rmtree(path)

    # ---------------------------------------------------------------- deletion
    def delete_point(self, point_id):
        for directory in (os.path.join(self.points_dir, point_id), os.path.join(self.dumps_dir, point_id)):
            if os.path.isdir(directory):
                shutil.rmtree(directory)

    def collect_garbage(self):
        """Delete blobs no remaining point refers to; return how many."""
        referenced = set()
        good, broken = self.points()
        if broken:
            return 0  # an unreadable manifest might still need its blobs: keep everything
        for manifest in good:
            referenced |= blob_refs(manifest.get("components", {}))
        removed = 0
        if not os.path.isdir(self.blobs_dir):
            return 0
        for prefix in os.listdir(self.blobs_dir):
            folder = os.path.join(self.blobs_dir, prefix)
            if not os.path.isdir(folder):
                continue
            for rest in os.listdir(folder):
                if prefix + rest not in referenced:
                    os.unlink(os.path.join(folder, rest))
                    removed += 1
        return removed

    # ---------------------------------------------------------------- journal
    def journal(self, event, **fields):
        record = {"ts": utc_now().isoformat(timespec="milliseconds"), "event": event, "actor": actor()}
        # Reasons and error messages come from people and tools: nothing secret-looking is kept.
        record.update(redact_data(fields))
        self.ensure()
        append_line(self.journal_path, json.dumps(record, sort_keys=True, default=str))
        return record

    def read_journal(self, limit=None):
        if not os.path.exists(self.journal_path):
            return []
        with open(self.journal_path, encoding="utf-8") as stream:
            lines = [json.loads(line) for line in stream if line.strip()]
        return lines[-limit:] if limit else lines
