"""Unit tests for module_utils/_store.py: ids, sealed manifests, resolve, blobs, status, gc, journal."""

import json
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._store import store as _store
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_point(store, label=None, status="candidate", now=None, components=None, **extra):
    manifest = {
        "format": _store.MANIFEST_FORMAT,
        "id": store.new_id(now=now),
        "label": label,
        "status": status,
        "kind": "capture",
        "created_at": "2026-03-01T12:00:00.000+00:00",
        "components": components if components is not None else {},
    }
    manifest.update(extra)
    return store.write_manifest(manifest)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---------------------------------------------------------------------------------------- ids


def test_store_path_must_be_absolute():
    with pytest.raises(RollbackError) as err:
        Store("relative/store")
    assert "relative/store" in err.value.msg


def test_ids_sort_by_creation_time(store):
    ids = [make_point(store, now=T0 + timedelta(seconds=s))["id"] for s in (0, 1, 60, 3600, 86400 * 400)]
    assert ids == sorted(ids)
    assert store.point_ids() == ids
    assert all(_store.ID_PATTERN.match(i) for i in ids)
    assert ids[0].startswith("20260301T120000.000000Z-")


def test_ids_stay_strictly_increasing_when_clock_steps_back(store):
    first = make_point(store, now=T0)["id"]
    # The clock jumps an hour back, then stands still: ids must still be strictly after the last one.
    second = make_point(store, now=T0 - timedelta(hours=1))["id"]
    third = make_point(store, now=T0 - timedelta(hours=1))["id"]
    fourth = make_point(store, now=T0)["id"]
    ids = [first, second, third, fourth]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert store.point_ids() == ids


def test_id_for_same_instant_is_after_existing(store):
    first = make_point(store, now=T0)["id"]
    second = store.new_id(now=T0)
    assert second > first
    assert second.split("-")[0] == "20260301T120000.000001Z"


def test_id_uses_utc_for_aware_non_utc_now(store):
    """An id says `Z`: a `now` given in another zone must be converted, not formatted as local time."""
    plus_five = timezone(timedelta(hours=5))
    now = datetime(2026, 3, 1, 17, 0, 0, tzinfo=plus_five)  # == 12:00:00 UTC
    assert store.new_id(now=now).startswith("20260301T120000.000000Z-")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31),
                             timezones=st.just(UTC)), min_size=1, max_size=12))
def test_ids_from_datetimes_sort_in_generation_order(tmp_path_factory, instants):
    store = Store(str(tmp_path_factory.mktemp("ids"))).ensure()
    generated = []
    for now in instants:
        point_id = store.new_id(now=now)
        os.mkdir(os.path.join(store.points_dir, point_id))  # what write_manifest would create
        generated.append(point_id)
    assert sorted(generated) == generated
    assert len(set(generated)) == len(generated)
    assert store.point_ids() == generated
    # An id never claims a time before its instant.
    for point_id, now in zip(generated, instants):
        stamp = datetime.strptime(point_id.split("-")[0], _store.ID_TIME_FORMAT).replace(tzinfo=UTC)
        assert stamp >= now


# ---------------------------------------------------------------------------------------- manifests


def test_manifest_round_trip(store):
    components = {"config": {"paths": [{"path": "/etc/app", "entries": [{"rel": ".", "blob": "a" * 64}]}]}}
    sealed = make_point(store, label="v1", components=components, note="caf\u00e9")
    assert _store.SHA_PATTERN.match(sealed["sha256"])
    loaded = store.load(sealed["id"])
    assert loaded == sealed
    assert loaded["components"] == components
    assert loaded["note"] == "caf\u00e9"
    path = store.manifest_path(sealed["id"])
    assert mode_of(path) == 0o600
    assert mode_of(os.path.dirname(path)) == 0o700
    # Sealing is stable: sealing a sealed manifest gives the same digest.
    assert _store.seal(loaded)["sha256"] == loaded["sha256"]


def test_load_missing_point_is_a_clear_error(store):
    with pytest.raises(RollbackError) as err:
        store.load("20260301T120000.000000Z-abcd")
    assert "20260301T120000.000000Z-abcd" in err.value.msg
    assert "does not exist" in err.value.msg
    assert store.path in err.value.msg


def test_load_unreadable_manifest(store):
    point = make_point(store)
    with open(store.manifest_path(point["id"]), "w", encoding="utf-8") as stream:
        stream.write("{not json")
    with pytest.raises(RollbackError) as err:
        store.load(point["id"])
    assert point["id"] in err.value.msg and "unreadable" in err.value.msg


def _leaf_paths(data, prefix=()):
    """Every (path, value) of scalar leaves in nested dicts/lists."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaf_paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _leaf_paths(value, prefix + (index,))
    else:
        yield prefix, data


def _set(data, path, value):
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.text(max_size=20),
                    st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_field_edit_on_disk_is_detected(tmp_path_factory, data):
    store = Store(str(tmp_path_factory.mktemp("seal"))).ensure()
    components = {
        "config": {"paths": [{"path": "/etc/app", "validate": None,
                              "entries": [{"rel": ".", "type": "dir", "mode": 493, "uid": 0, "gid": 0},
                                          {"rel": "a.conf", "type": "file", "mode": 384, "uid": 0, "gid": 0,
                                           "size": 3, "blob": "b" * 64}]}]},
        "release": {"path": "/srv/app/current", "target": "releases/v1", "release": "v1", "validate": None},
    }
    sealed = make_point(store, label="v1", components=components, fingerprint="f" * 64)
    leaves = list(_leaf_paths(sealed))
    path, old = data.draw(st.sampled_from(leaves), label="field")
    new = data.draw(SCALARS.filter(lambda v: json.dumps(v) != json.dumps(old)), label="new value")
    edited = json.loads(json.dumps(sealed))
    _set(edited, path, new)
    manifest_file = store.manifest_path(sealed["id"])
    with open(manifest_file, "w", encoding="utf-8") as stream:
        json.dump(edited, stream)
    with pytest.raises(RollbackError) as err:
        store.load(sealed["id"])
    assert sealed["id"] in err.value.msg
    assert "sha256" in err.value.msg


def test_added_or_removed_field_is_detected(store):
    sealed = make_point(store, label="v1")
    for edit in ({**sealed, "extra": 1}, {k: v for k, v in sealed.items() if k != "label"},
                 {k: v for k, v in sealed.items() if k != "sha256"}):
        with open(store.manifest_path(sealed["id"]), "w", encoding="utf-8") as stream:
            json.dump(edit, stream)
        with pytest.raises(RollbackError):
            store.load(sealed["id"])


def test_points_reports_broken_manifests(store):
    good = make_point(store, label="good")
    bad = make_point(store, label="bad")
    with open(store.manifest_path(bad["id"]), "w", encoding="utf-8") as stream:
        json.dump(dict(bad, label="tampered"), stream)
    readable, broken = store.points()
    assert [m["id"] for m in readable] == [good["id"]]
    assert [b["id"] for b in broken] == [bad["id"]]
    assert "sha256" in broken[0]["error"]


# ---------------------------------------------------------------------------------------- resolve


def test_resolve_by_id_label_and_known_good(store):
    a = make_point(store, label="release-1", now=T0)
    b = make_point(store, label="release-2", now=T0 + timedelta(seconds=1))
    c = make_point(store, label="release-1", now=T0 + timedelta(seconds=2))
    assert store.resolve(a["id"])["id"] == a["id"]
    assert store.resolve(" %s " % b["id"])["id"] == b["id"]
    # The newest point with a label wins.
    assert store.resolve("release-1")["id"] == c["id"]
    assert store.resolve("release-2")["id"] == b["id"]
    store.set_status(a, "known_good")
    assert store.resolve("known_good")["id"] == a["id"]
    assert store.resolve()["id"] == a["id"]
    assert store.resolve(None)["id"] == a["id"]


def test_resolve_known_good_when_none_is_marked(store):
    make_point(store, label="x")
    with pytest.raises(RollbackError) as err:
        store.resolve("known_good")
    assert "known_good" in err.value.msg


def test_resolve_unknown_ref_names_the_value(store):
    make_point(store, label="release-1")
    with pytest.raises(RollbackError) as err:
        store.resolve("no-such-label")
    assert "'no-such-label'" in err.value.msg
    assert "release-1" in err.value.msg  # lists what exists
    assert err.value.details["point"] == "no-such-label"
    missing_id = "20990101T000000.000000Z-0000"
    with pytest.raises(RollbackError) as err:
        store.resolve(missing_id)
    assert missing_id in err.value.msg


# ---------------------------------------------------------------------------------------- blobs


def test_put_file_dedups_and_verifies(store, tmp_path):
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    one.write_bytes(b"same body\n")
    two.write_bytes(b"same body\n")
    other.write_bytes(b"\x00\x01binary")
    sha1, sha2, sha3 = store.put_file(str(one)), store.put_file(str(two)), store.put_file(str(other))
    assert sha1 == sha2 != sha3
    assert sha1 == _store.sha256_bytes(b"same body\n")
    blobs = [os.path.join(d, f) for d, _dirs, files in os.walk(store.blobs_dir) for f in files]
    assert sorted(blobs) == sorted([store.blob_path(sha1), store.blob_path(sha3)])  # no temp leftovers
    assert store.blob_path(sha1) == os.path.join(store.blobs_dir, sha1[:2], sha1[2:])
    with store.open_blob(sha1) as stream:
        assert stream.read() == b"same body\n"
    assert store.blob_ok(sha1) and store.blob_ok(sha3)
    # Corruption (same size, one byte flipped) is detected.
    with open(store.blob_path(sha1), "r+b") as stream:
        stream.write(b"S")
    assert not store.blob_ok(sha1)
    assert store.blob_ok(sha3)
    os.unlink(store.blob_path(sha3))
    assert not store.blob_ok(sha3)


def test_blob_path_rejects_bad_reference(store):
    for bad in ("", "../../etc/passwd", "A" * 64, "a" * 63, None):
        with pytest.raises(RollbackError):
            store.blob_path(bad)


def test_store_modes_are_private(tmp_path):
    old_umask = os.umask(0o022)
    try:
        store = Store(str(tmp_path / "store")).ensure()
        src = tmp_path / "f"
        src.write_bytes(b"secret")
        os.chmod(src, 0o644)
        sha = store.put_file(str(src))
        make_point(store, label="x")
        store.journal("test")
        store.set_known_good(store.point_ids()[0])
    finally:
        os.umask(old_umask)
    for directory, dirs, files in os.walk(store.path):
        assert mode_of(directory) == 0o700, directory
        for name in files:
            assert mode_of(os.path.join(directory, name)) == 0o600, os.path.join(directory, name)
    assert os.path.isfile(store.blob_path(sha))
    assert os.path.isfile(store.journal_path) and os.path.isfile(store.known_good_path)


# ---------------------------------------------------------------------------------------- status


def test_set_status_known_good_updates_pointer(store):
    a = make_point(store, label="a")
    b = make_point(store, label="b")
    assert store.known_good_id() is None
    a = store.set_status(a, "known_good")
    assert store.known_good_id() == a["id"]
    assert store.load(a["id"])["status"] == "known_good"
    b = store.set_status(b, "known_good")
    assert store.known_good_id() == b["id"]


def test_marking_known_good_bad_moves_pointer_to_newest_other(store):
    a = store.set_status(make_point(store, label="a"), "known_good")
    b = store.set_status(make_point(store, label="b"), "known_good")
    make_point(store, label="c-candidate")
    d = store.set_status(make_point(store, label="d"), "known_good")
    assert store.known_good_id() == d["id"]
    store.set_status(d, "bad")
    assert store.known_good_id() == b["id"]
    assert store.load(d["id"])["status"] == "bad"
    store.set_status(store.load(b["id"]), "candidate")
    assert store.known_good_id() == a["id"]
    store.set_status(store.load(a["id"]), "bad")
    assert store.known_good_id() is None
    assert not os.path.exists(store.known_good_path)
    with pytest.raises(RollbackError):
        store.resolve("known_good")


def test_marking_non_pointer_point_bad_keeps_pointer(store):
    a = store.set_status(make_point(store, label="a"), "known_good")
    b = store.set_status(make_point(store, label="b"), "known_good")
    store.set_status(store.load(a["id"]), "bad")
    assert store.known_good_id() == b["id"]


def test_set_status_rejects_unknown_status(store):
    a = make_point(store)
    with pytest.raises(RollbackError) as err:
        store.set_status(a, "golden")
    assert "'golden'" in err.value.msg
    assert store.load(a["id"])["status"] == "candidate"


# ---------------------------------------------------------------------------------------- gc


def test_collect_garbage_removes_only_unreferenced_blobs(store, tmp_path):
    shas = {}
    for name in ("kept", "shared", "orphan"):
        src = tmp_path / name
        src.write_bytes(name.encode() * 10)
        shas[name] = store.put_file(str(src))
    make_point(store, components={"config": {"paths": [{"entries": [{"blob": shas["kept"]},
                                                                    {"blob": shas["shared"]}]}]}})
    doomed = make_point(store, components={"config": {"paths": [{"entries": [{"blob": shas["shared"]}]}]}})
    assert store.collect_garbage() == 1
    assert store.blob_ok(shas["kept"]) and store.blob_ok(shas["shared"])
    assert not os.path.exists(store.blob_path(shas["orphan"]))
    store.delete_point(doomed["id"])
    assert store.collect_garbage() == 0
    assert store.blob_ok(shas["shared"])


def test_collect_garbage_keeps_everything_when_a_manifest_is_unreadable(store, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"x")
    sha = store.put_file(str(src))
    point = make_point(store)
    with open(store.manifest_path(point["id"]), "w", encoding="utf-8") as stream:
        stream.write("garbage")
    assert store.collect_garbage() == 0
    assert store.blob_ok(sha)


# ---------------------------------------------------------------------------------------- journal


def test_journal_appends_json_lines_with_actor(store, monkeypatch):
    monkeypatch.setenv("FLEETOPS_ACTOR", "alice@oncall")
    first = store.journal("capture", point="p1", extra={"n": 1})
    monkeypatch.setenv("FLEETOPS_ACTOR", "bob")
    store.journal("restore", point="p1", outcome="restored")
    with open(store.journal_path, encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records[0]["actor"] == "alice@oncall" and records[0]["event"] == "capture"
    assert records[0]["extra"] == {"n": 1} and records[0]["point"] == "p1"
    assert records[1]["actor"] == "bob" and records[1]["outcome"] == "restored"
    assert records[0] == first
    assert store.read_journal() == records
    assert store.read_journal(limit=1) == records[1:]
    datetime.fromisoformat(records[0]["ts"])


def test_journal_keeps_no_secret(store):
    record = store.journal("rollback", outcome="failed", reason="INC-9 DB_PASSWORD=hunter2-pw",
                           error="connect postgres://app:pa55word@db/app failed", details={"api_token": "tok-123456"})
    text = open(store.journal_path, encoding="utf-8").read()
    for secret in ("hunter2-pw", "pa55word", "tok-123456"):
        assert secret not in text and secret not in json.dumps(record)
    assert record["reason"].startswith("INC-9 DB_PASSWORD=") and record["details"] == {"api_token": "********"}


def test_actor_falls_back_to_sudo_user(monkeypatch):
    monkeypatch.delenv("FLEETOPS_ACTOR", raising=False)
    monkeypatch.setenv("SUDO_USER", "carol")
    assert _store.actor() == "carol"


def test_resolve_latest_safety_is_the_newest_safety_point(store):
    with pytest.raises(RollbackError) as err:
        store.resolve("latest_safety")
    assert "no safety point" in err.value.msg
    first = make_point(store, label="safety-1", status="safety", now=T0)
    second = make_point(store, label="safety-2", status="safety", now=T0 + timedelta(seconds=1))
    make_point(store, label="later-capture", now=T0 + timedelta(seconds=2))
    assert store.resolve("latest_safety")["id"] == second["id"] != first["id"]
