"""Unit tests for module_utils/_points.py: capture, restore with safety point and revert, mark, prune."""

import os
import shutil

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import sha256_bytes
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store
from tree_listing import listing  # noqa: E402  (tests/unit is on sys.path under pytest)

NOBODY = 65534


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)
    os.chmod(path, mode)


def flip(link, target):
    os.unlink(link)
    os.symlink(target, link)


class Host:
    """A host with a config tree and an ansistrano-style release layout, plus its store."""

    def __init__(self, base):
        self.base = str(base)
        self.store = Store(os.path.join(self.base, "store")).ensure()
        self.etc = os.path.join(self.base, "host", "etc", "app")
        self.app = os.path.join(self.base, "host", "srv", "app")
        self.current = os.path.join(self.app, "current")
        write(os.path.join(self.etc, "app.env"), b"HOST=db\nDB_PASSWORD=good-secret\n", 0o600)
        write(os.path.join(self.etc, "conf.d", "main.conf"), b"workers 4;\n", 0o444)
        os.chown(os.path.join(self.etc, "conf.d", "main.conf"), NOBODY, NOBODY)
        os.chmod(os.path.join(self.etc, "conf.d"), 0o750)
        for name in ("v1", "v2"):
            write(os.path.join(self.app, "releases", name, "VERSION"), name.encode())
        os.symlink("releases/v1", self.current)

    def spec(self, release_validate=None):
        return _points.normalize_components({"config": {"paths": [self.etc]},
                                             "release": {"path": self.current, "validate": release_validate}})

    def state(self):
        return listing(os.path.join(self.base, "host"))

    def break_it(self):
        """A bad deploy: new config, extra file, changed owner and mode, release flipped to v2."""
        write(os.path.join(self.etc, "app.env"), b"HOST=db2\nDB_PASSWORD=bad-secret\n", 0o644)
        write(os.path.join(self.etc, "conf.d", "extra.conf"), b"extra\n")
        os.chown(os.path.join(self.etc, "conf.d", "main.conf"), 0, 0)
        os.chmod(os.path.join(self.etc, "conf.d"), 0o755)
        flip(self.current, "releases/v2")

    def store_files(self):
        return sorted(os.path.relpath(os.path.join(d, n), self.store.path)
                      for d, _dirs, files in os.walk(self.store.path) for n in files if n not in ("lock", "format"))


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETOPS_ACTOR", "tester")
    return Host(tmp_path)


# ---------------------------------------------------------------------------------------- normalize


def test_normalize_components_lists_unknown_names():
    with pytest.raises(RollbackError) as err:
        _points.normalize_components({"config": {"paths": ["/etc/app"]}, "unicorn": {}, "zebra": {}})
    assert "'unicorn'" in err.value.msg and "'zebra'" in err.value.msg
    assert "config" in err.value.msg and "release" in err.value.msg  # the known ones


@pytest.mark.parametrize("spec", [None, {}, [], "config"])
def test_normalize_components_rejects_non_dicts(spec):
    with pytest.raises(RollbackError) as err:
        _points.normalize_components(spec)
    assert repr(spec) in err.value.msg


def test_normalize_components_delegates_and_orders(host):
    spec = _points.normalize_components({"release": {"path": host.current}, "config": {"paths": [host.etc + "/"]}})
    assert list(spec) == ["config", "release"]
    assert spec["config"] == {"paths": [{"path": host.etc, "validate": None}]}
    with pytest.raises(RollbackError) as err:
        _points.normalize_components({"config": {"paths": ["relative"]}})
    assert "components.config.paths[0]" in err.value.msg


# ---------------------------------------------------------------------------------------- capture


def test_capture_and_reuse_with_same_label(host):
    first = _points.capture(host.store, host.spec(), label="deploy-42")
    assert first["changed"] is True and first["reused"] is False
    point = first["point"]
    assert point["label"] == "deploy-42" and point["status"] == "candidate"
    assert point["components"] == ["config", "release"]
    stored = host.store.load(point["id"])
    assert stored["actor"] == "tester" and stored["kind"] == "capture"

    again = _points.capture(host.store, host.spec(), label="deploy-42")
    assert again["changed"] is False and again["reused"] is True
    assert again["point"]["id"] == point["id"]
    assert host.store.point_ids() == [point["id"]]

    promoted = _points.capture(host.store, host.spec(), label="deploy-42", status="known_good")
    assert promoted["changed"] is True and promoted["point"]["id"] == point["id"]
    assert host.store.known_good_id() == point["id"]
    assert _points.capture(host.store, host.spec(), label="deploy-42", status="known_good")["changed"] is False

    host.break_it()
    changed = _points.capture(host.store, host.spec(), label="deploy-42")
    assert changed["changed"] is True and changed["point"]["id"] != point["id"]
    assert len(host.store.point_ids()) == 2
    events = [e["event"] for e in host.store.read_journal()]
    assert events.count("capture") == 2


def test_capture_check_mode_and_missing_path_write_nothing(host):
    result = _points.capture(host.store, host.spec(), label="x", check=True)
    assert result["changed"] is True and result["point"]["id"] is None
    assert host.store.point_ids() == []
    shutil.rmtree(host.etc)
    with pytest.raises(RollbackError) as err:
        _points.capture(host.store, host.spec(), label="x")
    assert host.etc in err.value.msg
    assert host.store.point_ids() == []
    assert host.store_files() == []


def test_capture_check_mode_predicts_reuse_promotion_and_change(host):
    first = _points.capture(host.store, host.spec(), label="deploy-42")
    files = host.store_files()
    same = _points.capture(host.store, host.spec(), label="deploy-42", check=True)
    assert (same["changed"], same["reused"], same["point"]["id"]) == (False, True, first["point"]["id"])
    # Reused, but it must become known good: a change, as the real run makes it.
    promote = _points.capture(host.store, host.spec(), label="deploy-42", status="known_good", check=True)
    assert (promote["changed"], promote["reused"]) == (True, True)
    other_label = _points.capture(host.store, host.spec(), label="deploy-43", check=True)
    assert other_label["changed"] is True and other_label["point"]["id"] is None
    host.break_it()
    moved = _points.capture(host.store, host.spec(), label="deploy-42", check=True)
    assert moved["changed"] is True and moved["point"]["id"] is None
    assert host.store_files() == files, "check mode wrote to the store"
    real = _points.capture(host.store, host.spec(), label="deploy-42", status="known_good")
    assert real["changed"] is True and real["point"]["id"] != first["point"]["id"]


# ---------------------------------------------------------------------------------------- restore


def test_restore_check_mode_returns_plan_and_changes_nothing(host):
    good = _points.capture(host.store, host.spec(), label="good", status="known_good")["point"]
    host.break_it()
    before_state, before_store = host.state(), host.store_files()
    before_journal = host.store.read_journal()
    result = _points.restore(host.store, check=True, diff=True)
    assert result["changed"] is True
    assert result["point"]["id"] == good["id"]
    assert result["safety_point"] is None
    assert result["plan"]["config"]["changed"] and result["plan"]["release"]["changed"]
    actions = {(c["path"], c["action"]) for c in result["plan"]["config"]["changes"]}
    assert (os.path.join(host.etc, "app.env"), "update") in actions
    assert (os.path.join(host.etc, "conf.d", "extra.conf"), "remove") in actions
    assert result["plan"]["release"]["changes"][0]["to"]["release"] == "v1"
    diff_text = "".join(d["before"] + d["after"] for d in result["diff"])
    assert "bad-secret" not in diff_text and "good-secret" not in diff_text
    assert host.state() == before_state
    assert host.store_files() == before_store
    assert host.store.point_ids() == [good["id"]]
    assert host.store.read_journal() == before_journal


def test_restore_takes_safety_point_and_applies(host):
    good_state = host.state()
    good = _points.capture(host.store, host.spec(), label="good", status="known_good")["point"]
    host.break_it()
    broken_state = host.state()
    result = _points.restore(host.store, reason="incident 7")
    assert result["changed"] is True
    assert host.state() == good_state
    safety_id = result["safety_point"]
    safety = host.store.load(safety_id)
    assert safety["status"] == "safety" and safety["kind"] == "safety"
    assert safety["safety_for"] == good["id"]
    assert safety["label"] == "safety-before-%s" % good["id"]
    assert host.store.point_ids() == [good["id"], safety_id]
    assert host.store.known_good_id() == good["id"]
    assert all(result["plan"][name]["seconds"] is not None for name in ("config", "release"))
    last = host.store.read_journal()[-1]
    assert last["event"] == "restore" and last["outcome"] == "restored"
    assert last["safety_point"] == safety_id and last["reason"] == "incident 7" and last["actor"] == "tester"

    # The safety point really holds the broken state: restoring it brings that back exactly.
    _points.restore(host.store, ref=safety_id)
    assert host.state() == broken_state

    # And back again; then a second restore of the same point has nothing to do.
    _points.restore(host.store, ref=good["id"])
    assert host.state() == good_state
    count = len(host.store.point_ids())
    again = _points.restore(host.store, ref=good["id"])
    assert again["changed"] is False and again["safety_point"] is None
    assert not any(p["changed"] for p in again["plan"].values())
    assert len(host.store.point_ids()) == count
    assert host.store.read_journal()[-1]["outcome"] == "noop"


def test_restore_by_label_and_selected_components(host):
    _points.capture(host.store, host.spec(), label="good")
    host.break_it()
    result = _points.restore(host.store, ref="good", names=["release"])
    assert list(result["plan"]) == ["release"]
    assert os.readlink(host.current) == "releases/v1"
    with open(os.path.join(host.etc, "app.env"), "rb") as stream:
        assert b"bad-secret" in stream.read()  # config was not part of this restore
    with pytest.raises(RollbackError) as err:
        _points.restore(host.store, ref="good", names=["images"])
    assert "images" in err.value.msg


def test_restoring_a_bad_point_is_refused(host):
    good = _points.capture(host.store, host.spec(), label="good", status="known_good")["point"]
    marked = _points.mark(host.store, good["id"], "bad")
    assert marked["changed"] is True and marked["point"]["status"] == "bad"
    assert host.store.known_good_id() is None
    host.break_it()
    before_state, before_store = host.state(), host.store_files()
    with pytest.raises(RollbackError) as err:
        _points.restore(host.store, ref=good["id"])
    assert good["id"] in err.value.msg and "bad" in err.value.msg
    with pytest.raises(RollbackError):
        _points.restore(host.store, ref="good")
    assert host.state() == before_state
    assert host.store_files() == before_store


def test_failure_midway_reverts_to_pre_rollback_state(host):
    """Config is applied, then the release validate fails: the safety point is re-applied."""
    good = _points.capture(host.store, host.spec(release_validate="test ! -e %s"), label="good",
                           status="known_good")["point"]
    host.break_it()
    before = host.state()
    with pytest.raises(RollbackError) as err:
        _points.restore(host.store)
    details = err.value.details
    assert details["failed_component"] == "release"
    assert details["reverted"] is True
    assert details["component_state"] == {"config": "reverted to pre-rollback state",
                                          "release": "reverted to pre-rollback state"}
    assert details["safety_point"] in host.store.point_ids()
    assert "release" in err.value.msg and details["safety_point"] in err.value.msg
    assert host.state() == before
    assert os.readlink(host.current) == "releases/v2"
    last = host.store.read_journal()[-1]
    assert last["event"] == "restore" and last["outcome"] == "failed"
    assert last["failed_component"] == "release" and last["point"] == good["id"]
    assert last["reverted"] == ["release", "config"] and last["revert_errors"] == {}
    leftovers = [n for d, dirs, files in os.walk(os.path.join(host.base, "host")) for n in dirs + files
                 if ".fleetops-" in n]
    assert leftovers == []


def test_every_journal_entry_of_a_run_names_the_run(host):
    """Capture, mark, restore (restored, noop, failed): each entry carries the run id and type given."""
    run = {"run": "20261122T031500Z-1a2b", "type": "standard"}
    good = _points.capture(host.store, host.spec(), label="good", status="known_good", audit=run)["point"]
    host.break_it()
    bad = _points.capture(host.store, host.spec(), label="bad", audit=run)["point"]
    _points.mark(host.store, bad["id"], "bad", audit=run)
    _points.restore(host.store, reason="INC-7", audit=run)
    _points.restore(host.store, reason="INC-7", audit=run)
    # The host is good again: capture it with a release check that fails, so the next restore fails.
    _points.capture(host.store, host.spec(release_validate="test ! -e %s"), label="good-v", status="known_good")
    host.break_it()
    with pytest.raises(RollbackError):
        _points.restore(host.store, reason="INC-8", audit=dict(run, run="run-2"))
    journal = host.store.read_journal()
    assert [(e["event"], e.get("outcome")) for e in journal[:5]] == [
        ("capture", None), ("capture", None), ("mark", None), ("restore", "restored"), ("restore", "noop")]
    assert all(e["run"] == run["run"] and e["type"] == "standard" for e in journal[:5])
    assert journal[3]["reason"] == "INC-7" and journal[3]["point"] == good["id"]
    assert (journal[-1]["outcome"], journal[-1]["run"], journal[-1]["reason"]) == ("failed", "run-2", "INC-8")
    # Without a run (a restore called outside the playbooks) the entry has no run fields.
    assert "run" not in journal[5] and "type" not in journal[5]


def test_restore_recreates_a_deleted_config_root(host):
    """The classic incident: someone deleted the config. The safety point must record it as absent,
    not refuse to restore."""
    good_state = host.state()
    _points.capture(host.store, host.spec(), label="good", status="known_good")
    shutil.rmtree(host.etc)
    result = _points.restore(host.store)
    assert result["changed"] is True
    assert host.state() == good_state


def test_restore_flips_back_from_a_deleted_release(host):
    """`current` points at a release directory that was removed: rolling back to v1 must work."""
    _points.capture(host.store, host.spec(), label="good", status="known_good")
    flip(host.current, "releases/v2")
    shutil.rmtree(os.path.join(host.app, "releases", "v2"))
    _points.restore(host.store)
    assert os.readlink(host.current) == "releases/v1"


# ---------------------------------------------------------------------------------------- mark


def test_mark(host):
    one = _points.capture(host.store, host.spec(), label="one")["point"]
    result = _points.mark(host.store, "one", "known_good", check=True)
    assert result["changed"] is True and host.store.known_good_id() is None
    result = _points.mark(host.store, "one", "known_good")
    assert result["changed"] is True and host.store.known_good_id() == one["id"]
    assert _points.mark(host.store, "one", "known_good")["changed"] is False
    with pytest.raises(RollbackError) as err:
        _points.mark(host.store, "one", "safety")
    assert "'safety'" in err.value.msg
    assert host.store.read_journal()[-1]["event"] == "mark"


# ---------------------------------------------------------------------------------------- prune


def _capture_content(host, content, label, status="candidate"):
    write(os.path.join(host.etc, "app.env"), content, 0o600)
    return _points.capture(host.store, host.spec(), label=label, status=status)["point"]["id"]


def _restore_from(host, content):
    write(os.path.join(host.etc, "app.env"), content, 0o600)
    return _points.restore(host.store)["safety_point"]


def test_prune_keeps_newest_known_good_and_newest_safety(host):
    p0 = _capture_content(host, b"v0\n", "p0", "known_good")
    p1 = _capture_content(host, b"v1\n", "p1")
    s1 = _restore_from(host, b"s1\n")
    p2 = _capture_content(host, b"v2\n", "p2")
    p3 = _capture_content(host, b"v3\n", "p3")
    s2 = _restore_from(host, b"s2\n")
    p4 = _capture_content(host, b"v4\n", "p4")
    assert host.store.point_ids() == [p0, p1, s1, p2, p3, s2, p4]
    blob = {name: host.store.blob_path(sha256_bytes(name.encode() + b"\n"))
            for name in ("v0", "v1", "s1", "v2", "v3", "s2", "v4")}
    assert all(os.path.isfile(path) for path in blob.values())
    expected_removed = [p1, s1, p2, p3]

    before_files = host.store_files()
    preview = _points.prune(host.store, keep=2, check=True)
    assert preview["changed"] is True
    assert preview["removed"] == expected_removed
    assert preview["kept"] == [p0, s2, p4]
    assert host.store_files() == before_files
    assert host.store.read_journal()[-1]["event"] != "prune"

    result = _points.prune(host.store, keep=2)
    assert result["removed"] == expected_removed
    assert result["blobs_removed"] == 4
    assert host.store.point_ids() == [p0, s2, p4]
    for name in ("v1", "s1", "v2", "v3"):
        assert not os.path.exists(blob[name]), name
    for name in ("v0", "s2", "v4"):
        assert os.path.isfile(blob[name]), name
    assert host.store.read_journal()[-1] == dict(host.store.read_journal()[-1], event="prune",
                                                 removed=expected_removed)
    # The kept points still restore.
    _points.restore(host.store, ref=p4)
    with open(os.path.join(host.etc, "app.env"), "rb") as stream:
        assert stream.read() == b"v4\n"

    assert _points.prune(host.store, keep=10)["changed"] is False


def test_prune_keep_zero_and_single_point(host):
    p0 = _capture_content(host, b"v0\n", "p0", "known_good")
    p1 = _capture_content(host, b"v1\n", "p1")
    p2 = _capture_content(host, b"v2\n", "p2")
    with pytest.raises(RollbackError) as err:
        _points.prune(host.store, point_ref=p0)
    assert p0 in err.value.msg
    result = _points.prune(host.store, point_ref="p1")
    assert result["removed"] == [p1]
    assert host.store.point_ids() == [p0, p2]
    result = _points.prune(host.store, keep=0)
    assert result["removed"] == [p2]
    assert host.store.point_ids() == [p0]
    for bad in (None, -1):
        with pytest.raises(RollbackError) as err:
            _points.prune(host.store, keep=bad)
        assert "keep" in err.value.msg
