# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The standard wording of the attributes. A module that uses it gives only the support (and details); a
    # module whose own words say more gives its description too, which wins over this one.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description: When run twice in a row outside check mode with the same arguments, the second invocation
      indicates no change.
"""

    # Every module of the collection runs on POSIX hosts.
    PLATFORM = r"""
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""

    # A module that only observes (health_gate, rollback_watch): check mode runs as usual, there is nothing to diff,
    # and it never reports a change. Goes with DOCUMENTATION, which words these attributes.
    OBSERVER = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
"""
