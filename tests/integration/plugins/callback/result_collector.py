# Test-only callback: writes every task result as one JSON line so tests can assert on real runs.
from __future__ import annotations

DOCUMENTATION = r"""
name: result_collector
type: aggregate
short_description: Write each task result to a JSON lines file (tests only)
description:
  - Appends one JSON object per host and task to the file named by C(FLEETOPS_TEST_RESULTS).
requirements:
  - enable in configuration
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_collector"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("FLEETOPS_TEST_RESULTS")

    def _write(self, status, result):
        if not self._path:
            return
        task = result._task
        record = {
            "host": result._host.get_name(),
            "task": task.get_name(),
            "action": task.action,
            "status": status,
            "result": self._strip(result._result),
        }
        with open(self._path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, default=str) + "\n")

    @staticmethod
    def _strip(data):
        return {k: v for k, v in data.items() if not k.startswith("_ansible") or k == "_ansible_no_log"}

    def v2_runner_on_ok(self, result):
        self._write("changed" if result._result.get("changed") else "ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write("failed", result)

    def v2_runner_on_skipped(self, result):
        self._write("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._write("unreachable", result)
