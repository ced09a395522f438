# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed options checked the way AnsibleModule checks them, and refused in words that name the option's full path.

Ansible's own messages for nested options say "argument 'port' is of type str found in 'components -> database'",
lead with a no_log side effect ("dictionary requested ...") when a dict is not one, and a value that is not a dict
where a dict of options goes breaks its validator with a TypeError. The options that hold a dict of options
(restore_point's `components`) are therefore checked here first, and refused as "components.database.port: give an
int, got a str ('abc')".
"""

from __future__ import annotations

import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import (ArgumentTypeError, ArgumentValueError, ElementError, NoLogError,
                                         RequiredError, SubParameterTypeError, UnsupportedError)

_TYPE_ERROR = re.compile(r"argument '(?P<name>[^']+)' is of type (?P<got>\S+)(?: found in '(?P<inside>.*?)'\.)? and we "
                         r"were unable to convert to (?P<want>\w+): (?P<why>.*)$", re.S)
_ELEMENT_ERROR = re.compile(r"Elements value for option '(?P<name>[^']+)'(?: found in '(?P<inside>.*?)')? is of type "
                            r"(?P<got>\S+) and we were unable to convert to (?P<want>\w+)", re.S)
_CHOICE_ERROR = re.compile(r"value of (?P<name>\S+) must be one of: (?P<choices>.*?), got: (?P<got>.*?)"
                           r"(?: found in (?P<inside>.*))?$", re.S)
_REQUIRED_ERROR = re.compile(r"missing required arguments: (?P<names>.*?)(?: found in (?P<inside>.*))?$", re.S)


def _parts(inside):
    """Ansible's path inside the validated parameters ('a -> 0 -> b') as its parts."""
    return [part for part in re.split(r"\s*->\s*", inside or "") if part]


def _path(where, inside, name=None):
    """where + Ansible's path inside it + name, dotted; list indexes stay as parts."""
    return ".".join(([where] if where else []) + _parts(inside) + ([name] if name else []))


def _lookup(root, inside, name):
    """The value at Ansible's path and name under root, or a marker when it cannot be found."""
    value = root
    for part in _parts(inside) + [name]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_MISSING = object()


def _shown(value):
    return "" if value is _MISSING else " (%r)" % (value,)


def _article(word):
    return ("an " if word[:1] in "aeiou" else "a ") + word


def messages(errors, where="", root=None):
    """Ansible validation errors (an ErrorCollection) as messages naming each option by its dotted path, and the
    value found there under `root` (the parameters that were validated)."""
    out = []
    typed = set()
    for error in errors:
        if isinstance(error, NoLogError):
            continue  # a side effect of a type error reported next (or a value Ansible could not scan for secrets)
        if isinstance(error, UnsupportedError):
            # "a.b, c. Supported parameters include: x, y." (nested names are dotted from the top)
            names, dummy, known = error.msg.partition(". Supported parameters include: ")
            parents = {}
            for name in names.split(", "):
                parent, dummy, leaf = name.rpartition(".")
                parents.setdefault(".".join(part for part in (where, parent) if part), []).append(leaf)
            for parent, leaves in parents.items():
                out.append("%sunknown option %s; known options: %s" % (
                    parent + ": " if parent else "", ", ".join(repr(n) for n in leaves), known.rstrip(".")))
            continue
        if isinstance(error, RequiredError):
            match = _REQUIRED_ERROR.match(error.msg)
            if match:
                out.append("; ".join("%s is required" % _path(where, match.group("inside"), name)
                                     for name in match.group("names").split(", ")))
                continue
        if isinstance(error, ArgumentTypeError):
            match = _TYPE_ERROR.match(error.msg)
            if match:
                path = _path(where, match.group("inside"), match.group("name"))
                typed.add(path)
                value = _lookup(root, match.group("inside"), match.group("name"))
                why = match.group("why")
                out.append("%s: give %s, got %s%s%s" % (
                    path, _article(match.group("want")), _article(match.group("got")), _shown(value),
                    "" if why.startswith("<class") or value is not _MISSING and repr(value) in why else ": " + why))
                continue
        if isinstance(error, ElementError):
            match = _ELEMENT_ERROR.match(error.msg)
            if match:
                path = _path(where, match.group("inside"), match.group("name"))
                typed.add(path)
                out.append("%s: each element must be %s, got %s%s" % (
                    path, _article(match.group("want")), _article(match.group("got")),
                    _shown(_lookup(root, match.group("inside"), match.group("name")))))
                continue
        if isinstance(error, ArgumentValueError):
            match = _CHOICE_ERROR.match(error.msg)
            if match:
                out.append("%s: %r is not one of %s" % (_path(where, match.group("inside"), match.group("name")),
                                                        match.group("got"), match.group("choices")))
                continue
        if isinstance(error, SubParameterTypeError) and any(path.endswith(error.msg.split("'")[1]) for path in typed
                                                            if "'" in error.msg):
            continue  # the type error above already says it
        out.append("%s: %s" % (where, error.msg) if where else error.msg)
    return out


def _items(option, value, path):
    """(path, item) of each dict of options an option holds: itself for a dict, each element for a list of dicts."""
    if option.get("type") == "list" and isinstance(value, list):
        return [("%s[%d]" % (path, index), item) for index, item in enumerate(value)]
    return [(path, value)]


def shape_problem(option, value, path):
    """The first place where an option that holds a dict of options (or a list of them) holds something that is not
    a dict (Ansible's validator would raise a TypeError there), or None."""
    options = option.get("options")
    nested = option.get("type") == "dict" or option.get("type") == "list" and option.get("elements") == "dict"
    if not options or not nested or option.get("type") == "list" and not isinstance(value, list):
        return None
    for where, item in _items(option, value, path):
        if not isinstance(item, dict):
            return "%s: give a dict of options (%s), got %s" % (
                where, ", ".join(sorted(options)), "None" if item is None else "%s (%r)" % (
                    _article(type(item).__name__), item))
        for name, inner in options.items():
            if item.get(name) is not None:
                problem = shape_problem(inner, item[name], "%s.%s" % (where, name))
                if problem:
                    return problem
    return None


def _strings(spec, params, prefix=""):
    """The first option of type str or path given a list or a dict (Ansible would pass on its repr, and a database
    named "['app']" would be looked for), or None."""
    if not isinstance(params, dict):
        return None
    for name, option in spec.items():
        value = params.get(name)
        if value is None:
            for alias in option.get("aliases") or ():
                value = params.get(alias) if value is None else value
        if value is None:
            continue
        path = prefix + name
        if option.get("type", "str") in ("str", "path") and isinstance(value, (list, dict)):
            return "%s: give a string, got %s%s" % (path, _article(type(value).__name__),
                                                    "" if option.get("no_log") else " (%r)" % (value,))
        if option.get("options"):
            for where, item in _items(option, value, path):
                problem = _strings(option["options"], item, where + ".")
                if problem:
                    return problem
    return None


def dict_option_problem(spec, params):
    """What is wrong with the options of `spec` that hold a dict of options (or a string option given a list),
    checked before AnsibleModule reads them (None when nothing is): said with the option's full path."""
    if not isinstance(params, dict):
        return None  # not run as a module (documentation tools import it to read its argument spec)
    problem = _strings(spec, params)
    if problem:
        return problem
    nested = {name: option for name, option in spec.items()
              if option.get("type") == "dict" and option.get("options") and params.get(name) is not None}
    for name, option in nested.items():
        problem = shape_problem(option, params[name], name)
        if problem:
            return problem
    if not nested:
        return None
    result = ArgumentSpecValidator({name: dict(option, required=False) for name, option in nested.items()}).validate(
        {name: params[name] for name in nested})
    found = messages(result.errors, root=params)
    return "; ".join(found) if found else None


def secret_values(spec, params):
    """The values of no_log options anywhere under `params`, whatever their shape: a module that fails before Ansible
    has read its arguments still masks them in what it returns."""
    found = set()

    def walk(options, value):
        if not isinstance(value, dict):
            return
        for name, option in options.items():
            inner = value.get(name)
            if inner is None:
                continue
            if option.get("no_log"):
                found.update(str(v) for v in (inner.values() if isinstance(inner, dict) else
                                              inner if isinstance(inner, list) else [inner]) if str(v))
            if option.get("options"):
                for item in inner if isinstance(inner, list) else [inner]:
                    walk(option["options"], item)

    walk(spec, params)
    return found
