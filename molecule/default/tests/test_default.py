"""Verify of the `default` drill, on every host of the fleet: release 1 serves again after the immediate
rollback, its files are back, and the restore point store is private and tells what happened."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tests"))

import drill_checks  # noqa: E402  pylint: disable=wrong-import-position


def test_release_1_serves_healthy(host):
    drill_checks.assert_release_1_serving(host)


def test_release_1_files_are_back(host):
    drill_checks.assert_release_1_files(host)


def test_store_is_private(host):
    drill_checks.assert_store_private(host)


def test_one_real_rollback_then_noops(host):
    drill_checks.assert_rolled_back_once(host, "molecule drill (default)", later_noops=True)


def test_no_secret_in_journal_or_manifests(host):
    drill_checks.assert_no_secret_in_records(host)
