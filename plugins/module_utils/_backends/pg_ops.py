# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified PostgreSQL dumps and safe restores (shared by pg_dump, pg_restore and the database component).

A dump at DEST (a file for format=custom, a directory for format=directory) has sidecars:

    DEST.sha256       sha256sum format: the dump file, or for a directory the DEST.manifest file
    DEST.manifest     directory format: sha256sum lines of every file in the directory
    DEST.meta.json    server version, per-table row counts, size, seconds, and the state record
                      (schema fingerprint, snapshot) that says whether a database still equals the dump
    DEST.restored.json  written by restores: per target database, its state right after the restore
    DEST.restoring.json written by pg_restore while it changes a database (removed when it is done): what an
                        interrupted restore left, so that the next run can say in which state the database is

A path is recognised as a dump this collection wrote by its DEST.meta.json: a regular file holding this
collection's dump description of the same format (and, for a directory, a DEST.manifest listing every entry).
Anything else at a dump's path (a foreign file, a directory with other files, a link, a FIFO, a device) is
refused, so that a dump never replaces what someone else put there.

A dump is written inside a private staging directory beside DEST (.DEST.fleetops-dump-XXXXXXXX, holding a
locked marker file) and completed there, sidecars included; then it is moved into place name by name, the old
dump going into the staging directory. A run killed while dumping leaves only the staging directory: the next
run removes it (its lock is free); a run killed while moving files leaves its marker in the "swapping" phase:
the next run completes the move. A partial dump is never at DEST.

Idempotence: a restore is skipped (changed=false) when the target database still holds exactly what the dump
holds. That is decided without reading the dump: the state recorded when the dump was taken (same server and
database only) or right after the last restore of this dump must still hold, i.e. the same schema
fingerprint and sequence positions, no row written after the recorded snapshot (every INSERT and UPDATE
writes a row version stamped with its transaction id), and the same row count in every dumped table.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import threading
import time

from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg as _pg
from ansible_collections.fleetops.rollback.plugins.module_utils._backends import pg_toc as _pg_toc
from ansible_collections.fleetops.rollback.plugins.module_utils._common import (
    PROGRESS, RollbackError, Terminated, check_path, describe_os_error)
from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import kind_of
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_text
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import (
    atomic_write, fsync_dir, sha256_bytes, sha256_file)
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import utc_now

FORMATS = ("custom", "directory")
MODES = ("clean", "recreate")
META_FORMAT = 1
TERMINATE_WAIT_MS = 5000
SESSION_DEADLINE = 30.0
_SHA_CACHE = {}
# Every name a dump owns at its path, the dump itself first (the order files are moved in).
SUFFIXES = ("", ".manifest", ".sha256", ".meta.json", ".restored.json")
STAGING = re.compile(r"^\.(?P<name>.+)\.fleetops-dump-[0-9a-f]{8}$")
STAGING_MARKER = ".fleetops-staging.json"
META_LIMIT = 256 * 1024 * 1024
MIB = 1024 * 1024
# Free space asked for a dump: the selected tables' size on disk (heap and TOAST, no indexes) times this factor
# (gzip shrinks ordinary table data well over 2-fold; an uncompressed dump is about the data's size), plus 10%
# and 1 MiB. An estimate: a dump of data that does not compress can still fill the disk midway, and is then
# removed.
COMPRESSED_FACTOR = 0.5
SPACE_MARGIN = 1.1


# ---------------------------------------------------------------------- files and checksums
class DumpFiles:
    def __init__(self, path):
        self.path = os.path.normpath(path)
        self.name = os.path.basename(self.path)
        self.sha = self.path + ".sha256"
        self.manifest = self.path + ".manifest"
        self.meta = self.path + ".meta.json"
        self.marker = self.path + ".restored.json"

    def exists(self):
        return os.path.lexists(self.path)

    def sidecars(self):
        return [self.sha, self.manifest, self.meta, self.marker]

    @property
    def restoring(self):
        return self.path + ".restoring.json"


# ---------------------------------------------------------------------- what is at a path
def describe_entry(path, st=None):
    """What is at path, in words (None when nothing is): 'a FIFO (named pipe)', 'a symbolic link to ...'."""
    if st is None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        return "a symbolic link to %r%s" % (target, "" if os.path.exists(path) else " (dangling)")
    return kind_of(st.st_mode)


def _names(names, limit=3):
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return "%d entr%s (%s)" % (len(names), "y" if len(names) == 1 else "ies", shown)


def own_meta(files):
    """The dump description at files.meta when it is one this collection wrote (a regular file), else None."""
    try:
        st = os.lstat(files.meta)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > META_LIMIT:
        return None
    try:
        with open(files.meta, "rb") as stream:
            meta = json.loads(stream.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("meta_format"), int) or meta.get("format") not in \
            FORMATS or not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("tables"), dict):
        return None
    return meta


def _manifest_names(files):
    try:
        st = os.lstat(files.manifest)
        if not stat.S_ISREG(st.st_mode) or st.st_size > META_LIMIT:
            return None
        with open(files.manifest, "rb") as stream:
            lines = stream.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    prefix = files.name + "/"
    return {line.split("  ", 1)[1][len(prefix):] for line in lines
            if "  " in line and line.split("  ", 1)[1].startswith(prefix)}


def _foreign(option, path, what):
    return RollbackError("%s: %s is %s that this collection did not write; give a new path or an empty directory "
                         "(nothing was changed)" % (option, path, what), **{option: path})


def check_output(option, value, fmt):
    """DumpFiles for a path a dump may be written to: nothing there, an empty directory, or a dump this
    collection wrote (with its sidecars). Anything else is refused with what is there; nothing is changed."""
    path = check_path(option, value)
    _pg.check_no_dotdot(option, value)
    parent = os.path.dirname(path)
    if not os.path.lexists(parent):
        top = parent
        while not os.path.lexists(os.path.dirname(top)):
            top = os.path.dirname(top)
        raise RollbackError("%s: the directory %s does not exist (%s is missing); create it first, or give a path in "
                            "an existing directory (nothing was changed)" % (option, parent, top), **{option: path})
    if not os.path.isdir(parent):
        raise RollbackError("%s: %s is %s, not a directory, so %s cannot be written; give a path in a directory "
                            "(nothing was changed)" % (option, parent, describe_entry(parent), path), **{option: path})
    try:
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise RollbackError("%s: %s is on a read-only filesystem; remount it read-write or give a path on another "
                            "filesystem (nothing was changed)" % (option, parent), **{option: path})
    files = DumpFiles(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    meta = own_meta(files)
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise RollbackError("%s: %s is %s, not a dump; this collection writes dumps only to real paths: give a new "
                            "path (nothing was changed)" % (option, path, describe_entry(path, st)), **{option: path})
    if st is not None and stat.S_ISREG(st.st_mode) and (meta is None or meta["format"] != "custom"):
        raise _foreign(option, path, "a regular file (%d bytes, with no dump description %s beside it)"
                       % (st.st_size, os.path.basename(files.meta)))
    if st is not None and stat.S_ISDIR(st.st_mode):
        entries = sorted(os.listdir(path))
        if entries and (meta is None or meta["format"] != "directory"):
            raise _foreign(option, path, "a directory holding %s" % _names(entries))
        if entries:
            listed = _manifest_names(files) or set()
            strays = [name for name in entries
                      if name not in listed or not stat.S_ISREG(os.lstat(os.path.join(path, name)).st_mode)]
            if strays:
                raise RollbackError("%s: %s is a dump directory of this collection, but it also holds %s that this "
                                    "collection did not write; move them out or give a new path (nothing was "
                                    "changed)" % (option, path, _names(strays)), **{option: path})
    for side in files.sidecars():
        what = describe_entry(side)
        if what is None:
            continue
        if what != "a regular file":
            raise RollbackError("%s: %s is %s where this collection keeps a dump's %s; remove it or give another "
                                "path (nothing was changed)" % (option, side, what, side[len(path):]),
                                **{option: path})
        if meta is None:
            raise RollbackError("%s: %s already exists and this collection did not write it (no dump description "
                                "%s beside it); remove it or give another path (nothing was changed)"
                                % (option, side, os.path.basename(files.meta)), **{option: path})
    return files


def check_input(option, value):
    """DumpFiles of an existing dump path: a real file or directory (not a link, FIFO or device)."""
    path = check_path(option, value)
    _pg.check_no_dotdot(option, value)
    what = describe_entry(path)
    if what is None:
        parent = os.path.dirname(path)
        hint = "" if os.path.isdir(parent) else " (its directory %s does not exist either)" % parent
        raise RollbackError("%s: %s does not exist%s; give the path of a dump written by fleetops.rollback.pg_dump "
                            "(nothing was changed)" % (option, path, hint), **{option: path})
    if what not in ("a regular file", "a directory"):
        raise RollbackError("%s: %s is %s, not a dump; give the dump's own path (its .sha256 and .meta.json are "
                            "beside it) (nothing was changed)" % (option, path, what), **{option: path})
    return DumpFiles(path)


# ---------------------------------------------------------------------- staging and interrupted runs
def _process_start(pid):
    """The start time of a process (clock ticks since boot), None when it does not run: a pid plus its start
    time names one process even after the pid is reused."""
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as stream:
            data = stream.read().decode("ascii", "replace")
        return int(data.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class Staging:
    """The private directory beside a dump's path where a new dump is written and completed."""

    def __init__(self, files, option="dest"):
        self.files = files
        self.option = option
        self.dir = os.path.join(os.path.dirname(files.path), ".%s.fleetops-dump-%s" % (files.name,
                                                                                       secrets.token_hex(4)))
        self.path = os.path.join(self.dir, files.name)
        self.phase = None
        self.fd = None
        os.mkdir(self.dir, 0o700)
        try:
            self.fd = os.open(os.path.join(self.dir, STAGING_MARKER), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            # Held until this run ends (a SIGKILL included): a free lock means the staging was abandoned.
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.set_phase("dumping")
        except BaseException:
            self.discard()
            raise

    def set_phase(self, phase, **extra):
        data = json.dumps(dict(extra, dest=self.files.path, phase=phase, pid=os.getpid(),
                               started=_process_start(os.getpid()), at=utc_now().isoformat(timespec="seconds")))
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data.encode("utf-8"), 0)
        os.fsync(self.fd)
        self.phase = phase

    def discard(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _swap_in(staging_dir, files, suffixes):
    """Move a completed dump from its staging directory to its path, each old file into the staging directory
    first. Safe to run again after an interruption: a name whose new file already moved is left alone."""
    old_dir = os.path.join(staging_dir, "replaced")
    if not os.path.isdir(old_dir):
        os.mkdir(old_dir, 0o700)
    for suffix in SUFFIXES:
        target = files.path + suffix
        new = os.path.join(staging_dir, files.name + suffix)
        if os.path.lexists(new):
            if os.path.lexists(target):
                os.rename(target, os.path.join(old_dir, files.name + suffix))
            os.rename(new, target)
        elif suffix not in suffixes and os.path.lexists(target):
            os.rename(target, os.path.join(old_dir, files.name + suffix))
    fsync_dir(os.path.dirname(files.path))


def stagings(parent):
    """The staging directories of this collection in parent: [(path, dump name)]."""
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    out = []
    for name in names:
        match = STAGING.match(name)
        full = os.path.join(parent, name)
        if not match:
            continue
        try:
            st = os.lstat(full)
            marker = os.lstat(os.path.join(full, STAGING_MARKER))
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_ISREG(marker.st_mode):
            out.append((full, match.group("name")))
    return out


def recover(option, files, check=False):
    """Deal with what interrupted dumps left beside files.path: complete a move into place that was under way
    (for this path: before it is looked at), remove partial dumps. Returns what was done, in sentences.
    Refuses when another run is writing this very path."""
    notes = []
    for full, name in stagings(os.path.dirname(files.path)):
        try:
            fd = os.open(os.path.join(full, STAGING_MARKER), os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if name == files.name:
                    raise RollbackError("%s: another run is writing a dump to %s right now (its staging directory is "
                                        "%s); wait for it to finish (nothing was changed)" % (option, files.path, full),
                                        **{option: files.path})
                continue
            try:
                info = json.loads(os.pread(fd, 1 << 20, 0).decode("utf-8"))
            except ValueError:
                info = {}
            info = info if isinstance(info, dict) else {}
            target = DumpFiles(os.path.join(os.path.dirname(full), name))
            when = "pid %s, %s" % (info.get("pid", "?"), info.get("at", "time unknown"))
            if info.get("phase") == "swapping" and isinstance(info.get("suffixes"), list):
                if check:
                    notes.append("would complete moving the finished dump %s into place (a run was interrupted "
                                 "while doing it: %s)" % (target.path, when))
                    continue
                _swap_in(full, target, info["suffixes"])
                notes.append("completed moving the finished dump %s into place (a run was interrupted while doing "
                             "it: %s)" % (target.path, when))
            elif check:
                notes.append("would remove the partial dump %s that an interrupted run left (%s)" % (full, when))
                continue
            else:
                notes.append("removed the partial dump %s that an interrupted run left (%s); it was never used"
                             % (full, when))
            shutil.rmtree(full, ignore_errors=True)
        finally:
            os.close(fd)
    return notes


def prepare_output(option, value, fmt, check=False):
    """(DumpFiles, notes): the path checked (see check_output) once what interrupted runs left is dealt with."""
    files = check_output(option, value, fmt)
    notes = recover(option, files, check=check)
    if notes and not check:
        files = check_output(option, value, fmt)
    return files, notes


def _walk_files(root):
    out = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(base, name)
            out.append((os.path.relpath(full, root), full))
    return sorted(out)


def _cached_sha(path):
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def directory_manifest(root, name):
    """sha256sum lines ("<sha>  <name>/<rel>") of every file under a directory-format dump."""
    return "".join("%s  %s/%s\n" % (_cached_sha(full), name, rel) for rel, full in _walk_files(root)).encode()


def dump_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(full) for _rel, full in _walk_files(path))
    return os.path.getsize(path)


def compute_checksum(path, fmt, name):
    """(sha256, manifest bytes or None): the file's sha256, or the sha256 of the directory's manifest."""
    if fmt == "directory":
        if not os.path.isdir(path):
            raise RollbackError("%s is not a directory, but the dump's format is directory" % path)
        manifest = directory_manifest(path, name)
        return sha256_bytes(manifest), manifest
    if not os.path.isfile(path):
        raise RollbackError("%s is not a file, but the dump's format is custom" % path)
    return _cached_sha(path), None


def read_meta(files):
    try:
        with open(files.meta, "rb") as stream:
            meta = json.loads(stream.read().decode("utf-8"))
    except FileNotFoundError:
        raise RollbackError("src: %s has no metadata file %s; only dumps written by fleetops.rollback.pg_dump (or a "
                            "restore point) can be restored and verified" % (files.path, files.meta), src=files.path)
    except (OSError, ValueError) as err:
        raise RollbackError("src: the metadata %s is unreadable (%s); nothing was changed" % (files.meta, err),
                            src=files.path)
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS or not isinstance(meta.get("tables"), dict):
        raise RollbackError("src: the metadata %s is not a fleetops dump description; nothing was changed"
                            % files.meta, src=files.path)
    return meta


def check_dump(files, expected_sha=None):
    """The dump's metadata once its checksum is proven; a RollbackError (nothing changed) otherwise."""
    if not files.exists():
        raise RollbackError("src: %s does not exist; nothing was changed" % files.path, src=files.path)
    what = describe_entry(files.path)
    if what not in ("a regular file", "a directory"):
        raise RollbackError("src: %s is %s, not a dump; nothing was changed" % (files.path, what), src=files.path)
    for side in (files.meta, files.sha, files.manifest, files.marker, files.restoring):
        what = describe_entry(side)
        if what not in (None, "a regular file"):
            # Reading a FIFO would hang, a link may point anywhere: only this collection's own files are read.
            raise RollbackError("src: %s is %s, not the dump's %s file; nothing was changed"
                                % (side, what, side[len(files.path) + 1:]), src=files.path)
    meta = read_meta(files)
    try:
        with open(files.sha, encoding="utf-8") as stream:
            recorded = stream.read().split()[0]
    except (OSError, IndexError):
        raise RollbackError("src: %s has no readable checksum file %s; refusing to restore an unverifiable dump; "
                            "nothing was changed" % (files.path, files.sha), src=files.path)
    actual, manifest = compute_checksum(files.path, meta["format"], files.name)
    wanted = {recorded, meta.get("sha256")} | ({expected_sha} if expected_sha else set())
    if len(wanted) != 1 or actual != recorded:
        detail = "its sha256 is %s but %s records %s" % (actual, files.sha, recorded)
        if manifest is not None:
            try:
                with open(files.manifest, "rb") as stream:
                    stored = stream.read()
            except OSError:
                stored = b""
            bad = sorted(set(manifest.decode().splitlines()) ^ set(stored.decode("utf-8", "replace").splitlines()))
            detail += "; differing files: %s" % ", ".join(line.split("  ", 1)[-1] for line in bad[:5])
        if expected_sha and expected_sha != recorded:
            detail += "; the restore point records %s" % expected_sha
        raise RollbackError("src: the dump %s fails its checksum (%s); it is corrupt or was changed, refusing to "
                            "restore it; nothing was changed" % (files.path, detail), src=files.path,
                            sha256=actual, expected_sha256=recorded)
    return meta


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# ---------------------------------------------------------------------- options
PATTERN_KEYS = ("schemas", "exclude_schemas", "tables", "exclude_tables")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_jobs(option, jobs):
    return _pg.check_int(option, jobs, 1, _pg.MAX_JOBS, "a number of parallel workers")


def check_dump_options(options, prefix=""):
    """The dump options shared by pg_dump and the database component, checked alike: format, jobs (more than
    one only with format=directory: pg_dump writes a custom-format file with one worker), compress, patterns.
    Returns them normalised."""
    out = dict(options)
    if out.get("format") not in FORMATS:
        raise RollbackError("%sformat: %s is not one of %s; give format: custom (one file) or format: directory"
                            % (prefix, _pg._show(out.get("format")), ", ".join(FORMATS)))
    jobs = check_jobs(prefix + "jobs", out.get("jobs", 1))
    if jobs > 1 and out["format"] != "directory":
        raise RollbackError("%sjobs: %d parallel workers need format=directory (pg_dump writes a custom-format file "
                            "with one worker); set format: directory or jobs: 1" % (prefix, jobs))
    if out.get("compress") is not None:
        _pg.check_int(prefix + "compress", out["compress"], 0, 9, "a gzip level")
    for key in PATTERN_KEYS:
        out[key] = _pg.check_patterns(prefix + key, out.get(key))
    return out


def safe_file_name(name):
    """A database name as one harmless file name component (no '/', no leading dot, no control characters)."""
    out = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "db"
    return out[:100]


def check_sha256(option, value):
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.match(value.strip().lower()):
        raise RollbackError("%s: %s is not a sha256 (64 hexadecimal digits); give the dump's sha256, for example from "
                            "its .sha256 file" % (option, _pg._show(value)))
    return value.strip().lower()


# ---------------------------------------------------------------------- TOC
_TOC_LINE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<rest>.*)$")
TOC_KINDS = ("TABLE DATA", "MATERIALIZED VIEW", "FOREIGN TABLE", "TABLE", "VIEW", "SEQUENCE")


def read_toc(conn, major, path):
    rc, out, err = conn.run_tool([conn.tools(major)["pg_restore"], "-l", path], capture_stdout=True, timeout=600)
    if rc != 0:
        raise RollbackError("pg_restore -l cannot read the dump %s: %s" % (path, err.strip()[-800:]), src=path)
    return [m.group("rest") for m in (_TOC_LINE.match(line) for line in out.splitlines()) if m]


def toc_objects(toc, known):
    """{"TABLE DATA": [...], "TABLE": [...], ...}: TOC entries matched against known "schema.name" relations
    (names may hold spaces, so each entry is matched against the catalog rather than split)."""
    out = {kind: [] for kind in TOC_KINDS}
    for rest in toc:
        kind = next((k for k in TOC_KINDS if rest.startswith(k + " ")), None)
        if kind is None:
            continue
        tail = rest[len(kind) + 1:]
        for qualified in known:
            # "schema.name" keys: the schema and the name may hold dots themselves, so try every split.
            splits = [(qualified[:i], qualified[i + 1:]) for i, ch in enumerate(qualified) if ch == "."]
            if any(tail.startswith("%s %s " % pair) or tail == "%s %s" % pair for pair in splits):
                out[kind].append(qualified)
                break
    return {kind: sorted(set(names)) for kind, names in out.items()}


def dump_objects(conn, major, path, fmt, known):
    """toc_objects() of a dump: its TOC read in-process (_pg_toc), or by `pg_restore -l` for an archive that
    reader does not know."""
    try:
        entries = _pg_toc.read_entries(path, fmt)
    except _pg_toc.TocUnsupported:
        return toc_objects(read_toc(conn, major, path), known)
    out = {kind: set() for kind in TOC_KINDS}
    for desc, namespace, tag in entries:
        qualified = "%s.%s" % (namespace, tag)
        if desc in out and qualified in known:
            out[desc].add(qualified)
    return {kind: sorted(names) for kind, names in out.items()}


# ---------------------------------------------------------------------- dump
def _filters(options):
    argv = []
    for key, flag in (("schemas", "-n"), ("exclude_schemas", "-N"), ("tables", "-t"), ("exclude_tables", "-T")):
        for value in options.get(key) or []:
            argv += [flag, value]
    return argv


class _Counter(threading.Thread):
    """Row counts on the snapshot session in the background (the session is otherwise idle meanwhile)."""

    def __init__(self, cur, tables):
        super().__init__(name="fleetops-row-counts", daemon=True)
        self.cur = cur
        self.tables = tables
        self.counts = None
        self.error = None

    def run(self):
        try:
            # One backend, no parallel workers: pg_dump needs the CPU more.
            self.cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            # Only what this role may read (a table it may not read is not in a dump that succeeds).
            names = _pg.resolve_names(self.cur, self.tables)
            self.cur.execute("SELECT s || '.' || n FROM unnest(%s::text[], %s::text[]) AS t(s, n) "
                             "WHERE has_table_privilege(format('%%I.%%I', s, n), 'SELECT')",
                             ([names[t][0] for t in self.tables], [names[t][1] for t in self.tables]))
            self.counts = _pg.count_rows(self.cur, [row[0] for row in self.cur.fetchall()], names)
        except Exception as err:  # pylint: disable=broad-except
            self.error = err


def _open_snapshot(conn, db=None):
    """A REPEATABLE READ READ ONLY transaction whose snapshot pg_dump shares (--snapshot)."""
    session = conn.connect(db, autocommit=False)
    session.set_session(isolation_level="REPEATABLE READ", readonly=True)
    return session


def _pattern_regex(pattern):
    """A pg_dump -n/-t pattern as (schema regex or '', name regex), following psql's rules: '.' separates the
    schema, '*' and '?' are wildcards, '$' is literal, unquoted letters fold to lower case, "quoted" parts are
    literal. None when pg_dump itself would refuse it (too many dots)."""
    parts = [[]]
    quoted = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if quoted and pattern[i + 1:i + 2] == '"':
                parts[-1].append('"')
                i += 1
            else:
                quoted = not quoted
        elif quoted:
            parts[-1].append(re.escape(ch))
        elif ch == ".":
            parts.append([])
        elif ch == "*":
            parts[-1].append(".*")
        elif ch == "?":
            parts[-1].append(".")
        elif ch == "$":
            parts[-1].append("\\$")
        else:
            parts[-1].append(ch.lower() if "A" <= ch <= "Z" else ch)
        i += 1
    regexes = ["^(%s)$" % "".join(part) for part in parts]
    if len(regexes) > 3:
        return None
    return ("", regexes[0]) if len(regexes) == 1 else (regexes[-2], regexes[-1])


def _size(value):
    return "%.1f MiB (%d bytes)" % (value / float(MIB), value)


def estimate_size(conn, options):
    """(bytes a dump is estimated to need, bytes of the selected tables on disk, number of tables)."""
    wanted = {}
    for key in ("schemas", "exclude_schemas", "tables", "exclude_tables"):
        pairs = [_pattern_regex(p) for p in options.get(key) or []]
        if any(pair is None for pair in pairs):
            return None
        wanted[key] = pairs
    condition = ["c.relkind = 'r'", _pg.USER_SCHEMAS.replace("%", "%%")]
    args = []
    for key, include, field in (("schemas", True, "n.nspname"), ("exclude_schemas", False, "n.nspname")):
        if wanted[key]:
            condition.append("%s(%s ~ ANY(%%s))" % ("" if include else "NOT ", field))
            args.append([pair[1] for pair in wanted[key]])
    for key, include in (("tables", True), ("exclude_tables", False)):
        if wanted[key]:
            condition.append("%sEXISTS (SELECT 1 FROM unnest(%%s::text[], %%s::text[]) AS p(s, t) WHERE "
                             "(p.s = '' OR n.nspname ~ p.s) AND c.relname ~ p.t)" % ("" if include else "NOT "))
            args += [[pair[0] for pair in wanted[key]], [pair[1] for pair in wanted[key]]]
    session = conn.connect()
    try:
        with session.cursor() as cur:
            try:
                cur.execute("SELECT coalesce(sum(pg_table_size(c.oid)), 0)::bigint, count(*) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " + " AND ".join(condition), args)
            except _pg.psycopg2.Error:  # a pattern PostgreSQL's regex engine refuses: pg_dump will say so
                return None
            table_bytes, count = cur.fetchone()
    finally:
        session.close()
    factor = 1.0 if options.get("compress") == 0 else COMPRESSED_FACTOR
    return int(table_bytes * factor * SPACE_MARGIN) + MIB, int(table_bytes), int(count)


def free_bytes(directory):
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def check_space(conn, files, options, option="dest"):
    """Refuse a dump the filesystem has no room for, before anything is written. Returns the numbers."""
    estimate = estimate_size(conn, options)
    parent = os.path.dirname(files.path)
    free = free_bytes(parent)
    if estimate is None:
        return {"free": free}
    needed, table_bytes, count = estimate
    if free < needed:
        how = "an uncompressed dump is about that size" if options.get("compress") == 0 else \
            "a compressed dump is estimated at %d%% of that" % (COMPRESSED_FACTOR * 100)
        raise RollbackError(
            "%s: not enough free space for the dump of %s: the filesystem holding %s has %s free, the dump needs an "
            "estimated %s (the %d selected tables take %s on disk; %s; plus a %d%% margin and 1 MiB); free space "
            "there or give a path on a bigger filesystem (nothing was written)"
            % (option, conn.where(), parent, _size(free), _size(needed), count, _size(table_bytes), how,
               round((SPACE_MARGIN - 1) * 100)), **{option: files.path, "free_bytes": free, "estimated_bytes": needed})
    return {"free": free, "estimate": needed}


def dump_plan(conn, options):
    """What a dump would hold (check mode): the tables and their estimated rows. Writes nothing."""
    session = conn.connect()
    try:
        with session.cursor() as cur:
            info = _pg.server_info(cur)
            tools = conn.tools(info["major"])
            cur.execute("SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND " + _pg.USER_SCHEMAS)
            estimates = dict(cur.fetchall())
    finally:
        session.close()
    return {"server_version": info["server_version"], "pg_dump": tools["pg_dump"],
            "estimated_rows": estimates, "filtered": bool(_filters(options))}


_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def dump(conn, dest, options, verify=False, option="dest", notes=None):
    """Dump conn.db to dest with sidecars; returns the metadata (plus `verify` when asked). Atomic: the dump is
    completed in a staging directory and moved into place only once complete (and verified).

    dest: a path (checked with prepare_output here) or the DumpFiles prepare_output returned. `notes` (a list)
    receives what was done about leftovers of interrupted runs."""
    fmt = options.get("format") or "custom"
    jobs = int(options.get("jobs") or 1)
    if isinstance(dest, DumpFiles):
        files = dest
    else:
        files, found = prepare_output(option, dest, fmt)
        if notes is not None:
            notes.extend(found)
    space = check_space(conn, files, options, option)
    started = time.monotonic()
    PROGRESS.at("dumping %s to %s" % (conn.where(), files.path),
                state="%s was not changed (a partial dump is removed)" % files.path)
    staging = Staging(files, option)
    try:
        meta = _dump_into(conn, staging, options, fmt, jobs, started)
        if verify:
            PROGRESS.at("verifying the new dump of %s by a scratch restore" % conn.where())
            meta["verify"] = verify_dump(conn, staging.path, meta, jobs)
            if not meta["verify"]["verified"]:
                raise RollbackError("verify: the new dump of %s did not restore to the same row counts (%s); it was "
                                    "discarded and %s was left as it was"
                                    % (conn.where(), meta["verify"]["problem"], files.path), verify=meta["verify"])
        install(staging, meta)
    except RollbackError as err:
        _abandon(staging)
        full = err.details.pop("full", None)
        if full:
            parent = os.path.dirname(files.path)
            raise RollbackError("%s; the filesystem holding %s ran full while writing: %s (%s free now, the estimate "
                                "was %s); free space there or give a path on a bigger filesystem"
                                % (err.msg, parent, _left(staging), _size(free_bytes(parent)),
                                   _size(space.get("estimate", 0))), **err.details)
        if full is not None:  # pg_dump itself failed
            raise RollbackError("%s; %s" % (err.msg, _left(staging)), **err.details)
        raise
    except Terminated:
        _abandon(staging)
        raise RollbackError("stopped by SIGTERM while dumping %s to %s; %s" % (
            conn.where(), files.path, _left(staging)), **{option: files.path})
    except OSError as err:
        _abandon(staging)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            parent = os.path.dirname(files.path)
            problem = "the filesystem holding %s is full (%s free now, the estimate was %s): free space there or " \
                      "give a path on a bigger filesystem" % (parent, _size(free_bytes(parent)),
                                                              _size(space.get("estimate", 0)))
        else:
            problem = describe_os_error(err)
        raise RollbackError("writing the dump of %s to %s failed: %s; %s" % (conn.where(), files.path, problem,
                                                                             _left(staging)), **{option: files.path})
    except BaseException:
        _abandon(staging)
        raise
    staging.close()
    return meta


def _abandon(staging):
    """Remove a staging directory, unless files were already being moved into place (the next run completes
    that move: the old dump is partly in the staging directory)."""
    if staging.phase == "swapping":
        staging.close()
    else:
        staging.discard()


def _left(staging):
    if staging.phase == "swapping":
        return ("the finished dump was being moved into place: the next run to %s completes the move (the old "
                "dump is kept in %s until then)" % (staging.files.path, staging.dir))
    return "the partial dump was removed and %s was not changed" % staging.files.path


def _dump_into(conn, staging, options, fmt, jobs, started):
    """Run pg_dump into the staging directory, with the row counts taken in pg_dump's snapshot."""
    files = staging.files
    session = _open_snapshot(conn)
    try:
        with session.cursor() as cur:
            info = _pg.server_info(cur)
            cur.execute("SELECT pg_export_snapshot()")
            snapshot_id = cur.fetchone()[0]
            argv = conn.tool_argv("pg_dump", info["major"], dbname=conn.db)
            # --strict-names: a schema or table pattern that matches nothing is an error, not a smaller dump.
            argv += ["-F", fmt[0], "-f", staging.path, "--snapshot", snapshot_id, "--strict-names"]
            if fmt == "directory" and jobs > 1:
                argv += ["-j", str(jobs)]
            if options.get("compress") is not None:
                argv += ["-Z", str(options["compress"])]
            argv += _filters(options)
            # Count every table's rows in the same snapshot while pg_dump runs (the TOC says later which of
            # them the dump holds): the counts cost no time of their own.
            known = _pg.relations(cur)
            counter = _Counter(cur, [name for name, kind in known.items() if kind == "table"])
            # pg_dump starts before the counting thread: the child is forked while the module runs one thread.
            tool = conn.start_tool(argv)
            counter.start()
            try:
                rc, _out, err = tool.wait()
            except BaseException:
                session.cancel()
                raise
            finally:
                counter.join()
            # A failed count aborts the snapshot's transaction, which fails pg_dump with a message about the
            # snapshot: the count's own error is the one that says what went wrong.
            if counter.error is not None and rc == 0:
                raise RollbackError("counting the rows of %s failed: %s; nothing was written to %s"
                                    % (conn.where(), conn.redact(getattr(counter.error, "msg", None) or
                                                                 str(counter.error).strip()), files.path),
                                    dest=files.path)
            if rc != 0:
                raise RollbackError("pg_dump of %s failed (exit %s): %s" % (conn.where(), rc, err.strip()[-1500:]),
                                    dest=files.path, full=any(words in err for words in _NO_SPACE))
            dumped_at = time.monotonic()
            objects = dump_objects(conn, info["major"], staging.path, fmt, known)
            tables = objects["TABLE DATA"]
            state = _pg.describe_state(cur, tables, counter.counts)
            cur.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()")
            encoding = cur.fetchone()[0]
        session.rollback()
    finally:
        session.close()
    sha, manifest = compute_checksum(staging.path, fmt, files.name)
    meta = {
        "format": fmt,
        "meta_format": META_FORMAT,
        "database": conn.db,
        "encoding": encoding,
        "server_version": info["server_version"],
        "server_version_num": info["server_version_num"],
        "pg_dump_major": conn.tools(info["major"])["major"],
        "created_at": utc_now().isoformat(timespec="milliseconds"),
        "jobs": jobs,
        "compress": options.get("compress"),
        "filters": {k: list(options.get(k) or []) for k in ("schemas", "exclude_schemas", "tables",
                                                            "exclude_tables")},
        "tables": state["counts"],
        "relations": sorted(set(objects["TABLE"] + objects["VIEW"] + objects["MATERIALIZED VIEW"] +
                                objects["SEQUENCE"] + objects["FOREIGN TABLE"])),
        "size": dump_size(staging.path),
        "seconds": round(dumped_at - started, 3),
        "sha256": sha,
        "source": {k: v for k, v in state.items() if k != "counts"},
        "_manifest": manifest,
    }
    meta["seconds_total"] = round(time.monotonic() - started, 3)
    return meta


def install(staging, meta):
    """Complete the dump in its staging directory (modes, sidecars), then move it into place."""
    files = staging.files
    manifest = meta.pop("_manifest", None)
    inside = DumpFiles(staging.path)
    if os.path.isdir(staging.path):
        os.chmod(staging.path, 0o700)
        for _rel, full in _walk_files(staging.path):
            os.chmod(full, 0o600)
    else:
        os.chmod(staging.path, 0o600)
    suffixes = ["", ".sha256", ".meta.json"]
    if manifest is not None:
        atomic_write(inside.manifest, manifest)
        atomic_write(inside.sha, ("%s  %s\n" % (meta["sha256"], os.path.basename(files.manifest))).encode())
        suffixes.append(".manifest")
    else:
        atomic_write(inside.sha, ("%s  %s\n" % (meta["sha256"], files.name)).encode())
    atomic_write(inside.meta, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    # Someone may have put something at the path while pg_dump ran: it is not replaced either.
    check_output(staging.option, files.path, meta["format"])
    PROGRESS.at("moving the new dump into place at %s" % files.path,
                state="%s may be incomplete: the next run to it completes the move" % files.path)
    staging.set_phase("swapping", suffixes=suffixes)
    _swap_in(staging.dir, files, suffixes)
    staging.phase = "installed"
    staging.discard()
    PROGRESS.at("dumped to %s" % files.path, state="the new dump %s was written" % files.path)


def remove_dump(path):
    files = DumpFiles(path)
    for item in [files.path] + files.sidecars() + [files.restoring]:
        _remove(item)


# ---------------------------------------------------------------------- databases
def _scratch_name(base, tag):
    # 30 bytes, not characters: the whole name must stay within PostgreSQL's 63 bytes.
    return "%s_fleetops_%s_%s" % (base.encode("utf-8")[:30].decode("utf-8", "ignore"), tag, secrets.token_hex(3))


def database_props(cur, db):
    cur.execute("""SELECT d.oid, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
                          d.datlocprovider, d.daticulocale, d.datconnlimit, t.spcname, d.datacl IS NOT NULL,
                          shobj_description(d.oid, 'pg_database')
                     FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s""", (db,))
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("oid", "owner", "encoding", "collate", "ctype", "provider", "icu_locale", "connlimit", "tablespace",
            "has_acl", "comment")
    props = dict(zip(keys, row))
    cur.execute("SELECT coalesce(pg_get_userbyid(NULLIF(setrole, 0)), ''), setconfig FROM pg_db_role_setting "
                "WHERE setdatabase = %s", (props["oid"],))
    props["settings"] = [(role, item) for role, config in cur.fetchall() for item in config or []]
    cur.execute("SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
                "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s", (props["oid"],))
    props["acl"] = cur.fetchall()
    return props


def create_like(cur, name, props, skip_settings=()):
    """CREATE DATABASE name with the owner, encoding, locale, settings, privileges and comment of props."""
    sql = _pg.pgsql
    if props is None:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(_pg.ident(name)))
        return
    parts = [sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {} "
                     "CONNECTION LIMIT {}").format(
        _pg.ident(name), _pg.ident(props["owner"]), sql.Literal(props["encoding"]), sql.Literal(props["collate"]),
        sql.Literal(props["ctype"]), sql.Literal(props["connlimit"]))]
    if props["tablespace"] != "pg_default":
        parts.append(sql.SQL(" TABLESPACE {}").format(_pg.ident(props["tablespace"])))
    if props.get("provider") == "i":
        parts.append(sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(props["icu_locale"])))
    cur.execute(sql.Composed(parts))
    for role, item in props["settings"]:
        key, _eq, value = item.partition("=")
        if key in skip_settings:
            continue
        target = (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(_pg.ident(role), _pg.ident(name)) if role else
                  sql.SQL("ALTER DATABASE {}").format(_pg.ident(name)))
        cur.execute(sql.SQL("{} SET {} TO {}").format(target, _pg.ident(key), sql.Literal(value)))
    if props["has_acl"]:
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC, {}").format(
            _pg.ident(name), _pg.ident(props["owner"])))
        for grantee, privilege, grantable in props["acl"]:
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else _pg.ident(grantee)
            cur.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege), _pg.ident(name), who, sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    if props.get("comment"):
        cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(_pg.ident(name), sql.Literal(props["comment"])))


def drop_database(cur, name):
    cur.execute(_pg.pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_pg.ident(name)))


def end_sessions(cur, db):
    """Terminate every other client session on db and wait (with a deadline) until they are gone."""
    deadline = time.monotonic() + SESSION_DEADLINE
    while True:
        try:
            cur.execute("SELECT count(*) FILTER (WHERE NOT pg_terminate_backend(pid, %s)) FROM pg_stat_activity "
                        "WHERE " + _pg.SESSIONS_OF, (TERMINATE_WAIT_MS, db))
        except _pg.psycopg2.Error as err:
            raise RollbackError("cannot end the other sessions on %s: %s; the login role needs to be a superuser or "
                                "a member of pg_signal_backend (and of the roles of those sessions)"
                                % (db, redact_text(str(err).strip())))
        if not _pg.other_sessions(cur, db):
            return
        if time.monotonic() > deadline:
            raise RollbackError("sessions on %s did not end within %.0fs" % (db, SESSION_DEADLINE))


class WriteBlock:
    """block_writes: the database defaults to read-only transactions and its other sessions are ended; release()
    puts back the previous default, also on failure, and also on a database recreated under the same name."""

    SETTING = "default_transaction_read_only"

    def __init__(self, conn):
        self.conn = conn
        self.db = conn.db
        self.previous = None
        self.engaged = False

    def engage(self):
        admin = self.conn.admin()
        try:
            with admin.cursor() as cur:
                props = database_props(cur, self.db)
                if props is None:
                    return
                for role, item in props["settings"]:
                    key, _eq, value = item.partition("=")
                    if not role and key == self.SETTING:
                        self.previous = value
                cur.execute(_pg.pgsql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                    _pg.ident(self.db)))
                self.engaged = True
                end_sessions(cur, self.db)
        finally:
            admin.close()

    def release(self):
        if not self.engaged:
            return None
        admin = self.conn.admin()
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db,))
                if cur.fetchone() is None:
                    return None
                if self.previous is None:
                    cur.execute(_pg.pgsql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
                        _pg.ident(self.db)))
                else:
                    cur.execute(_pg.pgsql.SQL("ALTER DATABASE {} SET default_transaction_read_only TO {}").format(
                        _pg.ident(self.db), _pg.pgsql.Literal(self.previous)))
            self.engaged = False
            return None
        except (_pg.psycopg2.Error, RollbackError) as err:
            return "could not undo block_writes on %s (%s); run ALTER DATABASE %s RESET default_transaction_read_only" \
                % (self.db, redact_text(getattr(err, "msg", str(err)).strip()), self.db)
        finally:
            admin.close()


def _restore_argv(conn, major, db, path, jobs, clean=False, single=False, no_owner=False):
    argv = conn.tool_argv("pg_restore", major, dbname=db) + ["--exit-on-error"]
    if clean:
        argv += ["--clean", "--if-exists"]
    if single:
        argv.append("--single-transaction")
    elif jobs > 1:
        argv += ["-j", str(jobs)]
    if no_owner:
        argv += ["--no-owner", "--no-privileges"]
    return argv + [path]


def _count_in(conn, db, tables):
    session = conn.connect(db)
    try:
        with session.cursor() as cur:
            return _pg.count_rows(cur, tables)
    finally:
        session.close()


def _state_in(conn, db, tables):
    session = _open_snapshot(conn, db)
    try:
        with session.cursor() as cur:
            return _pg.describe_state(cur, tables)
    finally:
        session.rollback()
        session.close()


def count_mismatches(expected, actual):
    return {t: {"dump": n, "database": actual.get(t)} for t, n in sorted(expected.items()) if actual.get(t) != n}


def verify_dump(conn, path, meta, jobs=1):
    """Restore the dump into a scratch database, compare every table's rows with the metadata, drop the scratch."""
    started = time.monotonic()
    scratch = _scratch_name(conn.db, "verify")
    result = {"verified": False, "database": scratch, "tables": len(meta["tables"]), "mismatches": {}, "problem": None}
    admin = conn.admin()
    try:
        with admin.cursor() as cur:
            cur.execute(_pg.pgsql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
                _pg.ident(scratch), _pg.pgsql.Literal(meta.get("encoding") or "UTF8")))
            try:
                major = meta["server_version_num"] // 10000
                rc, _out, err = conn.run_tool(_restore_argv(conn, major, scratch, path, jobs, no_owner=True))
                if rc != 0:
                    result["problem"] = "pg_restore into scratch database %s failed (exit %s): %s" % (
                        scratch, rc, err.strip()[-800:])
                else:
                    counts = _count_in(conn, scratch, list(meta["tables"]))
                    result["mismatches"] = count_mismatches(meta["tables"], counts)
                    if result["mismatches"]:
                        result["problem"] = "row counts differ: %s" % ", ".join(
                            "%s %s vs %s" % (t, m["database"], m["dump"]) for t, m in
                            list(result["mismatches"].items())[:5])
                    else:
                        result["verified"] = True
                        result["rows"] = sum(counts.values())
            except RollbackError as err:
                result["problem"] = err.msg
            finally:
                drop_database(cur, scratch)
    finally:
        admin.close()
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


# ---------------------------------------------------------------------- restore
def _markers(files):
    try:
        with open(files.marker, encoding="utf-8") as stream:
            data = json.load(stream)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _target_key(state):
    return "%s/%s" % (state.get("system_identifier"), state.get("datname"))


def write_marker(files, meta, state):
    """Record the target's state right after a restore, so a second restore can say changed=false."""
    data = _markers(files)
    data[_target_key(state)] = dict(state, dump_sha256=meta["sha256"], restored_at=utc_now().isoformat(
        timespec="milliseconds"))
    try:
        atomic_write(files.marker, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        return None
    except OSError as err:
        return "could not record the restored state in %s (%s): the next restore will run again" % (files.marker, err)


def inspect_target(conn, files, meta, mode):
    """Plan a restore: does the target already hold the dump, and what would be dropped, kept and restored."""
    admin = conn.admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (conn.db,))
            exists = cur.fetchone() is not None
            info = _pg.server_info(cur)
            major = info["major"]
            conn.tools(major)
    finally:
        admin.close()
    tables = sorted(meta["tables"])
    plan = {"database": conn.db, "mode": mode, "exists": exists, "format": meta["format"], "src": files.path,
            "sha256": meta["sha256"], "dump_created_at": meta.get("created_at"),
            "restore": {"tables": meta["tables"], "relations": len(meta.get("relations", []))}, "major": major,
            "target_key": "%s/%s" % (info["system_identifier"], conn.db)}
    if not exists:
        if mode == "clean":
            raise RollbackError("db: database %s does not exist on %s; mode=clean restores into an existing database, "
                                "use mode=recreate to create it; nothing was changed" % (conn.db, conn.where()))
        plan.update(changed=True, reason="the database does not exist", drop=[], keep=[], sessions=0)
        return plan
    session = conn.connect()
    try:
        with session.cursor() as cur:
            current = _pg.relations(cur)
            plan["sessions"] = _pg.other_sessions(cur, conn.db)
            reason = "no record of the database state"
            marker = _markers(files).get(_target_key(_pg.server_info(cur)))
            references = []
            if marker and marker.get("dump_sha256") == meta["sha256"]:
                references.append(("restored", marker))
            if meta.get("source"):
                references.append(("dumped", dict(meta["source"], counts=meta["tables"])))
            for label, reference in references:
                session.rollback()
                session.set_session(isolation_level="REPEATABLE READ", readonly=True)
                why = _pg.changes_since(cur, reference, tables)
                session.rollback()
                if why is None:
                    reason = None
                    plan["matches"] = "the database holds what it held when this dump was %s (%s)" % (
                        label, reference.get("restored_at") or meta.get("created_at"))
                    break
                if label == "restored" or reason == "no record of the database state":
                    reason = why
    finally:
        session.close()
    dumped = set(meta.get("relations", []))
    if mode == "recreate":
        plan["drop"] = sorted("%s (%s)" % (name, kind) for name, kind in current.items())
        plan["keep"] = []
    else:
        plan["drop"] = sorted("%s (%s)" % (name, kind) for name, kind in current.items() if name in dumped)
        plan["keep"] = sorted("%s (%s)" % (name, kind) for name, kind in current.items() if name not in dumped)
    plan["changed"] = reason is not None
    plan["reason"] = reason or plan["matches"]
    return plan


def rebuild(conn, path, meta, jobs, skip_settings=()):
    """Recreate conn.db from a dump: build it as a new database, verify its row counts, then swap it in (both
    renames in one transaction) and drop the old one. A failure before the swap leaves the original untouched.
    Returns the new database's state record."""
    major = meta["server_version_num"] // 10000
    tmp = _scratch_name(conn.db, "new")
    admin = conn.admin()
    swapped = False
    try:
        with admin.cursor() as cur:
            props = database_props(cur, conn.db)
            create_like(cur, tmp, props, skip_settings)
            try:
                rc, _out, err = conn.run_tool(_restore_argv(conn, major, tmp, path, jobs))
                if rc != 0:
                    raise RollbackError("pg_restore failed (exit %s): %s" % (rc, err.strip()[-1500:]))
                state = _state_in(conn, tmp, sorted(meta["tables"]))
                bad = count_mismatches(meta["tables"], state["counts"])
                if bad:
                    raise RollbackError("row counts after the restore differ from the dump: %s" % json.dumps(bad))
                _swap(admin, cur, conn.db, tmp, props is not None)
                swapped = True
            finally:
                if not swapped:
                    drop_database(cur, tmp)
    finally:
        admin.close()
    state["datname"] = conn.db
    return state


def _swap(admin, cur, db, tmp, exists):
    sql = _pg.pgsql
    if not exists:
        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_pg.ident(tmp), _pg.ident(db)))
        return
    old = _scratch_name(db, "old")
    cur.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(_pg.ident(db)))
    try:
        end_sessions(cur, db)
        admin.autocommit = False
        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_pg.ident(db), _pg.ident(old)))
        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_pg.ident(tmp), _pg.ident(db)))
        admin.commit()
    except BaseException:
        if not admin.autocommit:
            admin.rollback()
        admin.autocommit = True
        cur.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(_pg.ident(db)))
        raise
    admin.autocommit = True
    drop_database(cur, old)


def _read_restoring(files):
    try:
        if not stat.S_ISREG(os.lstat(files.restoring).st_mode):
            return {}
        with open(files.restoring, encoding="utf-8") as stream:
            data = json.load(stream)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_restoring(files, key, entry):
    """Record (or with entry None, forget) a restore under way; a sentence when that cannot be written."""
    data = _read_restoring(files)
    if entry is None:
        if key not in data:
            return None
        data.pop(key)
    else:
        data[key] = entry
    try:
        if data:
            atomic_write(files.restoring, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        elif os.path.lexists(files.restoring):
            os.unlink(files.restoring)
        return None
    except OSError as err:
        action = "update" if entry is None else "write the restore record"
        return "could not %s %s (%s)" % (action, files.restoring, err.strerror or err)


def _safety_state(conn, safety_meta):
    """None when the database still holds what the safety dump holds, else why not (a sentence)."""
    session = conn.connect(autocommit=False)
    try:
        session.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with session.cursor() as cur:
            return _pg.changes_since(cur, dict(safety_meta["source"], counts=safety_meta["tables"]),
                                     sorted(safety_meta["tables"]))
    finally:
        session.rollback()
        session.close()


def interrupted_restore(conn, files, key):
    """What an earlier restore of this dump into this database left when it was killed, from SRC.restoring.json:
    its safety dump (checksum verified or not) and whether the database still equals it. None if there was none.
    Refuses while that restore still runs."""
    entry = _read_restoring(files).get(key)
    if not isinstance(entry, dict):
        return None
    alive = entry.get("started") is not None and _process_start(entry.get("pid") or 0) == entry.get("started")
    if alive:
        raise RollbackError("db: another restore of %s into %s is under way (pid %s, since %s); wait for it to end "
                            "(nothing was changed)" % (files.path, conn.where(), entry.get("pid"),
                                                       entry.get("started_at")), database=conn.db)
    out = {key_: entry.get(key_) for key_ in ("pid", "started_at", "safety_dump", "mode", "jobs")}
    safety_meta = None
    if entry.get("safety_dump"):
        try:
            safety_meta = check_dump(DumpFiles(entry["safety_dump"]), entry.get("safety_sha256"))
            out["safety_dump_state"] = "intact (its checksum was verified)"
        except RollbackError as err:
            out["safety_dump_state"] = "not usable: %s" % err.msg
    else:
        out["safety_dump_state"] = "none was taken"
    if safety_meta is not None:
        why = _safety_state(conn, safety_meta)
        out["database_state"] = ("unchanged: it still holds what the safety dump holds (the interrupted restore was "
                                 "rolled back)" if why is None else
                                 "partially restored: it differs from the safety dump (%s)" % why)
    else:
        out["database_state"] = "unknown (no usable safety dump to compare it with)"
    out["message"] = ("an earlier restore of %s into %s was interrupted (pid %s, started %s): the database was %s; "
                      "its safety dump %s is %s" % (files.path, conn.where(), out["pid"], out["started_at"],
                                                    out["database_state"], out["safety_dump"] or "-",
                                                    out["safety_dump_state"]))
    return out, safety_meta


def restore(conn, files, mode="clean", jobs=1, block_writes=False, safety_dest=None, check=False,
            expected_sha=None, exact=False, revert=True):
    """Restore a checked dump into conn.db. Returns the result dict; raises RollbackError with a report.

    safety_dest: where to dump the target first (None: no safety dump). revert: on failure put the safety dump
    back (the restore point framework reverts by itself and passes revert=False)."""
    started = time.monotonic()
    timings = {}
    PROGRESS.at("checking the dump %s" % files.path)
    meta = check_dump(files, expected_sha)
    timings["checksum"] = round(time.monotonic() - started, 3)
    if mode not in MODES:
        raise RollbackError("mode: %r is not one of %s" % (mode, ", ".join(MODES)))
    safety_files, notes = None, []
    if safety_dest:
        safety_files, notes = prepare_output("safety_dest", safety_dest, "custom", check=check)
        if safety_files.path == files.path:
            raise RollbackError("safety_dest: %s is the dump being restored (src); give another path (nothing was "
                                "changed)" % safety_files.path, safety_dest=safety_files.path)
    PROGRESS.at("planning the restore of %s into %s" % (files.path, conn.where()))
    plan = inspect_target(conn, files, meta, mode)
    major = plan.pop("major")
    key = plan.pop("target_key")
    found = interrupted_restore(conn, files, key)
    interrupted, old_safety = found if found else (None, None)
    result = {"changed": plan["changed"], "plan": plan, "safety_dump": None, "database": conn.db, "mode": mode}
    warnings = list(notes)
    if interrupted:
        result["interrupted"] = interrupted
        warnings.append(interrupted["message"])
    if warnings:
        result["notes"] = warnings
    if check or not plan["changed"]:
        if check and plan["changed"] and safety_dest and plan["exists"]:
            result["safety_dump"] = interrupted["safety_dump"] if old_safety else safety_files.path
        if interrupted and not check:
            problem = _write_restoring(files, key, None)
            if problem:
                warnings.append(problem)
        timings["plan"] = round(time.monotonic() - started - timings["checksum"], 3)
        result["seconds"] = dict(timings, total=round(time.monotonic() - started, 3))
        return result
    tables = sorted(meta["tables"])
    if safety_files and plan["exists"] and not old_safety:
        # Before write_block: a safety dump that cannot fit is refused while nothing is changed yet.
        check_space(conn, safety_files, {"format": "custom"}, "safety_dest")
    blocker = WriteBlock(conn) if block_writes and plan["exists"] else None
    release_problem = None
    recorded = False
    try:
        if blocker:
            PROGRESS.at("blocking writes to %s" % conn.where(),
                        state="%s may be read-only by default: run ALTER DATABASE %s RESET "
                              "default_transaction_read_only" % (conn.db, conn.db))
            blocker.engage()
        safety_meta = None
        if old_safety is not None and plan["exists"]:
            # The database as it was before the interrupted restore: a new dump now would hold a half restore.
            safety_meta = old_safety
            result["safety_dump"] = interrupted["safety_dump"]
        elif safety_files and plan["exists"]:
            begun = time.monotonic()
            try:
                safety_meta = dump(conn, safety_files, {"format": "custom", "compress": None}, option="safety_dest")
            except RollbackError as err:
                raise RollbackError("the safety dump of %s failed, so nothing was restored and %s was not changed: %s"
                                    % (conn.where(), conn.db, err.msg), **dict(err.details, database=conn.db))
            result["safety_dump"] = safety_files.path
            timings["safety_dump"] = round(time.monotonic() - begun, 3)
        entry = {"pid": os.getpid(), "started": _process_start(os.getpid()), "src": files.path, "mode": mode,
                 "jobs": jobs, "started_at": utc_now().isoformat(timespec="seconds"),
                 "safety_dump": result["safety_dump"], "safety_sha256": safety_meta["sha256"] if safety_meta else None}
        # The restore point framework journals its own runs (revert=False): the record is pg_restore's.
        problem = _write_restoring(files, key, entry) if revert else None
        recorded = revert and problem is None
        if problem:
            warnings.append(problem + "; an interruption of this restore could not be reported by the next run")
        PROGRESS.at("restoring %s into %s" % (files.path, conn.where()),
                    state="%s may be partially restored%s" % (
                        conn.db, "; the safety dump %s holds it as it was" % result["safety_dump"]
                        if result["safety_dump"] else ""))
        begun = time.monotonic()
        try:
            if mode == "recreate" or exact or not plan["exists"]:
                state = rebuild(conn, files.path, meta, jobs, skip_settings=(WriteBlock.SETTING,) if blocker else ())
                timings["restore"] = round(time.monotonic() - begun, 3)
            else:
                rc, _out, err = conn.run_tool(_restore_argv(conn, major, conn.db, files.path, jobs, clean=True,
                                                            single=jobs <= 1))
                timings["restore"] = round(time.monotonic() - begun, 3)
                if rc != 0:
                    raise RollbackError("pg_restore failed (exit %s): %s" % (rc, err.strip()[-1500:]))
                begun = time.monotonic()
                state = _state_in(conn, conn.db, tables)
                timings["verify"] = round(time.monotonic() - begun, 3)
                bad = count_mismatches(meta["tables"], state["counts"])
                if bad:
                    raise RollbackError("row counts after the restore differ from the dump: %s" % json.dumps(bad))
        except Terminated:
            raise _failed(conn, RollbackError("stopped by SIGTERM (pg_restore was stopped as well)"), mode, jobs,
                          safety_meta, result, revert, blocker)
        except RollbackError as err:
            raise _failed(conn, err, mode, jobs, safety_meta, result, revert, blocker)
        result["verified"] = {"tables": len(tables), "rows": sum(state["counts"].values())}
        problem = write_marker(files, meta, state)
        if problem:
            warnings.append(problem)
    finally:
        if recorded or interrupted:
            problem = _write_restoring(files, key, None)
            if problem:
                warnings.append(problem)
        if blocker:
            release_problem = blocker.release()
    if warnings:
        result["notes"] = warnings
    if release_problem:
        raise RollbackError("%s was restored, but %s" % (conn.db, release_problem), **result)
    result["seconds"] = dict(timings, total=round(time.monotonic() - started, 3))
    return result


def _failed(conn, err, mode, jobs, safety_meta, result, revert, blocker):
    """_failed_state(), its message completed with the state of the safety dump (checksum verified again) and of
    an earlier interrupted restore."""
    failure = _failed_state(conn, err, mode, jobs, safety_meta, result, revert, blocker)
    extra = []
    if result.get("interrupted"):
        extra.append("before this run the database was already %s (an earlier restore was interrupted)"
                     % result["interrupted"]["database_state"])
    if safety_meta is not None and result.get("safety_dump"):
        try:
            check_dump(DumpFiles(result["safety_dump"]), safety_meta["sha256"])
            extra.append("the safety dump %s is intact (its checksum was verified)" % result["safety_dump"])
        except RollbackError as problem:
            extra.append("the safety dump is damaged: %s" % problem.msg)
    if not extra:
        return failure
    failure.details["safety_dump_state"] = extra[-1]
    return RollbackError("%s; %s" % (failure.msg, "; ".join(extra)), **failure.details)


def _failed_state(conn, err, mode, jobs, safety_meta, result, revert, blocker):
    """Decide what state the database is in after a failed restore, put the safety dump back if needed."""
    details = dict(result, error=err.msg)
    if mode == "recreate" or not result["plan"]["exists"]:
        details["state"] = "unchanged: the dump was restored into a new database that was dropped"
        return RollbackError("restore of %s into %s failed: %s; the database was not changed (the dump was "
                             "restored into a scratch database that was dropped)" % (
                                 result["plan"]["src"], conn.where(), err.msg), **details)
    if safety_meta is not None:
        session = conn.connect()
        try:
            with session.cursor() as cur:
                session.set_session(isolation_level="REPEATABLE READ", readonly=True)
                why = _pg.changes_since(cur, dict(safety_meta["source"], counts=safety_meta["tables"]),
                                        sorted(safety_meta["tables"]))
        finally:
            session.rollback()
            session.close()
        if why is None:
            details["state"] = "unchanged: the failed restore ran in one transaction and was rolled back"
            return RollbackError("restore of %s into %s failed: %s; the database was not changed (checked against "
                                 "the safety dump %s)" % (result["plan"]["src"], conn.where(), err.msg,
                                                          result["safety_dump"]), **details)
    if not revert or safety_meta is None:
        details["state"] = "UNKNOWN: partially restored"
        return RollbackError("restore of %s into %s failed midway: %s; the database is partially restored%s"
                             % (result["plan"]["src"], conn.where(), err.msg,
                                "" if safety_meta is None else "; safety dump: %s" % result["safety_dump"]),
                             **details)
    try:
        rebuild(conn, result["safety_dump"], safety_meta, jobs,
                skip_settings=(WriteBlock.SETTING,) if blocker else ())
    except RollbackError as revert_err:
        details["state"] = "UNKNOWN: partially restored, and restoring the safety dump failed"
        return RollbackError("restore of %s into %s failed midway (%s) and restoring the safety dump %s also failed "
                             "(%s); the database is partially restored: restore %s with mode=recreate once the cause "
                             "is fixed" % (result["plan"]["src"], conn.where(), err.msg, result["safety_dump"],
                                           revert_err.msg, result["safety_dump"]), **details)
    details["state"] = "reverted to the safety dump"
    return RollbackError("restore of %s into %s failed midway: %s; the safety dump %s was restored and its row counts "
                         "verified: the database is back as it was before" % (
                             result["plan"]["src"], conn.where(), err.msg, result["safety_dump"]), **details)
