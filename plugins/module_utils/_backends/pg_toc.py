# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the table of contents of a pg_dump archive (custom format file, or directory format toc.dat).

Every dump is followed by reading its TOC (which tables' data it holds, which relations it would recreate).
`pg_restore -l` does that in a process of its own (about 35 ms a dump); reading the few kilobytes of the
archive header here takes about 1 ms and gives each entry's kind, schema and name as separate fields, so
names holding dots or spaces need no guessing. Archive versions 1.10 to 1.16 (PostgreSQL 9.0 to 17) are
read; anything else raises TocUnsupported, and the caller falls back to `pg_restore -l`.

Layout (pg_backup_archiver.c, ReadHead and ReadToc): "PGDMP", version bytes, int and offset sizes, format,
compression, creation date, database name, server and pg_dump versions, then the entry count and the
entries. An int is a sign byte and `int size` little-endian bytes; a string is an int length (-1 is NULL)
and that many bytes.
"""

from __future__ import annotations

import os

# The format byte of the header: 1 in a custom archive; toc.dat of a directory archive says 3 (PostgreSQL 15
# writes it so), 5 being the directory format's own code.
FORMAT_CODES = {"custom": (1,), "directory": (3, 5)}
OLDEST, NEWEST = (1, 10, 0), (1, 16, 0)
# Enough for the TOC of a dump of thousands of objects; a larger one is read on demand.
_CHUNK = 1 << 20


class TocUnsupported(Exception):
    """The archive is not one this reader knows (version, format or layout); use `pg_restore -l`."""


class _Reader:
    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.pos = 0
        self.int_size = 4

    def take(self, count):
        while len(self.buf) - self.pos < count:
            more = self.stream.read(_CHUNK)
            if not more:
                raise TocUnsupported("the archive ends inside its table of contents")
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
        chunk = self.buf[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def byte(self):
        return self.take(1)[0]

    def int(self):
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def str(self):
        length = self.int()
        if length < 0:
            return None
        if length > 1 << 30:
            raise TocUnsupported("implausible string length %d in the table of contents" % length)
        return self.take(length).decode("utf-8", "replace")


def _toc_path(path, fmt):
    if fmt == "directory":
        return os.path.join(path, "toc.dat")
    return path


def read_entries(path, fmt):
    """[(desc, namespace, tag)] of every TOC entry, in archive order; TocUnsupported when not readable here."""
    if fmt not in FORMAT_CODES:
        raise TocUnsupported("format %r" % (fmt,))
    try:
        with open(_toc_path(path, fmt), "rb") as stream:
            return _read(_Reader(stream), fmt)
    except OSError as err:
        raise TocUnsupported("cannot read %s: %s" % (path, err))


def _read(reader, fmt):
    if reader.take(5) != b"PGDMP":
        raise TocUnsupported("no PGDMP magic")
    version = (reader.byte(), reader.byte(), reader.byte())
    if not OLDEST <= version <= NEWEST:
        raise TocUnsupported("archive version %d.%d.%d" % version)
    reader.int_size = reader.byte()
    off_size = reader.byte()
    if not 1 <= reader.int_size <= 8 or not 1 <= off_size <= 8:
        raise TocUnsupported("integer size %d, offset size %d" % (reader.int_size, off_size))
    if reader.byte() not in FORMAT_CODES[fmt]:
        raise TocUnsupported("the archive is not in %s format" % fmt)
    if version >= (1, 15, 0):
        reader.byte()  # compression algorithm
    else:
        reader.int()  # compression level
    for unused in range(7):  # creation date: sec, min, hour, mday, mon, year, isdst
        reader.int()
    for unused in range(3):  # database name, server version, pg_dump version
        reader.str()
    count = reader.int()
    if count < 0:
        raise TocUnsupported("negative entry count")
    entries = []
    for unused in range(count):
        if reader.int() <= 0:  # dump id
            raise TocUnsupported("entry id out of range")
        reader.int()  # had a data dumper
        reader.str()  # table oid
        reader.str()  # oid
        tag = reader.str()
        desc = reader.str()
        if version >= (1, 11, 0):
            reader.int()  # section
        for unused_field in range(3):  # definition, drop statement, copy statement
            reader.str()
        namespace = reader.str()
        reader.str()  # tablespace
        if version >= (1, 14, 0):
            reader.str()  # table access method
        if version >= (1, 16, 0):
            reader.int()  # relkind
        reader.str()  # owner
        reader.str()  # "false": with oids
        while reader.str() is not None:  # dependencies, ended by NULL
            pass
        if fmt == "custom":
            reader.take(1 + off_size)  # data state and offset
        else:
            reader.str()  # data file name
        entries.append((desc, namespace, tag))
    return entries
