# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exact apt/dpkg snapshots of named packages and restores that put those versions back.

Capture reads versions and hold marks from dpkg-query. A restore of the named packages is:
  1. plan: what differs (install, change, remove, hold, unhold); every wanted version must be offered by a
     configured source (apt-cache madison) or be a kept .deb, else it fails naming package and version;
  2. simulate the one apt-get call (-s): it must not remove or downgrade anything outside the named set;
  3. keep a .deb of every installed version it will replace or remove (the apt cache, `apt-get download`,
     or dpkg-repack); if one cannot be had, nothing is touched;
  4. ONE `apt-get install -y --allow-downgrades pkg=version ... other-` (argv list, DEBIAN_FRONTEND=noninteractive,
     waiting for the dpkg lock rather than failing), then apt-mark hold/unhold;
  5. re-read dpkg and verify; on a failure after dpkg started, the kept .debs are installed again, what the restore
     newly installed is removed, and the failure says whether the packages are back exactly.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from ansible_collections.fleetops.rollback.plugins.module_utils._common import PROGRESS, RollbackError, Terminated
from ansible_collections.fleetops.rollback.plugins.module_utils._process import run as run_command
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_text

APT_TIMEOUT = 1800
DPKG_LOCK_TIMEOUT = 300
MAX_LOCK_TIMEOUT = 3600
NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?")
# Debian policy: [epoch:]upstream[-revision]; what apt-get takes after `name=`.
VERSION = re.compile(r"(?:[0-9]+:)?[0-9A-Za-z][A-Za-z0-9.+~-]*")
LOCK_HELD = re.compile(r"(Could not get lock [^\n]*|Unable to acquire the dpkg frontend lock[^\n]*|dpkg (?:frontend )?lock "
                       r"(?:was |is )?locked by another process[^\n]*)")
FORMAT = "${binary:Package}\\t${Package}\\t${Version}\\t${db:Status-Abbrev}\\t${Architecture}\\n"
CACHE = "/var/cache/apt/archives"


# No question, no pager, no service restart prompt; output in the C locale, since it is parsed.
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none", "NEEDRESTART_MODE": "a"}


def run(argv, timeout=APT_TIMEOUT, cwd="/"):
    """An apt or dpkg command's Result (see _process.run)."""
    return run_command(argv, timeout=timeout, cwd=cwd, set_env=APT_ENV, parsed=True)


def errors(out, err):
    """The lines of apt/dpkg output that say what went wrong (dpkg's reason is on the line after its error),
    redacted before they are picked and cut."""
    text = redact_text((out or "") + "\n" + (err or ""))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    picked = []
    for index, line in enumerate(lines):
        if line.startswith(("E:", "dpkg: error")) or "returned error exit status" in line:
            picked.append(line)
            if line.startswith("dpkg: error") and index + 1 < len(lines) and lines[index + 1] not in picked:
                picked.append(lines[index + 1])
    return " | ".join((picked or lines)[-8:])[-1500:]


def lock_problem(out, err, timeout):
    """When apt or dpkg could not get the dpkg lock: a sentence naming who holds it and what to do, else None."""
    found = LOCK_HELD.search((out or "") + "\n" + (err or ""))
    if not found:
        return None
    holder = re.search(r"held by process (\d+)(?: \(([^)]*)\))?|with pid (\d+)", (out or "") + (err or ""))
    who = "another process"
    if holder:
        who = "process %s%s" % (holder.group(1) or holder.group(3), " (%s)" % holder.group(2) if holder.group(2) else "")
    return ("the dpkg lock is held by %s and was not released within %s s (%s); another apt, dpkg or unattended-upgrades "
            "run is using it: wait for it to finish, then run again, or raise dpkg_lock_timeout"
            % (who, timeout, redact_text(found.group(1).strip().rstrip("."))))


def _why(done, lock_wait=None):
    """Why an apt or dpkg command failed, for a message: who holds the dpkg lock (when it waited `lock_wait`
    seconds for it), else the error lines of its output; or why it gave no exit status at all."""
    held = lock_problem(done.stdout, done.stderr, lock_wait) if lock_wait is not None else None
    return done.failure(words=2, tail=held or errors(done.stdout, done.stderr))


# ---------------------------------------------------------------------------------------------- spec

def normalize(spec, where):
    if not isinstance(spec, dict):
        raise RollbackError("%s: expected {names: [nginx, libssl3], hold: false}, got %r" % (where, spec))
    known = {"names", "hold", "prune_extra", "dpkg_lock_timeout"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise RollbackError("%s: unknown key %s; known keys: %s" % (where, ", ".join(unknown), ", ".join(sorted(known))))
    names = spec.get("names")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise RollbackError("%s.names: give a non-empty list of Debian package names, got %r" % (where, names))
    for index, name in enumerate(names):
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise RollbackError("%s.names[%d]: %r is not a Debian package name (lower case, digits, + - .)"
                                % (where, index, name))
    if len(set(names)) != len(names):
        raise RollbackError("%s.names: %r lists a package twice" % (where, names))
    out = {"names": list(names)}
    for key, default in (("hold", False), ("prune_extra", True)):
        value = spec.get(key, default)
        if not isinstance(value, bool):
            raise RollbackError("%s.%s: %r must be true or false" % (where, key, value))
        out[key] = value
    timeout = spec.get("dpkg_lock_timeout", DPKG_LOCK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= MAX_LOCK_TIMEOUT:
        raise RollbackError("%s.dpkg_lock_timeout: %r must be a whole number of seconds from 0 to %d"
                            % (where, timeout, MAX_LOCK_TIMEOUT))
    if timeout != DPKG_LOCK_TIMEOUT:
        out["dpkg_lock_timeout"] = timeout
    return out


def check_versions(packages, where):
    """The versions of an apt snapshot (a file or a point): each a Debian version (or null: not installed)."""
    for name, row in packages.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise RollbackError("%s: %r is not a Debian package name (lower case, digits, + - .)" % (where, name))
        version = row.get("version") if isinstance(row, dict) else row
        if version is not None and (not isinstance(version, str) or not VERSION.fullmatch(version)):
            raise RollbackError("%s: %s version %r is not a Debian version ([epoch:]upstream[-revision], for example "
                                "1.24.0-2)" % (where, name, version))
    return packages


def check_capturable(spec):
    if not shutil.which("dpkg-query"):
        raise RollbackError("apt: dpkg-query is not installed here; the apt manager needs a Debian-family host")


# ---------------------------------------------------------------------------------------------- dpkg

def query(names):
    """{name: {version, status, held, arch}}; version is None for a package that is not installed."""
    done = run(["dpkg-query", "-W", "-f=" + FORMAT] + list(names), timeout=120)
    if done.rc not in (0, 1):
        raise RollbackError("apt: %s" % _why(done))
    rows = {}
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 5:
            continue
        binary, package, version, status, arch = parts[:5]
        row = {"version": None, "status": status.strip(), "held": status[:1] == "h", "arch": arch or None}
        if len(status) > 1 and status[1] in "iWtUFH" and version:
            row["version"] = version
        if len(status) > 1 and status[1] in "UFH":
            row["broken"] = True
        rows.setdefault(binary, row)
        rows.setdefault(package, row)
    return {name: rows.get(name, {"version": None, "status": "un ", "held": False, "arch": None}) for name in names}


def capture(spec):
    state = query(spec["names"])
    packages = {name: {"version": state[name]["version"], "held": state[name]["held"], "arch": state[name]["arch"]}
                for name in spec["names"]}
    out = {"names": spec["names"], "hold": spec["hold"], "prune_extra": spec["prune_extra"], "packages": packages}
    if spec.get("dpkg_lock_timeout") is not None:
        out["dpkg_lock_timeout"] = spec["dpkg_lock_timeout"]
    return out


def madison(names):
    """{name: [versions offered by configured sources]}."""
    if not names:
        return {}
    done = run(["apt-cache", "madison"] + list(names), timeout=300)
    if done.rc is None or (done.rc != 0 and not done.stdout):
        raise RollbackError("apt: %s" % _why(done))
    offered = {name: [] for name in names}
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] in offered and not parts[2].endswith("Sources"):
            if parts[1] not in offered[parts[0]]:
                offered[parts[0]].append(parts[1])
    return offered


# ---------------------------------------------------------------------------------------------- plan

def plan(record):
    names = [n for n in record["names"] if record.get("only") is None or n in record["only"]]
    state = query(names)
    exact = record.get("exact", False)
    changes = []
    for name in names:
        want = record["packages"][name]
        have = state[name]
        if want["version"] is not None and (want["version"] != have["version"] or have.get("broken")):
            action = "install" if have["version"] is None else "change"
            changes.append({"name": name, "action": action, "from": _state(have), "to": _state(want)})
        elif want["version"] is None and have["version"] is not None and (record.get("prune_extra") or exact):
            changes.append({"name": name, "action": "remove", "from": _state(have), "to": _state(want)})
        if want["version"] is None:
            continue
        # An exact (safety) record puts back the hold marks it saw; otherwise `hold` asks for held packages.
        held = bool(want.get("held")) if exact else (True if record.get("hold") else None)
        if held is not None and held != have["held"]:
            changes.append({"name": name, "action": "hold" if held else "unhold",
                            "from": {"version": want["version"], "held": have["held"]},
                            "to": {"version": want["version"], "held": held}})
    for change in changes:
        change["env"] = "apt"
    _check_available(record, changes)
    _simulate(record, changes)
    return changes


def _state(row):
    return {"version": row["version"], "held": bool(row.get("held"))}


def _local_deb(record, name):
    path = (record.get("debs") or {}).get(name)
    return path if path and os.path.isfile(path) else None


def _check_available(record, changes):
    installs = [c for c in changes if c["action"] in ("install", "change") and not _local_deb(record, c["name"])]
    offered = madison([c["name"] for c in installs])
    missing = [c for c in installs if c["to"]["version"] not in offered.get(c["name"], [])]
    if missing:
        raise RollbackError("apt: %s not available from any configured source (%s); nothing was changed. Add the "
                            "source that has it (and apt-get update), or choose another point"
                            % (", ".join("%s=%s" % (c["name"], c["to"]["version"]) for c in missing),
                               "; ".join("%s offers %s" % (c["name"], ", ".join(offered.get(c["name"]) or ["nothing"]))
                                         for c in missing)),
                            missing=["%s=%s" % (c["name"], c["to"]["version"]) for c in missing])


def lock_timeout(record):
    return record.get("dpkg_lock_timeout", DPKG_LOCK_TIMEOUT)


def install_base(timeout=DPKG_LOCK_TIMEOUT):
    return ["apt-get", "install", "-y", "-q", "--allow-downgrades", "--allow-change-held-packages",
            "--no-install-recommends", "-o", "DPkg::Lock::Timeout=%d" % timeout,
            "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def _items(record, changes):
    items = []
    for change in changes:
        if change["action"] in ("install", "change"):
            items.append(_local_deb(record, change["name"]) or "%s=%s" % (change["name"], change["to"]["version"]))
        elif change["action"] == "remove":
            items.append("%s-" % change["name"])
    return items


def _install_argv(record, changes, simulate=False):
    return install_base(lock_timeout(record)) + (["-s"] if simulate else []) + _items(record, changes)


def _simulate(record, changes):
    """apt-get -s of the real call: it must resolve, and touch nothing outside the named packages but new
    dependencies. Records what else it would install on the changes (`also`)."""
    moving = [c for c in changes if c["action"] in ("install", "change", "remove")]
    if not moving:
        return
    done = run(_install_argv(record, moving, simulate=True), timeout=600)
    if done.rc != 0:
        raise RollbackError("apt: apt-get cannot install %s: %s; nothing was changed"
                            % (" ".join(_items(record, moving)), _why(done)))
    named = set(record["names"])
    others = {"install": [], "upgrade_or_downgrade": [], "remove": []}
    for line in done.stdout.splitlines():
        found = re.match(r"^(Inst|Remv) (\S+?)(?::\S+)? (?:\[([^\]]+)\] )?(?:\((\S+))?", line)
        if not found or found.group(2) in named:
            continue
        verb, name, old, new = found.groups()
        if verb == "Remv":
            others["remove"].append("%s %s" % (name, old or ""))
        elif old:
            others["upgrade_or_downgrade"].append("%s %s -> %s" % (name, old, new))
        else:
            others["install"].append("%s %s" % (name, new))
    if others["remove"] or others["upgrade_or_downgrade"]:
        raise RollbackError("apt: restoring %s would also change packages outside the snapshot (%s); nothing was "
                            "changed. Add them to names to restore them together"
                            % (", ".join(c["name"] for c in moving),
                               "; ".join(others["remove"] + others["upgrade_or_downgrade"])), also=others)
    if others["install"]:
        moving[0]["also_installs"] = others["install"]


# ---------------------------------------------------------------------------------------------- safety copies

def _deb_name(name, version, arch):
    return "%s_%s_%s.deb" % (name.split(":")[0], version.replace(":", "%3a"), arch)


def _deb_fields(path):
    done = run(["dpkg-deb", "-f", path, "Package", "Version"], timeout=60)
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    return (fields.get("Package"), fields.get("Version")) if done.ok else (None, None)


def keep_debs(names, directory):
    """Copies of the installed versions of `names` as .deb files in `directory`: {name: path}.

    From the apt cache, else `apt-get download` from a source, else dpkg-repack; raises naming what cannot be kept."""
    state = query(names)
    kept, missing = {}, []
    wanted = [n for n in names if state[n]["version"]]
    for name in wanted:
        row = state[name]
        cached = os.path.join(CACHE, _deb_name(name, row["version"], row["arch"] or "all"))
        if os.path.isfile(cached) and _deb_fields(cached) == (name.split(":")[0], row["version"]):
            target = os.path.join(directory, os.path.basename(cached))
            shutil.copyfile(cached, target)
            os.chmod(target, 0o600)
            kept[name] = target
    fetch = [n for n in wanted if n not in kept]
    if fetch:
        _download(fetch, state, directory, kept)
    for name in [n for n in wanted if n not in kept]:
        if shutil.which("dpkg-repack"):
            if run(["dpkg-repack", name], cwd=directory, timeout=600).ok:
                for item in os.listdir(directory):
                    path = os.path.join(directory, item)
                    if item.endswith(".deb") and path not in kept.values() and \
                            _deb_fields(path) == (name.split(":")[0], state[name]["version"]):
                        kept[name] = path
        if name not in kept:
            missing.append("%s=%s" % (name, state[name]["version"]))
    if missing:
        raise RollbackError("apt: cannot keep a copy of the installed %s to revert to if the restore fails: no source "
                            "offers it, it is not in %s and dpkg-repack is not installed; nothing was changed. Install "
                            "dpkg-repack or put the .deb in %s" % (", ".join(missing), CACHE, CACHE), unrevertable=missing)
    return kept


def _download(names, state, directory, kept):
    offered = madison(names)
    reqs = ["%s=%s" % (n, state[n]["version"]) for n in names if state[n]["version"] in offered.get(n, [])]
    if not reqs:
        return
    # The directory stays 0700: apt then downloads as root instead of its sandbox user, and says so.
    run(["apt-get", "download", "-q"] + reqs, cwd=directory, timeout=1800)
    for item in os.listdir(directory):
        path = os.path.join(directory, item)
        if not item.endswith(".deb") or path in kept.values():
            continue
        package, version = _deb_fields(path)
        for name in names:
            if name.split(":")[0] == package and state[name]["version"] == version:
                os.chmod(path, 0o600)
                kept[name] = path


# ---------------------------------------------------------------------------------------------- apply

def apply(record, changes):
    if not changes:
        return
    moving = [c for c in changes if c["action"] in ("install", "change", "remove")]
    marks = [c for c in changes if c["action"] in ("hold", "unhold")]
    names = list(record["names"])
    extra_names = [a.split()[0] for c in moving for a in c.get("also_installs", [])]
    before = query(names + extra_names)
    work = tempfile.mkdtemp(prefix="fleetops-apt-revert-")
    os.chmod(work, 0o700)
    try:
        kept = keep_debs([c["name"] for c in moving if c["action"] in ("change", "remove")], work) if moving else {}
        failure = None
        if moving:
            PROGRESS.at("installing %s with apt-get" % " ".join(_items(record, moving)),
                        state="dpkg may have changed %s midway; the kept .debs are in %s until this run ends"
                        % (", ".join(c["name"] for c in moving), work))
            try:
                done = run(_install_argv(record, moving))
                if done.rc != 0:
                    failure = _why(done, lock_timeout(record))
            except Terminated:
                # apt-get was killed on the way out: dpkg may be half-way; the revert below puts the kept .debs back.
                failure = "stopped by SIGTERM while %s" % PROGRESS.step
        # Installing a held package with --allow-change-held-packages drops its hold: a hold the restore does not
        # manage is put back, so only the marks in the plan change.
        marked = {c["name"]: c["to"]["held"] for c in marks}
        want_held = {n: marked.get(n, before[n]["held"]) for n in names if before[n]["version"] or n in marked}
        if failure is None:
            keep_held = [{"name": n, "action": "hold", "to": {"held": True}} for n, h in want_held.items()
                         if h and n not in marked and any(c["name"] == n for c in moving)]
            failure = _marks(lock_timeout(record), marks + keep_held)
        after = query(names + extra_names)
        if failure is None:
            left = [c["name"] for c in moving if after[c["name"]]["version"] != c["to"]["version"] or after[c["name"]].get("broken")]
            left += [n for n, h in want_held.items() if after[n]["version"] and after[n]["held"] != h]
            if not left:
                return
            failure = "after apt-get ran, %s still differ from the snapshot" % ", ".join(left)
        changed = [n for n in before if _row(before[n]) != _row(after[n])]
        if not changed:
            raise RollbackError("apt: %s; nothing was changed" % failure)
        _revert(before, after, kept, failure, changed, lock_timeout(record))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _row(row):
    return (row["version"], row["held"], bool(row.get("broken")))


def _marks(timeout, marks):
    for verb in ("hold", "unhold"):
        names = [c["name"] for c in marks if c["action"] == verb]
        if names:
            done = run(["apt-mark", verb] + names, timeout=300)
            if done.rc != 0:
                return _why(done, timeout)
    return None


def _revert(before, after, kept, failure, changed, timeout=DPKG_LOCK_TIMEOUT):  # pylint: disable=too-many-arguments
    problems = []
    back = [n for n in changed if before[n]["version"] and (before[n]["version"] != after[n]["version"] or after[n].get("broken"))]
    gone = [n for n in changed if not before[n]["version"] and after[n]["version"]]
    argv = install_base(timeout)
    items = [kept.get(n) or "%s=%s" % (n, before[n]["version"]) for n in back] + ["%s-" % n for n in gone]
    if items:
        done = run(argv + items)
        if done.rc != 0:
            problems.append("reinstalling %s: %s" % (" ".join(items), _why(done)))
    now = query(list(before))
    for verb, names in (("hold", [n for n in before if before[n]["held"] and not now[n]["held"]]),
                        ("unhold", [n for n in before if not before[n]["held"] and now[n]["held"] and before[n]["version"]])):
        if names:
            done = run(["apt-mark", verb] + names, timeout=300)
            if done.rc != 0:
                problems.append(_why(done))
    now = query(list(before))
    still = [n for n in before if _row(before[n])[:2] != _row(now[n])[:2] or now[n].get("broken")]
    if still:
        raise RollbackError(
            "apt: %s; it had already changed %s, and putting them back FAILED for %s (%s). The packages are in a mixed "
            "state: before = %s; now = %s" % (
                failure, ", ".join(changed), ", ".join(still), "; ".join(problems) or "no error",
                ", ".join("%s=%s" % (n, before[n]["version"]) for n in still),
                ", ".join("%s=%s%s" % (n, now[n]["version"], " (broken)" if now[n].get("broken") else "") for n in still)),
            reverted=False, midway=changed, differs=still)
    raise RollbackError("apt: %s; it had already changed %s, so they were put back exactly as before the restore "
                        "(from kept .deb copies)" % (failure, ", ".join(changed)), reverted=True, midway=changed)


# ---------------------------------------------------------------------------------------------- diff

def diff(changes):
    if not changes:
        return []
    before, after = [], []
    for change in changes:
        if change["from"].get("version"):
            before.append("%s=%s%s" % (change["name"], change["from"]["version"], " (held)" if change["from"].get("held") else ""))
        if change["to"].get("version"):
            after.append("%s=%s%s" % (change["name"], change["to"]["version"], " (held)" if change["to"].get("held") else ""))
    return [{"before_header": "dpkg (installed)", "after_header": "dpkg (snapshot)",
             "before": "".join(line + "\n" for line in before), "after": "".join(line + "\n" for line in after)}]
