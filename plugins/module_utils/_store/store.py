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

import contextlib
import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from datetime import datetime, timedelta, timezone

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError, check_path
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import (
    CHUNK, append_line, atomic_write, canonical_json, describe_path, free_bytes, fsync_dir, human, private_dir,
    sha256_bytes, sha256_file)
from ansible_collections.fleetops.rollback.plugins.module_utils._store.lock import StoreLock
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_data

MANIFEST_FORMAT = 1
STORE_FORMAT = 1
STATUSES = ("candidate", "known_good", "bad", "safety")
ID_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
ID_PATTERN = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)-([0-9a-f]{4})")
SHA_PATTERN = re.compile(r"[0-9a-f]{64}")
# Files next to a store's destinations while a restore stages them: `<prefix><token>-<n>`. Each run writes an
# intent record (staging/<token>.json) before it creates any, so a run killed midway leaves nothing the next one
# cannot find and remove.
STAGE_PREFIX = ".fleetops-stage-"
# Names of temporary files inside the store itself; a run holding the lock removes any it finds.
STORE_TEMP_PREFIXES = (".incoming-", ".tmp-")
# What a capture always needs on top of its own estimate: manifests, the journal, directory blocks.
SPACE_FLOOR = 1024 * 1024
# Entries a store directory may hold; a directory with anything else in it is not a store.
STORE_ENTRIES = ("points", "blobs", "dumps", "staging", "known_good", "journal.jsonl", "lock", "format",
                 "rollback_in_progress")


def is_id(value):
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def utc_now():
    return datetime.now(timezone.utc)


MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def machine_id():
    """This machine's id (systemd's machine-id), or None where there is none (some containers)."""
    for path in MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii") as stream:
                value = stream.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if re.fullmatch(r"[0-9a-f]{32}", value):
            return value
    return None


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
        path = check_path("store_path", path)
        self.path = path
        self.points_dir = os.path.join(self.path, "points")
        self.blobs_dir = os.path.join(self.path, "blobs", "sha256")
        self.dumps_dir = os.path.join(self.path, "dumps")
        self.staging_dir = os.path.join(self.path, "staging")
        self.known_good_path = os.path.join(self.path, "known_good")
        self.journal_path = os.path.join(self.path, "journal.jsonl")
        self.lock_path = os.path.join(self.path, "lock")
        self.format_path = os.path.join(self.path, "format")
        self.in_progress_path = os.path.join(self.path, "rollback_in_progress")
        # Blobs this process added (not there before): a capture that fails removes them again.
        self.added_blobs = []

    # ---------------------------------------------------------------- layout
    def exists(self):
        """Whether a store is at the path. Anything else there is refused, never adopted (see check_location)."""
        self.check_location()
        return os.path.isdir(self.points_dir)

    def check_location(self):
        """Refuse a store_path that holds something that is not a store: files, foreign directories, links to
        them, a store from a newer version. An empty directory or a missing path may become a store."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise RollbackError("store_path: %s cannot be a store: a parent of it is not a directory; give the "
                                "path of the store directory" % self.path)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(self.path)
            if not os.path.isdir(os.path.join(target, "points")):
                raise RollbackError("store_path: %s is %s, not a restore point store; nothing was changed; give the "
                                    "path of a store or of a new or empty directory"
                                    % (self.path, describe_path(self.path)))
            st = os.stat(self.path)
        if not stat.S_ISDIR(st.st_mode):
            raise RollbackError("store_path: %s is %s, not a restore point store; nothing was changed; give the path "
                                "of a store or of a new or empty directory" % (self.path, describe_path(self.path)))
        names = os.listdir(self.path)
        if "points" not in names:
            foreign = sorted(n for n in names if n not in STORE_ENTRIES)
            if names:
                raise RollbackError("store_path: %s is %s and is not a restore point store (no points/); nothing was "
                                    "changed; give the path of a store or of a new or empty directory%s"
                                    % (self.path, describe_path(self.path),
                                       "" if foreign else " (it looks like a damaged store: check it by hand)"))
            return
        try:
            with open(self.format_path, encoding="utf-8") as stream:
                version = json.load(stream).get("format")
        except (OSError, ValueError, AttributeError):
            version = STORE_FORMAT  # stores made before the marker existed
        if not isinstance(version, int) or version > STORE_FORMAT:
            raise RollbackError("store_path: %s was written by a newer fleetops.rollback (store format %r; this one "
                                "reads %d); upgrade the collection on the controller" % (self.path, version, STORE_FORMAT))

    def require(self):
        """The store must already exist: restores, marks, prunes and reads never create one."""
        if not self.exists():
            raise RollbackError("store_path: there is no restore point store at %s; nothing was changed; capture a "
                                "point first or give the right store_path" % self.path)
        return self

    def ensure(self):
        self.check_location()
        for directory in (self.path, self.points_dir, self.blobs_dir, self.dumps_dir):
            private_dir(directory)
        private_dir(os.path.join(self.path, "blobs"))
        if not os.path.exists(self.format_path):
            atomic_write(self.format_path, canonical_json({"format": STORE_FORMAT}) + b"\n")
        return self

    def require_space(self, nbytes, what):
        """Refuse early, with the numbers, when the store's filesystem cannot hold what is about to be written."""
        need = int(nbytes) + SPACE_FLOOR
        free = free_bytes(self.path)
        if free < need:
            raise RollbackError("not enough free space in the store %s for %s: %s free, about %s needed (%s plus a "
                                "%s floor); nothing was changed; free space there or move the store"
                                % (self.path, what, human(free), human(need), human(int(nbytes)), human(SPACE_FLOOR)),
                                free_bytes=free, needed_bytes=need)

    def lock(self, owner="", timeout=0.0, force=False, create=False):
        if create:
            self.ensure()
        else:
            self.require()
        return StoreLock(self.lock_path, owner=owner, timeout=timeout, force=force)

    # ---------------------------------------------------------------- recovery after a killed run
    def recover(self):
        """Remove what a run killed midway left behind; only called with the lock held, so no other run is writing.
        Returns what was removed, for the journal."""
        removed = []

        def drop(path):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                pass

        for directory in (self.path, self.points_dir, self.blobs_dir):
            if os.path.isdir(directory):
                for name in os.listdir(directory):
                    if name.startswith(STORE_TEMP_PREFIXES):
                        drop(os.path.join(directory, name))
        for point_id in self.point_ids():
            folder = os.path.join(self.points_dir, point_id)
            for name in os.listdir(folder):
                if name.startswith(STORE_TEMP_PREFIXES):
                    drop(os.path.join(folder, name))
            if not os.path.exists(os.path.join(folder, "manifest.json")):
                drop(folder)  # a capture killed before its manifest was written
        if os.path.isdir(self.dumps_dir):
            for name in os.listdir(self.dumps_dir):
                if is_id(name) and not os.path.exists(self.manifest_path(name)):
                    drop(os.path.join(self.dumps_dir, name))  # artefacts of a capture that never finished
        for intent in self._stage_intents():
            for directory in intent.get("dirs", []):
                prefix = STAGE_PREFIX + intent["token"] + "-"
                try:
                    names = os.listdir(directory)
                except OSError:
                    continue
                for name in names:
                    if name.startswith(prefix):
                        drop(os.path.join(directory, name))
            drop(intent["path"])
        return removed

    def _stage_intents(self):
        if not os.path.isdir(self.staging_dir):
            return []
        out = []
        for name in sorted(os.listdir(self.staging_dir)):
            path = os.path.join(self.staging_dir, name)
            try:
                with open(path, encoding="utf-8") as stream:
                    intent = json.load(stream)
                if not re.fullmatch(r"[0-9a-f]{16}", str(intent.get("token"))):
                    raise ValueError("bad token")
            except (OSError, ValueError, AttributeError):
                os.unlink(path)  # torn while being written: nothing was staged under it yet
                continue
            intent["path"] = path
            out.append(intent)
        return out

    @contextlib.contextmanager
    def staging(self, directories):
        """Stage files in `directories` (next to their destinations, so that a rename swaps them in atomically).
        Yields a function giving the n-th staged name of a directory. The intent is on disk before any file, and
        every leftover is removed on the way out, or by the next locked run after a SIGKILL."""
        token = secrets.token_hex(8)
        private_dir(self.staging_dir)
        path = os.path.join(self.staging_dir, token + ".json")
        atomic_write(path, canonical_json({"token": token, "dirs": sorted(set(directories)), "pid": os.getpid(),
                                           "started_at": utc_now().isoformat(timespec="seconds")}))
        counter = [0]

        def name(directory):
            counter[0] += 1
            return os.path.join(directory, "%s%s-%d" % (STAGE_PREFIX, token, counter[0]))

        try:
            yield name
        finally:
            prefix = STAGE_PREFIX + token + "-"
            for directory in set(directories):
                try:
                    names = os.listdir(directory)
                except OSError:
                    continue
                for entry in names:
                    if entry.startswith(prefix):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(directory, entry))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # ---------------------------------------------------------------- ids
    def point_ids(self):
        if not os.path.isdir(self.points_dir):
            return []
        return sorted(name for name in os.listdir(self.points_dir)
                      if is_id(name) and os.path.isdir(os.path.join(self.points_dir, name)))

    def new_id(self, now=None):
        """An id that sorts by creation time; strictly after every existing id even if the clock steps back."""
        now = (now or utc_now()).astimezone(timezone.utc)
        existing = self.point_ids()
        if existing:
            last = datetime.strptime(ID_PATTERN.fullmatch(existing[-1]).group(1), ID_TIME_FORMAT).replace(tzinfo=timezone.utc)
            if now <= last:
                now = last + timedelta(microseconds=1)
        return "%s-%s" % (now.strftime(ID_TIME_FORMAT), secrets.token_hex(2))

    # ---------------------------------------------------------------- blobs
    def blob_path(self, sha):
        if not isinstance(sha, str) or not SHA_PATTERN.fullmatch(sha):
            raise RollbackError("invalid blob reference %r in a manifest" % (sha,))
        return os.path.join(self.blobs_dir, sha[:2], sha[2:])

    def put_file(self, src):
        """Copy a file's bytes into the store; return its sha256. Identical bodies are stored once."""
        private_dir(self.blobs_dir)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=self.blobs_dir)
        try:
            digest = hashlib.sha256()
            # O_NOFOLLOW|O_NONBLOCK: a path swapped for a link or a FIFO after the scan is refused, never followed
            # or waited on.
            src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "wb") as out, os.fdopen(src_fd, "rb") as stream:
                if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                    raise RollbackError("config: %s changed into %s while it was being captured; nothing was "
                                        "changed; run again" % (src, describe_path(src)), path=src)
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
                self.added_blobs.append(sha)
            return sha
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def discard_added_blobs(self):
        """Remove the blobs this process added: a capture that failed leaves the store as it found it."""
        for sha in self.added_blobs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.blob_path(sha))
        self.added_blobs = []

    def blob_ok(self, sha):
        path = self.blob_path(sha)
        return os.path.isfile(path) and sha256_file(path) == sha

    def open_blob(self, sha):
        return open(self.blob_path(sha), "rb")

    # ---------------------------------------------------------------- manifests
    def manifest_path(self, point_id):
        if not is_id(point_id):
            raise RollbackError("point: %r is not a point id (they look like 20261201T101500.123456Z-a1b2)"
                                % (point_id,))
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
        if manifest.get("id") != point_id:
            # Its own checksum holds, but it is another point's manifest copied here: never restore it as this one.
            raise RollbackError("the manifest in points/%s names point %r: it was copied from another point; "
                                "choose another point" % (point_id, manifest.get("id")), point=point_id)
        version = manifest.get("format")
        if not isinstance(version, int) or version > MANIFEST_FORMAT:
            raise RollbackError("point %s was written by a newer fleetops.rollback (manifest format %r; this one reads "
                                "%d); upgrade the collection, or choose another point" % (point_id, version,
                                                                                          MANIFEST_FORMAT),
                                point=point_id)
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
        except (OSError, UnicodeDecodeError) as err:
            raise RollbackError("known_good: the pointer %s is unreadable (%s); mark a point known_good again"
                                % (self.known_good_path, err))
        if value and not is_id(value):
            raise RollbackError("known_good: the pointer %s holds %r, which is not a point id; it was damaged or "
                                "edited: mark a point known_good again (restore_point state=present point=<id> "
                                "status=known_good)" % (self.known_good_path, value[:80]))
        return value or None

    def set_known_good(self, point_id):
        if point_id is None:
            if os.path.exists(self.known_good_path):
                os.unlink(self.known_good_path)
                fsync_dir(self.path)
            return
        atomic_write(self.known_good_path, (point_id + "\n").encode("ascii"))

    # ---------------------------------------------------------------- rollbacks in progress
    def in_progress(self):
        """The record of a rollback that started changing the host and never finished (its process was killed),
        or None."""
        try:
            with open(self.in_progress_path, encoding="utf-8") as stream:
                record = json.load(stream)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"safety_point": None, "damaged": True}
        return record if isinstance(record, dict) else {"safety_point": None, "damaged": True}

    def set_in_progress(self, record):
        if record is None:
            if os.path.exists(self.in_progress_path):
                os.unlink(self.in_progress_path)
                fsync_dir(self.path)
            return
        atomic_write(self.in_progress_path, canonical_json(record) + b"\n")

    def latest_safety(self, points=None):
        """The newest safety point that holds a state the host really was in before a rollback. A safety point
        taken over the mixed state an interrupted rollback left (`over_interrupted`) is never it: the state before
        that rollback is the interrupted run's own safety point."""
        points = self.points()[0] if points is None else points
        clean = [m for m in points if m["status"] == "safety" and not m.get("over_interrupted")]
        return clean[-1] if clean else None

    # ---------------------------------------------------------------- lookups
    def resolve(self, ref="known_good"):
        """A point by id, by label (newest with it), `known_good`, or `latest_safety` (the newest safety point,
        which holds the state a host had just before its last rollback)."""
        if ref is not None and not isinstance(ref, str):
            raise RollbackError("point: %r is not a point id, label, known_good or latest_safety" % (ref,))
        ref = (ref or "known_good").strip()
        if "\x00" in ref or "/" in ref or ref in (".", ".."):
            raise RollbackError("point: %r is not a point id, label, known_good or latest_safety; ids and labels "
                                "never hold '/' or NUL" % (ref,), point=ref)
        if ref == "latest_safety":
            safety = self.latest_safety()
            if safety is None:
                raise RollbackError("point: latest_safety: no safety point in %s; no rollback has run on this host "
                                    "yet, name a point id or label instead" % self.path)
            return safety
        if ref == "known_good":
            point_id = self.known_good_id()
            if not point_id:
                raise RollbackError("point: no point is marked known_good in %s; capture one with "
                                    "status=known_good or name a point id or label" % self.path)
            return self.load(point_id)
        if is_id(ref):
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
        if not is_id(point_id):
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

    def read_journal(self, limit=None, damaged=None):
        """The journal's events, oldest first. A line that is not a JSON object (torn by a crash, edited) is skipped;
        its line number goes into `damaged` (a list) when one is given."""
        if not os.path.exists(self.journal_path):
            return []
        events = []
        with open(self.journal_path, "rb") as stream:
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    event = json.loads(raw.decode("utf-8"))
                    if not isinstance(event, dict):
                        raise ValueError("not an object")
                except ValueError:
                    if damaged is not None:
                        damaged.append(number)
                    continue
                events.append(event)
        return events[-limit:] if limit else events
