"""Bad input for the store modules (restore_point, config_snapshot, config_restore, restore_point_info): every case
runs the real module process and asserts a clear message that names the value, and that nothing anywhere in the
test's tree changed: not the host, and not the store either.
"""
import os

import pytest
from fault_host import SECRET
from harness import assert_clear_failure, changed_entries, run_module, tree_state

from ansible_collections.fleetops.rollback.plugins.module_utils._store import points as _points
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import Store


class Scene:
    """A host with a known good point, and beside it every kind of wrong thing a path option can name."""

    def __init__(self, host):
        self.host = host
        base = host.base
        store = Store(host.store)
        with _points.locked(store, {}, "test", create=True):
            _points.capture(store, _points.normalize_components(host.components()), label="good", status="known_good")
        self.fifo = os.path.join(base, "fifo")
        os.mkfifo(self.fifo)
        self.dangling = os.path.join(base, "dangling")
        os.symlink(os.path.join(base, "nowhere"), self.dangling)
        self.foreign = os.path.join(base, "foreign")
        os.makedirs(os.path.join(self.foreign, "data"))
        with open(os.path.join(self.foreign, "notes.txt"), "w", encoding="utf-8") as stream:
            stream.write("not a store\n")
        self.link_to_foreign = os.path.join(base, "link-to-foreign")
        os.symlink(self.foreign, self.link_to_foreign)
        self.plain_dir = os.path.join(base, "plain-dir")
        os.makedirs(self.plain_dir)

    def state(self):
        return tree_state(self.host.base)


@pytest.fixture
def scene(fault_host):
    return Scene(fault_host)


def check(scene, module, args, *mentions):
    before = scene.state()
    run = run_module(module, args)
    assert_clear_failure(run, *mentions, secrets=[SECRET])
    after = scene.state()
    assert after == before, "a refused run changed the tree: %s" % changed_entries(before, after)
    return run


# ------------------------------------------------------------------------------------------------ store_path
# Each wrong store_path, for every module that takes one (and for each state of restore_point).

STORE_PATHS = {
    "empty": lambda s: ("", "store_path"),
    "relative": lambda s: ("var/lib/fleetops", "not an absolute path"),
    "nul-byte": lambda s: (s.host.store + "\x00x", "NUL byte"),
    "regular-file": lambda s: (s.host.env_file, "a regular file"),
    "fifo": lambda s: (s.fifo, "a FIFO"),
    "char-device": lambda s: ("/dev/null", "a character device"),
    "dangling-link": lambda s: (s.dangling, "dangling"),
    "foreign-directory": lambda s: (s.foreign, "2 entries"),
    "link-to-foreign-directory": lambda s: (s.link_to_foreign, "a symbolic link to"),
    "dot-dot-to-a-foreign-directory": lambda s: (s.host.root + "/..", "not a restore point store"),
    "under-a-file": lambda s: (s.host.env_file + "/store", "not a directory"),
}

STORE_MODULES = {
    "restore_point-capture": ("restore_point", lambda s: {"label": "x", "components": s.host.components()}),
    "restore_point-restore": ("restore_point", lambda s: {"state": "restored"}),
    "restore_point-mark": ("restore_point", lambda s: {"point": "good", "status": "bad"}),
    "restore_point-prune": ("restore_point", lambda s: {"state": "absent", "keep": 0}),
    "config_snapshot": ("config_snapshot", lambda s: {"paths": [s.host.etc]}),
    "config_restore": ("config_restore", lambda s: {}),
    "restore_point_info": ("restore_point_info", lambda s: {"point": "good"}),
}


@pytest.mark.bad_input("store_path")
@pytest.mark.parametrize("case", sorted(STORE_PATHS))
@pytest.mark.parametrize("target", sorted(STORE_MODULES))
def test_a_store_path_that_is_not_a_store_is_refused_and_left_alone(scene, target, case):
    module, args = STORE_MODULES[target]
    path, needle = STORE_PATHS[case](scene)
    run = check(scene, module, dict(args(scene), store_path=path), needle)
    if path and "\x00" not in path:
        assert os.path.normpath(path) in run.msg or repr(path) in run.msg


@pytest.mark.bad_input("config_restore")
def test_config_restore_with_a_mistyped_store_path_creates_nothing(scene):
    typo = scene.host.store + "-typo"
    check(scene, "config_restore", {"store_path": typo}, typo, "no restore point store")
    assert not os.path.exists(typo)


@pytest.mark.bad_input("restore_point_info")
def test_info_with_a_mistyped_store_path_and_a_point_creates_nothing(scene):
    typo = scene.host.store + "-typo"
    check(scene, "restore_point_info", {"store_path": typo, "point": "good"}, typo, "no restore point store")
    assert not os.path.exists(typo)


# ------------------------------------------------------------------------------------------------ restore_point

RESTORE_CASES = {
    "point-is-a-relative-path": ({"point": "../../x"}, "'../../x'"),
    "point-with-a-slash": ({"point": "a/b"}, "'a/b'"),
    "point-with-nul": ({"point": "good\x00"}, "point"),
    "point-dot-dot": ({"point": ".."}, "'..'"),
    "point-unknown-label": ({"point": "release-99"}, "'release-99'"),
    "point-id-that-does-not-exist": ({"point": "20200101T000000.000000Z-abcd"}, "20200101T000000.000000Z-abcd"),
    "restart-commands-scalar": ({"restart_commands": 5}, "5 is not a list of commands"),
    "restart-commands-string": ({"restart_commands": "systemctl restart app"}, "'systemctl restart app'"),
    "restart-commands-flat-list": ({"restart_commands": ["systemctl", "restart"]}, "'systemctl'"),
    "restart-commands-empty-argv": ({"restart_commands": [[]]}, "restart_commands[0]"),
    "restart-commands-missing-program": ({"restart_commands": [["/usr/bin/no-such-restart"]]},
                                         "/usr/bin/no-such-restart"),
    "restart-commands-program-not-on-path": ({"restart_commands": [["no-such-restart-xyz", "app"]]},
                                             "no-such-restart-xyz"),
    "restart-commands-dict-argument": ({"restart_commands": [["echo", {"a": 1}]]}, "{'a': 1}"),
    "restart-commands-bool-argument": ({"restart_commands": [["echo", True]]}, "True"),
    "restart-commands-nul-argument": ({"restart_commands": [["echo", "a\x00b"]]}, "NUL"),
    "restart-commands-second-is-bad": ({"restart_commands": [["true"], ["/nope/restart"]]}, "restart_commands[1]"),
    "components-not-a-list": ({"components": 5}, "components"),
    "only-list-of-numbers": ({"only": [1, 2]}, "only"),
    "only-unknown-name": ({"only": ["config", "kernel"]}, "kernel"),
    "only-not-in-point": ({"only": ["database"]}, "database"),
    "components-options-for-config": ({"components": {"config": {"paths": ["/etc"]}}}, "only: [config]"),
    "select-unknown-component": ({"select": {"kernel": ["x"]}}, "kernel"),
    "select-not-captured-path": ({"select": {"config": ["/etc/never-captured"]}}, "/etc/never-captured"),
    "select-empty-list": ({"select": {"config": []}}, "select.config"),
    "select-whole-component": ({"select": {"release": ["v1"]}}, "restored whole"),
    "select-list-of-numbers": ({"select": {"config": [1]}}, "select.config"),
    "lock-timeout-negative": ({"lock_timeout": -5}, "-5"),
    "lock-timeout-huge": ({"lock_timeout": 1e12}, "1000000000000"),
    "lock-timeout-nan": ({"lock_timeout": "nan"}, "nan"),
    "lock-timeout-beyond-any-float": ({"lock_timeout": 10 ** 400}, "out of range: lock_timeout"),
    "lock-timeout-text": ({"lock_timeout": "soon"}, "lock_timeout"),
    "state-unknown": ({"state": "rolledback"}, "rolledback"),
}


@pytest.mark.bad_input("restore_point")
@pytest.mark.parametrize("case", sorted(RESTORE_CASES))
def test_restore_point_restore_refuses_bad_input_and_changes_nothing(scene, case):
    scene.host.break_it()
    args, needle = RESTORE_CASES[case]
    check(scene, "restore_point", dict({"store_path": scene.host.store, "state": "restored"}, **args), needle)


CAPTURE_CASES = {
    "components-string": (lambda s: "config", "give a dict"),
    "components-empty": (lambda s: {}, "give a dict"),
    "components-unknown": (lambda s: {"kernel": {}}, "'kernel'"),
    "config-not-a-dict": (lambda s: {"config": ["/etc"]}, "components.config"),
    "config-paths-empty": (lambda s: {"config": {"paths": []}}, "non-empty list"),
    "config-paths-relative": (lambda s: {"config": {"paths": ["etc/app"]}}, "'etc/app'"),
    "config-paths-root": (lambda s: {"config": {"paths": ["/"]}}, "'/'"),
    "config-paths-root-via-dot-dot": (lambda s: {"config": {"paths": ["/etc/.."]}}, "'/'"),
    "config-paths-nul": (lambda s: {"config": {"paths": [s.host.etc + "\x00"]}}, "NUL byte"),
    "config-paths-number": (lambda s: {"config": {"paths": [5]}}, "5"),
    "config-paths-missing": (lambda s: {"config": {"paths": [s.host.etc + "/nope"]}}, "does not exist"),
    "config-paths-fifo": (lambda s: {"config": {"paths": [s.fifo]}}, "a FIFO"),
    "config-paths-device": (lambda s: {"config": {"paths": ["/dev/null"]}}, "a character device"),
    "config-paths-nested": (lambda s: {"config": {"paths": [s.host.etc, s.host.env_file]}}, "inside"),
    "config-paths-twice": (lambda s: {"config": {"paths": [s.host.etc, s.host.etc + "/"]}}, "listed twice"),
    "config-validate-without-placeholder": (
        lambda s: {"config": {"paths": [{"path": s.host.etc, "validate": "nginx -t"}]}}, "'nginx -t'"),
    "config-validate-unbalanced-quote": (
        lambda s: {"config": {"paths": [{"path": s.host.etc, "validate": "sh -c 'x %s"}]}}, "quotes"),
    "config-validate-number": (lambda s: {"config": {"paths": [{"path": s.host.etc, "validate": 5}]}}, "5"),
    "config-unknown-key": (lambda s: {"config": {"paths": [{"path": s.host.etc, "mode": "0600"}]}}, "mode"),
    "release-relative": (lambda s: {"release": {"path": "srv/app/current"}}, "'srv/app/current'"),
    "release-not-a-symlink": (lambda s: {"release": {"path": s.plain_dir}}, "is not a symlink"),
    "release-dangling": (lambda s: {"release": {"path": s.dangling}}, "not a directory"),
    "release-missing": (lambda s: {"release": {"path": s.host.current + "-nope"}}, "does not exist"),
    "release-unknown-key": (lambda s: {"release": {"path": s.host.current, "keep": 3}}, "components.release"),
    "migrations-no-downgrade": (lambda s: {"migrations": {"current": "true"}}, "downgrade is required"),
    "migrations-downgrade-without-placeholder": (
        lambda s: {"migrations": {"current": "true", "downgrade": "true"}}, "must contain %s"),
    "migrations-current-missing-program": (
        lambda s: {"migrations": {"current": "/nope/alembic current", "downgrade": "x %s"}}, "/nope/alembic"),
    "migrations-timeout-negative": (
        lambda s: {"migrations": {"current": "true", "downgrade": "true %s", "timeout": -1}}, "-1"),
    "migrations-timeout-huge": (
        lambda s: {"migrations": {"current": "true", "downgrade": "true %s", "timeout": 10 ** 12}}, "1000000000000"),
    "migrations-chdir-relative": (
        lambda s: {"migrations": {"current": "true", "downgrade": "true %s", "chdir": "app"}}, "'app'"),
    "migrations-regex-without-group": (
        lambda s: {"migrations": {"current": "true", "downgrade": "true %s", "revision_regex": "(.*)"}},
        "revision_regex"),
    "migrations-regex-broken": (
        lambda s: {"migrations": {"current": "true", "downgrade": "true %s", "revision_regex": "(?P<revision>"}},
        "revision_regex"),
}


@pytest.mark.bad_input("restore_point")
@pytest.mark.parametrize("case", sorted(CAPTURE_CASES))
def test_restore_point_capture_refuses_bad_specs_and_writes_nothing(scene, case):
    spec, needle = CAPTURE_CASES[case]
    check(scene, "restore_point", {"store_path": scene.host.store, "label": "x", "components": spec(scene)}, needle)


OTHER_CASES = {
    "label-with-nul": ("restore_point", {"label": "a\x00b", "components": "host"}, "label"),
    "label-with-newline": ("restore_point", {"label": "release\n42", "components": "host"}, "label"),
    "label-with-slash": ("restore_point", {"label": "release/42", "components": "host"}, "release/42"),
    "label-reserved-word": ("restore_point", {"label": "latest_safety", "components": "host"}, "latest_safety"),
    "label-shaped-like-an-id": ("restore_point", {"label": "20261201T101500.123456Z-a1b2", "components": "host"},
                                "20261201T101500.123456Z-a1b2"),
    "label-too-long": ("restore_point", {"label": "r" * 300, "components": "host"}, "at most 200"),
    "label-blank": ("config_snapshot", {"label": "  ", "paths": ["/etc/hostname"]}, "label"),
    "mark-without-status": ("restore_point", {"point": "good"}, "without status"),
    "capture-as-bad": ("restore_point", {"status": "bad", "components": None}, "cannot be captured as bad"),
    "prune-negative-keep": ("restore_point", {"state": "absent", "keep": -1}, "-1"),
    "prune-without-keep": ("restore_point", {"state": "absent"}, "keep"),
    "prune-the-known-good": ("restore_point", {"state": "absent", "point": "good"}, "never pruned"),
    "prune-keep-text": ("restore_point", {"state": "absent", "keep": "all"}, "keep"),
    "info-point-path": ("restore_point_info", {"point": "../../etc"}, "'../../etc'"),
    "info-journal-negative": ("restore_point_info", {"journal": -3}, "-3"),
    "info-verify-not-bool": ("restore_point_info", {"point": "good", "verify": "perhaps"}, "verify"),
    "snapshot-paths-empty": ("config_snapshot", {"paths": []}, "non-empty list"),
    "snapshot-paths-relative": ("config_snapshot", {"paths": ["etc/app"]}, "'etc/app'"),
    "snapshot-paths-dict-without-path": ("config_snapshot", {"paths": [{"validate": "x %s"}]}, "paths[0]"),
    "snapshot-status-bad": ("config_snapshot", {"paths": ["/etc/hostname"], "status": "bad"}, "status"),
    "config-restore-point-path": ("config_restore", {"point": "../known_good"}, "'../known_good'"),
    "config-restore-paths-relative": ("config_restore", {"paths": ["etc/app"]}, "etc/app"),
    "config-restore-paths-not-captured": ("config_restore", {"paths": ["/etc/passwd"]}, "/etc/passwd"),
    "config-restore-paths-nul": ("config_restore", {"paths": ["/etc/app\x00"]}, "paths"),
}


@pytest.mark.bad_input("store modules")
@pytest.mark.parametrize("case", sorted(OTHER_CASES))
def test_other_bad_input_of_the_store_modules(scene, case):
    module, args, needle = OTHER_CASES[case]
    args = {k: v for k, v in args.items() if v is not None}
    bad_capture = module == "restore_point" and args.get("status") == "bad" and "point" not in args
    if args.get("components") == "host" or bad_capture:
        args["components"] = scene.host.components()
    scene.host.break_it()
    check(scene, module, dict(args, store_path=scene.host.store), needle)
