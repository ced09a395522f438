# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base every fleetops.rollback module is built on.

It merges the common arguments (the store and its lock), builds the AnsibleModule and turns a
RollbackError into a fail_json that carries the message and the structured details.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import signal
import traceback
from urllib.parse import unquote

from ansible.module_utils.basic import AnsibleModule, _load_params

from ansible_collections.fleetops.rollback.plugins.module_utils._argspec import dict_option_problem, secret_values

DEFAULT_STORE_PATH = "/var/lib/fleetops/rollback"

STORE_ARGUMENT_SPEC = dict(
    store_path=dict(type="path", default=DEFAULT_STORE_PATH),
    lock_timeout=dict(type="float", default=0.0),
    force_unlock=dict(type="bool", default=False),
)


SECRET_OPTION_NAMES = ("login_password", "password")


_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/@\s]+)@")


def url_credentials(value):
    """The credentials written into any URL inside value (strings, lists, dicts, at any depth): the whole
    user:password (or token) part, the password alone and its percent-decoded form, for a module's no_log_values so
    that neither a result nor the echoed arguments show them."""
    found = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str) and "@" in item:
            for match in _URL_USERINFO.finditer(item):
                userinfo = match.group(1)
                found.add(userinfo)
                password = userinfo.partition(":")[2]
                found.update((password, unquote(password)))
    # The user:password part is masked whole; a value shorter than 4 characters alone would mask every such
    # sequence in the output (Ansible masks no_log values wherever they occur).
    return {secret for secret in found if len(secret) >= 4 or ":" in secret}


def hide_secrets(module, value):
    """Mark no_log every value under a password-named key of a free-form option (such as `components`), and every
    credential written into a URL in it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if key in SECRET_OPTION_NAMES and isinstance(sub, (str, int)) and str(sub):
                    module.no_log_values.add(str(sub))
                else:
                    stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)
    module.no_log_values.update(url_credentials(value))


class RollbackError(Exception):
    """A failure worth reporting: a message that says what and what to do, plus details for the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class Terminated(Exception):
    """SIGTERM arrived. An Exception, so that every cleanup and safety revert on the way out runs."""


HOST_UNTOUCHED = "nothing on the host was changed"


class Progress:
    """Where a run is: the step under way and what state the host is in if it fails there. Any failure, a bug
    included, is reported with both, so nobody has to guess what a failed run left behind."""

    def __init__(self):
        self.step = "starting"
        self.state = HOST_UNTOUCHED

    def at(self, step, state=None):
        self.step = step
        if state is not None:
            self.state = state
        return self


# One module process runs one task, so one record of its progress is enough.
PROGRESS = Progress()

# OSError numbers that describe the machine, not a bug: said plainly, with what to do.
_OS_ADVICE = {
    errno.ENOSPC: "the filesystem is full: free space on it and run again",
    errno.EDQUOT: "the disk quota is exhausted: free space or raise the quota and run again",
    errno.EROFS: "the filesystem is read-only: remount it read-write (or choose another path) and run again",
    errno.EACCES: "permission denied: run with become (root) or fix the owner and mode",
    errno.EPERM: "operation not permitted: run with become (root) or fix the owner and mode",
    errno.EIO: "an I/O error: check the disk (dmesg) before running again",
}


def describe_os_error(err):
    """An OSError as a sentence: what, where, and what to do."""
    where = " (%s)" % err.filename if getattr(err, "filename", None) else ""
    advice = _OS_ADVICE.get(err.errno)
    return "%s%s%s" % (err.strerror or err, where, "; " + advice if advice else "")


def check_path(option, value, absolute=True):
    """A path option as given, refused with a clear message when it cannot be a path: empty, a NUL byte, relative."""
    if not isinstance(value, str) or not value.strip():
        raise RollbackError("%s: %r is not a path; give an absolute path" % (option, value))
    if "\x00" in value:
        raise RollbackError("%s: %r holds a NUL byte; give a real path" % (option, value))
    if absolute and not os.path.isabs(value):
        raise RollbackError("%s: %r is not an absolute path; give the full path" % (option, value))
    return os.path.normpath(value)


def check_program(program, where):
    """Refuse, before anything changes, a command whose program cannot run: not an executable file (a path), or
    not on PATH (a name)."""
    if "/" in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise RollbackError("%s: the program %r is not an executable file; nothing was changed; give an installed "
                                "program (an absolute path or a name on PATH)" % (where, program))
    elif not shutil.which(program):
        raise RollbackError("%s: the program %r is not on PATH; nothing was changed; install it or give its absolute "
                            "path" % (where, program))
    return program


# The longest a run waits for another run's lock: a day. Anything longer is a typo, not a plan.
MAX_LOCK_TIMEOUT = 86400.0


def check_lock_timeout(value):
    if value is None:
        return 0.0
    if not math.isfinite(value) or value < 0 or value > MAX_LOCK_TIMEOUT:
        raise RollbackError("lock_timeout: %r is not a number of seconds between 0 and %d; give how long to wait for "
                            "another run's lock (0 fails at once)" % (value, MAX_LOCK_TIMEOUT))
    return value


class ModuleBase:
    """Subclasses set `argument_spec` (and `uses_store`) and implement `run()` returning the result dict."""

    argument_spec = {}
    uses_store = True
    module_kwargs = {}

    def __init__(self):
        spec = {}
        if self.uses_store:
            spec.update(STORE_ARGUMENT_SPEC)
        spec.update(self.argument_spec)
        problem = dict_option_problem(spec, _load_params())
        if problem:
            self._fail_unparsed(spec, problem)
        try:
            self.module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **self.module_kwargs)
        except (OverflowError, ValueError, TypeError, RecursionError) as err:
            # Ansible's own type checks can break on a value far out of range (10**400 for a float option) before
            # there is a module to fail with: answer as a module would, naming the options that hold such values.
            self._fail_unparsed(spec, err)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        self.progress = PROGRESS

    def _fail_unparsed(self, spec, err):
        """Read the arguments again with every number option and every dict of options untyped, and fail: with the
        message of a dict of options that is wrong (a str), or naming the numbers out of range."""
        numbers = [name for name, option in spec.items() if option.get("type") in ("int", "float")]
        # Untyped, they keep their aliases, defaults and no_log markers: the arguments still read as given.
        relaxed = {name: dict({key: value for key, value in option.items() if key != "options"}, type="raw")
                   if name in numbers or option.get("options") else option for name, option in spec.items()}
        self.module = AnsibleModule(argument_spec=relaxed, supports_check_mode=True, **self.module_kwargs)
        # The typed options' no_log markers were relaxed away with their types: mask their values all the same.
        self.module.no_log_values.update(secret_values(spec, self.module.params))
        if isinstance(err, str):
            self.module.fail_json(msg=err)
        suspects = [name for name in numbers if isinstance(self.module.params.get(name), int)
                    and not isinstance(self.module.params.get(name), bool) and abs(self.module.params[name]) > 2 ** 63]
        self.module.fail_json(msg="the task's arguments could not be read: %s (%s)%s; give values in range"
                              % (type(err).__name__, err, "; out of range: %s" % ", ".join(suspects) if suspects else ""))

    def run(self):
        raise NotImplementedError

    def _terminate(self, signum, frame):  # pylint: disable=unused-argument
        # Raised once, where the run is, so that staged files are removed and a started restore is reverted.
        # A second SIGTERM while that happens is ignored: only SIGKILL cuts a revert short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("stopped by SIGTERM")

    def _state(self):
        state = self.progress.state
        return state if not self.check_mode else HOST_UNTOUCHED + " (check mode)"

    def main(self):
        name = type(self).__name__
        signal.signal(signal.SIGTERM, self._terminate)
        try:
            if self.uses_store:
                check_lock_timeout(self.params.get("lock_timeout"))
            result = self.run()
        except RollbackError as err:
            self.module.fail_json(msg=err.msg, **err.details)
        except Terminated:
            self.module.fail_json(msg="stopped by SIGTERM while %s; %s" % (self.progress.step, self._state()),
                                  step=self.progress.step, host_state=self._state())
        except OSError as err:
            self.module.fail_json(msg="%s failed: %s; %s" % (self.progress.step, describe_os_error(err), self._state()),
                                  step=self.progress.step, host_state=self._state(), errno=err.errno)
        except Exception as err:  # pylint: disable=broad-except
            # A bug: still say which step failed and what state the host is in, with the exception for the report.
            self.module.fail_json(
                msg="%s: internal error while %s: %s: %s; %s. This is a bug in fleetops.rollback: please report it "
                    "with the exception below" % (name, self.progress.step, type(err).__name__, err, self._state()),
                step=self.progress.step, host_state=self._state(), exception=traceback.format_exc())
        for warning in result.pop("warnings", None) or []:
            self.module.warn(warning)
        self.module.exit_json(**result)
