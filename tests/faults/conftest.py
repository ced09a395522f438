import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fault_host import FaultHost  # noqa: E402


@pytest.fixture
def fault_host(tmp_path):
    return FaultHost(tmp_path)
