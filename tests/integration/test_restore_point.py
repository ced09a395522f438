"""restore_point end to end through real ansible-playbook runs on a real host tree."""
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

import plays

STORE = "var/lib/fleetops/rollback"


def tree_state(root):
    """Everything a restore may touch: type, mode, owner and content hash of every entry."""
    state = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as stream:
                    entry += (hashlib.sha256(stream.read()).hexdigest(),)
            state[os.path.relpath(path, root)] = entry
    return state


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "host"
    etc = root / "etc" / "app"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "app.env").write_text("APP_NAME=demo\nWORKERS=4\nSECRET_KEY=s3cr3t-original-value\nDB_PASSWORD=hunter2-original\n")
    (etc / "conf.d" / "10-base.env").write_text("LOG_LEVEL=info\n")
    owned = etc / "owned-by-nobody.conf"
    owned.write_text("mode and owner matter\n")
    os.chown(owned, 65534, 65534)
    os.chmod(owned, 0o640)
    os.chmod(etc / "app.env", 0o600)
    os.symlink("conf.d/10-base.env", etc / "base-link.env")
    releases = root / "srv" / "app" / "releases"
    for name in ("1", "2"):
        (releases / name).mkdir(parents=True)
        (releases / name / "VERSION").write_text(name + "\n")
    os.symlink("releases/1", root / "srv" / "app" / "current")
    return root


def capture_play(root, **extra):
    """The host's config and release captured known good (label good) into its store; `extra` adds to a component."""
    components = {"config": {"paths": [str(root / "etc" / "app")]},
                  "release": {"path": str(root / "srv" / "app" / "current")}}
    for key, value in extra.items():
        components[key].update(value)
    return plays.capture_play(root / STORE, components)


def restore_play(root, **params):
    return plays.restore_play(root / STORE, **params)


def break_host(root):
    etc = root / "etc" / "app"
    (etc / "app.env").write_text("APP_NAME=demo\nWORKERS=0\nSECRET_KEY=s3cr3t-rotated-value\nDB_PASSWORD=hunter2-original\n")
    (etc / "conf.d" / "20-extra.env").write_text("CACHE=1\n")
    os.chown(etc / "owned-by-nobody.conf", 0, 0)
    os.chmod(etc / "owned-by-nobody.conf", 0o644)
    os.unlink(etc / "base-link.env")
    (etc / "conf.d" / "10-base.env").unlink()
    (etc / "conf.d" / "10-base.env").mkdir()  # a file that became a directory
    current = root / "srv" / "app" / "current"
    current.unlink()
    os.symlink("releases/2", current)


def host_state(root):
    return {k: v for k, v in tree_state(root).items() if not k.startswith(STORE.split("/", maxsplit=1)[0] + "/lib")}


def plan_view(plan):
    return {name: [(c["action"], c["path"], json.dumps(c["from"], sort_keys=True), json.dumps(c["to"], sort_keys=True))
                   for c in comp["changes"]] for name, comp in plan.items()}


def test_round_trip_check_mode_and_idempotence(host, one_host, playbook):
    run = playbook(capture_play(host), one_host)
    assert run.rc == 0, run.stdout + run.stderr
    captured = host_state(host)
    point = run.result("Capture", "target")["point"]
    assert point["status"] == "known_good" and point["components"] == ["config", "release"]

    break_host(host)
    broken = host_state(host)
    store_before = tree_state(host / STORE)

    check = playbook(restore_play(host), one_host, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    predicted = check.result("Restore", "target")
    assert predicted["changed"] is True and predicted["safety_point"] is None
    assert host_state(host) == broken, "check mode changed the host"
    assert tree_state(host / STORE) == store_before, "check mode changed the store"
    # Diff mode shows the change but never a secret value.
    assert "WORKERS=0" in check.stdout and "SECRET_KEY=********" in check.stdout
    for secret in ("s3cr3t-rotated-value", "s3cr3t-original-value", "hunter2-original"):
        assert secret not in check.stdout + check.stderr

    real = playbook(restore_play(host), one_host, diff=True)
    assert real.rc == 0, real.stdout + real.stderr
    done = real.result("Restore", "target")
    assert done["changed"] is True and done["safety_point"]
    assert plan_view(done["plan"]) == plan_view(predicted["plan"]), "check mode did not predict the real run"
    assert host_state(host) == captured, "restore is not byte-exact with mode and owner"
    assert os.stat(host / "etc/app/owned-by-nobody.conf").st_uid == 65534

    again = playbook(restore_play(host), one_host)
    assert again.rc == 0
    assert again.result("Restore", "target")["changed"] is False
    assert again.result("Restore", "target")["safety_point"] is None

    # The safety point holds the broken state, extra file included: restoring it brings it all back.
    back = playbook(restore_play(host, point=done["safety_point"]), one_host)
    assert back.rc == 0, back.stdout
    assert host_state(host) == broken


def test_capture_check_mode_predicts_reuse_and_changes(host, one_host, playbook):
    """A labelled capture of a state the newest point of that label holds reuses it: check mode says so
    (changed=false, that point) without touching the store, and says changed=true once the state moved."""
    first = playbook(capture_play(host), one_host)
    assert first.rc == 0, first.stdout + first.stderr
    point = first.result("Capture", "target")["point"]
    store_before = tree_state(host / STORE)

    for mode in ("check", "real"):  # the same state: reused, nothing to change
        run = playbook(capture_play(host), one_host, check=mode == "check")
        assert run.rc == 0, run.stdout + run.stderr
        result = run.result("Capture", "target")
        assert (result["changed"], result.get("reused"), result["point"]["id"]) == (False, True, point["id"]), mode
    assert tree_state(host / STORE) == store_before

    (host / "etc" / "app" / "conf.d" / "20-extra.env").write_text("CACHE=1\n")
    check = playbook(capture_play(host), one_host, check=True)
    predicted = check.result("Capture", "target")
    assert predicted["changed"] is True and predicted["point"]["id"] is None
    assert tree_state(host / STORE) == store_before, "check mode wrote to the store"
    real = playbook(capture_play(host), one_host)
    assert real.result("Capture", "target")["changed"] is True
    assert real.result("Capture", "target")["point"]["id"] != point["id"]


def test_corrupt_blob_is_refused_and_nothing_changes(host, one_host, playbook):
    assert playbook(capture_play(host), one_host).rc == 0
    break_host(host)
    broken = host_state(host)
    env_sha = hashlib.sha256((host / "etc/app/app.env").read_bytes()).hexdigest()
    # Corrupt the stored copy of app.env as captured (the original body).
    original = b"APP_NAME=demo\nWORKERS=4\nSECRET_KEY=s3cr3t-original-value\nDB_PASSWORD=hunter2-original\n"
    sha = hashlib.sha256(original).hexdigest()
    assert sha != env_sha
    blob = host / STORE / "blobs" / "sha256" / sha[:2] / sha[2:]
    blob.write_bytes(original.replace(b"4", b"5"))
    run = playbook(restore_play(host), one_host)
    assert run.rc != 0
    result = run.result("Restore", "target")
    assert "sha256" in result["msg"] and "app.env" in result["msg"] and "nothing was changed" in result["msg"]
    assert host_state(host) == broken


@pytest.mark.parametrize("params, needle", [
    ({"point": "no-such-point"}, "'no-such-point' matches no point"),
    ({"only": ["config", "nosuch"]}, "nosuch"),
    ({"only": ["config", "packages"]}, "holds no packages component"),
])
def test_bad_restore_input_names_the_value(host, one_host, playbook, params, needle):
    assert playbook(capture_play(host), one_host).rc == 0
    break_host(host)
    broken = host_state(host)
    run = playbook(restore_play(host, **params), one_host)
    assert run.rc != 0
    assert needle in run.result("Restore", "target")["msg"]
    assert host_state(host) == broken


@pytest.mark.parametrize("components, needle", [
    ({"config": {"paths": ["etc/app"]}}, "components.config.paths[0]: 'etc/app' is not an absolute path"),
    ({"config": {"paths": ["/nonexistent/fleetops"]}}, "'/nonexistent/fleetops' does not exist"),
    ({"nosuchthing": {"db": "x"}}, "components: unknown option 'nosuchthing'"),
    ({"database": {"db": "x", "login_host": "127.0.0.1", "port": 1}}, "cannot connect to PostgreSQL as postgres@127.0.0.1:1/x"),
    ({"release": {"path": "/etc/hostname"}}, "is not a symlink"),
])
def test_bad_capture_input_names_the_value_and_writes_nothing(tmp_path, one_host, playbook, components, needle):
    store = tmp_path / "store"
    run = playbook(plays.capture_play(store, components, label=None, status=None), one_host)
    assert run.rc != 0
    assert needle in run.result("Capture", "target")["msg"]
    assert not store.exists()


def test_bad_status_is_rejected(tmp_path, one_host, playbook):
    mark = {"store_path": str(tmp_path / "store"), "point": "x", "status": "great"}
    run = playbook(plays.play(("Mark", "restore_point", mark)), one_host)
    assert run.rc != 0
    msg = run.result("Mark", "target")["msg"]
    assert "status" in msg and "great" in msg
    assert not (tmp_path / "store").exists()


def test_failure_midway_leaves_the_pre_rollback_state(host, one_host, playbook, tmp_path):
    marker = tmp_path / "release-validation-fails"
    validate = "sh -c 'test ! -e %s' %%s" % marker
    assert playbook(capture_play(host, release={"validate": validate}), one_host).rc == 0
    break_host(host)
    broken = host_state(host)
    marker.write_text("")
    run = playbook(restore_play(host), one_host)
    assert run.rc != 0
    result = run.result("Restore", "target")
    assert result["failed_component"] == "release"
    assert result["reverted"] is True
    assert "back in its pre-rollback state" in result["msg"]
    assert result["component_state"] == {"config": "reverted to pre-rollback state",
                                         "release": "reverted to pre-rollback state"}
    assert host_state(host) == broken, "a failed restore did not put the host back"
    journal = [json.loads(line) for line in (host / STORE / "journal.jsonl").read_text().splitlines()]
    assert journal[-1]["outcome"] == "failed" and journal[-1]["reverted"] == ["release", "config"]


LOCK_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store
lock = Store(sys.argv[1]).lock(owner="drill-holder")
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_rollback_is_refused_by_the_lock(host, one_host, playbook):
    assert playbook(capture_play(host), one_host).rc == 0
    break_host(host)
    broken = host_state(host)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(host / STORE), os.path.join(root, ".collections")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = playbook(restore_play(host), one_host)
        assert run.rc != 0
        msg = run.result("Restore", "target")["msg"]
        assert "is locked by" in msg and "drill-holder" in msg and "pid %d" % holder.pid in msg
        assert host_state(host) == broken
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the next run recovers the stale lock and journals it.
    run = playbook(restore_play(host), one_host)
    assert run.rc == 0, run.stdout
    events = [json.loads(line)["event"] for line in (host / STORE / "journal.jsonl").read_text().splitlines()]
    assert "stale_lock_recovered" in events


# The release check of the restore that holds the store's lock: it passes only once the test says the other run is
# over, so the other run meets the lock however late a loaded machine starts it (the deadline stays under the
# module's 120 s validate timeout).
HOLD_IN_VALIDATE = """
import os, sys, time
deadline = time.monotonic() + 90
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


def test_two_concurrent_rollbacks_one_wins(host, one_host, tmp_path):
    """Two real ansible-playbook runs at once on one host: exactly one restores, the other is refused."""
    from playbook_runner import run_playbook  # noqa: E402  pylint: disable=import-outside-toplevel
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait  # pylint: disable=import-outside-toplevel
    hold, other_over = tmp_path / "hold.py", tmp_path / "other-run-over"
    hold.write_text(HOLD_IN_VALIDATE)
    validate = "%s %s %s %%s" % (sys.executable, hold, other_over)
    assert run_playbook(capture_play(host, release={"validate": validate}), one_host).rc == 0
    break_host(host)
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(run_playbook, restore_play(host), one_host) for unused in range(2)]
        # The run that took the lock waits in its release check: the first to end is the refused one.
        done, unused = wait(started, return_when=FIRST_COMPLETED)
        other_over.write_text("over\n")
        assert [f.result().rc != 0 for f in done] == [True] * len(done), [f.result().stdout for f in done]
        runs = [f.result() for f in started]
    outcomes = sorted(r.rc for r in runs)
    assert outcomes[0] == 0 and outcomes[1] != 0, [r.stdout for r in runs]
    loser = [r for r in runs if r.rc != 0][0]
    assert "is locked by" in loser.result("Restore", "target")["msg"]


def test_mark_bad_prune_and_info(host, one_host, playbook):
    assert playbook(capture_play(host), one_host).rc == 0
    (host / "etc/app/conf.d/30-new.env").write_text("NEW=1\n")
    run = playbook("""
- hosts: all
  gather_facts: false
  vars:
    store: %s
  tasks:
    - name: Capture second
      fleetops.rollback.restore_point: {store_path: "{{ store }}", label: second, status: known_good, components: {config: {paths: ["%s"]}}}
    - name: Capture second again
      fleetops.rollback.restore_point: {store_path: "{{ store }}", label: second, status: known_good, components: {config: {paths: ["%s"]}}}
    - name: Mark bad
      fleetops.rollback.restore_point: {store_path: "{{ store }}", point: second, status: bad}
    - name: Refuse bad
      fleetops.rollback.restore_point: {store_path: "{{ store }}", state: restored, point: second}
      ignore_errors: true
    - name: Info
      fleetops.rollback.restore_point_info: {store_path: "{{ store }}", point: known_good, verify: true, journal: 5}
    - name: Prune check
      fleetops.rollback.restore_point: {store_path: "{{ store }}", state: absent, keep: 0}
      check_mode: true
    - name: Prune
      fleetops.rollback.restore_point: {store_path: "{{ store }}", state: absent, keep: 0}
    - name: Info after
      fleetops.rollback.restore_point_info: {store_path: "{{ store }}"}
""" % (host / STORE, host / "etc/app", host / "etc/app"), one_host)
    assert run.status("Capture second", "target") == "changed"
    assert run.status("Capture second again", "target") == "ok"  # same label, same state: reused
    assert run.status("Mark bad", "target") == "changed"
    assert "is marked bad" in run.result("Refuse bad", "target")["msg"]
    info = run.result("Info", "target")
    assert info["point"]["label"] == "good", "marking the known good point bad must fall back to the older good one"
    assert info["verified"] is True and info["corrupt"] == []
    assert [e["event"] for e in info["journal"]][-1] == "mark"
    assert run.result("Prune check", "target")["removed"] == [
        p["id"] for p in info["points"] if p["label"] == "second"]
    after = run.result("Info after", "target")
    assert [p["label"] for p in after["points"]] == ["good"], "prune must keep the known good point"


def test_config_snapshot_and_restore_one_path(host, one_host, playbook):
    etc = host / "etc" / "app"
    run = playbook("""
- hosts: all
  gather_facts: false
  tasks:
    - name: Snapshot
      fleetops.rollback.config_snapshot:
        store_path: %(store)s
        label: cfg
        paths: ["%(env)s", {path: "%(conf)s", validate: "test -s %%s"}]
    - name: Change both
      ansible.builtin.shell: echo WORKERS=9 > %(env)s && echo X=1 > %(conf)s/10-base.env
      changed_when: true
    - name: Restore only app.env
      fleetops.rollback.config_restore: {store_path: %(store)s, point: cfg, paths: ["%(env)s"]}
    - name: Restore only app.env again
      fleetops.rollback.config_restore: {store_path: %(store)s, point: cfg, paths: ["%(env)s"]}
""" % {"store": host / STORE, "env": etc / "app.env", "conf": etc / "conf.d"}, one_host)
    assert run.rc == 0, run.stdout + run.stderr
    assert "WORKERS=4" in (etc / "app.env").read_text()
    assert (etc / "conf.d/10-base.env").read_text() == "X=1\n", "a path not asked for was restored"
    assert run.status("Restore only app.env", "target") == "changed"
    assert run.status("Restore only app.env again", "target") == "ok"


def test_restart_commands_run_only_on_change_and_a_failure_keeps_the_restore(host, one_host, playbook, tmp_path):
    log = tmp_path / "restarts.log"
    assert playbook(capture_play(host), one_host).rc == 0
    break_host(host)
    restart = ["sh", "-c", "echo restarted >> %s" % log]
    run = playbook(restore_play(host, restart_commands=[restart]), one_host, check=True)
    assert run.result("Restore", "target")["restarted"] == [{"command": restart[:3], "rc": None}]
    assert not log.exists(), "check mode ran a restart command"
    run = playbook(restore_play(host, restart_commands=[restart]), one_host)
    assert run.rc == 0, run.stdout
    assert run.result("Restore", "target")["restarted"][0]["rc"] == 0
    assert log.read_text() == "restarted\n"
    run = playbook(restore_play(host, restart_commands=[restart]), one_host)
    assert run.result("Restore", "target")["changed"] is False
    assert log.read_text() == "restarted\n", "a restore that changed nothing restarted a service"

    captured = host_state(host)
    break_host(host)
    run = playbook(restore_play(host, restart_commands=[["sh", "-c", "exit 3"]]), one_host)
    assert run.rc != 0
    msg = run.result("Restore", "target")["msg"]
    assert "was restored" in msg and "restarting failed" in msg and "exited 3" in msg
    assert host_state(host) == captured, "a failed restart must not undo a correct restore"
