"""Faults around the restore point store and the restore itself, each reproduced for real on a real module process:
SIGKILL and SIGTERM at a chosen moment, a real tmpfs that fills up or goes read-only, a second process holding the
flock, a damaged journal, tampered pointers and manifests, a clock that steps back, a renamed host.

Each case asserts what the host looks like afterwards (the whole tree outside the store, by type, mode, owner and
content), what the message says, and that no secret leaked.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from fault_host import SECRET, write
from harness import (Blocker, assert_clear_failure, assert_no_secret, finish, free_bytes, kill, remount,
                     run_module, start_module, tmpfs, wait_for)

STAGE_PREFIX = ".fleetops-stage-"


def stage_leftovers(root):
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(root) for n in files + dirs
                  if n.startswith(STAGE_PREFIX))


def capture(host, **extra):
    args = dict({"store_path": host.store, "label": "good", "status": "known_good", "components": host.components()},
                **extra)
    run = run_module("restore_point", args)
    assert run.rc == 0 and not run.failed, run.everything[-3000:]
    return run.result["point"]["id"]


def restore(host, **extra):
    return run_module("restore_point", dict({"store_path": host.store, "state": "restored"}, **extra))


def info(host, **extra):
    run = run_module("restore_point_info", dict({"store_path": host.store}, **extra))
    assert run.rc == 0, run.everything[-3000:]
    return run.result


@pytest.fixture
def blocker(tmp_path_factory):
    one = Blocker(tmp_path_factory.mktemp("blocker"))
    yield one
    one.release()


def config_with(host, validate):
    return {"config": {"paths": [{"path": host.etc, "validate": validate}]}, "release": {"path": host.current}}


# ------------------------------------------------------------------------------------------------ kills


@pytest.mark.fault("sigkill-during-config-staging")
def test_sigkill_while_staging_config_leaves_nothing_the_next_run_does_not_remove(fault_host, blocker):
    capture(fault_host, components=config_with(fault_host, blocker.command))
    fault_host.break_it()
    broken = fault_host.state()
    proc = start_module("restore_point", {"store_path": fault_host.store, "state": "restored"})
    wait_for(blocker.blocked, what="the validate command to start on a staged file")
    kill(proc, signal.SIGKILL, group=True)
    # The fault is real: a staged copy of the .env (with its secret) sits next to it, and nothing was swapped in.
    leftovers = stage_leftovers(fault_host.root)
    assert leftovers, "the kill left no staged file: the fault was not reproduced"
    assert {k: v for k, v in fault_host.state().items()
            if STAGE_PREFIX not in k} == broken
    assert info(fault_host)["interrupted_rollback"]["safety_point"]

    rerun = restore(fault_host)
    assert rerun.rc == 0 and rerun.result["changed"], rerun.everything[-3000:]
    assert stage_leftovers(fault_host.root) == []
    events = info(fault_host, journal=20)["journal"]
    removed = [p for e in events if e["event"] == "leftovers_removed" for p in e["paths"]]
    assert set(leftovers) <= set(removed)
    assert any(e["event"] == "stale_lock_recovered" for e in events)
    assert_no_secret(rerun, [SECRET, "bad-one-7781"])


@pytest.mark.fault("sigterm-during-config-staging")
def test_sigterm_while_staging_config_ends_cleanly_with_the_host_as_it_was(fault_host, blocker):
    capture(fault_host, components=config_with(fault_host, blocker.command))
    fault_host.break_it()
    broken = fault_host.state()
    proc = start_module("restore_point", {"store_path": fault_host.store, "state": "restored"})
    wait_for(blocker.blocked, what="the validate command to start on a staged file")
    run = kill(proc, signal.SIGTERM)
    assert_clear_failure(run, "SIGTERM", "pre-rollback state", secrets=[SECRET, "bad-one-7781"])
    assert run.result["component_state"]["config"] == "reverted to pre-rollback state"
    assert fault_host.state() == broken
    assert stage_leftovers(fault_host.root) == []
    assert info(fault_host)["interrupted_rollback"] is None


@pytest.mark.fault("sigkill-between-components")
def test_rerun_after_a_kill_between_components_keeps_the_state_before_the_rollback(fault_host, blocker):
    """Killed after config was restored and while release was being validated: the host is mixed. The rerun
    finishes the job, and latest_safety still names the state before the first attempt, not the mix."""
    components = {"config": {"paths": [fault_host.etc]},
                  "release": {"path": fault_host.current, "validate": blocker.command}}
    capture(fault_host, components=components)
    good = fault_host.state()
    fault_host.break_it()
    broken = fault_host.state()
    proc = start_module("restore_point", {"store_path": fault_host.store, "state": "restored"})
    wait_for(blocker.blocked, what="the release validate command")
    kill(proc, signal.SIGKILL, group=True)
    mixed = fault_host.state()
    assert mixed not in (good, broken)
    first_safety = info(fault_host)["interrupted_rollback"]["safety_point"]

    rerun = restore(fault_host)
    assert rerun.rc == 0, rerun.everything[-3000:]
    assert rerun.result["interrupted_rollback"]["safety_point"] == first_safety
    assert rerun.result["state_before_rollback"] == first_safety
    assert rerun.result["safety_point"] != first_safety
    assert fault_host.state() == good
    assert info(fault_host)["interrupted_rollback"] is None
    assert info(fault_host, point="latest_safety")["point"]["id"] == first_safety

    # What rollback_failed_recovery.yml does by default: back to the state before the rollback, not the mix.
    back = restore(fault_host, point="latest_safety")
    assert back.rc == 0, back.everything[-3000:]
    assert fault_host.state() == broken


@pytest.mark.fault("sigterm-between-components")
def test_sigterm_between_components_reverts_what_was_applied(fault_host, blocker):
    components = {"config": {"paths": [fault_host.etc]},
                  "release": {"path": fault_host.current, "validate": blocker.command}}
    capture(fault_host, components=components)
    fault_host.break_it()
    broken = fault_host.state()
    proc = start_module("restore_point", {"store_path": fault_host.store, "state": "restored"})
    wait_for(blocker.blocked, what="the release validate command")
    run = kill(proc, signal.SIGTERM)
    assert_clear_failure(run, "SIGTERM", "re-applied", secrets=[SECRET, "bad-one-7781"])
    assert run.result["component_state"] == {"config": "reverted to pre-rollback state",
                                             "release": "reverted to pre-rollback state"}
    assert fault_host.state() == broken
    assert info(fault_host)["interrupted_rollback"] is None
    assert info(fault_host, point="latest_safety")["point"]["id"] == run.result["safety_point"]


@pytest.mark.fault("sigkill-during-blob-copy")
def test_sigkill_during_a_capture_leaves_no_incoming_file_after_the_next_run(fault_host):
    big = os.path.join(fault_host.etc, "big.bin")
    with open(big, "wb") as stream:
        stream.truncate(1024 ** 3)  # sparse: slow enough to copy that the kill lands inside it
    blobs = os.path.join(fault_host.store, "blobs", "sha256")
    os.makedirs(fault_host.store)
    proc = start_module("restore_point", {"store_path": fault_host.store, "label": "x",
                                          "components": fault_host.components()})

    def incoming():
        return os.path.isdir(blobs) and [n for n in os.listdir(blobs) if n.startswith(".incoming-")]

    wait_for(incoming, what="a blob being copied")
    kill(proc, signal.SIGKILL, group=True)
    assert incoming(), "the kill left no .incoming file: the fault was not reproduced"
    os.unlink(big)
    capture(fault_host, label="after")
    assert not incoming()
    assert info(fault_host)["unreadable"] == []


# ------------------------------------------------------------------------------------------------ disks


@pytest.mark.fault("store-fs-full-before-capture")
def test_capture_on_a_full_store_is_refused_early_with_the_numbers(fault_host):
    write(os.path.join(fault_host.etc, "blob.bin"), os.urandom(3 * 1024 * 1024))
    before = fault_host.state()
    with tmpfs(fault_host.store, "2m"):
        run = run_module("restore_point", {"store_path": fault_host.store, "label": "x",
                                           "components": fault_host.components()})
        assert_clear_failure(run, "not enough free space", "free", "needed", "nothing was changed", secrets=[SECRET])
        assert run.result["needed_bytes"] > run.result["free_bytes"]
        assert os.listdir(os.path.join(fault_host.store, "points")) == []
        assert os.listdir(os.path.join(fault_host.store, "blobs", "sha256")) == []
    assert fault_host.state() == before


@pytest.mark.fault("store-fs-full-before-safety-point")
def test_restore_refuses_before_touching_the_host_when_the_safety_point_cannot_fit(fault_host):
    with tmpfs(fault_host.store, "3m"):
        capture(fault_host)
        fault_host.break_it()
        write(os.path.join(fault_host.etc, "huge.log"), os.urandom(4 * 1024 * 1024))
        broken = fault_host.state()
        run = restore(fault_host)
        assert_clear_failure(run, "not enough free space", "nothing was changed", secrets=[SECRET, "bad-one-7781"])
        assert fault_host.state() == broken
        assert [p["status"] for p in info(fault_host)["points"]] == ["known_good"]


@pytest.mark.fault("store-fs-fills-during-capture")
def test_a_store_that_fills_up_midway_leaves_no_partial_point(fault_host):
    big = os.path.join(fault_host.etc, "big.bin")
    with open(big, "wb") as stream:
        stream.truncate(600 * 1024 * 1024)
    before = fault_host.state()
    with tmpfs(fault_host.store, "640m"):
        blobs = os.path.join(fault_host.store, "blobs", "sha256")
        proc = start_module("restore_point", {"store_path": fault_host.store, "label": "x",
                                              "components": fault_host.components()})
        wait_for(lambda: os.path.isdir(blobs) and any(n.startswith(".incoming-") for n in os.listdir(blobs)),
                 what="a blob being copied")
        # Another writer takes the rest of the filesystem while the copy runs.
        subprocess.run(["fallocate", "-l", str(free_bytes(fault_host.store)), os.path.join(fault_host.store, "filler")],
                       check=False)
        run = finish(proc)
        assert_clear_failure(run, "full", "nothing on the host was changed", secrets=[SECRET])
        os.unlink(os.path.join(fault_host.store, "filler"))
        left = [os.path.join(d, n) for d, _dirs, files in os.walk(blobs) for n in files]
        assert left == []
        assert os.listdir(os.path.join(fault_host.store, "points")) == []
        assert os.listdir(os.path.join(fault_host.store, "dumps")) == []
    assert fault_host.state() == before


@pytest.mark.fault("store-fs-read-only")
def test_a_read_only_store_refuses_the_rollback_before_touching_the_host(fault_host):
    with tmpfs(fault_host.store, "8m"):
        capture(fault_host)
        fault_host.break_it()
        broken = fault_host.state()
        remount(fault_host.store, "ro")
        run = restore(fault_host)
        assert_clear_failure(run, "read-only", "nothing on the host was changed", secrets=[SECRET, "bad-one-7781"])
        assert fault_host.state() == broken


@pytest.mark.fault("journal-unwritable-after-restore")
def test_a_journal_that_cannot_be_written_after_a_done_restore_is_a_warning(fault_host):
    good_id = capture(fault_host)
    good = fault_host.state()
    fault_host.break_it()
    journal = os.path.join(fault_host.store, "journal.jsonl")
    # Right after the restore, before its journal entry is written, the journal becomes immutable (root too gets
    # EPERM). A read-only remount is refused while the run holds the lock file open, so this is the real way.
    try:
        run = restore(fault_host, restart_commands=[["chattr", "+i", journal]])
    finally:
        subprocess.run(["chattr", "-i", journal], check=False)
    assert run.rc == 0 and not run.failed, run.everything[-3000:]
    assert run.result["point"]["id"] == good_id and run.result["changed"]
    assert "not permitted" in run.result["journal_error"]
    assert any("journal entry could not be written" in w for w in run.result.get("warnings", []))
    assert fault_host.state() == good
    assert_no_secret(run, [SECRET, "bad-one-7781"])


@pytest.mark.fault("store-fs-full-at-journal")
def test_a_full_store_at_journal_time_keeps_the_restore_a_success(fault_host):
    with tmpfs(fault_host.store, "8m"):
        capture(fault_host)
        good = fault_host.state()
        fault_host.break_it()
        # The journal's last page may still have room: without it, the entry needs a new block.
        os.unlink(os.path.join(fault_host.store, "journal.jsonl"))
        fill = ["sh", "-c", "cat /dev/zero > %s/filler 2>/dev/null; true" % fault_host.store]
        run = restore(fault_host, restart_commands=[fill])
        assert run.rc == 0 and not run.failed, run.everything[-3000:]
        assert "full" in run.result["journal_error"]
        assert fault_host.state() == good


@pytest.mark.fault("host-fs-read-only-during-restore")
def test_config_on_a_read_only_filesystem_fails_cleanly_and_says_the_host_is_as_it_was(fault_host):
    capture(fault_host)
    fault_host.break_it()
    saved = {}
    for name in os.listdir(fault_host.etc):
        with open(os.path.join(fault_host.etc, name), "rb") as stream:
            saved[name] = stream.read()
    shutil.rmtree(fault_host.etc)
    with tmpfs(fault_host.etc, "4m"):
        os.chmod(fault_host.etc, 0o755)
        for name, body in saved.items():
            write(os.path.join(fault_host.etc, name), body, 0o600 if name == ".env" else 0o644)
        remount(fault_host.etc, "ro")
        broken = fault_host.state()
        run = restore(fault_host)
        assert_clear_failure(run, "read-only", "config", "pre-rollback state", secrets=[SECRET, "bad-one-7781"])
        assert fault_host.state() == broken


@pytest.mark.fault("host-fs-full-during-staging")
def test_config_that_does_not_fit_while_staging_changes_nothing(fault_host):
    shutil.rmtree(fault_host.etc)
    with tmpfs(fault_host.etc, "1m"):
        os.chmod(fault_host.etc, 0o755)
        write(fault_host.env_file, ("DB_PASSWORD=%s\n" % SECRET).encode() + os.urandom(600 * 1024), 0o600)
        capture(fault_host)
        write(fault_host.env_file, b"DB_PASSWORD=bad-one-7781\n" + os.urandom(600 * 1024), 0o600)
        broken = fault_host.state()
        run = restore(fault_host)
        assert_clear_failure(run, "full", "config", "pre-rollback state", secrets=[SECRET, "bad-one-7781"])
        assert fault_host.state() == broken
        assert stage_leftovers(fault_host.etc) == []


# ------------------------------------------------------------------------------------------------ locks


FLOCK_HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.mark.fault("lock-record-dead-but-flock-held")
def test_force_unlock_trusts_the_kernel_lock_over_a_dead_record(fault_host):
    capture(fault_host)
    fault_host.break_it()
    broken = fault_host.state()
    lock = os.path.join(fault_host.store, "lock")
    holder = subprocess.Popen([sys.executable, "-c", FLOCK_HOLDER, lock], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(lock, "w", encoding="utf-8") as stream:
            json.dump({"owner": "ghost:restore", "pid": dead.pid, "host": socket.gethostname(),
                       "started_at": "2026-01-01T00:00:00+00:00"}, stream)
        run = restore(fault_host, force_unlock=True)
        assert_clear_failure(run, "pid %d" % holder.pid, "force_unlock never breaks", secrets=[SECRET])
        assert fault_host.state() == broken
        assert os.path.exists(lock) and json.load(open(lock, encoding="utf-8"))["owner"] == "ghost:restore"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.fault("lock-path-is-a-directory")
def test_a_lock_path_that_is_a_directory_is_refused_clearly(fault_host):
    capture(fault_host)
    fault_host.break_it()
    broken = fault_host.state()
    lock = os.path.join(fault_host.store, "lock")
    os.unlink(lock)
    os.mkdir(lock)
    run = restore(fault_host)
    assert_clear_failure(run, lock, "directory", "not a lock file", secrets=[SECRET])
    assert fault_host.state() == broken and os.path.isdir(lock)


# ------------------------------------------------------------------------------------------------ integrity


@pytest.mark.fault("journal-torn-last-line")
def test_a_torn_journal_line_is_skipped_and_reported_and_the_next_entry_stays_readable(fault_host):
    capture(fault_host)
    journal = os.path.join(fault_host.store, "journal.jsonl")
    with open(journal, "ab") as stream:
        stream.write(b'{"ts": "2026-12-01T10:00:00", "event": "rest')  # a crash in the middle of an append
    capture(fault_host, label="second", status="candidate")
    result = info(fault_host, journal=10)
    events = [e["event"] for e in result["journal"]]
    assert events.count("capture") == 2
    assert result["journal_damaged_lines"] == [2]
    assert any("unreadable line" in w for w in result.get("warnings", []))


@pytest.mark.fault("known-good-pointer-is-a-path")
def test_a_known_good_pointer_that_is_a_path_is_never_followed(fault_host):
    capture(fault_host)
    fault_host.break_it()
    broken = fault_host.state()
    # A manifest-looking file outside the store that the pointer would lead to.
    os.makedirs(os.path.join(fault_host.base, "x"))
    with open(os.path.join(fault_host.store, "known_good"), "w", encoding="utf-8") as stream:
        stream.write("../../x\n")
    broken = fault_host.state()
    run = restore(fault_host)
    assert_clear_failure(run, "known_good", "'../../x'", "not a point id", secrets=[SECRET])
    assert fault_host.state() == broken


@pytest.mark.fault("manifest-copied-into-another-point")
def test_a_manifest_copied_into_another_points_directory_is_refused(fault_host):
    first = capture(fault_host, label="one", status="candidate")
    fault_host.break_it()
    second = capture(fault_host, label="two", status="candidate")
    points = os.path.join(fault_host.store, "points")
    shutil.copy(os.path.join(points, first, "manifest.json"), os.path.join(points, second, "manifest.json"))
    state = fault_host.state()
    run = restore(fault_host, point=second)
    assert_clear_failure(run, second, "copied from another point", secrets=[SECRET])
    assert fault_host.state() == state
    assert [u["id"] for u in info(fault_host)["unreadable"]] == [second]


@pytest.mark.fault("point-from-a-newer-format")
def test_a_point_written_by_a_newer_version_is_refused(fault_host):
    point_id = capture(fault_host)
    path = os.path.join(fault_host.store, "points", point_id, "manifest.json")
    manifest = json.load(open(path, encoding="utf-8"))
    manifest["format"] = 99
    # Sealed again, as a newer version would have written it.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                    ".collections"))
    from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import seal  # noqa: E402
    from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import canonical_json  # noqa: E402
    with open(path, "wb") as stream:
        stream.write(canonical_json(seal(manifest)))
    fault_host.break_it()
    broken = fault_host.state()
    run = restore(fault_host)
    assert_clear_failure(run, point_id, "newer fleetops.rollback", "format 99", secrets=[SECRET])
    assert fault_host.state() == broken


@pytest.mark.fault("store-from-a-newer-format")
def test_a_store_written_by_a_newer_version_is_refused(fault_host):
    capture(fault_host)
    with open(os.path.join(fault_host.store, "format"), "w", encoding="utf-8") as stream:
        json.dump({"format": 7}, stream)
    fault_host.break_it()
    broken = fault_host.state()
    run = restore(fault_host)
    assert_clear_failure(run, fault_host.store, "newer fleetops.rollback", "store format 7")
    assert fault_host.state() == broken


@pytest.mark.fault("special-file-in-config-tree")
def test_a_fifo_in_a_config_tree_is_refused_before_any_blob_is_written(fault_host):
    os.mkfifo(os.path.join(fault_host.etc, "pipe"))
    before = fault_host.state()
    run = run_module("restore_point", {"store_path": fault_host.store, "label": "x",
                                       "components": fault_host.components()})
    assert_clear_failure(run, "pipe", "a FIFO", "nothing was changed", secrets=[SECRET])
    blobs = os.path.join(fault_host.store, "blobs", "sha256")
    assert [n for _d, _s, files in os.walk(blobs) for n in files] == []
    assert fault_host.state() == before


# ------------------------------------------------------------------------------------------------ clock and host


@pytest.fixture(scope="module")
def faketime():
    """libfaketime from Debian, to run a real module process under a clock that is off."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)
    from tools import system_packages  # pylint: disable=import-outside-toplevel
    if not shutil.which("faketime"):
        system_packages.apt_install("faketime")
    return shutil.which("faketime")


@pytest.mark.fault("clock-steps-back")
def test_points_taken_after_the_clock_stepped_back_still_sort_after_the_others(fault_host, faketime):
    future = run_module("restore_point", {"store_path": fault_host.store, "label": "ahead", "status": "known_good",
                                          "components": fault_host.components()},
                        env={"LD_PRELOAD": _libfaketime(), "FAKETIME": "+400d"})
    assert future.rc == 0, future.everything[-2000:]
    fault_host.break_it()
    now_id = capture(fault_host, label="later", status="known_good")
    ids = [p["id"] for p in info(fault_host)["points"]]
    assert ids == sorted(ids) and ids[-1] == now_id
    assert info(fault_host)["known_good"] == now_id
    restore(fault_host, point="ahead")
    assert restore(fault_host).rc == 0  # known_good is the later capture, whatever the clock said


def _libfaketime():
    found = subprocess.run(["dpkg", "-L", "libfaketime"], capture_output=True, text=True, check=True).stdout.split()
    return next(p for p in found if p.endswith("libfaketime.so.1"))


@pytest.mark.fault("host-renamed-with-a-stale-lock")
def test_a_host_renamed_after_a_killed_run_still_recovers_its_lock(fault_host, blocker):
    capture(fault_host, components=config_with(fault_host, blocker.command))
    good = fault_host.state()
    fault_host.break_it()
    proc = start_module("restore_point", {"store_path": fault_host.store, "state": "restored"})
    wait_for(blocker.blocked, what="the validate command")
    kill(proc, signal.SIGKILL, group=True)
    # The next run happens under another host name (a new UTS namespace with its own hostname).
    run = run_module("restore_point", {"store_path": fault_host.store, "state": "restored"},
                     wrapper=["unshare", "--uts", "sh", "-c", 'hostname renamed-host && exec "$@"', "sh"])
    assert run.rc == 0 and not run.failed, run.everything[-3000:]
    assert fault_host.state() == good
    events = info(fault_host, journal=20)["journal"]
    assert any(e["event"] == "stale_lock_recovered" for e in events)
    assert stage_leftovers(fault_host.root) == []


@pytest.mark.fault("store-moved-between-hosts")
def test_a_point_from_another_machine_is_refused_unless_the_operator_says_so(fault_host, tmp_path_factory):
    capture(fault_host)
    good = fault_host.state()
    fault_host.break_it()
    broken = fault_host.state()
    other = tmp_path_factory.mktemp("other-machine") / "machine-id"
    other.write_text("0123456789abcdef0123456789abcdef\n")
    # The same store read by another machine: a mount namespace where /etc/machine-id is another id.
    elsewhere = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/machine-id && exec "$@"', str(other)]
    run = run_module("restore_point", {"store_path": fault_host.store, "state": "restored"}, wrapper=elsewhere)
    assert_clear_failure(run, "another machine", "allow_foreign_point", socket.gethostname(), secrets=[SECRET])
    assert fault_host.state() == broken
    run = run_module("restore_point", {"store_path": fault_host.store, "state": "restored",
                                       "allow_foreign_point": True}, wrapper=elsewhere)
    assert run.rc == 0 and not run.failed, run.everything[-3000:]
    assert fault_host.state() == good
