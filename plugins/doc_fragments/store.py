# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The common arguments every store-using module accepts (merged in module_utils/_common.py).
    DOCUMENTATION = r"""
options:
  store_path:
    description: The restore point store on the host. Created 0700 on first capture.
    type: path
    default: /var/lib/fleetops/rollback
  lock_timeout:
    description: Seconds to wait for a store lock held by another run before failing. C(0) fails at once.
    type: float
    default: 0
  force_unlock:
    description:
      - Replace a lock whose recorded holder process is gone but whose lock is still held. A live holder is never
        overridden. A lock left by a holder that died is recovered automatically and journaled.
    type: bool
    default: false
"""
