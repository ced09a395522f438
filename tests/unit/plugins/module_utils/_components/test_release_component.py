"""Unit tests for module_utils/_release_component.py: the `current` symlink over release directories."""

import os
import threading

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._components.release.component import ReleaseComponent

RELEASE = ReleaseComponent()


@pytest.fixture
def app(tmp_path):
    """An ansistrano layout: releases/v1, releases/v2 and `current -> releases/v1`."""
    root = tmp_path / "srv" / "app"
    for name in ("v1", "v2", "v3"):
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "VERSION").write_text(name)
    os.symlink("releases/v1", root / "current")
    return root


def current(app):
    return str(app / "current")


def leftovers(app):
    return sorted(n for n in os.listdir(app) if n != "current" and n != "releases")


def capture(store, app, validate=None):
    spec = RELEASE.normalize({"path": current(app), "validate": validate})
    RELEASE.check_capturable(spec)
    return RELEASE.capture(store, spec)


def test_capture_records_target_and_release(store, app):
    record = capture(store, app)
    assert record == {"path": current(app), "validate": None, "target": "releases/v1", "release": "v1"}
    assert RELEASE.plan(store, record, "p1") == []
    assert RELEASE.scope(record) == {"path": current(app), "validate": None}


def test_plan_and_apply_flip_the_symlink(store, app):
    record = capture(store, app)
    os.unlink(current(app))
    os.symlink("releases/v2", current(app))
    changes = RELEASE.plan(store, record, "p1")
    assert changes == [{"path": current(app), "action": "switch",
                        "from": {"target": "releases/v2", "release": "v2"},
                        "to": {"target": "releases/v1", "release": "v1"}}]
    diff = RELEASE.diff(store, record, changes)
    assert diff[0]["before"] == "-> releases/v2\n" and diff[0]["after"] == "-> releases/v1\n"
    RELEASE.apply(store, record, changes)
    assert os.path.islink(current(app))
    assert os.readlink(current(app)) == "releases/v1"
    assert (app / "current" / "VERSION").read_text() == "v1"
    assert RELEASE.plan(store, record, "p1") == []
    assert leftovers(app) == []
    RELEASE.apply(store, record, [])  # nothing to do is a no-op
    assert os.readlink(current(app)) == "releases/v1"


def test_absolute_target_round_trip(store, app):
    os.unlink(current(app))
    os.symlink(str(app / "releases" / "v3"), current(app))
    record = capture(store, app)
    assert record["release"] == "v3"
    os.unlink(current(app))
    os.symlink("releases/v1", current(app))
    RELEASE.apply(store, record, RELEASE.plan(store, record, "p1"))
    assert os.readlink(current(app)) == str(app / "releases" / "v3")


def test_missing_current_symlink_is_recreated(store, app):
    record = capture(store, app)
    os.unlink(current(app))
    changes = RELEASE.plan(store, record, "p1")
    assert changes[0]["from"] == {"target": None, "release": None}
    RELEASE.apply(store, record, changes)
    assert os.readlink(current(app)) == "releases/v1"


def test_flip_is_atomic_for_readers(store, app):
    """A reader never finds `current` missing or not a symlink while it is flipped back and forth."""
    to_v1 = capture(store, app)
    os.unlink(current(app))
    os.symlink("releases/v2", current(app))
    to_v2 = capture(store, app)
    problems, done = [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                target = os.readlink(current(app))
                if target not in ("releases/v1", "releases/v2"):
                    problems.append(target)
            except OSError as err:
                problems.append(repr(err))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _attempt in range(150):
            for record in (to_v1, to_v2):
                RELEASE.apply(store, record, RELEASE.plan(store, record, "p"))
    finally:
        done.set()
        thread.join()
    assert problems == []
    assert os.readlink(current(app)) == "releases/v2"
    assert leftovers(app) == []


def test_missing_release_dir_makes_plan_fail_and_changes_nothing(store, app):
    record = capture(store, app)
    os.unlink(current(app))
    os.symlink("releases/v2", current(app))
    (app / "releases" / "v1" / "VERSION").unlink()
    (app / "releases" / "v1").rmdir()
    with pytest.raises(RollbackError) as err:
        RELEASE.plan(store, record, "p1")
    missing = str(app / "releases" / "v1")
    assert missing in err.value.msg
    assert "p1" in err.value.msg
    assert err.value.details["path"] == missing
    assert os.readlink(current(app)) == "releases/v2"
    assert leftovers(app) == []


def test_real_directory_at_path_is_refused(store, app):
    record = capture(store, app)
    os.unlink(current(app))
    (app / "current").mkdir()
    (app / "current" / "data").write_text("precious")
    with pytest.raises(RollbackError) as err:
        RELEASE.plan(store, record, "p1")
    assert current(app) in err.value.msg
    assert "no longer a symlink" in err.value.msg and "real directory" in err.value.msg
    assert (app / "current" / "data").read_text() == "precious"
    assert not os.path.islink(current(app))
    with pytest.raises(RollbackError) as err:
        RELEASE.check_capturable(RELEASE.normalize({"path": current(app)}))
    assert "is not a symlink" in err.value.msg


def test_failing_validate_leaves_symlink_as_is(store, app):
    record = capture(store, app, validate="test ! -e %s")
    os.unlink(current(app))
    os.symlink("releases/v2", current(app))
    changes = RELEASE.plan(store, record, "p1")
    with pytest.raises(RollbackError) as err:
        RELEASE.apply(store, record, changes)
    assert "failed validation" in err.value.msg
    assert str(app / "releases" / "v1") in err.value.msg
    assert os.readlink(current(app)) == "releases/v2"
    assert leftovers(app) == []


def test_passing_validate_gets_the_release_directory(store, app):
    record = capture(store, app, validate="test -f %s/VERSION")
    os.unlink(current(app))
    os.symlink("releases/v2", current(app))
    RELEASE.apply(store, record, RELEASE.plan(store, record, "p1"))
    assert os.readlink(current(app)) == "releases/v1"


def test_check_capturable_errors(app):
    missing = str(app / "nope")
    with pytest.raises(RollbackError) as err:
        RELEASE.check_capturable({"path": missing, "validate": None})
    assert missing in err.value.msg and "does not exist" in err.value.msg
    os.symlink("releases/gone", app / "dangling")
    with pytest.raises(RollbackError) as err:
        RELEASE.check_capturable({"path": str(app / "dangling"), "validate": None})
    assert "releases/gone" in err.value.msg


@pytest.mark.parametrize("spec, words", [
    ({"path": "srv/app/current"}, ["components.release.path", "'srv/app/current'", "absolute"]),
    ({"path": None}, ["components.release.path"]),
    ({"path": "/srv/app/current", "validate": "true"}, ["components.release.validate", "'true'", "%s"]),
    ({"path": "/srv/app/current", "keep": 3}, ["components.release", "'keep'"]),
    ("/srv/app/current", ["components.release", "'/srv/app/current'"]),
])
def test_normalize_errors(spec, words):
    with pytest.raises(RollbackError) as err:
        RELEASE.normalize(spec)
    for word in words:
        assert word in err.value.msg, (word, err.value.msg)


def test_normalize_normalizes_path():
    assert RELEASE.normalize({"path": "/srv//app/current/"}) == {"path": "/srv/app/current", "validate": None}
