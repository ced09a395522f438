# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The common arguments every store-using module accepts (merged in module_utils/_common.py).
    DOCUMENTATION = r"""
options:
  store_path:
    description:
      - The restore point store on the host. Created 0700 by the first capture, in a new or empty directory only.
      - A path that holds anything else (a file, a directory with other files in it, a symlink to one) is refused and
        left as it is. Runs that restore, mark, prune or read never create a store.
    type: path
    default: /var/lib/fleetops/rollback
  lock_timeout:
    description: Seconds to wait for a store lock held by another run before failing. C(0) fails at once.
    type: float
    default: 0
  force_unlock:
    description:
      - Replace a lock whose recorded holder process is gone but whose kernel lock is still held by a process this
        machine cannot see (another host sharing the store).
      - The kernel is trusted over the record. When C(/proc/locks) shows a live process on this machine holding the
        lock, the run is refused and names that process, even when the recorded pid is dead (a child that inherited
        the lock file holds it). A lock left by a holder that died is recovered automatically and journaled.
    type: bool
    default: false
"""
