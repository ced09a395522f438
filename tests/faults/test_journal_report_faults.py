"""Bad input and faults of the audit trail: rollback_journal (its own options: the store's journal format belongs to
the store), the rollback_decision filter, and the rollback_report callback writing into a directory that is not
one, is read-only, or is full.

A journal case runs the real module and asserts nothing at all changed, the store included. A report case runs a
real ansible-playbook with the callback enabled: the run's outcome stands, a warning says why no report was written,
and no half report (no file, no staged temporary) is left behind.
"""
import json
import os
import subprocess
import sys

import pytest

from fault_host import SECRET
from harness import ROOT, assert_clear_failure, changed_entries, run_module, tree_state

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

from playbook_runner import local_inventory, run_playbook  # noqa: E402  pylint: disable=wrong-import-position
from ansible.errors import AnsibleFilterError  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.fleetops.rollback.plugins.filter.rollback_decision import (  # noqa: E402
    rollback_decision,
)

API_TOKEN = "report-tok-61d0c3a9f2"


def special(host):
    """Things that are not a directory where a directory is expected, inside the host tree."""
    base = os.path.join(host.base, "special")
    paths = {"fifo": os.path.join(base, "store.fifo"), "file": os.path.join(base, "store.file"),
             "dangling": os.path.join(base, "store-link"), "under-file": os.path.join(base, "store.file", "sub")}
    if not os.path.isdir(base):
        os.makedirs(base)
        os.mkfifo(paths["fifo"])
        with open(paths["file"], "w", encoding="utf-8") as stream:
            stream.write("not a store\n")
        os.symlink("gone", paths["dangling"])
    paths["device"] = "/dev/null"
    return paths


def journal(**extra):
    return dict({"outcome": "failed", "run_id": "rb-1", "create": True}, **extra)


# (id, args (a function of the special paths and the store path), mentions)
JOURNAL_BAD = [
    ("store-relative", lambda s, store: journal(store_path="var/lib/fleetops/rollback"),
     ["store_path", "'var/lib/fleetops/rollback'", "absolute path"]),
    ("store-empty", lambda s, store: journal(store_path=""), ["store_path", "''", "not a path"]),
    ("store-nul", lambda s, store: journal(store_path=store + "\x00x"), ["store_path", "NUL"]),
    ("store-fifo", lambda s, store: journal(store_path=s["fifo"]), ["store_path", "store.fifo", "a FIFO"]),
    ("store-fifo-no-create", lambda s, store: journal(store_path=s["fifo"], create=False),
     ["store_path", "store.fifo", "a FIFO"]),
    ("store-regular-file", lambda s, store: journal(store_path=s["file"]),
     ["store_path", "store.file", "a regular file, not a directory"]),
    ("store-device", lambda s, store: journal(store_path=s["device"]),
     ["store_path", "'/dev/null'", "a character device"]),
    ("store-dangling-link", lambda s, store: journal(store_path=s["dangling"]),
     ["store_path", "store-link", "symbolic link to 'gone', which does not exist"]),
    ("store-under-a-file", lambda s, store: journal(store_path=s["under-file"]),
     ["store_path", "store.file/sub", "nothing can be made under it"]),
    ("outcome-empty", lambda s, store: journal(store_path=store, outcome=""), ["outcome", "''", "printable text"]),
    ("outcome-blank", lambda s, store: journal(store_path=store, outcome="   "), ["outcome", "'   '"]),
    ("outcome-nul", lambda s, store: journal(store_path=store, outcome="fail\x00ed"), ["outcome", "'fail\\x00ed'"]),
    ("outcome-newline", lambda s, store: journal(store_path=store, outcome="failed\n{\"forged\": 1}"),
     ["outcome", "printable text"]),
    ("outcome-huge", lambda s, store: journal(store_path=store, outcome="x" * 5000), ["outcome", "1 to 200"]),
    ("event-empty", lambda s, store: journal(store_path=store, event=""), ["event", "''"]),
    ("run-id-tab", lambda s, store: journal(store_path=store, run_id="rb\t1"), ["run_id", "'rb\\t1'"]),
    ("run-type-unicode-control", lambda s, store: journal(store_path=store, run_type="drill\u200b\u2028"),
     ["run_type", "printable text"]),
    ("reason-nul", lambda s, store: journal(store_path=store, reason="INC-1\x00"), ["reason", "NUL"]),
    ("step-nul", lambda s, store: journal(store_path=store, step="\x00"), ["step", "NUL"]),
    ("details-actor", lambda s, store: journal(store_path=store, details={"actor": "someone-else"}),
     ["details.actor", "set by the journal itself"]),
    ("details-ts", lambda s, store: journal(store_path=store, details={"ts": "1999-01-01"}), ["details.ts"]),
    ("details-event", lambda s, store: journal(store_path=store, details={"event": "capture"}), ["details.event"]),
    ("create-word", lambda s, store: journal(store_path=store, create="perhaps"), ["create", "perhaps"]),
]


@pytest.mark.bad_input("rollback_journal")
@pytest.mark.parametrize("make, mentions", [pytest.param(a, m, id=i) for i, a, m in JOURNAL_BAD])
def test_rollback_journal_refuses_bad_input_and_writes_nothing(fault_host, make, mentions):
    args = make(special(fault_host), fault_host.store)
    before = tree_state(fault_host.base)  # the store included: no journal line, no store made
    run = run_module("rollback_journal", dict(args, secret_values=[SECRET], error="db password %s" % SECRET))
    assert_clear_failure(run, *mentions, secrets=(SECRET,))
    assert not changed_entries(before, tree_state(fault_host.base))


# ------------------------------------------------------------------------------------------ the decision filter
DECISION_BAD = [
    ("signals-not-a-dict", "error_rate=0.2", None, False, ["signals", "'error_rate=0.2'", "not a dictionary"]),
    ("signal-unknown", {"eror_rate": 0.2}, None, False, ["signals", "'eror_rate'", "unknown signal"]),
    ("signal-unicode-name", {"\u00e9rror_rate": 0.2}, None, False, ["unknown signal", "'\u00e9rror_rate'"]),
    ("signal-huge-int", {"error_rate": 10 ** 400}, None, False, ["signals.error_rate", "not a finite number"]),
    ("signal-nan-text", {"latency_p95": "NaN"}, None, False, ["signals.latency_p95", "'NaN'", "not a finite"]),
    ("signal-nul", {"error_rate": "0.1\x00"}, None, False, ["signals.error_rate", "'0.1\\x00'", "not a number"]),
    ("signal-list", {"error_rate": [0.1]}, None, False, ["signals.error_rate", "[0.1]", "list"]),
    ("signal-negative-count", {"health_failures": -1}, None, False, ["signals.health_failures", "-1", "negative"]),
    ("signal-percent", {"error_rate": 12}, None, False, ["signals.error_rate", "12", "between 0 and 1"]),
    ("matrix-number", {"error_rate": 0.1}, 5, False, ["matrix", "5", "not a list of rules"]),
    ("matrix-id-list", {"error_rate": 0.1}, [{"id": ["x"], "signal": "error_rate", "threshold": 1,
                                             "decision": "standard"}], False, ["matrix[0].id", "['x']"]),
    ("matrix-id-int-key", {"error_rate": 0.1}, {7: {"signal": "error_rate", "threshold": 1, "decision": "standard"}},
     False, ["matrix", "7", "not a rule id"]),
    ("matrix-op-list", {"error_rate": 0.1}, [{"id": "x", "signal": "error_rate", "op": [">"], "threshold": 1,
                                             "decision": "standard"}], False, ["(rule x).op", "['>']"]),
    ("matrix-threshold-dict", {"error_rate": 0.1}, [{"id": "x", "signal": "error_rate", "threshold": {"a": 1},
                                                    "decision": "standard"}], False,
     ["(rule x).threshold", "{'a': 1}", "not a number"]),
    ("matrix-factor-huge", {"error_rate": 0.1}, [{"id": "x", "signal": "error_rate", "baseline": "b",
                                                 "factor": 10 ** 400, "decision": "standard"}], False,
     ["(rule x).factor", "not a finite number"]),
    ("matrix-decision-none", {"error_rate": 0.1}, [{"id": "x", "signal": "error_rate", "threshold": 1,
                                                   "decision": "none"}], False, ["(rule x).decision", "'none'"]),
    ("matrix-signal-shell", {"error_rate": 0.1}, [{"id": "x", "signal": "$(reboot)", "threshold": 1,
                                                  "decision": "standard"}], False,
     ["(rule x).signal", "'$(reboot)'", "not a signal name"]),
    ("replace-word", {"error_rate": 0.1}, None, "yes", ["replace", "'yes'", "not a boolean"]),
]


@pytest.mark.bad_input("rollback_decision")
@pytest.mark.parametrize("signals, matrix, replace, mentions",
                         [pytest.param(s, m, r, n, id=i) for i, s, m, r, n in DECISION_BAD])
def test_rollback_decision_refuses_bad_input_with_a_filter_error(fault_host, signals, matrix, replace, mentions):
    """The filter raises AnsibleFilterError (Ansible shows its message as is), never a TypeError or OverflowError
    that Ansible would wrap as an unexpected templating error."""
    before = fault_host.state()
    with pytest.raises(AnsibleFilterError) as err:
        rollback_decision(signals, matrix=matrix, replace=replace)
    message = str(err.value)
    assert message.startswith("rollback_decision: ")
    for needle in mentions:
        assert needle in message, message
    assert not changed_entries(before, fault_host.state())


# ------------------------------------------------------------------------------------------ the report callback
PLAYBOOK = """
- hosts: all
  gather_facts: false
  vars:
    api_token: %s
  tasks:
    - name: Begin the rollback run
      ansible.builtin.set_fact:
        rollback_run: {id: rb-fault-1, type: immediate, reason: INC-9}
    - name: Decide
      ansible.builtin.set_fact:
        decision: "{{ {'error_rate': 0.2} | fleetops.rollback.rollback_decision }}"
    - name: Decide on bad input
      ansible.builtin.set_fact:
        bad_decision: "{{ {'error_rate': 12} | fleetops.rollback.rollback_decision }}"
      ignore_errors: true
""" % API_TOKEN


def run_reported(fault_host, report_dir):
    inventory = os.path.join(fault_host.base, "inventory.ini")
    if not os.path.exists(inventory):
        local_inventory(inventory, {"web1": {}})
    return run_playbook(PLAYBOOK, inventory, env={
        "ANSIBLE_CALLBACKS_ENABLED": "result_collector,fleetops.rollback.rollback_report",
        "FLEETOPS_ROLLBACK_REPORT_DIR": report_dir}, timeout=300)


def assert_run_stood_and_warned(run, *mentions):
    out = run.stdout + run.stderr
    assert run.rc == 0, out
    # The filter's own message reached the user through Ansible, not a wrapped "unexpected" error.
    bad = run.result("Decide on bad input", "web1")
    assert "rollback_decision: signals.error_rate: 12 is not a fraction between 0 and 1" in bad["msg"], bad
    assert run.result("Decide", "web1")["ansible_facts"]["decision"]["decision"] == "immediate"
    flat = " ".join(out.split())
    assert "rollback_report: the report of this run was not written" in flat, out
    for needle in mentions:
        assert needle in flat, out
    for bad_word in ("Traceback", "unexpected error", "Unexpected templating"):
        assert bad_word not in out
    assert API_TOKEN not in out


REPORT_BAD = [
    ("report-dir-fifo", "fifo", ["a FIFO (named pipe), not a directory"]),
    ("report-dir-regular-file", "file", ["a regular file, not a directory"]),
    ("report-dir-dangling-link", "dangling", ["a symbolic link to 'gone', which does not exist"]),
    ("report-dir-under-a-file", "under-file", ["is a regular file, not a directory, so nothing can be made"]),
    ("report-dir-device", "device", ["a character device"]),
]


@pytest.mark.bad_input("rollback_report")
@pytest.mark.parametrize("which, mentions", [pytest.param(w, m, id=i) for i, w, m in REPORT_BAD])
def test_a_report_dir_that_is_not_a_directory_is_refused_and_the_run_stands(fault_host, which, mentions):
    paths = special(fault_host)
    local_inventory(os.path.join(fault_host.base, "inventory.ini"), {"web1": {}})
    before = tree_state(fault_host.base)
    run = run_reported(fault_host, paths[which])
    assert_run_stood_and_warned(run, "report_dir %s" % paths[which], *mentions)
    assert not changed_entries(before, tree_state(fault_host.base))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted in the test's directory (we are root), unmounted at the end whatever happens."""
    mountpoint = tmp_path / "reports-fs"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mountpoint)], check=True)
    try:
        yield str(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(path):
    """Write to `path` until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def _entries(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


@pytest.mark.fault("report-dir-read-only")
def test_a_read_only_report_dir_gets_no_half_report_and_the_run_stands(fault_host, small_tmpfs):
    reports = os.path.join(small_tmpfs, "reports")
    os.mkdir(reports)
    subprocess.run(["mount", "-o", "remount,ro", small_tmpfs], check=True)
    run = run_reported(fault_host, reports)
    assert_run_stood_and_warned(run, "report_dir %s" % reports, "read-only", "no report file was written")
    assert _entries(reports) == []


@pytest.mark.fault("report-dir-full")
def test_a_full_report_filesystem_gets_no_half_report_and_the_run_stands(fault_host, small_tmpfs):
    reports = os.path.join(small_tmpfs, "reports")
    os.mkdir(reports)
    filler = os.path.join(small_tmpfs, "filler")
    fill(filler)
    run = run_reported(fault_host, reports)
    assert_run_stood_and_warned(run, "report_dir %s" % reports, "full", "no report file was written")
    # Neither a report file nor a staged temporary is left: all or nothing.
    assert _entries(reports) == []
    # With room again the same run writes all three files.
    os.unlink(filler)
    again = run_reported(fault_host, reports)
    assert again.rc == 0
    assert _entries(reports) == ["report-rb-fault-1.json", "report-rb-fault-1.md", "report-rb-fault-1.svg"]
    with open(os.path.join(reports, "report-rb-fault-1.json"), encoding="utf-8") as stream:
        assert API_TOKEN not in stream.read()
    json.dumps(again.results)  # the run's results are plain data


@pytest.mark.fault("report-dir-missing-parent-cleaned")
def test_a_report_dir_made_by_the_callback_is_removed_when_nothing_could_be_written(fault_host, small_tmpfs):
    """A missing report directory is made for the report; when the report cannot be written there after all (the
    filesystem is full), the directories it made are removed again: the tree is as before."""
    filler = os.path.join(small_tmpfs, "filler")
    fill(filler)
    reports = os.path.join(small_tmpfs, "a", "b", "reports")
    run = run_reported(fault_host, reports)
    out = " ".join((run.stdout + run.stderr).split())
    assert run.rc == 0
    assert "rollback_report: the report of this run was not written: report_dir %s" % reports in out, out
    assert _entries(small_tmpfs) == ["filler"]
