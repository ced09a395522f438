# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small filesystem primitives: hashing, durable atomic writes, private directories."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile

from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import kind_of

CHUNK = 1024 * 1024


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(data):
    """The byte form a manifest's own sha256 is computed over: sorted keys, no spaces."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path, mode=0o700):
    """Create the directory (and parents) if needed and force its mode."""
    os.makedirs(path, mode=mode, exist_ok=True)
    os.chmod(path, mode)
    return path


def atomic_write(path, data, mode=0o600, owner=None, prefix=".tmp-"):
    """Write bytes so that readers see the old or the new file, never a torn one, even after a crash.
    `owner` (uid, gid) keeps the owner of a file replaced in place; `prefix` names the temporary file, which a
    kill can leave behind (the store's recovery knows its own prefix)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            if owner is not None:
                os.fchown(stream.fileno(), *owner)
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def append_line(path, line, mode=0o600):
    """Append one line durably (the journal is append-only). A last line torn by a crash is closed first, so the new
    line is never glued to it and stays readable."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        data = line.encode("utf-8") + b"\n"
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_path(path):
    """What is at a path, in words, for messages that refuse to touch it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "nothing"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        return "a symbolic link to %s%s" % (target, "" if os.path.exists(path) else " (dangling)")
    if stat.S_ISDIR(st.st_mode):
        names = sorted(os.listdir(path))
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return "a directory holding %d entr%s (%s)" % (len(names), "y" if len(names) == 1 else "ies", shown) \
            if names else "an empty directory"
    if stat.S_ISREG(st.st_mode):
        return "a regular file of %d bytes" % st.st_size
    return kind_of(st.st_mode)


def free_bytes(path):
    """Bytes an unprivileged writer may still use on the filesystem holding path (or its nearest existing parent)."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def human(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return ("%d %s" % (nbytes, unit)) if unit == "bytes" else ("%.1f %s" % (nbytes, unit))
        nbytes /= 1024.0
    return str(nbytes)
