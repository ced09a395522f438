# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exact pip snapshots of one Python environment and restores that make it match.

Capture asks the target interpreter itself for every distribution on its sys.path (first one wins, as with
importlib.metadata), with the exact version and, from PEP 610 direct_url.json, whether it is an editable
install, a VCS checkout or a direct URL (a legacy `setup.py develop` install is found by its .egg-link).
Nothing is parsed out of `pip freeze` text.

A restore of one environment is:
  1. list what is installed now and plan the changes (install, change, remove);
  2. keep a copy of every installed distribution the restore will replace or remove: it is repacked
     into a wheel from its own RECORD (offline, byte-exact, direct_url.json included), or fetched from
     the configured source when it cannot be repacked; if neither works nothing is touched;
  3. ONE `pip install --no-deps --force-reinstall` for the whole set with exact pins, from the given
     find_links / index_url; pip resolves every requirement before it changes anything, so a version
     that cannot be found fails here with the environment untouched (re-listed to prove it);
  4. ONE `pip uninstall -y` for the extras when pruning;
  5. list again and verify. If pip failed midway or the result is not what was planned, the copies from
     step 2 are reinstalled offline (--no-index) and whatever the restore added is removed, the listing
     is compared with the one from step 1, and the failure says whether the environment is back exactly.
"""

from __future__ import annotations

import ast
import base64
import csv
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile

from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import kind_of
from ansible_collections.fleetops.rollback.plugins.module_utils._common import PROGRESS, RollbackError, Terminated
from ansible_collections.fleetops.rollback.plugins.module_utils._process import child_environment, run as run_command
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import redact_text

PIP_TIMEOUT = 1800
LIST_TIMEOUT = 120
NEVER_MANAGED = ("pip",)

# PEP 440, as published in the specification; versions outside it are pinned with === instead of ==.
_PEP440 = re.compile(r"""^\s*v?(?:(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?
    (?:(?:-[0-9]+)|(?:[-_.]?(?:post|rev|r)[-_.]?[0-9]*))?(?:[-_.]?dev[-_.]?[0-9]*)?)(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$""",
                     re.VERBOSE | re.IGNORECASE)
_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")

# Runs inside the target interpreter: every distribution it sees, first on sys.path wins (as with
# importlib.metadata). It reads the dist-info / egg-info headers itself and prints a Python literal: importing
# importlib.metadata, re and json would triple the time of every listing.
LIST_SCRIPT = r"""
import os, sys, sysconfig
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
def headers(path):
    out = {}
    try:
        with open(path, "rb") as stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                if line[:1] in " \t" or ":" not in line:
                    continue
                key, value = line.split(":", 1)
                if key in ("Name", "Version") and key not in out:
                    out[key] = value.strip()
    except OSError:
        pass
    return out
def read(path):
    try:
        with open(path, "rb") as stream:
            return stream.read().decode("utf-8", "replace")
    except OSError:
        return None
dists, seen, listings, develop = [], set(), [], {}
for entry in sys.path:
    try:
        listings.append((entry, sorted(os.listdir(entry or "."))))
    except OSError:
        continue
    for name in listings[-1][1]:
        if name.endswith(".egg-link"):
            lines = [line.strip() for line in (read(os.path.join(entry, name)) or "").splitlines()]
            if lines and lines[0]:
                # line 1: the directory on sys.path; line 2: the project root relative to it
                root = os.path.join(lines[0], lines[1]) if len(lines) > 1 and lines[1] else lines[0]
                develop[os.path.normpath(lines[0])] = os.path.normpath(root)
for entry, names in listings:
    for name in names:
        # "~name-1.0.dist-info" is a killed pip's stash of an uninstall, not an installed distribution.
        if name.startswith("~") or not (name.endswith(".dist-info") or name.endswith(".egg-info")):
            continue
        path = os.path.join(entry, name)
        if os.path.isdir(path):
            meta = headers(os.path.join(path, "METADATA" if name.endswith(".dist-info") else "PKG-INFO"))
        else:
            meta = headers(path)
        if not meta.get("Name"):
            continue
        key = meta["Name"].lower()
        for ch in "_.":
            key = key.replace(ch, "-")
        while "--" in key:
            key = key.replace("--", "-")
        if key in seen:
            continue
        seen.add(key)
        isdir = os.path.isdir(path)
        dists.append({"key": key, "name": meta["Name"], "version": meta.get("Version") or "", "path": path,
                      "direct_url": read(os.path.join(path, "direct_url.json")) if isdir else None,
                      "installer": ((read(os.path.join(path, "INSTALLER")) if isdir else None) or "").strip() or None,
                      "record": isdir and os.path.isfile(os.path.join(path, "RECORD")),
                      "develop": develop.get(os.path.normpath(entry))})
sys.stdout.write(repr({"python": sys.executable, "python_version": sys.version.split()[0], "prefix": sys.prefix,
                       "paths": sysconfig.get_paths(), "dists": dists}))
"""


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def redact_url(text):
    return _CREDENTIALS.sub(r"\1****@", text or "")


def shown(value):
    """A value as a message shows it: its repr, with URL credentials and secret-looking text masked."""
    return redact_url(redact_text(repr(value)))


def check_packages(packages, where):
    """The packages of a snapshot (a file or a point): each a real name with an exact version, or a direct
    (editable, VCS, URL) install. Anything else would reach pip's command line; it is refused, naming it."""
    if not isinstance(packages, dict):
        raise RollbackError("%s: holds no package list (expected {name: {name, version}}), got %s"
                            % (where, shown(packages)[:200]))
    for key, pkg in packages.items():
        if not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str) or not _NAME.fullmatch(pkg["name"]) \
                or canonical(pkg["name"]) != key:
            raise RollbackError("%s: %s is not a package entry {name: NAME, version: VERSION} (the name must match "
                                "its key %r); fix or recapture the snapshot" % (where, shown(pkg)[:200], key))
        version = pkg.get("version")
        direct = pkg.get("editable") or pkg.get("vcs") or pkg.get("url")
        if not isinstance(version, str) or (version and not _VERSION.fullmatch(version)) or (not version and not direct):
            raise RollbackError("%s: %s version %s is not a version; a snapshot holds exact versions such as 1.2.3"
                                % (where, pkg["name"], shown(version)))
        for field in ("editable", "vcs", "url", "commit", "subdirectory"):
            value = pkg.get(field)
            if value is not None and (not isinstance(value, str) or not value or
                                      any(ord(ch) < 33 or ord(ch) == 127 for ch in value)):
                raise RollbackError("%s: %s %s %s is not valid (no spaces or control characters)"
                                    % (where, pkg["name"], field, shown(value)))
    return packages


# ---------------------------------------------------------------------------------------------- processes

def child_env(use_pip_config=False):
    """The environment pip runs in: no PYTHONPATH; with use_pip_config false, no pip config files or PIP_* variables,
    so a restore depends only on the snapshot and the source it was given."""
    unset = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    add = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    if not use_pip_config:
        unset += ("PIP_*",)
        add["PIP_CONFIG_FILE"] = os.devnull
    return child_environment(set_env=add, unset_env=unset)


def run(argv, env=None, timeout=PIP_TIMEOUT, cwd="/"):
    """A Python or pip command's Result (see _process.run); `env` from child_env."""
    return run_command(argv, timeout=timeout, cwd=cwd, env=env)


def _why(done, tail=""):
    """Why a pip command failed, for a message: the error lines of its output (and `tail`), or why it gave no
    exit status at all."""
    return done.failure(words=4, tail=pip_errors(done.stdout, done.stderr) + tail)


def pip_errors(out, err):
    """The lines of pip output that say what went wrong (its error lines, which file, the exception a build
    raised), credentials and secret-looking values masked. pip says which file it processes on stdout and what
    failed on stderr: stdout goes first to keep that order. Each stream is redacted whole before lines are picked
    and the result is cut."""
    out, err = redact_url(redact_text(out or "")), redact_url(redact_text(err or ""))
    text = out + "\n" + err
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    wanted = []
    for line in lines:
        if line == "ERROR: Exception:" or line in wanted:
            continue
        if line.lower().startswith(("error:", "processing ")) or line.startswith(("\u00d7", "\u2570")) \
                or re.match(r"^[A-Za-z_.]*(Error|Exception): ", line):
            wanted.append(line)
    last = [line.strip() for line in (err or out or "").splitlines() if line.strip()][-1:]
    if last and last[0] not in wanted and not last[0].startswith(("hint:", "note:")):
        wanted += last  # the exception line that ends a traceback
    return " | ".join((wanted or lines)[-8:])[-1500:]


# ---------------------------------------------------------------------------------------------- environment

def _kind(path):
    """What is at a path, in words, for messages: None for a directory."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return "does not exist" if err.errno == errno.ENOENT else "cannot be read (%s)" % err.strerror
    if stat.S_ISLNK(st.st_mode):
        if not os.path.exists(path):
            return "is a dangling symlink (to %r)" % os.readlink(path)
        st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        return None
    return "is %s, not a directory" % kind_of(st.st_mode)


def check_abs(value, where, what):
    if not isinstance(value, str) or not value.strip():
        raise RollbackError("%s: %r is not a path; give the full path of %s" % (where, value, what))
    if "\x00" in value:
        raise RollbackError("%s: %r holds a NUL byte; give the full path of %s" % (where, value, what))
    if not os.path.isabs(value):
        raise RollbackError("%s: %r is not an absolute path; give the full path of %s" % (where, value, what))
    return value


def resolve_python(virtualenv=None, executable=None, where="virtualenv"):
    """The interpreter of a virtualenv, or the one given (a python, or a pip script whose shebang names it)."""
    if virtualenv:
        check_abs(virtualenv, where, "the virtualenv")
        problem = _kind(virtualenv)
        if problem == "does not exist":
            problem = "does not exist, so it has no bin/python"
        if problem:
            raise RollbackError("%s: %r %s; give the directory of the virtualenv (python3 -m venv DIR makes one)"
                                % (where, virtualenv, problem))
        for candidate in ("bin/python", "bin/python3"):
            path = os.path.join(virtualenv, candidate)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return os.path.normpath(path)
        raise RollbackError("%s: %r has no bin/python, so it is not a virtualenv; create the virtualenv first (python3 "
                            "-m venv) or give the right path" % (where, virtualenv))
    if not executable:
        raise RollbackError("pip: give virtualenv (a venv directory) or executable (a python or pip path)")
    where = "executable" if where == "virtualenv" else where
    if not isinstance(executable, str) or "\x00" in executable or not executable.strip():
        raise RollbackError("%s: %r is not a path; give the full path of a python or pip" % (where, executable))
    if not os.path.isabs(executable):
        found = shutil.which(executable)
        if not found:
            raise RollbackError("%s: %r is not on PATH; give the full path of a python or pip" % (where, executable))
        executable = found
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        if os.path.isfile(executable):
            problem = "is a file without execute permission"
        else:
            problem = (_kind(executable) or "is a directory").replace(", not a directory", "")
        raise RollbackError("%s: %r %s; give the full path of a python or pip (an executable file)"
                            % (where, executable, problem))
    if os.path.basename(executable).startswith("pip"):
        with open(executable, "rb") as stream:
            first = stream.readline().decode("utf-8", "replace").strip()
        if not first.startswith("#!"):
            raise RollbackError("%s: %r is a pip without a #! line naming its python; give the python instead"
                                % (where, executable))
        parts = first[2:].split()
        if parts and os.path.basename(parts[0]) == "env" and len(parts) > 1:
            python = shutil.which(parts[1])
        else:
            python = parts[0] if parts else None
        if not python or not os.path.isfile(python):
            raise RollbackError("%s: the python of %r (%r) does not exist; give the python instead"
                                % (where, executable, first))
        return python
    return executable


def check_find_links(record, where="find_links"):
    """Every local wheelhouse of the record exists as a directory: a restore that cannot reach its source would
    fail only after the safety copies were made, and pip would say "no matching distribution"."""
    for index, link in enumerate(record.get("find_links") or []):
        path = link[len("file://"):] if link.startswith("file://") else link
        if "://" in path:
            continue
        problem = _kind(path)
        if problem:
            raise RollbackError("%s[%d]: the wheelhouse %r %s; give an existing directory of wheels (or a URL); nothing "
                                "was changed" % (where, index, link, problem))


def inspect(python, use_pip_config=False):
    """Everything the interpreter sees: {"python", "python_version", "paths", "dists": {key: dist}}."""
    done = run([python, "-c", LIST_SCRIPT], env=child_env(use_pip_config), timeout=LIST_TIMEOUT)
    if done.rc != 0:
        raise RollbackError("pip: could not list the packages of %s: %s"
                            % (python, done.failure(words=1, tail=redact_url(done.output(800)))))
    try:
        data = ast.literal_eval(done.stdout)
    except (ValueError, SyntaxError):
        raise RollbackError("pip: %s printed something other than the package list: %r"
                            % (python, redact_url(redact_text(done.stdout))[:300]))
    for dist in data["dists"]:
        try:
            dist["direct_url"] = json.loads(dist["direct_url"]) if dist.get("direct_url") else None
        except ValueError:
            dist["direct_url"] = None
    data["dists"] = {d["key"]: d for d in data["dists"]}
    return data


def _file_path(url):
    return url[len("file://"):] if url.startswith("file://") else url


def source_of(dist):
    """How a distribution was installed, from PEP 610 direct_url.json; {} for an index or wheelhouse install."""
    direct = dist.get("direct_url") or {}
    url = direct.get("url")
    if url:
        if (direct.get("dir_info") or {}).get("editable"):
            return {"editable": _file_path(url)}
        vcs = direct.get("vcs_info")
        if vcs:
            out = {"vcs": vcs.get("vcs"), "url": redact_url(url), "commit": vcs.get("commit_id")}
            if direct.get("subdirectory"):
                out["subdirectory"] = direct["subdirectory"]
            return out
        return {"url": redact_url(url)}
    if dist.get("develop"):
        # A legacy `setup.py develop` install: an .egg-link names the source tree that holds the metadata.
        return {"editable": dist["develop"]}
    return {}


def entry(dist):
    out = {"name": dist["name"], "version": dist["version"]}
    out.update(source_of(dist))
    return out


def packages_of(listing):
    """The snapshot form: {canonical name: {name, version, [editable|vcs|url]}}."""
    return {key: entry(dist) for key, dist in sorted(listing["dists"].items())}


def freeze_lines(packages):
    """pip-freeze-like lines of a snapshot, for people and diffs."""
    lines = []
    for key in sorted(packages):
        lines.append(requirement_text(packages[key]))
    return lines


def requirement_text(pkg):
    if pkg.get("editable"):
        return "-e %s  # %s==%s" % (pkg["editable"], pkg["name"], pkg["version"])
    if pkg.get("vcs"):
        return "%s @ %s+%s@%s" % (pkg["name"], pkg["vcs"], pkg["url"], pkg["commit"])
    if pkg.get("url"):
        return "%s @ %s" % (pkg["name"], pkg["url"])
    return "%s%s%s" % (pkg["name"], "==" if _PEP440.match(pkg["version"]) else "===", pkg["version"])


def install_args(pkg):
    """The pip install arguments that bring back exactly this entry."""
    if pkg.get("editable"):
        return ["-e", pkg["editable"]]
    if pkg.get("vcs"):
        url = "%s+%s@%s" % (pkg["vcs"], pkg["url"], pkg["commit"])
        fragment = ["subdirectory=%s" % pkg["subdirectory"]] if pkg.get("subdirectory") else []
        return [_direct(pkg["name"], url, fragment)]
    if pkg.get("url"):
        return [_direct(pkg["name"], pkg["url"], [])]
    return [requirement_text(pkg)]


def _direct(name, url, fragment):
    """`name @ url`; a URL without a host (git+file:///srv/repo) is not a valid PEP 508 URL to older pips, so it
    goes as a bare URL named by #egg=."""
    scheme_rest = url.split("://", 1)
    if len(scheme_rest) == 2 and scheme_rest[1].startswith("/"):
        return "%s#%s" % (url, "&".join(["egg=%s" % name] + fragment))
    return "%s @ %s%s" % (name, url, "#" + "&".join(fragment) if fragment else "")


def pin_args(pkg):
    return ["%s%s%s" % (pkg["name"], "==" if _PEP440.match(pkg["version"]) else "===", pkg["version"])]


def describe(pkg):
    if not pkg:
        return {"version": None}
    out = {"version": pkg["version"]}
    for key in ("editable", "vcs", "url", "commit"):
        if pkg.get(key):
            out[key] = pkg[key]
    return out


# ---------------------------------------------------------------------------------------------- spec

def normalize_env(spec, where):
    """One environment of a snapshot spec: {virtualenv|executable, find_links, index_url, prune_extra,
    build_isolation, use_pip_config}."""
    if not isinstance(spec, dict):
        raise RollbackError("%s: expected a dict such as {virtualenv: /srv/app/venv, find_links: [/srv/wheels]}, got %s"
                            % (where, shown(spec)))
    known = {"virtualenv", "executable", "find_links", "index_url", "prune_extra", "build_isolation", "use_pip_config",
             "only"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise RollbackError("%s: unknown key %s; known keys: %s" % (where, ", ".join(unknown), ", ".join(sorted(known))))
    if bool(spec.get("virtualenv")) == bool(spec.get("executable")):
        raise RollbackError("%s: give exactly one of virtualenv (a venv directory) or executable (a python or pip); got %s"
                            % (where, shown(spec)))
    for key, what in (("virtualenv", "the virtualenv"), ("executable", "a python or pip")):
        if spec.get(key) is not None:
            check_abs(spec[key], "%s.%s" % (where, key), what)
    find_links = spec.get("find_links") or []
    if isinstance(find_links, str):
        find_links = [find_links]
    if not isinstance(find_links, list):
        raise RollbackError("%s.find_links: give a list of wheelhouse directories or URLs, got %s"
                            % (where, shown(find_links)))
    for index, link in enumerate(find_links):
        check_source_url(link, "%s.find_links[%d]" % (where, index), local=True)
    index_url = spec.get("index_url")
    if index_url is not None:
        check_source_url(index_url, "%s.index_url" % where)
    out = {
        "virtualenv": os.path.normpath(spec["virtualenv"]) if spec.get("virtualenv") else None,
        "executable": spec.get("executable"),
        "find_links": find_links,
        "index_url": index_url,
        "prune_extra": _bool(spec.get("prune_extra", True), "%s.prune_extra" % where),
        "build_isolation": _bool(spec.get("build_isolation", True), "%s.build_isolation" % where),
        "use_pip_config": _bool(spec.get("use_pip_config", False), "%s.use_pip_config" % where),
    }
    return out


def _bool(value, where):
    if not isinstance(value, bool):
        raise RollbackError("%s: %r must be true or false" % (where, value))
    return value


def check_source_url(value, where, local=False):
    """A package source: an http(s) or file URL, or (find_links) an absolute directory. Refused, naming it, when it
    is not one, or carries credentials (which would land on pip's command line and in the snapshot)."""
    example = "a wheelhouse directory or a URL" if local else "a URL such as https://pypi.internal/simple"
    if not isinstance(value, str) or not value.strip():
        raise RollbackError("%s: %r is not %s" % (where, value, example))
    text = redact_url(value)
    url = "://" in value
    # A directory may hold a space; a URL may not, and neither may hold a control character.
    if any(ord(ch) < 32 or ord(ch) == 127 or (url and ch.isspace()) for ch in value):
        raise RollbackError("%s: %r holds %s; give %s" % (where, text, "a space or a control character" if url
                                                          else "a control character (NUL, newline, ...)", example))
    check_no_credentials(value, where)
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https", "file") or not value.split("://", 1)[1]:
            raise RollbackError("%s: %r is not an http(s) or file URL; give %s" % (where, text, example))
    elif not local or not os.path.isabs(value):
        lead = "an absolute path or a URL; give " if local else ""
        raise RollbackError("%s: %r is not %s%s" % (where, text, lead, example))
    return value


def check_no_credentials(url, where):
    if _CREDENTIALS.search(url):
        raise RollbackError("%s: %s carries credentials; they would end up on a command line and in the snapshot. Put "
                            "them in ~/.netrc or a pip keyring instead and give the URL without them"
                            % (where, redact_url(url)))


def env_label(record):
    return record.get("virtualenv") or record.get("python")


# ---------------------------------------------------------------------------------------------- capture

def capture(spec, keep=None, directory=None):
    """The snapshot record of one environment. With `keep` (names) and `directory`, wheels of those installed
    distributions are kept there too (a safety point's offline copies): `wheelhouse` and `wheels` in the record."""
    python = resolve_python(spec.get("virtualenv"), spec.get("executable"))
    listing = inspect(python, spec.get("use_pip_config", False))
    record = {key: spec.get(key) for key in ("virtualenv", "executable", "find_links", "index_url",
                                             "prune_extra", "build_isolation", "use_pip_config")}
    record.update(python=python, python_version=listing["python_version"], packages=packages_of(listing))
    if keep and directory:
        record["wheelhouse"] = directory
        record["wheels"] = keep_copies(record, listing, keep, directory)
    return record


# ---------------------------------------------------------------------------------------------- plan

def identity(pkg):
    """What makes two installs the same. An editable install is its source tree (whose code and version are the
    tree's business, see the `source` component), a VCS install its commit, a URL install its URL."""
    if not pkg:
        return None
    if pkg.get("editable"):
        return ("editable", pkg["editable"])
    if pkg.get("vcs"):
        return ("vcs", pkg["vcs"], pkg.get("url"), pkg.get("commit"), pkg.get("subdirectory"))
    if pkg.get("url"):
        return ("url", pkg["url"])
    return ("version", pkg["version"])


def same(want, have):
    return identity(want) == identity(have)


def compare(wanted, current, only=None, prune_extra=False, exact=False, unmanaged=()):
    """Changes that turn `current` into `wanted`: install / change / remove, sorted by name. `pip` itself is never
    changed by a restore (it is the tool doing the restore) unless the record is an exact safety copy; `unmanaged`
    names (those a pip freeze file does not list) are never removed."""
    names = set(wanted) | set(current)
    if only is not None:
        names &= set(only)
    changes = []
    for key in sorted(names):
        if key in NEVER_MANAGED and not exact:
            continue
        want, have = wanted.get(key), current.get(key)
        if want and not have:
            changes.append({"name": want["name"], "key": key, "action": "install", "from": describe(None),
                            "to": describe(want)})
        elif want and not same(want, have):
            changes.append({"name": want["name"], "key": key, "action": "change", "from": describe(have),
                            "to": describe(want)})
        elif not want and have and (prune_extra or exact) and key not in unmanaged:
            changes.append({"name": have["name"], "key": key, "action": "remove", "from": describe(have),
                            "to": describe(None)})
    return changes


def check_only(record, only, where="only"):
    if only is None:
        return None
    bad0 = [n for n in only if not isinstance(n, str)]
    if bad0:
        raise RollbackError("%s: %r is not a package name" % (where, bad0[0]))
    keys = [canonical(n) for n in only]
    bad = [n for n in only if not isinstance(n, str) or not _NAME.fullmatch(n)]
    if bad:
        raise RollbackError("%s: %r is not a package name" % (where, bad[0]))
    missing = [n for n, k in zip(only, keys) if k not in record["packages"]]
    if missing and not record.get("prune_extra"):
        raise RollbackError("%s: %s not in the snapshot of %s (it holds %d packages); check the names, or set "
                            "prune_extra to remove packages the snapshot does not have"
                            % (where, ", ".join(missing), env_label(record), len(record["packages"])),
                            missing=missing)
    return keys


def plan(record):
    """The changes for one environment record (only / prune_extra / exact honoured)."""
    return plan_and_listing(record)[0]


def plan_and_listing(record):
    """(changes, the listing they were planned from); apply() can take that listing as its starting state when
    nothing runs in between, saving one interpreter start."""
    python = resolve_python(record.get("virtualenv"), record.get("executable") or record.get("python"))
    listing = inspect(python, record.get("use_pip_config", False))
    return _changes(record, listing), listing


def _changes(record, listing):
    current = packages_of(listing)
    changes = compare(record["packages"], current, record.get("only"), record.get("prune_extra", False),
                      record.get("exact", False), record.get("unmanaged") or ())
    for change in changes:
        change["env"] = env_label(record)
    return changes


# ---------------------------------------------------------------------------------------------- sources

def source_args(record, find_links=None, no_index=False):
    links = list(find_links or []) + list(record.get("find_links") or [])
    argv = []
    for link in links:
        argv += ["--find-links", link]
    if no_index:
        argv.append("--no-index")
    elif record.get("index_url"):
        argv += ["--index-url", record["index_url"]]
    elif links and not record.get("use_pip_config"):
        argv.append("--no-index")
    return argv


def source_text(record):
    parts = []
    if record.get("find_links"):
        parts.append("find_links %s" % ", ".join(record["find_links"]))
    if record.get("index_url"):
        parts.append("index_url %s" % redact_url(record["index_url"]))
    if not parts:
        parts.append("pip's configured index" if record.get("use_pip_config") else "PyPI (no find_links or index_url given)")
    return " and ".join(parts)


def missing_message(record, out, err):
    """Turn pip's resolver failure into a sentence naming the package and the version."""
    text = (err or "") + "\n" + (out or "")
    found = re.search(r"No matching distribution found for (\S+)", text)
    if not found:
        return None
    req = found.group(1)
    versions = re.search(r"satisfies the requirement %s \(from versions: ([^)]*)\)" % re.escape(req), text)
    available = versions.group(1).strip() if versions else ""
    return ("pip: %s is not available from %s (available: %s); nothing was changed"
            % (req, source_text(record), available or "none"))


def full_disk(record, out, err):
    """Advice when pip ran out of space: where, and what to do."""
    if "No space left on device" in (err or "") + (out or "") or "[Errno 28]" in (err or "") + (out or ""):
        return " (the filesystem holding %s is full: free space on it and run again)" % env_label(record)
    return ""


def pip_version(python, env):
    done = run([python, "-c", "import pip; print(pip.__version__)"], env=env, timeout=LIST_TIMEOUT)
    if done.rc is None:
        raise RollbackError("pip: %s" % done.failure(words=1))
    if done.rc != 0:
        raise RollbackError("pip: %s has no pip module; install pip into it first" % python)
    numbers = re.findall(r"\d+", done.stdout.strip())[:2]
    return tuple(int(n) for n in numbers) if numbers else (0, 0)


def preflight(record, changes):
    """Check, without changing anything, that pip finds every wanted version at the configured source (check mode)."""
    reqs = [a for c in changes if c["action"] != "remove" for a in install_args(_wanted(record, c))]
    if not reqs:
        return
    python = resolve_python(record.get("virtualenv"), record.get("executable") or record.get("python"))
    if not record.get("wheelhouse"):
        check_find_links(record)
    env = child_env(record.get("use_pip_config"))
    tmp = tempfile.mkdtemp(prefix="fleetops-pip-check-")
    try:
        base = [python, "-m", "pip"]
        extra = [] if record.get("build_isolation", True) else ["--no-build-isolation"]
        if pip_version(python, env) >= (22, 2):
            argv = base + ["install", "--dry-run", "--no-deps", "--force-reinstall", "--ignore-installed",
                           "--report", os.path.join(tmp, "report.json")] + extra
        else:
            argv = base + ["download", "--no-deps", "-d", tmp] + extra
        done = run(argv + source_args(record) + reqs, env=env)
        if done.rc != 0:
            raise RollbackError(missing_message(record, done.stdout, done.stderr) or
                                "pip: the wanted versions (%s) cannot be installed into %s from %s: %s; nothing was "
                                "changed" % (redact_url(" ".join(reqs)), env_label(record), source_text(record),
                                             _why(done)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wanted(record, change):
    return record["packages"][change["key"]]


# ---------------------------------------------------------------------------------------------- safety copies

def _digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def _under(path, root):
    return bool(root) and (path == root or path.startswith(root.rstrip("/") + "/"))


def _entry_point_scripts(dist_info):
    names = set()
    path = os.path.join(dist_info, "entry_points.txt")
    if not os.path.isfile(path):
        return names
    section = None
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]").strip()
            elif "=" in line and section in ("console_scripts", "gui_scripts"):
                names.add(line.split("=", 1)[0].strip())
    return names


def repack(dist, paths, directory):
    """Write the installed distribution back into a wheel from its RECORD; return the wheel path.

    Files under site-packages keep their place; scripts and data files outside it go into the wheel's
    .data directory; console scripts pip generates from entry_points.txt and bytecode are left out (pip
    makes them again); INSTALLER, REQUESTED and RECORD are written fresh. direct_url.json is kept, so an
    editable or VCS install comes back as one. Raises RollbackError when the RECORD is missing or names
    a file outside the environment."""
    dist_info = dist.get("path")
    if not dist_info or not dist_info.endswith(".dist-info") or not dist.get("record"):
        raise RollbackError("%s %s has no RECORD (not installed by a wheel-aware installer)" % (dist["name"], dist["version"]))
    site = os.path.dirname(dist_info)
    info_name = os.path.basename(dist_info)
    data_name = info_name[:-len(".dist-info")] + ".data"
    scripts_dir = paths.get("scripts")
    data_dir = paths.get("data")
    generated = _entry_point_scripts(dist_info)
    members = []
    with open(os.path.join(dist_info, "RECORD"), encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    for row in rows:
        if not row or not row[0]:
            continue
        full = os.path.normpath(os.path.join(site, row[0]))
        if _under(full, site):
            rel = os.path.relpath(full, site)
            if "__pycache__" in rel.split(os.sep) and rel.endswith(".pyc"):
                continue
            if rel in ("%s/RECORD" % info_name, "%s/INSTALLER" % info_name, "%s/REQUESTED" % info_name):
                continue
            arcname = rel
        elif scripts_dir and _under(full, scripts_dir):
            script = os.path.relpath(full, scripts_dir)
            if script in generated:
                continue
            arcname = "%s/scripts/%s" % (data_name, script)
        elif data_dir and _under(full, data_dir):
            arcname = "%s/data/%s" % (data_name, os.path.relpath(full, data_dir))
        else:
            raise RollbackError("%s %s installed %s, outside its environment" % (dist["name"], dist["version"], full))
        if not os.path.lexists(full):
            continue  # gone from the environment already: bringing the distribution back must not invent it
        members.append((arcname, full))
    if not os.path.isfile(os.path.join(dist_info, "WHEEL")):
        raise RollbackError("%s %s has no WHEEL file" % (dist["name"], dist["version"]))
    filename = "%s-%s-py3-none-any.whl" % (re.sub(r"[-_.]+", "_", dist["name"]), dist["version"].replace("-", "_"))
    final = os.path.join(directory, filename)
    tmp = final + ".part"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    # Stored, not deflated: these copies sit on the hot path of every restore and are read back once at most.
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for arcname, full in members:
            if os.path.islink(full):
                raise RollbackError("%s %s installed a symlink (%s); a wheel cannot hold it" % (dist["name"], dist["version"], full))
            with open(full, "rb") as body:
                data = body.read()
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(full).st_mode & 0o7777 | 0o100000) << 16
            archive.writestr(info, data)
            writer.writerow([arcname, _digest(data), len(data)])
        writer.writerow(["%s/RECORD" % info_name, "", ""])
        archive.writestr(zipfile.ZipInfo("%s/RECORD" % info_name, date_time=(1980, 1, 1, 0, 0, 0)), record.getvalue())
    os.chmod(tmp, 0o600)
    os.replace(tmp, final)
    return final


def keep_copies(record, listing, keys, directory):
    """Wheels of the installed versions of `keys` in `directory`, for an offline revert.

    Repacked from the environment; what cannot be repacked is fetched from the configured source.
    Returns {key: wheel filename}; raises, naming the distributions, when a copy cannot be had."""
    kept, fetch, reasons = {}, [], {}
    for key in keys:
        dist = listing["dists"].get(key)
        if not dist or key in NEVER_MANAGED:
            continue
        try:
            kept[key] = os.path.basename(repack(dist, listing["paths"], directory))
        except (RollbackError, OSError, ValueError) as err:
            reasons[key] = getattr(err, "msg", None) or str(err)
            fetch.append(key)
    if fetch:
        python = listing["python"]
        env = child_env(record.get("use_pip_config"))
        reqs = [requirement_text(entry(listing["dists"][k])) if not source_of(listing["dists"][k]).get("editable")
                else None for k in fetch]
        if None not in reqs:
            done = run([python, "-m", "pip", "download", "--no-deps", "-d", directory] + source_args(record) + reqs,
                       env=env)
            why = _why(done)
        else:
            done, why = None, "an editable install without a RECORD cannot be downloaded"
        if done is None or done.rc != 0:
            raise RollbackError(
                "pip: cannot keep a copy of the installed %s to revert to if the restore fails (%s; and fetching them "
                "from %s failed: %s); nothing was changed" % (
                    ", ".join("%s %s" % (listing["dists"][k]["name"], listing["dists"][k]["version"]) for k in fetch),
                    "; ".join("%s: %s" % kv for kv in sorted(reasons.items())), source_text(record), why),
                unrevertable=fetch)
        for key in fetch:
            kept[key] = "downloaded"
    return kept


# ---------------------------------------------------------------------------------------------- apply

def _pip_install(python, record, reqs, env, find_links=None, no_index=False):
    argv = [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--progress-bar", "off"]
    if not record.get("build_isolation", True):
        argv.append("--no-build-isolation")
    return run(argv + source_args(record, find_links, no_index) + reqs, env=env)


def _pip_uninstall(python, names, env):
    return run([python, "-m", "pip", "uninstall", "-y"] + names, env=env)


def _differences(wanted, current):
    return [c["name"] for c in compare(wanted, current, exact=True)]


def apply(record, changes, listing=None):
    """Make the environment match the record for these changes, reverting on failure (see the module docstring).
    Returns once the environment is verified to match; `listing` is the state the changes were planned from,
    when the caller has just taken it.

    A record from a safety point carries `wheelhouse` (its kept copies) and `wheels`; installs come from there."""
    if not changes:
        return {"installed": 0, "removed": 0}
    python = resolve_python(record.get("virtualenv"), record.get("executable") or record.get("python"))
    env = child_env(record.get("use_pip_config"))
    before = listing or inspect(python, record.get("use_pip_config"))
    before_packages = packages_of(before)
    installs = [c for c in changes if c["action"] in ("install", "change")]
    removes = [c for c in changes if c["action"] == "remove"]
    touched = [c["key"] for c in changes if c["action"] in ("change", "remove")]
    if installs and not record.get("wheelhouse"):
        check_find_links(record)
    work = tempfile.mkdtemp(prefix="fleetops-pip-revert-")
    os.chmod(work, 0o700)
    try:
        keep_copies(record, before, touched, work)
        wheelhouse = [record["wheelhouse"]] if record.get("wheelhouse") else []
        kept = [c["key"] for c in installs if wheelhouse and
                os.path.isfile(os.path.join(record["wheelhouse"], (record.get("wheels") or {}).get(c["key"], "-")))]
        # A kept copy (a safety point's) is installed by its pin: the wheel holds direct_url.json, so an editable
        # or VCS install comes back as exactly that without rebuilding anything.
        reqs = [a for c in installs
                for a in (pin_args(_wanted(record, c)) if c["key"] in kept else install_args(_wanted(record, c)))]
        failure = None
        label = env_label(record)
        stashes = _stashes(before)
        try:
            if reqs:
                only_safety = bool(wheelhouse) and len(kept) == len(installs)
                # With every wanted wheel kept, the kept copies are the only source: the wheelhouse may hold the same
                # versions built differently, and the copies are what was installed.
                source = dict(record, find_links=[], index_url=None) if only_safety else record
                PROGRESS.at("installing %s into %s with pip" % (", ".join(c["name"] for c in installs), label),
                            state="pip may have changed %s midway; rerun the same restore to finish it" % label)
                done = _pip_install(python, source, reqs, env, find_links=wheelhouse, no_index=only_safety)
                if done.rc != 0:
                    failure = missing_message(record, done.stdout, done.stderr) or _why(
                        done, full_disk(record, done.stdout, done.stderr))
            if failure is None and removes:
                PROGRESS.at("removing %s from %s with pip" % (", ".join(c["name"] for c in removes), label),
                            state="pip may have changed %s midway; rerun the same restore to finish it" % label)
                done = _pip_uninstall(python, [c["name"] for c in removes], env)
                if done.rc != 0:
                    failure = _why(done)
        except Terminated:
            # _process stopped pip on the way out: put back what it had done, like any other failure, and
            # remove the stash directories it had no time to clean up.
            failure = "stopped by SIGTERM while %s" % PROGRESS.step
            _remove_stashes(before, stashes)
        PROGRESS.at("checking %s after pip" % label)
        after = packages_of(inspect(python, record.get("use_pip_config")))
        if failure is None:
            target = dict(before_packages)
            for change in changes:
                if change["action"] == "remove":
                    target.pop(change["key"], None)
                else:
                    target[change["key"]] = _wanted(record, change)
            left = _differences(target, after)
            if not left:
                return {"installed": len(installs), "removed": len(removes)}
            failure = "after pip ran, %s still differ from the snapshot" % ", ".join(left)
        midway = _differences(before_packages, after)
        if not midway:
            if failure.endswith("nothing was changed"):
                raise RollbackError(failure, env=env_label(record))
            raise RollbackError("%s; %s is unchanged (nothing was changed)" % (failure, env_label(record)),
                                env=env_label(record))
        revert(python, record, env, before_packages, after, [work] + wheelhouse, failure, midway)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return None


def _site_dirs(listing):
    return sorted({listing["paths"].get(key) for key in ("purelib", "platlib") if listing["paths"].get(key)})


def _stashes(listing):
    """The `~`-named entries pip uses as temporary stashes, already in site-packages before pip runs."""
    found = set()
    for site in _site_dirs(listing):
        try:
            found |= {os.path.join(site, name) for name in os.listdir(site) if name.startswith("~")}
        except OSError:
            pass
    return found


def _remove_stashes(listing, existing):
    for path in _stashes(listing) - existing:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def revert(python, record, env, before, after, wheelhouses, failure, midway):
    """Put the environment back to `before` from the kept copies (offline); always raises."""
    PROGRESS.at("putting %s back after: %s" % (env_label(record), failure),
                state="%s is partly changed (%s) and being put back" % (env_label(record), ", ".join(midway)))
    reinstall = [k for k in sorted(before) if k in after and not same(before[k], after[k]) or k not in after]
    extras = [after[k]["name"] for k in sorted(after) if k not in before]
    problems = []
    if reinstall:
        pins = [pin_args(before[k])[0] for k in reinstall]
        done = _pip_install(python, dict(record, index_url=None, find_links=[]), pins, env,
                            find_links=wheelhouses, no_index=True)
        if done.rc != 0:
            problems.append("reinstalling %s: %s" % (", ".join(pins), _why(done)))
    if extras:
        done = _pip_uninstall(python, extras, env)
        if done.rc != 0:
            problems.append("removing %s: %s" % (", ".join(extras), _why(done)))
    now = packages_of(inspect(python, record.get("use_pip_config")))
    still = _differences(before, now)
    if still:
        raise RollbackError(
            "pip: %s; it had already changed %s, and putting %s back FAILED: %s differ from before the restore (%s). "
            "The environment is in a mixed state: before = %s; now = %s"
            % (failure, ", ".join(midway), env_label(record), ", ".join(still), "; ".join(problems) or "no error",
               ", ".join(requirement_text(before[k]) for k in still if k in before) or "(absent)",
               ", ".join(requirement_text(now[k]) for k in still if k in now) or "(absent)"),
            env=env_label(record), reverted=False, midway=midway, differs=still)
    raise RollbackError("pip: %s; it had already changed %s, so %s was put back exactly as it was before the restore "
                        "(from copies kept offline)" % (failure, ", ".join(midway), env_label(record)),
                        env=env_label(record), reverted=True, midway=midway)


# ---------------------------------------------------------------------------------------------- diff and files

def summary(changes):
    """{added, removed, changed} for people: names with versions, changed from -> to."""
    out = {"added": [], "removed": [], "changed": []}
    for change in changes:
        if change["action"] == "install":
            out["added"].append({"name": change["name"], "version": change["to"]["version"]})
        elif change["action"] == "remove":
            out["removed"].append({"name": change["name"], "version": change["from"]["version"]})
        elif change["action"] in ("change", "downgrade", "upgrade"):
            out["changed"].append({"name": change["name"], "from": change["from"]["version"], "to": change["to"]["version"]})
    return out


def diff(record, changes):
    if not changes:
        return []
    before = []
    after = []
    for change in changes:
        if change["from"].get("version") is not None:
            before.append(_line(change["name"], change["from"]))
        if change["to"].get("version") is not None:
            after.append(_line(change["name"], change["to"]))
    return [{"before_header": "%s (pip)" % env_label(record), "after_header": "%s (snapshot)" % env_label(record),
             "before": "".join(line + "\n" for line in before), "after": "".join(line + "\n" for line in after)}]


def _line(name, state):
    text = "%s==%s" % (name, state["version"])
    if state.get("editable"):
        text += "  (editable %s)" % state["editable"]
    elif state.get("vcs"):
        text += "  (%s %s@%s)" % (state["vcs"], state.get("url"), state.get("commit"))
    elif state.get("url"):
        text += "  (%s)" % state["url"]
    return text


def parse_freeze(text, where="src"):
    """Packages from `pip freeze` output (the runbooks' requirements-backup.txt)."""
    packages = {}
    pending = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        # pip freeze names an editable install without VCS in a comment on the line before it.
        named = re.match(r"^#.*\(([A-Za-z0-9][A-Za-z0-9._-]*)==([^)\s]+)\)\s*$", stripped)
        if named:
            pending = named.groups()
            continue
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        editable = re.match(r"^-e\s+(\S+)$", line)
        if editable:
            target = editable.group(1)
            egg = re.search(r"#egg=([A-Za-z0-9._-]+)", target)
            name, version = (egg.group(1), "") if egg else (None, "")
            comment = re.search(r"#\s*([A-Za-z0-9._-]+)==(\S+)", raw[len(raw.split(" #", 1)[0]):])
            if comment:
                name, version = comment.groups()
            elif pending:
                name, version = pending
            pending = None
            if not name:
                raise RollbackError("%s line %d: cannot tell the package name of %r; write it as -e PATH#egg=NAME"
                                    % (where, number, raw))
            packages[canonical(name)] = {"name": name, "version": version,
                                         "editable": _file_path(target.split("#", 1)[0])}
            continue
        pending = None
        direct = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(\S+)$", line)
        if direct:
            name, url = direct.groups()
            vcs = re.match(r"^(git|hg|svn|bzr)\+(.+)@([0-9a-fA-F]{7,64})$", url)
            if vcs:
                packages[canonical(name)] = {"name": name, "version": "", "vcs": vcs.group(1), "url": vcs.group(2),
                                             "commit": vcs.group(3)}
            else:
                packages[canonical(name)] = {"name": name, "version": "", "url": url}
            continue
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*===?\s*([^\s;]+)\s*$", line)
        if not pin:
            raise RollbackError("%s line %d: %r is not an exact pin (NAME==VERSION, -e PATH or NAME @ URL); a snapshot "
                                "restores exact versions only" % (where, number, raw))
        packages[canonical(pin.group(1))] = {"name": pin.group(1), "version": pin.group(2)}
    return packages
