"""The rollback_decision filter: the decision of module_utils/_guard/decision.py, its errors as Ansible's."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fleetops.rollback.plugins.filter.rollback_decision import FilterModule


def test_filter_raises_ansible_filter_error():
    flt = FilterModule().filters()["rollback_decision"]
    assert flt({"error_rate": 0.2})["decision"] == "immediate"
    assert flt({"error_rate": 0.2}, matrix=[{"id": "error-rate-high", "threshold": 0.25}])["decision"] == "none"
    with pytest.raises(AnsibleFilterError, match=r"rollback_decision: signals: unknown signal 'latency' \(value 3\)"):
        flt({"latency": 3})
