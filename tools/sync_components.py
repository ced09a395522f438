"""Write everything the component registry implies, so that no list of components is kept by hand.

    python tools/sync_components.py           write the files
    python tools/sync_components.py --check   exit 1 and name the files that differ (the unit tests run this)

- plugins/doc_fragments/components.py: restore_point's `components` option (one suboption per registered component,
  with its own options) and the options components read at restore time (database_password, ...).
- plugins/doc_fragments/postgres.py: the connection options of pg_dump and pg_restore, which are the database
  component's own, and (postgres.dump) the dump options pg_dump shares with it.
- plugins/doc_fragments/kubernetes.py: the Kubernetes connection options (_backends/k8s_options.py), shared by the
  kubernetes component, k8s_rollout_restore and the k8s_rollout health check.
- Every list of component names in the modules' documentation, the roles' argument specs, the AWX job templates
  and the guides (a run of three or more registered names separated by ", ") becomes the registry's order.
- The blocks between `<!-- components -->` and `<!-- /components -->` in README.md and docs/restore-points.md:
  one line per component, from its SUMMARY.

Option references in a component's descriptions (O(jobs)) are written relative to the component; in restore_point
they become O(components.database.jobs).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

HEADER = '''# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by tools/sync_components.py from the component registry (plugins/module_utils/_components): do not edit.

from __future__ import annotations


class ModuleDocFragment:
'''

POSTGRES_NOTES = {
    "notes": [
        "C(pg_dump) and C(pg_restore) run as children that do not outlive the module (on Linux): a SIGTERM to the "
        "module stops them before it reports, and they get SIGTERM from the kernel if the module is killed.",
        "What the client tools and the server print is shown with the password and anything that looks like a secret "
        "(C(password=...), credentials in URLs) redacted.",
    ],
    "requirements": [
        "psycopg2 (C(psycopg2-binary) from PyPI) for the Python that runs the module on the host",
        "the PostgreSQL client binaries C(pg_dump) and C(pg_restore)",
    ],
}


def _registry():
    from ansible_collections.fleetops.rollback.plugins.module_utils import _components  # pylint: disable=import-outside-toplevel
    return _components


def _relative(text, prefix, names):
    """O(name) and O(name=value) of an option in `names` as O(prefix.name...)."""
    def one(match):
        return "O(%s%s%s)" % (prefix, match.group(1), match.group(2) or "") if match.group(1) in names else match.group(0)
    return re.sub(r"O\(([A-Za-z_][A-Za-z0-9_]*)(=[^)]*)?\)", one, text)


def _doc(options, prefix=""):
    """An OPTIONS dict (argument spec with descriptions) as documentation."""
    out = {}
    for name, option in options.items():
        entry = {"description": [_relative(line, prefix, options) for line in option.get("description") or []]}
        for key in ("type", "elements", "required", "default", "choices", "aliases", "no_log"):
            if key in option and key != "no_log" and not (key == "required" and not option[key]):
                entry[key] = option[key]
        if option.get("options"):
            entry["suboptions"] = _doc(option["options"], prefix + name + ".")
        out[name] = entry
    return out


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as the hand-written documentation of the other plugins is."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _render(name, data):
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=110, default_flow_style=False, allow_unicode=True)
    return '    %s = r"""\n%s"""\n' % (name, text)


def components_fragment():
    registry = _registry()
    suboptions = {}
    for declaration in registry.REGISTRY:
        prefix = "components.%s." % declaration.NAME
        suboptions[declaration.NAME] = {
            "description": ["%s%s." % (declaration.SUMMARY[0].upper(), declaration.SUMMARY[1:])],
            "type": "dict",
            "suboptions": _doc(declaration.OPTIONS, prefix),
        }
    runtime = {}
    for declaration in registry.REGISTRY:
        runtime.update(_doc(declaration.RUNTIME_OPTIONS))
    options = {
        "components": {
            "description": [
                "With O(state=present), what to capture: one entry per component, each with its own options.",
                "Restores apply the components a point holds in this order: %s; a failed restore re-applies the "
                "safety point in the reverse order." % ", ".join(registry.ORDER),
            ],
            "type": "dict",
            "suboptions": suboptions,
        },
    }
    options.update(runtime)
    return HEADER + _render("DOCUMENTATION", {"options": options})


# The dump options pg_dump documents through fleetops.rollback.postgres.dump (it documents format and jobs itself:
# there the format is required, never defaulted, and jobs serve its verification too).
PG_DUMP_OPTIONS = ("compress", "schemas", "exclude_schemas", "tables", "exclude_tables")


def postgres_fragment():
    database = _registry().DECLARATIONS["database"]
    data = {"options": _doc(database.CONNECTION_OPTIONS)}
    data.update(POSTGRES_NOTES)
    dump = {"options": _doc({name: database.DUMP_OPTIONS[name] for name in PG_DUMP_OPTIONS})}
    return HEADER + _render("DOCUMENTATION", data) + "\n" + _render("DUMP", dump)


def kubernetes_fragment():
    from ansible_collections.fleetops.rollback.plugins.module_utils._backends import k8s_options  # pylint: disable=import-outside-toplevel
    data = {"options": _doc(k8s_options.CONNECTION_OPTIONS)}
    data["requirements"] = ["the Python package C(kubernetes) on the host that talks to the API server (the controller "
                            "for a cluster host with C(ansible_connection=local))"]
    return HEADER + _render("DOCUMENTATION", data)


def _markdown(text):
    """Ansible's documentation markup as Markdown: C(x), V(x), E(x), O(x), M(x) -> `x`."""
    return re.sub(r"\b[CVEOM]\(([^()]*(?:\([^()]*\)[^()]*)*)\)", r"`\1`", text)


def _lists(text):
    """Every run of three or more registered component names separated by ", " as the registry's order."""
    order = _registry().ORDER
    names = "|".join(re.escape(name) for name in order)
    run = re.compile(r"(?<![\w-])(?:%s)(?:, (?:%s)){2,}(?![\w-])" % (names, names))
    for match in run.finditer(text):
        # A list wrapped over two lines would be read as two lists: keep each on one line.
        if text[match.end():match.end() + 2] == ",\n" or text[:match.start()].rstrip(" \t#-").endswith(","):
            raise SystemExit("a list of components is wrapped over two lines near %r; keep it on one line"
                             % text[match.start():match.end()])
    return run.sub(", ".join(order), text)


BLOCK = re.compile(r"(<!-- components -->\n).*?(<!-- /components -->)", re.S)


def _blocks(text, style):
    registry = _registry()
    if style == "readme":
        lines = ["- `%s`: %s." % (d.NAME, _markdown(d.SUMMARY)) for d in registry.REGISTRY]
    else:
        lines = ["| component | what a point holds, and how a restore brings it back |", "|---|---|"]
        lines += ["| `%s` | %s |" % (d.NAME, _markdown(d.SUMMARY)) for d in registry.REGISTRY]
    return BLOCK.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)


def _synced(rel, style=None):
    def build():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as stream:
            text = _lists(stream.read())
        return _blocks(text, style) if style else text
    return build


FILES = {
    os.path.join("plugins", "doc_fragments", "components.py"): components_fragment,
    os.path.join("plugins", "doc_fragments", "postgres.py"): postgres_fragment,
    os.path.join("plugins", "doc_fragments", "kubernetes.py"): kubernetes_fragment,
    os.path.join("plugins", "modules", "restore_point.py"): _synced(os.path.join("plugins", "modules", "restore_point.py")),
    os.path.join("roles", "rollback", "meta", "argument_specs.yml"): _synced(
        os.path.join("roles", "rollback", "meta", "argument_specs.yml")),
    os.path.join("roles", "restore_point", "meta", "argument_specs.yml"): _synced(
        os.path.join("roles", "restore_point", "meta", "argument_specs.yml")),
    os.path.join("awx", "job_templates.yml"): _synced(os.path.join("awx", "job_templates.yml")),
    "README.md": _synced("README.md", "readme"),
    os.path.join("docs", "restore-points.md"): _synced(os.path.join("docs", "restore-points.md"), "table"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="only say which files differ")
    args = parser.parse_args(argv)
    stale = []
    for rel, build in FILES.items():
        path = os.path.join(ROOT, rel)
        text = build()
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(text)
    if args.check and stale:
        print("out of date (run python tools/sync_components.py): %s" % ", ".join(stale))
        return 1
    for rel in stale if not args.check else ():
        print("wrote %s" % rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
