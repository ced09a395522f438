# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore points: capture, plan, restore (with a safety point and automatic revert), mark, prune."""

from __future__ import annotations

import os
import shlex
import socket
import time

from ansible_collections.fleetops.rollback.plugins.module_utils._common import (
    HOST_UNTOUCHED, PROGRESS, RollbackError, check_program, describe_os_error)
from ansible_collections.fleetops.rollback.plugins.module_utils._components import ORDER, Components, check_names
from ansible_collections.fleetops.rollback.plugins.module_utils._fsutil import canonical_json, sha256_bytes
from ansible_collections.fleetops.rollback.plugins.module_utils._process import run as run_command, show_command
from ansible_collections.fleetops.rollback.plugins.module_utils._store.store import MANIFEST_FORMAT, actor, is_id, machine_id, utc_now


CAPTURE_STATUSES = ("candidate", "known_good")
RESTART_TIMEOUT = 300


def normalize_components(spec, parts=None):
    """The component specs of a capture, each checked by its component (in `parts`, this call's components).
    Components given as None (a typed module option left out) are not captured."""
    parts = Components() if parts is None else parts
    if isinstance(spec, dict):
        spec = {name: value for name, value in spec.items() if value is not None}
    if not isinstance(spec, dict) or not spec:
        raise RollbackError("components: give a dict of component specs, for example {config: {paths: [/etc/app]}}; "
                            "got %r" % (spec,))
    check_names(sorted(spec), "components")
    return {name: parts[name].normalize(spec[name]) for name in ORDER if name in spec}


def summary(manifest):
    out = {key: manifest.get(key) for key in ("id", "label", "status", "created_at", "kind", "safety_for")}
    out["components"] = [name for name in ORDER if name in manifest.get("components", {})]
    return out


def fingerprint(records):
    return sha256_bytes(canonical_json(records))


class locked:
    """Hold the store lock for a capture or a rollback, and journal a stale or broken lock. Only a capture
    (`create=True`) may make a new store; every other run needs one that exists. With the lock held, whatever a run
    killed midway left behind (staged files next to config, half-written blobs, dumps of unfinished captures) is
    removed first."""

    def __init__(self, store, params, purpose, create=False):
        self.store = store
        PROGRESS.at("taking the lock of the store %s" % store.path)
        self.lock = store.lock(owner="%s:%s" % (actor(), purpose), timeout=params.get("lock_timeout") or 0,
                               force=params.get("force_unlock") or False, create=create)

    def __enter__(self):
        self.lock.acquire()
        if self.lock.broken:
            self.store.journal("lock_broken", previous=self.lock.broken)
        elif self.lock.stale:
            self.store.journal("stale_lock_recovered", previous=self.lock.stale)
        PROGRESS.at("removing what an interrupted run left behind")
        removed = self.store.recover()
        if removed:
            self.store.journal("leftovers_removed", paths=removed)
        return self.lock

    def __exit__(self, *exc):
        self.lock.release()
        return False


def preflight(components, parts=None):
    """Fail on anything that would stop a capture, before the store or its lock is touched."""
    parts = Components() if parts is None else parts
    for name, spec in components.items():
        parts[name].check_capturable(spec)


def _newest_with_label(store, label):
    same = [m for m in store.points()[0] if m.get("label") == label]
    return same[-1] if same else None


def _reusable(point, print_):
    """The point when it holds exactly this state (fingerprint), else None."""
    return point if point is not None and point.get("fingerprint") == print_ else None


def _promotes(store, point, status):
    return status == "known_good" and (point["status"] != "known_good" or store.known_good_id() != point["id"])


def _preview_capture(store, components, label, status, kind, parts):
    """What capture() would return, changing nothing: a labelled capture of a state the newest point of that
    label already holds reuses it (changed only when it must become known_good)."""
    new = {"changed": True, "point": {"id": None, "label": label, "status": status, "components": list(components)}}
    # Only components whose capture reads the host and writes nothing can be scanned: a database capture is a dump
    # under the new point's own directory, so a point holding one is never reused and needs no preview.
    if not label or kind != "capture" or not store.exists() or not all(parts[n].previewable for n in components):
        return new
    newest = _newest_with_label(store, label)
    if newest is None:
        return new
    records = {name: parts[name].capture(None, spec, None) for name, spec in components.items()}
    existing = _reusable(newest, fingerprint(records))
    if existing is None:
        return new
    return {"changed": _promotes(store, existing, status), "point": summary(existing), "reused": True}


LABEL_LIMIT = 200
RESERVED_REFS = ("known_good", "latest_safety")


def check_label(label):
    """A label a point can be found by later: text of at most 200 characters, no control characters or '/', and not
    a word or an id that `point` reads otherwise (it would never resolve to this point)."""
    if label is None:
        return None
    if not isinstance(label, str) or not label.strip() or label != label.strip():
        raise RollbackError("label: %r is not a label; give text such as release-42 (no leading or trailing spaces)"
                            % (label,))
    if len(label) > LABEL_LIMIT or any(ord(c) < 32 or ord(c) == 127 for c in label) or "/" in label:
        raise RollbackError("label: %r is not a label; give at most %d characters without control characters or '/'"
                            % (label[:80], LABEL_LIMIT))
    if label in RESERVED_REFS or is_id(label):
        raise RollbackError("label: %r is read as a point reference, not a label; choose another label, such as "
                            "release-42" % label)
    return label


def capture(store, components, label=None, status="candidate", kind="capture", check=False, safety_for=None,
            audit=None, over_interrupted=None, parts=None):
    """Capture a point. With a label whose newest point holds the same state, reuse that point.

    `audit` ({run, type}: the rollback run this is part of) goes into the journal entry.

    A safety point records the state exactly as it is, missing paths and dangling links included,
    because that is what a revert must bring back.

    `over_interrupted` (a safety point taken while an earlier rollback was left unfinished) names the earlier
    run's safety point: this one holds a mixed state, and `latest_safety` never names it."""
    parts = Components() if parts is None else parts
    if kind != "safety":
        check_label(label)
        preflight(components, parts)
    if check:
        return _preview_capture(store, components, label, status, kind, parts)
    PROGRESS.at("capturing %s" % ("the safety point" if kind == "safety" else "a restore point"), HOST_UNTOUCHED)
    store.ensure()
    # The id comes first so a component can write artefacts under dumps/<id>; they go if the point is not kept.
    point_id = store.new_id()
    store.added_blobs = []
    try:
        records = {name: parts[name].capture(store, spec, point_id) for name, spec in components.items()}
        if kind == "safety":
            for record in records.values():
                record["exact"] = True
        print_ = fingerprint(records)
        existing = _reusable(_newest_with_label(store, label), print_) if label and kind == "capture" else None
        if existing is not None:
            store.discard_dumps(point_id)
            changed = _promotes(store, existing, status)
            if changed:
                existing = store.set_status(existing, "known_good")
            return {"changed": changed, "point": summary(existing), "reused": True}
        manifest = {
            "format": MANIFEST_FORMAT,
            "id": point_id,
            "label": label,
            "status": status,
            "kind": kind,
            "created_at": utc_now().isoformat(timespec="milliseconds"),
            "host": socket.gethostname(),
            "machine_id": machine_id(),
            "actor": actor(),
            "components": records,
            "fingerprint": print_,
        }
        if safety_for:
            manifest["safety_for"] = safety_for
        if over_interrupted:
            manifest["over_interrupted"] = over_interrupted
        manifest = store.write_manifest(manifest)
    except BaseException:
        # A capture that fails leaves the store as it found it: no manifest, no dump, no blob only it wrote.
        store.delete_point(point_id)
        store.discard_added_blobs()
        raise
    if status == "known_good":
        store.set_known_good(manifest["id"])
    result = {"changed": True, "point": summary(manifest), "reused": False}
    if kind == "capture":
        journal_safely(store, result, "capture", point=manifest["id"], label=label, status=status,
                       components=list(records), **(audit or {}))
    return result


def journal_safely(store, result, event, **fields):
    """Journal an event after the work is done. A journal that cannot be written (a full or read-only store) does
    not turn a done run into a failure: the result says so in `journal_error` and a warning."""
    try:
        store.journal(event, **fields)
    except OSError as err:
        problem = describe_os_error(err)
        result["journal_error"] = problem
        result.setdefault("warnings", []).append("the %s is done, but its journal entry could not be written: %s"
                                                 % (event, problem))


def _select(manifest, names, select=None, narrow=None, parts=None):
    """The records to restore: the named components (all by default), each narrowed by `select`
    ({component: [items]}) for a partial rollback, such as one config path or one package, and by `narrow`
    ({component: options}), which a component's own module passes (package_snapshot's manager, only, ...)."""
    records = manifest["components"]
    if names:
        check_names(names, "components")
        missing = [n for n in names if n not in records]
        if missing:
            raise RollbackError("components: point %s holds no %s component (it has: %s)"
                                % (manifest["id"], ", ".join(missing), ", ".join(records) or "none"))
    chosen = {name: records[name] for name in ORDER if name in records and (not names or name in names)}
    for name, items in (select or {}).items():
        check_names([name], "select")
        if name not in chosen:
            raise RollbackError("select: %s is not being restored (point %s holds: %s; components chosen: %s)"
                                % (name, manifest["id"], ", ".join(records) or "none", ", ".join(chosen) or "none"))
        if isinstance(items, str):
            items = [items]
        if parts[name].supports_select and (not isinstance(items, list) or not items
                                            or not all(isinstance(i, str) and i for i in items)):
            raise RollbackError("select.%s: give a non-empty list of names, got %r" % (name, items))
        chosen[name] = parts[name].select(chosen[name], items)
    for name, options in (narrow or {}).items():
        if name in chosen:
            chosen[name] = parts[name].narrow(chosen[name], options)
    return chosen


def plan(store, records, point_id, parts=None):
    parts = Components() if parts is None else parts
    return {name: parts[name].plan(store, record, point_id) for name, record in records.items()}


def check_commands(value, option="restart_commands"):
    """argv lists as given, refused before anything changes when one cannot run: not a list of non-empty lists of
    strings or numbers, or a program that does not exist. Returns the argv lists as strings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RollbackError("%s: %r is not a list of commands; give a list of argv lists, for example "
                            "[[systemctl, restart, app]]" % (option, value))
    commands = []
    for index, argv in enumerate(value):
        where = "%s[%d]" % (option, index)
        if not isinstance(argv, list) or not argv:
            raise RollbackError("%s: %r is not an argv list; give each command as a non-empty list such as "
                                "[systemctl, restart, app] (no shell is used)" % (where, argv))
        for arg in argv:
            if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
                raise RollbackError("%s: argument %r is not a string; give each argument as text" % (where, arg))
            if "\x00" in str(arg):
                raise RollbackError("%s: argument %r holds a NUL byte" % (where, arg))
        argv = [str(arg) for arg in argv]
        check_program(argv[0], where)
        commands.append(argv)
    return commands


def run_restart_commands(commands):
    """Run each argv in order; stop at the first failure. Returns (records, error or None)."""
    records = []
    for argv in commands:
        shown = show_command(argv[:3])
        PROGRESS.at("running the restart command %s" % shown)
        done = run_command(argv, timeout=RESTART_TIMEOUT)
        records.append({"command": shlex.split(shown), "rc": done.rc, "seconds": round(done.seconds, 3)})
        if done.rc != 0:
            return records, done.failure(words=3)
    return records, None


def _applying_state(applied, current, safety_id):
    done = ", ".join(applied) or "none"
    return ("partly restored: applied %s; %s in progress; safety point %s holds the state before this rollback "
            "(restore it with point=%s)" % (done, current, safety_id, safety_id))


def check_same_machine(target, allow_foreign=False):
    """A point captured on another machine (a store copied or moved between hosts) would put that host's state here:
    refused unless the operator says this machine replaces that one."""
    here, there = machine_id(), target.get("machine_id")
    if allow_foreign or not here or not there or here == there:
        return
    raise RollbackError("point %s was captured on another machine (host %s, machine-id %s...), not this one (%s, "
                        "machine-id %s...): this store was copied or moved between hosts, and restoring it would put "
                        "that host's state here; nothing was changed. Restore it on its own host, or set "
                        "allow_foreign_point=true if this machine replaces that one"
                        % (target["id"], target.get("host"), there[:8], socket.gethostname(), here[:8]),
                        point=summary(target))


def restore(store, ref="known_good", names=None, select=None, check=False, diff=False, reason=None,
            restart_commands=None, narrow=None, audit=None, allow_foreign=False, parts=None):
    """Roll back to a point. `audit` ({run, type}: the rollback run this restore is part of) goes into every
    journal entry it writes, with `reason` and the outcome.

    A restore that starts changing the host writes `rollback_in_progress` in the store first and removes it when it
    ends (restored, or reverted to a clean state). Found by a later run, it means the earlier one was killed midway:
    that run's safety point stays the state before the rollback (latest_safety), and the new safety point, taken
    over the mixed state, is marked `over_interrupted`."""
    audit = audit or {}
    parts = Components() if parts is None else parts
    started = time.monotonic()
    PROGRESS.at("resolving the point %s" % (ref or "known_good"))
    target = store.resolve(ref)
    if target["status"] == "bad":
        raise RollbackError("point: %s (%s) is marked bad and is never restored; mark it candidate first if you are "
                            "sure, or choose another point" % (target["id"], target.get("label") or "no label"),
                            point=summary(target))
    check_same_machine(target, allow_foreign)
    records = _select(target, names, select, narrow, parts)
    PROGRESS.at("planning the restore of point %s" % target["id"])
    changes = plan(store, records, target["id"], parts)
    result = {
        "changed": any(changes.values()),
        "point": summary(target),
        "safety_point": None,
        "plan": {name: {"changed": bool(c), "changes": c} for name, c in changes.items()},
    }
    warnings = [w for name in records for w in getattr(parts[name], "warnings", None) or []]
    if warnings:
        result["warnings"] = warnings
    interrupted = store.in_progress() if store.exists() else None
    if interrupted:
        result["interrupted_rollback"] = interrupted
    if diff:
        result["diff"] = [d for name, c in changes.items() for d in parts[name].diff(store, records[name], c)]
    if check:
        if restart_commands and result["changed"]:
            result["restarted"] = [{"command": shlex.split(show_command(argv[:3])), "rc": None} for argv in restart_commands]
        return result
    if not result["changed"]:
        if interrupted:
            # The host already holds the target: the interrupted rollback is complete now.
            store.set_in_progress(None)
        journal_safely(store, result, "restore", point=target["id"], outcome="noop", reason=reason, **audit)
        result["seconds"] = round(time.monotonic() - started, 3)
        return result

    todo = [name for name in changes if changes[name]]
    before_rollback = (interrupted or {}).get("safety_point")
    safety = capture(store, {name: parts[name].scope(records[name], changes[name]) for name in todo},
                     label="safety-before-%s" % target["id"], status="safety", kind="safety", safety_for=target["id"],
                     over_interrupted=before_rollback, parts=parts)
    safety_id = safety["point"]["id"]
    safety_records = store.load(safety_id)["components"]
    result["safety_point"] = safety_id
    if before_rollback:
        result["state_before_rollback"] = before_rollback
    store.set_in_progress({"safety_point": before_rollback or safety_id, "run_safety_point": safety_id,
                           "target": target["id"], "pid": os.getpid(), "host": socket.gethostname(),
                           "started_at": utc_now().isoformat(timespec="seconds"), "components": todo})

    timings, applied, failure = {}, [], None
    for name in todo:
        begun = time.monotonic()
        PROGRESS.at("applying %s of point %s" % (name, target["id"]), _applying_state(applied, name, safety_id))
        try:
            parts[name].apply(store, records[name], changes[name])
            applied.append(name)
        except Exception as err:  # pylint: disable=broad-except
            failure = (name, err)
            break
        finally:
            timings[name] = round(time.monotonic() - begun, 3)
    if failure is None:
        PROGRESS.at("verifying the restore of point %s" % target["id"], _applying_state(applied, "verify", safety_id))
        try:
            left = {name: parts[name].plan(store, records[name], target["id"]) for name in applied}
            drift = [name for name, c in left.items() if c]
            if drift:
                failure = ("verify", RollbackError("after applying, %s still differ from point %s"
                                                   % (", ".join(drift), target["id"])))
        except Exception as err:  # pylint: disable=broad-except
            failure = ("verify", err)
    if failure is not None:
        _fail_and_revert(store, target, result, todo, applied, failure, safety_records, reason, audit,
                         clean=not before_rollback, parts=parts)

    for name in todo:
        result["plan"][name]["seconds"] = timings.get(name)
    PROGRESS.at("finishing the restore of point %s" % target["id"],
                "restored to point %s (safety point %s holds the state before)" % (target["id"], safety_id))
    try:
        store.set_in_progress(None)
    except OSError as err:
        result.setdefault("warnings", []).append(
            "point %s was restored, but the store could not record that the rollback finished (%s); the next run "
            "will take this run for an interrupted one" % (target["id"], describe_os_error(err)))
    restart_error = None
    if restart_commands:
        result["restarted"], restart_error = run_restart_commands(restart_commands)
    result["seconds"] = round(time.monotonic() - started, 3)
    journal_safely(store, result, "restore", point=target["id"], outcome="restored", safety_point=safety_id,
                   reason=reason, components={name: len(changes[name]) for name in todo}, seconds=result["seconds"],
                   restart_error=restart_error, state_before_rollback=before_rollback, **audit)
    if restart_error:
        # The files are right; the service is not. Reverting would only bring the bad release back.
        raise RollbackError("point %s was restored (safety point %s), but restarting failed: %s; the host runs the "
                            "restored files and its service may be down" % (target["id"], safety_id, restart_error),
                            **result)
    return result


def _fail_and_revert(store, target, result, todo, applied, failure, safety_records, reason, audit=None, clean=True,
                     parts=None):
    """Put back what the safety point holds for every component touched, then raise with the whole story.
    `clean`: the safety point holds a state the host was really in (not the mix an interrupted run left)."""
    failed_name, err = failure
    message = getattr(err, "msg", None) or "%s: %s" % (type(err).__name__, err)
    if isinstance(err, OSError):
        message = describe_os_error(err)
    touched = [n for n in todo if n in applied or n == failed_name or failed_name == "verify"]
    reverted, revert_errors = [], {}
    safety_id = result["safety_point"]
    PROGRESS.at("re-applying safety point %s after %s failed" % (safety_id, failed_name),
                "UNKNOWN: %s failed and the revert to safety point %s was under way" % (failed_name, safety_id))
    for name in reversed(touched):
        try:
            parts[name].apply(store, safety_records[name], parts[name].plan(store, safety_records[name], safety_id))
            if parts[name].plan(store, safety_records[name], safety_id):
                raise RollbackError("state still differs from the safety point after re-applying it")
            reverted.append(name)
        except Exception as revert_err:  # pylint: disable=broad-except
            revert_errors[name] = (getattr(revert_err, "msg", None) or
                                   (describe_os_error(revert_err) if isinstance(revert_err, OSError) else
                                    "%s: %s" % (type(revert_err).__name__, revert_err)))
    state = {name: ("reverted to pre-rollback state" if name in reverted else
                    "UNKNOWN: revert failed: %s" % revert_errors[name] if name in revert_errors else
                    "untouched") for name in todo}
    if not revert_errors and clean:
        try:
            store.set_in_progress(None)
        except OSError:
            pass  # the next run then reports this one as interrupted: the safe side
    journal_error = None
    try:
        store.journal("restore", point=target["id"], outcome="failed", failed_component=failed_name, error=message,
                      safety_point=safety_id, reverted=reverted, revert_errors=revert_errors, reason=reason,
                      **(audit or {}))
    except OSError as journal_err:
        journal_error = describe_os_error(journal_err)
    if revert_errors:
        msg = ("restore of point %s failed in %s (%s) and re-applying safety point %s also failed for %s; the host is "
               "in a mixed state: %s. Restore the safety point explicitly (point=%s) once the cause is fixed"
               % (target["id"], failed_name, message, safety_id, ", ".join(revert_errors),
                  "; ".join("%s: %s" % kv for kv in state.items()), safety_id))
    else:
        msg = ("restore of point %s failed in %s: %s; safety point %s was re-applied and the host is back in its "
               "pre-rollback state" % (target["id"], failed_name, message, safety_id))
    if journal_error:
        msg += "; the journal entry of this failure could not be written: %s" % journal_error
    raise RollbackError(msg, failed_component=failed_name, component_state=state, safety_point=safety_id,
                        point=result["point"], plan=result["plan"], reverted=not revert_errors,
                        journal_error=journal_error)


def mark(store, ref, status, check=False, audit=None):
    if status not in ("candidate", "known_good", "bad"):
        raise RollbackError("status: %r cannot be set on an existing point; use candidate, known_good or bad" % status)
    target = store.resolve(ref)
    pointer = store.known_good_id()
    changed = target["status"] != status or (status == "known_good" and pointer != target["id"])
    result = {"changed": changed, "point": summary(dict(target, status=status))}
    if changed and not check:
        target = store.set_status(target, status)
        journal_safely(store, result, "mark", point=target["id"], status=status, **(audit or {}))
    return result


def prune(store, keep=None, point_ref=None, check=False):
    good, broken = store.points()
    protected = {store.known_good_id()}
    safety = [m["id"] for m in good if m["status"] == "safety"]
    if safety:
        protected.add(safety[-1])
    # The state before the last rollback, and before one that was interrupted, is never pruned.
    latest = store.latest_safety(good)
    if latest:
        protected.add(latest["id"])
    for key in ("safety_point", "run_safety_point"):
        protected.add((store.in_progress() or {}).get(key))
    if point_ref:
        target = store.resolve(point_ref)
        if target["id"] in protected:
            raise RollbackError("point: %s is the known_good point or the newest safety point and is never pruned; "
                                "mark another point known_good first" % target["id"])
        doomed = [target["id"]]
    else:
        if keep is None or keep < 0:
            raise RollbackError("keep: %r must be a number of points (0 or more) to keep" % (keep,))
        kept = {m["id"] for m in good[len(good) - keep:]} if keep else set()
        doomed = [m["id"] for m in good if m["id"] not in kept and m["id"] not in protected]
    result = {"changed": bool(doomed), "removed": doomed, "kept": [m["id"] for m in good if m["id"] not in doomed],
              "unreadable": broken}
    if doomed and not check:
        PROGRESS.at("pruning %d points" % len(doomed), "the store is being pruned; the host itself is untouched")
        for point_id in doomed:
            store.delete_point(point_id)
        result["blobs_removed"] = store.collect_garbage()
        journal_safely(store, result, "prune", removed=doomed)
    return result
