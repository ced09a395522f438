"""Shared test setup: make the collection importable as ansible_collections.fleetops.rollback."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "fleetops", "rollback")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink("../../..", LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
# Helpers shared by unit tests in every directory of the mirrored tree (tree_listing).
UNIT_HELPERS = os.path.join(ROOT, "tests", "unit")
if UNIT_HELPERS not in sys.path:
    sys.path.append(UNIT_HELPERS)

# Property tests draw the same examples on every run (a red CI run always means a change broke something, never a new
# draw); FLEETOPS_HYPOTHESIS=explore draws new ones, for a search by hand.
# On a busy 2-core machine drawing examples can be slow: that is the machine, not a failure of the code.
try:
    from hypothesis import HealthCheck as _HealthCheck, settings as _hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is in requirements.txt
    _hypothesis_settings = None
if _hypothesis_settings is not None:
    _hypothesis_settings.register_profile("ci", derandomize=True, suppress_health_check=[_HealthCheck.too_slow])
    _hypothesis_settings.register_profile("explore", derandomize=False, suppress_health_check=[_HealthCheck.too_slow])
    _hypothesis_settings.load_profile(os.environ.get("FLEETOPS_HYPOTHESIS", "ci"))
