"""Unit tests for module_utils/_config_component.py on real trees: content, modes, owners, symlinks."""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.config.component import (
    STAGE_PREFIX, ConfigComponent)
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import REDACTED
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store
from tree_listing import listing  # noqa: E402  (tests/unit is on sys.path under pytest)

NOBODY = 65534
CONFIG = ConfigComponent()


# ---------------------------------------------------------------------------------------- helpers


def stage_leftovers(path):
    return [os.path.join(d, n) for d, dirs, files in os.walk(path) for n in dirs + files
            if n.startswith(STAGE_PREFIX)]


def write(path, data, mode=0o644, owner=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)
    if owner is not None:
        os.chown(path, *owner)
    os.chmod(path, mode)


def restore(store, record):
    changes = CONFIG.plan(store, record, "p1")
    CONFIG.apply(store, record, changes)
    return changes


@pytest.fixture
def tree(tmp_path):
    """/etc-like tree: nested dirs, a symlink, modes 0600/0750/0444, a file owned by nobody."""
    root = tmp_path / "etc" / "app"
    write(str(root / "app.env"), b"HOST=db\nDB_PASSWORD=original-secret\n", 0o600)
    write(str(root / "conf.d" / "10-main.conf"), b"workers 4;\n", 0o444)
    write(str(root / "conf.d" / "deep" / "er" / "leaf.conf"), b"leaf\n", 0o640)
    write(str(root / "owned.conf"), b"owned by nobody\n", 0o640, owner=(NOBODY, NOBODY))
    write(str(root / "blob.bin"), bytes(range(256)) * 40, 0o600)
    os.chmod(root / "conf.d", 0o750)
    os.symlink("conf.d/10-main.conf", root / "main.conf")
    os.symlink("/nonexistent/dangling", root / "dangling")
    os.lchown(root / "dangling", NOBODY, 0)
    return str(root)


def capture(store, path, validate=None):
    spec = CONFIG.normalize({"paths": [{"path": path, "validate": validate} if validate else path]})
    record = CONFIG.capture(store, spec)
    assert CONFIG.plan(store, record, "p1") == []
    return record


# ---------------------------------------------------------------------------------------- round trip


def test_capture_records_the_tree(store, tree):
    record = capture(store, tree)
    (root,) = record["paths"]
    entries = {e["rel"]: e for e in root["entries"]}
    assert set(entries) == {".", "app.env", "conf.d", "conf.d/10-main.conf", "conf.d/deep", "conf.d/deep/er",
                            "conf.d/deep/er/leaf.conf", "owned.conf", "blob.bin", "main.conf", "dangling"}
    assert entries["owned.conf"]["uid"] == NOBODY and entries["owned.conf"]["gid"] == NOBODY
    assert entries["conf.d"]["mode"] == 0o750 and entries["app.env"]["mode"] == 0o600
    assert entries["main.conf"] == dict(entries["main.conf"], type="link", target="conf.d/10-main.conf")
    assert store.blob_ok(entries["blob.bin"]["blob"])
    with store.open_blob(entries["app.env"]["blob"]) as stream:
        assert stream.read() == b"HOST=db\nDB_PASSWORD=original-secret\n"


def test_restore_round_trip_after_many_changes(store, tree):
    before = listing(tree)
    record = capture(store, tree)
    # Content, mode, owner, symlink target, deletions, extras.
    write(os.path.join(tree, "app.env"), b"HOST=db\nDB_PASSWORD=changed\n", 0o600)
    os.chmod(os.path.join(tree, "conf.d", "10-main.conf"), 0o644)
    os.chmod(os.path.join(tree, "conf.d"), 0o755)
    os.chown(os.path.join(tree, "owned.conf"), 0, 0)
    os.chown(os.path.join(tree, "app.env"), NOBODY, NOBODY)
    os.unlink(os.path.join(tree, "main.conf"))
    os.symlink("app.env", os.path.join(tree, "main.conf"))
    os.lchown(os.path.join(tree, "dangling"), 0, 0)
    os.unlink(os.path.join(tree, "blob.bin"))
    shutil.rmtree(os.path.join(tree, "conf.d", "deep"))
    write(os.path.join(tree, "extra.conf"), b"extra\n")
    write(os.path.join(tree, "newdir", "sub", "x.conf"), b"x\n")
    os.symlink("/etc/passwd", os.path.join(tree, "extra-link"))
    assert listing(tree) != before
    changes = restore(store, record)
    actions = {(os.path.relpath(c["path"], tree), c["action"]) for c in changes}
    assert ("app.env", "update") in actions
    assert ("blob.bin", "create") in actions
    assert ("extra.conf", "remove") in actions and ("newdir", "remove") in actions
    assert ("owned.conf", "attrs") in actions and ("dangling", "attrs") in actions
    assert listing(tree) == before
    assert CONFIG.plan(store, record, "p1") == []
    assert stage_leftovers(os.path.dirname(tree)) == []


def test_file_replaced_by_directory_is_restored(store, tree):
    before = listing(tree)
    record = capture(store, tree)
    target = os.path.join(tree, "app.env")
    os.unlink(target)
    write(os.path.join(target, "inner", "file"), b"now a dir\n")
    changes = CONFIG.plan(store, record, "p1")
    assert [c["action"] for c in changes if c["path"] == target] == ["replace"]
    CONFIG.apply(store, record, changes)
    assert listing(tree) == before
    assert CONFIG.plan(store, record, "p1") == []


def test_directory_replaced_by_file_is_restored(store, tree):
    before = listing(tree)
    record = capture(store, tree)
    target = os.path.join(tree, "conf.d")
    shutil.rmtree(target)
    write(target, b"now a file\n", 0o600)
    restore(store, record)
    assert listing(tree) == before
    assert CONFIG.plan(store, record, "p1") == []


def test_symlink_replaced_by_directory_and_file_by_symlink(store, tree):
    before = listing(tree)
    record = capture(store, tree)
    os.unlink(os.path.join(tree, "main.conf"))
    os.mkdir(os.path.join(tree, "main.conf"))
    os.unlink(os.path.join(tree, "app.env"))
    os.symlink("/etc/hostname", os.path.join(tree, "app.env"))
    restore(store, record)
    assert listing(tree) == before


def test_directory_replaced_by_symlink_to_a_directory_is_restored(store, tree, tmp_path):
    """conf.d was swapped for a symlink to another directory: restore puts the real directory back,
    and stages nothing in the directory the symlink points at."""
    before = listing(tree)
    record = capture(store, tree)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(os.path.join(tree, "conf.d"))
    os.symlink(str(outside), os.path.join(tree, "conf.d"))
    restore(store, record)
    assert listing(tree) == before
    assert os.listdir(outside) == []


def test_single_file_root_round_trip(store, tmp_path):
    path = str(tmp_path / "nginx.conf")
    write(path, b"events {}\n", 0o640, owner=(0, NOBODY))
    before = listing(path)
    record = capture(store, path)
    write(path, b"broken", 0o777, owner=(NOBODY, NOBODY))
    restore(store, record)
    assert listing(path) == before
    os.unlink(path)
    restore(store, record)
    assert listing(path) == before
    assert CONFIG.plan(store, record, "p1") == []


def test_deleted_root_tree_is_recreated(store, tree):
    before = listing(tree)
    record = capture(store, tree)
    shutil.rmtree(tree)
    changes = CONFIG.plan(store, record, "p1")
    assert {c["action"] for c in changes} == {"create"}
    CONFIG.apply(store, record, changes)
    assert listing(tree) == before


def test_absent_root_is_removed_on_restore(store, tmp_path):
    path = str(tmp_path / "etc" / "app.d")
    os.makedirs(os.path.dirname(path))
    spec = CONFIG.normalize({"paths": [path]})
    record = CONFIG.capture(store, spec)
    assert record["paths"][0]["entries"] == [{"rel": ".", "type": "absent"}]
    assert CONFIG.plan(store, record, "p1") == []
    write(os.path.join(path, "sub", "f"), b"appeared later\n")
    os.symlink("sub/f", os.path.join(path, "link"))
    changes = CONFIG.plan(store, record, "p1")
    assert {c["action"] for c in changes} == {"remove"}
    assert changes[-1]["path"] == path  # the root goes last, after its children
    CONFIG.apply(store, record, changes)
    assert not os.path.lexists(path)
    assert os.path.isdir(os.path.dirname(path))
    assert CONFIG.plan(store, record, "p1") == []


def test_stage_files_are_ignored_by_scan(store, tree):
    record = capture(store, tree)
    write(os.path.join(tree, STAGE_PREFIX + "leftover"), b"interrupted\n")
    assert CONFIG.plan(store, record, "p1") == []


def test_multiple_roots_and_select(store, tmp_path):
    one, two = str(tmp_path / "one.conf"), str(tmp_path / "two.conf")
    write(one, b"1\n")
    write(two, b"2\n")
    record = CONFIG.capture(store, CONFIG.normalize({"paths": [one, two]}))
    write(one, b"changed\n")
    write(two, b"changed\n")
    only_one = CONFIG.select(record, [one])
    assert [r["path"] for r in only_one["paths"]] == [one]
    restore(store, only_one)
    assert open(one, "rb").read() == b"1\n"
    assert open(two, "rb").read() == b"changed\n"
    with pytest.raises(RollbackError) as err:
        CONFIG.select(record, [str(tmp_path / "three.conf")])
    assert "three.conf" in err.value.msg
    assert CONFIG.scope(record) == {"paths": [{"path": one, "validate": None}, {"path": two, "validate": None}]}


# ---------------------------------------------------------------------------------------- validate


def test_failing_validate_changes_nothing(store, tree, tmp_path):
    record = capture(store, tree, validate="test ! -e %s")
    write(os.path.join(tree, "app.env"), b"HOST=db\nDB_PASSWORD=changed\n", 0o600)
    os.unlink(os.path.join(tree, "blob.bin"))
    write(os.path.join(tree, "extra.conf"), b"extra\n")
    os.chmod(os.path.join(tree, "conf.d"), 0o700)
    os.unlink(os.path.join(tree, "main.conf"))
    os.symlink("elsewhere", os.path.join(tree, "main.conf"))
    shutil.rmtree(os.path.join(tree, "conf.d", "deep"))
    before = listing(str(tmp_path / "etc"))
    changes = CONFIG.plan(store, record, "p1")
    assert changes
    with pytest.raises(RollbackError) as err:
        CONFIG.apply(store, record, changes)
    assert "failed validation" in err.value.msg
    assert "test ! -e %s" in err.value.msg
    assert err.value.details["path"].startswith(tree + "/")
    assert listing(str(tmp_path / "etc")) == before
    assert stage_leftovers(str(tmp_path)) == []


def test_validate_sees_the_candidate_body(store, tmp_path):
    path = str(tmp_path / "site.conf")
    write(path, b"server good;\n")
    record = capture(store, path, validate="grep -q 'server good' %s")
    write(path, b"server bad;\n")
    restore(store, record)
    assert open(path, "rb").read() == b"server good;\n"
    assert stage_leftovers(str(tmp_path)) == []


def test_validate_command_that_cannot_run_changes_nothing(store, tmp_path):
    path = str(tmp_path / "site.conf")
    write(path, b"one\n")
    record = capture(store, path, validate="/nonexistent/validator %s")
    write(path, b"two\n")
    with pytest.raises(RollbackError) as err:
        restore(store, record)
    # Refused at the plan, before anything is staged or swapped.
    assert "/nonexistent/validator" in err.value.msg and "nothing was changed" in err.value.msg
    assert open(path, "rb").read() == b"two\n"
    assert stage_leftovers(str(tmp_path)) == []


# ---------------------------------------------------------------------------------------- corruption


def test_corrupt_blob_makes_plan_fail_naming_the_path(store, tree):
    record = capture(store, tree)
    entry = next(e for e in record["paths"][0]["entries"] if e["rel"] == "app.env")
    target = os.path.join(tree, "app.env")
    write(target, b"changed\n", 0o600)
    with open(store.blob_path(entry["blob"]), "wb") as stream:
        stream.write(b"tampered")
    before = listing(tree)
    with pytest.raises(RollbackError) as err:
        CONFIG.plan(store, record, "p1")
    assert target in err.value.msg
    assert "p1" in err.value.msg
    assert err.value.details["path"] == target
    assert err.value.details["corrupt_blob"] == entry["blob"][:12]
    os.unlink(store.blob_path(entry["blob"]))
    with pytest.raises(RollbackError) as err:
        CONFIG.plan(store, record, "p1")
    assert target in err.value.msg
    assert listing(tree) == before


def test_corrupt_blob_of_unchanged_file_does_not_block(store, tree):
    record = capture(store, tree)
    entry = next(e for e in record["paths"][0]["entries"] if e["rel"] == "blob.bin")
    with open(store.blob_path(entry["blob"]), "wb") as stream:
        stream.write(b"tampered")
    assert CONFIG.plan(store, record, "p1") == []


# ---------------------------------------------------------------------------------------- normalize


@pytest.mark.parametrize("spec, words", [
    ({"paths": ["etc/app"]}, ["components.config.paths[0]", "'etc/app'", "absolute"]),
    ({"paths": ["/etc/app", "/etc/app/conf.d"]}, ["'/etc/app/conf.d'", "'/etc/app'", "inside"]),
    ({"paths": ["/etc/app/", "/etc/app"]}, ["components.config.paths[1]", "twice"]),
    ({"paths": [{"path": "/etc/app", "validate": "nginx -t"}]},
     ["components.config.paths[0].validate", "'nginx -t'", "%s"]),
    ({"paths": ["/etc/app"], "owner": "root"}, ["components.config", "'owner'"]),
    ({"paths": [{"path": "/etc/app", "mode": "0644"}]}, ["components.config.paths[0]", "'mode'"]),
    ({"paths": []}, ["components.config.paths", "non-empty"]),
    ({"paths": {"path": "/etc/app"}}, ["components.config", "paths", "list"]),
    ({"paths": ["/"]}, ["components.config.paths[0]", "'/'"]),
    ({"paths": [42]}, ["components.config.paths[0]", "42"]),
    (["/etc/app"], ["components.config", "'/etc/app'"]),
])
def test_normalize_errors_name_parameter_and_value(spec, words):
    with pytest.raises(RollbackError) as err:
        CONFIG.normalize(spec)
    for word in words:
        assert word in err.value.msg, (word, err.value.msg)


def test_normalize_accepts_strings_and_dicts():
    assert CONFIG.normalize({"paths": ["/etc/app/", {"path": "/etc/nginx//nginx.conf", "validate": "nginx -t -c %s"}]}) \
        == {"paths": [{"path": "/etc/app", "validate": None},
                      {"path": "/etc/nginx/nginx.conf", "validate": "nginx -t -c %s"}]}
    # Siblings that share a prefix are not nested.
    assert len(CONFIG.normalize({"paths": ["/etc/app", "/etc/app2"]})["paths"]) == 2


def test_check_capturable_names_missing_path(tmp_path):
    missing = str(tmp_path / "missing.conf")
    with pytest.raises(RollbackError) as err:
        CONFIG.check_capturable(CONFIG.normalize({"paths": [missing]}))
    assert missing in err.value.msg


def test_special_files_are_refused(store, tmp_path):
    root = tmp_path / "withfifo"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(RollbackError) as err:
        CONFIG.capture(store, CONFIG.normalize({"paths": [str(root)]}))
    assert str(root / "pipe") in err.value.msg


# ---------------------------------------------------------------------------------------- diff


def test_diff_redacts_secrets(store, tree):
    record = capture(store, tree)
    write(os.path.join(tree, "app.env"), b"HOST=db2\nDB_PASSWORD=new-secret-value\n", 0o600)
    write(os.path.join(tree, "blob.bin"), b"\x00\x01\x02", 0o600)
    os.chmod(os.path.join(tree, "owned.conf"), 0o600)
    changes = CONFIG.plan(store, record, "p1")
    diffs = CONFIG.diff(store, record, changes)
    text = "".join(d["before"] + d["after"] for d in diffs)
    assert "original-secret" not in text and "new-secret-value" not in text
    by_path = {d["before_header"]: d for d in diffs}
    env = by_path[os.path.join(tree, "app.env")]
    assert "HOST=db2" in env["before"] and "HOST=db\n" in env["after"]
    assert "DB_PASSWORD=%s" % REDACTED in env["before"] and "DB_PASSWORD=%s" % REDACTED in env["after"]
    assert "binary" in by_path[os.path.join(tree, "blob.bin")]["after"]
    assert "mode: 0640" in by_path[os.path.join(tree, "owned.conf")]["after"]


def test_plan_summaries(store, tree):
    record = capture(store, tree)
    os.chmod(os.path.join(tree, "owned.conf"), 0o600)
    (change,) = CONFIG.plan(store, record, "p1")
    assert change["action"] == "attrs"
    assert change["from"]["mode"] == "0600" and change["to"]["mode"] == "0640"
    assert change["to"]["owner"] == "%d:%d" % (NOBODY, NOBODY)


# ---------------------------------------------------------------------------------------- property

NAMES = st.text(alphabet="abcxyz_.-0", min_size=1, max_size=4).filter(
    lambda n: n not in (".", "..") and not n.startswith(STAGE_PREFIX))
FILE_MODES = st.sampled_from([0o600, 0o644, 0o640, 0o444, 0o400, 0o755, 0o000, 0o777, 0o4755, 0o2750])
DIR_MODES = st.sampled_from([0o700, 0o755, 0o750, 0o500, 0o555, 0o1777, 0o2775])
OWNERS = st.sampled_from([(0, 0), (NOBODY, NOBODY), (0, NOBODY), (NOBODY, 0)])
FILES = st.tuples(st.just("file"), st.binary(max_size=64), FILE_MODES, OWNERS)
LINKS = st.tuples(st.just("link"), st.sampled_from(["a", "../x", "/etc/hostname", "nowhere/at/all"]), OWNERS)
TREES = st.recursive(
    st.one_of(FILES, LINKS),
    lambda children: st.tuples(st.just("dir"), st.dictionaries(NAMES, children, max_size=4), DIR_MODES, OWNERS),
    max_leaves=8)
ROOTS = st.tuples(st.just("dir"), st.dictionaries(NAMES, TREES, max_size=4), DIR_MODES, OWNERS)


def build(path, node):
    kind = node[0]
    if kind == "file":
        _kind, data, mode, owner = node
        with open(path, "wb") as stream:
            stream.write(data)
        os.chown(path, *owner)
        os.chmod(path, mode)
    elif kind == "link":
        _kind, target, owner = node
        os.symlink(target, path)
        os.lchown(path, *owner)
    else:
        _kind, children, mode, owner = node
        os.mkdir(path)
        for name, child in children.items():
            build(os.path.join(path, name), child)
        os.chown(path, *owner)
        os.chmod(path, mode)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=st.one_of(ROOTS, FILES), current=st.one_of(ROOTS, FILES, st.none()))
def test_random_trees_round_trip(wanted, current):
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(os.path.join(scratch, "store")).ensure()
        path = os.path.join(scratch, "target")
        build(path, wanted)
        expected = listing(path)
        record = CONFIG.capture(store, CONFIG.normalize({"paths": [path]}))
        assert CONFIG.plan(store, record, "p") == []
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        if current is not None:
            build(path, current)
        changes = CONFIG.plan(store, record, "p")
        CONFIG.apply(store, record, changes)
        assert listing(path) == expected
        assert CONFIG.plan(store, record, "p") == []
        assert stage_leftovers(scratch) == []
