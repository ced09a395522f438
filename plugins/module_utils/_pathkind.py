# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is at a path, said plainly, and the check that a directory option names a directory (or a place one can
be made): a FIFO, a device, a file or a dangling link where a directory is expected is refused with a message that
names the option, the path and what is there, before anything is written. Standard library only."""

from __future__ import annotations

import os
import stat

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISLNK, "a symbolic link"))


def kind_of(mode):
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a special file"


def directory_problem(path):
    """None when `path` is a directory or can be made one (its nearest existing ancestor is a directory), else a
    sentence saying what is in the way (without the path: the caller names the option and the path)."""
    current = path
    while True:
        try:
            mode = os.stat(current).st_mode
        except FileNotFoundError:
            if os.path.islink(current):
                return "%s is a symbolic link to %r, which does not exist" % (
                    "it" if current == path else repr(current), os.readlink(current))
            parent = os.path.dirname(current)
            if parent == current:
                return None
            current = parent
            continue
        except NotADirectoryError:
            current = os.path.dirname(current)
            continue
        except OSError as err:
            return "%s cannot be examined: %s" % ("it" if current == path else repr(current), err.strerror or err)
        if stat.S_ISDIR(mode):
            return None
        if current == path:
            return "it is %s, not a directory" % kind_of(mode)
        return "%r is %s, not a directory, so nothing can be made under it" % (current, kind_of(mode))
