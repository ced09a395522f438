# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback report: what the `rollback_report` callback records during a run, and how it is written.

`RunRecorder` is fed plain data (names, times, result dicts) by the callback and knows nothing of Ansible's
objects, so it is tested without running Ansible. `build()` turns what it saw into the report (a JSON-ready
dict), sanitized: no value of a secret-looking key, no secret-looking text, no known secret value (the values of
the run's password, token, secret... variables). `render_markdown` and `render_svg` draw that report;
`write_report` writes the three files (0600, in a 0700 directory) atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from ansible_collections.fleetops.rollback.plugins.module_utils._common import describe_os_error
from ansible_collections.fleetops.rollback.plugins.module_utils._pathkind import directory_problem
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import Scrubber, redact_text, secret_values

REPORT_FORMAT = 1
OUTCOMES = ("ok", "changed", "failed", "ignored", "skipped", "unreachable")
COLORS = {
    "ok": "#43a047",          # green: ran, nothing to change
    "changed": "#1e88e5",     # blue: ran and changed something
    "failed": "#e53935",      # red
    "ignored": "#fb8c00",     # orange: failed, errors ignored
    "skipped": "#cfd8dc",     # light grey
    "unreachable": "#8e24aa",  # purple
    "running": "#fdd835",     # yellow: started, no result (the run was cut short)
}
ERROR_LIMIT = 500
CHANGES_LISTED = 20


def _iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds") if ts is not None else None


def _rel(ts, start):
    return round(ts - start, 3) if ts is not None and start is not None else None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _short(action):
    return (action or "").rsplit(".", 1)[-1]


def describe_change(change):
    """One line for one change of a restore plan: action, what, and from -> to of the first thing that differs
    (a link target, a version, a revision, an image, the kind of file, its content hash, its mode or owner)."""
    if not isinstance(change, dict):
        return str(change)
    what = next((str(change[k]) for k in ("path", "name", "ref", "container", "database") if change.get(k)), "")
    line = " ".join(part for part in (str(change.get("action") or "change"), what) if part)
    before, after = change.get("from"), change.get("to")
    if isinstance(before, dict) and isinstance(after, dict):
        for key in ("target", "version", "revision", "image", "type", "sha256", "mode", "owner"):
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            if key == "sha256":
                old, new = (old or "")[:12] or None, (new or "")[:12] or None
            line += ": %s%s -> %s" % ("" if key in ("target", "version", "revision", "image", "type") else key + " ",
                                      old if old is not None else "none", new if new is not None else "none")
            break
    return line


class RunRecorder:
    """Everything the report needs, recorded from callback events."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.started = None
        self.ended = None
        self.playbook = None
        self.check_mode = False
        self.run = {}           # the rollback_run fact: id, type, reason, started, report_dir
        self.drill = None       # the drill_report fact of rollback_drill.yml
        self.plays = []
        self.hosts = []         # every host of every play, in order of appearance
        self.steps = []
        self._current = {}      # task uuid -> index of its newest step
        self.restores = {}      # host -> the real restore (or its failure)
        self.plans = {}         # host -> a check-mode restore plan
        self.captures = {}      # host -> [points captured]
        self.gates = []         # {step, start, targets: {name: {verdict, seconds}}}
        self.stats = {}
        self.secrets = set()

    # ------------------------------------------------------------------ events
    def now(self):
        return self.clock()

    def on_playbook(self, name, check_mode=False):
        self.started = self.started or self.now()
        self.playbook = self.playbook or name
        self.check_mode = bool(check_mode)

    def on_play(self, name, hosts):
        self.started = self.started or self.now()
        self.plays.append(name)
        for host in hosts:
            if host not in self.hosts:
                self.hosts.append(host)

    def add_secrets(self, data, inherited=False, extra_keys=("webhook",)):
        """Remember the values of secret-looking keys (and of keys naming webhooks) of some variables."""
        self.secrets |= secret_values(data, inherited=inherited)
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(key, str) and any(word in key.lower() for word in extra_keys):
                        self.secrets |= secret_values(value, inherited=True)
                    else:
                        stack.append(value)
            elif isinstance(item, (list, tuple)):
                stack.extend(item)

    def on_task(self, uuid, name, action="", play="", run_once=False, check_mode=False, handler=False):
        self.started = self.started or self.now()
        self._current[uuid] = len(self.steps)
        self.steps.append({"index": len(self.steps), "name": name or _short(action), "action": action or "",
                           "play": play or (self.plays[-1] if self.plays else ""), "run_once": run_once,
                           "check_mode": bool(check_mode), "handler": bool(handler), "start": self.now(),
                           "end": None, "hosts": {}})

    def _step(self, uuid):
        index = self._current.get(uuid)
        return self.steps[index] if index is not None else None

    def on_host_start(self, uuid, host):
        step = self._step(uuid)
        if step is not None:
            step["hosts"][host] = {"start": self.now(), "end": None, "outcome": "running"}
        if host not in self.hosts:
            self.hosts.append(host)

    def on_result(self, uuid, host, outcome, result=None):
        """One host's result of a task: outcome is one of OUTCOMES."""
        now = self.now()
        step = self._step(uuid)
        result = result if isinstance(result, dict) else {}
        if host not in self.hosts:
            self.hosts.append(host)
        if step is None:
            return
        entry = step["hosts"].setdefault(host, {"start": now, "end": None, "outcome": "running"})
        entry["end"] = now
        entry["outcome"] = outcome
        step["end"] = max(step["end"] or now, now)
        if outcome in ("failed", "unreachable", "ignored"):
            entry["error"] = str(result.get("msg") or result.get("censored") or "")[:ERROR_LIMIT]
        if outcome == "skipped":
            return
        facts = result.get("ansible_facts")
        if isinstance(facts, dict):
            self.add_secrets(facts)
            if isinstance(facts.get("rollback_run"), dict):
                self.run = dict(facts["rollback_run"])
            if isinstance(facts.get("drill_report"), dict):
                self.drill = dict(facts["drill_report"])
        if result.get("censored"):
            return  # no_log: the outcome and the times, nothing else
        short = _short(step["action"])
        if short == "restore_point":
            self._restore_point(step, host, entry, result)
        elif short == "health_gate" and isinstance(result.get("targets"), dict):
            self.gates.append({"step": step["index"], "start": entry["start"], "end": now,
                               "targets": {name: {"verdict": t.get("verdict"), "seconds": _float(t.get("seconds"))}
                                           for name, t in result["targets"].items() if isinstance(t, dict)}})

    def _restore_point(self, step, host, entry, result):
        if isinstance(result.get("plan"), dict):  # state=restored
            record = {
                "step": step["index"],
                "end": entry["end"],
                "point": {k: (result.get("point") or {}).get(k) for k in ("id", "label")},
                "changed": bool(result.get("changed")),
                "safety_point": result.get("safety_point"),
                "seconds": result.get("seconds"),
                "components": {
                    name: {"changed": bool(plan.get("changed")), "seconds": plan.get("seconds"),
                           "changes": len(plan.get("changes") or []),
                           "items": [describe_change(c) for c in (plan.get("changes") or [])[:CHANGES_LISTED]]}
                    for name, plan in result["plan"].items() if isinstance(plan, dict)},
            }
            if entry["outcome"] in ("failed", "ignored"):
                record.update(failed=True, failed_component=result.get("failed_component"),
                              component_state=result.get("component_state"))
            if step["check_mode"]:
                self.plans[host] = record
            else:
                self.restores[host] = record
        elif isinstance(result.get("point"), dict) and entry["outcome"] in ("ok", "changed") and not step["check_mode"]:
            point = result["point"]
            if point.get("id"):
                self.captures.setdefault(host, []).append(
                    {"id": point.get("id"), "label": point.get("label"), "status": point.get("status"),
                     "step": step["index"]})

    def on_stats(self, stats):
        """stats: {host: {ok, changed, failures, unreachable, skipped, rescued, ignored}}."""
        self.ended = self.now()
        self.stats = dict(stats)
        for host in stats:
            if host not in self.hosts:
                self.hosts.append(host)

    @property
    def is_rollback(self):
        return bool(self.run.get("id"))

    # ------------------------------------------------------------------ the report
    def _host_outcome(self, host):
        stat = self.stats.get(host, {})
        if stat.get("unreachable"):
            return "unreachable"
        if stat.get("failures"):
            return "failed"
        restore = self.restores.get(host)
        if restore:
            return "restored" if restore["changed"] else "unchanged"
        if host in self.plans:
            return "planned"
        if not stat:
            return "not reached"
        return "not rolled back"

    def _first_failure(self, host):
        for step in self.steps:
            entry = step["hosts"].get(host)
            if entry and entry["outcome"] in ("failed", "unreachable"):
                return {"step": step["name"], "msg": entry.get("error", "")}
        return None

    def _recovery(self, host):
        """(seconds since the run started, verdict) of the first gate after this host's restore that judged it."""
        restore = self.restores.get(host)
        if not restore:
            return None, None
        verdict = None
        for gate in self.gates:
            target = gate["targets"].get(host)
            if target is None or gate["step"] < restore["step"]:
                continue
            verdict = target["verdict"]
            if verdict == "healthy":
                return gate["start"] + (target["seconds"] or 0.0), verdict
            return None, verdict
        return None, verdict

    def build(self):
        """The report as a dict, sanitized."""
        ended = self.ended or self.now()
        # From the first event this process saw (the playbook's start), or the run's own start if that was earlier.
        started = min(t for t in (_float(self.run.get("started")), self.started, ended) if t is not None)
        hosts = {}
        recovered = []
        for host in self.hosts:
            outcome = self._host_outcome(host)
            restore = self.restores.get(host)
            recovered_at, verdict = self._recovery(host)
            if recovered_at is not None:
                recovered.append(recovered_at)
            safety = ([restore["safety_point"]] if restore and restore.get("safety_point") else [])
            safety += [c["id"] for c in self.captures.get(host, []) if c.get("status") in ("candidate", "safety")]
            failure = self._first_failure(host) if outcome in ("failed", "unreachable") else None
            hosts[host] = {
                "outcome": outcome,
                "health": verdict,
                "recovered_s": _rel(recovered_at, started),
                "failure": failure,
                "point": (restore or self.plans.get(host) or {}).get("point"),
                "safety_points": safety,
                "restore_seconds": restore.get("seconds") if restore else None,
                "changed": {name: c for name, c in ((restore or self.plans.get(host) or {}).get("components")
                                                    or {}).items() if c["changed"]},
                "planned_only": restore is None and host in self.plans,
                "failed_component": restore.get("failed_component") if restore else None,
                "component_state": restore.get("component_state") if restore else None,
                "steps": [{"step": step["index"], "start_s": _rel(e["start"], started), "end_s": _rel(e["end"], started),
                           "outcome": e["outcome"]}
                          for step in self.steps for h, e in step["hosts"].items() if h == host],
            }
        restored_hosts = [h for h in self.hosts if h in self.restores]
        all_recovered = bool(restored_hosts) and all(hosts[h]["recovered_s"] is not None for h in restored_hosts)
        failed = [h for h, v in hosts.items() if v["outcome"] in ("failed", "unreachable")]
        counts = {}
        for value in hosts.values():
            counts[value["outcome"]] = counts.get(value["outcome"], 0) + 1
        steps = []
        for step in self.steps:
            tally = {}
            for entry in step["hosts"].values():
                tally[entry["outcome"]] = tally.get(entry["outcome"], 0) + 1
            # run_once None: templated, so unknown when the task started; one host answering for a fleet is it.
            once = step["run_once"] if step["run_once"] is not None else (len(step["hosts"]) == 1 < len(self.hosts))
            steps.append({"index": step["index"], "name": step["name"], "action": step["action"], "play": step["play"],
                          "run_once": bool(once), "check_mode": step["check_mode"],
                          "start_s": _rel(step["start"], started), "end_s": _rel(step["end"] or step["start"], started),
                          "started_at": _iso(step["start"]), "outcomes": tally})
        report = {
            "format": REPORT_FORMAT,
            "rollback_id": self.run.get("id"),
            "type": self.run.get("type"),
            "trigger": self.run.get("reason") or "",
            "playbook": self.playbook,
            "plays": self.plays,
            "check_mode": self.check_mode or bool(self.run.get("check_mode") in (True, "True", "true")),
            "outcome": "failure" if failed else "success",
            "started_at": _iso(started),
            "ended_at": _iso(ended),
            "duration_s": _rel(ended, started),
            "time_to_recover_s": _rel(max(recovered), started) if recovered else None,
            "all_recovered": all_recovered,
            "counts": dict(sorted(counts.items())),
            "failed_hosts": failed,
            "hosts": hosts,
            "steps": steps,
            "drill": self.drill,
        }
        return sanitize_report(report, self.secrets)


def sanitize_report(report, secrets=()):
    """Every string of the report with secret-looking text redacted (KEY=value, URL credentials, private keys) and
    every known secret value scrubbed. Keys are only scrubbed: they are host, step and component names, and a host
    called auth-01 must stay visible. Values of secret-looking keys of results never get here: only chosen fields
    of results are recorded (messages, change descriptions, point ids)."""
    scrubber = Scrubber(secrets)

    def clean(data):
        if isinstance(data, dict):
            return {scrubber.text(key) if isinstance(key, str) else key: clean(value) for key, value in data.items()}
        if isinstance(data, (list, tuple)):
            return [clean(item) for item in data]
        if isinstance(data, str):
            return scrubber.text(redact_text(data))
        return data

    return clean(report)


# ---------------------------------------------------------------------- markdown
def _cell(value):
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _secs(value):
    return "" if value is None else "%.1f s" % value


def render_markdown(report, svg_name=None):
    lines = []
    title = "Rollback %s" % (report.get("rollback_id") or "(no id)")
    lines += ["# %s" % title, ""]
    facts = [
        ("Type", report.get("type")),
        ("Trigger", report.get("trigger") or "(no reason given)"),
        ("Outcome", "**%s**%s" % (report["outcome"].upper(), " (check mode: nothing changed)" if report["check_mode"] else "")),
        ("Playbook", report.get("playbook")),
        ("Started", report.get("started_at")),
        ("Ended", report.get("ended_at")),
        ("Duration", _secs(report.get("duration_s"))),
        ("Time to recover", (_secs(report["time_to_recover_s"]) + ("" if report["all_recovered"] else
                                                                   " (not every restored host passed its gate)"))
         if report.get("time_to_recover_s") is not None else "no host passed a health gate after its restore"),
        ("Hosts", ", ".join("%s %d" % (k, v) for k, v in report["counts"].items()) or "none"),
    ]
    lines += ["| | |", "|---|---|"] + ["| %s | %s |" % (_cell(k), _cell(v)) for k, v in facts] + [""]
    if report.get("drill"):
        drill = report["drill"]
        lines += ["Drill: %s fault, time to detect %s s, time to recover %s s." % (
            drill.get("fault"), drill.get("time_to_detect_s"), drill.get("time_to_recover_s")), ""]
    if svg_name:
        lines += ["## Timeline", "", "![timeline: hosts by steps, coloured by outcome](%s)" % svg_name, ""]
    if report["failed_hosts"]:
        lines += ["## Failures", ""]
        for host in report["failed_hosts"]:
            failure = report["hosts"][host].get("failure") or {}
            lines.append("- **%s** (%s) in *%s*: %s" % (host, report["hosts"][host]["outcome"], failure.get("step", "?"),
                                                        _cell(failure.get("msg", ""))))
            state = report["hosts"][host].get("component_state")
            if state:
                lines.append("  - components: %s" % _cell("; ".join("%s: %s" % kv for kv in state.items())))
        lines.append("")
    lines += ["## Hosts", "",
              "| host | outcome | health | recovered at | point | changed | safety points |",
              "|---|---|---|---|---|---|---|"]
    for host, value in report["hosts"].items():
        point = value.get("point") or {}
        changed = ", ".join("%s (%d)" % (name, c["changes"]) for name, c in value["changed"].items())
        lines.append("| %s |" % " | ".join(_cell(x) for x in (
            host, value["outcome"], value.get("health") or "", _secs(value.get("recovered_s")),
            point.get("label") or point.get("id") or "", changed + (" (planned)" if value["planned_only"] and changed else ""),
            ", ".join(value["safety_points"]))))
    lines.append("")
    changes = [(host, name, c) for host, value in report["hosts"].items() for name, c in value["changed"].items()]
    if changes:
        lines += ["## What changed", ""]
        for host, name, comp in changes:
            more = comp["changes"] - len(comp["items"])
            lines.append("- %s %s: %s%s" % (host, name, _cell("; ".join(comp["items"])),
                                            " (and %d more)" % more if more > 0 else ""))
        lines.append("")
    lines += ["## Steps", "",
              "| # | step | play | start | end | hosts |", "|---|---|---|---|---|---|"]
    for step in report["steps"]:
        tally = ", ".join("%s %d" % kv for kv in sorted(step["outcomes"].items()))
        lines.append("| %d | %s%s | %s | %s | %s | %s |" % (
            step["index"] + 1, _cell(step["name"]), " (once)" if step["run_once"] else "", _cell(step["play"]),
            _secs(step["start_s"]), _secs(step["end_s"]), _cell(tally)))
    lines += ["", "## Each host and step", "", "<details><summary>start, end and outcome of every step on every host"
              " (seconds from the start)</summary>", "", "| host | # | step | start | end | outcome |",
              "|---|---|---|---|---|---|"]
    names = {step["index"]: step["name"] for step in report["steps"]}
    for host, value in report["hosts"].items():
        for entry in value["steps"]:
            lines.append("| %s | %d | %s | %s | %s | %s |" % (
                _cell(host), entry["step"] + 1, _cell(names.get(entry["step"], "")), _secs(entry["start_s"]),
                _secs(entry["end_s"]), entry["outcome"]))
    lines += ["", "</details>", "", "Written by the fleetops.rollback.rollback_report callback; secrets are redacted.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- svg
ROW = 18
LABEL_CHARS = 26


def _label(name):
    """A step's name without the role prefix (fleetops.rollback.rollback : Restore... -> Restore...)."""
    return str(name).split(" : ", 1)[-1]


def _truncate(text, limit):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def render_svg(report, width_budget=900):
    """A timeline: one row per host, one column per step that ran (in order; its width grows with its duration),
    each host's bar inside a column spanning its own start to end, coloured by outcome. Steps run once for the
    whole play (the controller's health gate) are drawn across every row. Pure text, no dependencies."""
    hosts = list(report["hosts"])
    steps = [s for s in report["steps"] if set(s["outcomes"]) - {"skipped"}]
    hidden = len(report["steps"]) - len(steps)
    total = max((s["end_s"] or 0) for s in steps) if steps else 0.0
    name_width = 12 + 7 * min(28, max([len(h) for h in hosts] + [6]))
    widths = []
    for step in steps:
        duration = max(0.0, (step["end_s"] or 0) - (step["start_s"] or 0))
        widths.append(22 + (width_budget * duration / total if total > 0 else 0))
    header = 190
    left, top = name_width, header
    plot_w = sum(widths)
    width = int(left + plot_w + 130)  # room for the last rotated step names
    height = int(top + ROW * max(1, len(hosts)) + 110)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">' % (width, height, width, height),
           '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (width, height)]
    title = "Rollback %s (%s) %s" % (report.get("rollback_id") or "", report.get("type") or "", report["outcome"].upper())
    sub = "trigger: %s; %d hosts; duration %s; time to recover %s" % (
        report.get("trigger") or "none", len(hosts), _secs(report.get("duration_s")) or "?",
        _secs(report.get("time_to_recover_s")) or "n/a")
    out.append('<text x="10" y="20" font-size="15" font-weight="bold">%s</text>' % escape(_truncate(title, 120)))
    out.append('<text x="10" y="38" fill="#455a64">%s</text>' % escape(_truncate(sub, 160)))
    # column headers (rotated step names) and the time each step started
    x = left
    xs = []
    for step, w in zip(steps, widths):
        xs.append(x)
        cx = x + w / 2
        out.append('<text x="%.1f" y="%d" transform="rotate(-55 %.1f %d)">%s<title>%s</title></text>' % (
            cx, top - 8, cx, top - 8, escape(_truncate("%d. %s" % (step["index"] + 1, _label(step["name"])), LABEL_CHARS)),
            escape("%d. %s (%s)" % (step["index"] + 1, step["name"], step["play"]))))
        x += w
    # rows
    for row, host in enumerate(hosts):
        y = top + row * ROW
        if row % 2:
            out.append('<rect x="0" y="%d" width="%d" height="%d" fill="#f5f7f8"/>' % (y, width, ROW))
        outcome = report["hosts"][host]["outcome"]
        color = "#c62828" if outcome in ("failed", "unreachable") else "#263238"
        out.append('<text x="8" y="%d" fill="%s">%s<title>%s</title></text>' % (
            y + 13, color, escape(_truncate(host, 28)), escape("%s: %s" % (host, outcome))))
    # cells; a host that failed is not drawn in the run-once steps after its failure (it had left the play)
    first_failure = {}
    for host in hosts:
        failed = [e["step"] for e in report["hosts"][host]["steps"] if e["outcome"] in ("failed", "unreachable")]
        first_failure[host] = min(failed) if failed else None
    for step, x0, w in zip(steps, xs, widths):
        start, end = step["start_s"] or 0.0, step["end_s"] or step["start_s"] or 0.0
        span = max(end - start, 1e-6)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eceff1"/>' % (x0, top, x0, top + ROW * len(hosts)))
        for row, host in enumerate(hosts):
            entry = next((e for e in report["hosts"][host]["steps"] if e["step"] == step["index"]), None)
            y = top + row * ROW
            if entry is None:
                gone = first_failure[host] is not None and first_failure[host] < step["index"]
                if step["run_once"] and step["outcomes"] and not gone:
                    # Run once for all: a light band on the rows it did not run "on".
                    out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" opacity="0.35"/>' % (
                        x0 + 2, y + 4, w - 4, ROW - 8, COLORS.get(max(step["outcomes"], key=step["outcomes"].get),
                                                                  "#90a4ae")))
                continue
            s = entry["start_s"] if entry["start_s"] is not None else start
            e = entry["end_s"] if entry["end_s"] is not None else end
            bx = x0 + 2 + (w - 4) * max(0.0, (s - start) / span)
            bw = max(3.0, (w - 4) * max(0.0, (e - s) / span))
            bw = min(bw, x0 + w - 2 - bx) if x0 + w - 2 - bx > 3 else 3.0
            out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="2" fill="%s"><title>%s</title></rect>' % (
                bx, y + 3, bw, ROW - 6, COLORS.get(entry["outcome"], "#90a4ae"),
                escape("%s | %d. %s | %s | %s to %s" % (host, step["index"] + 1, step["name"], entry["outcome"],
                                                        _secs(entry["start_s"]), _secs(entry["end_s"])))))
    # time axis: when each column starts
    base = top + ROW * len(hosts)
    for step, x0 in zip(steps, xs):
        out.append('<text x="%.1f" y="%d" font-size="9" fill="#607d8b" transform="rotate(-55 %.1f %d)">+%.1fs</text>' % (
            x0 + 4, base + 26, x0 + 4, base + 26, step["start_s"] or 0.0))
    # recovered marker
    ttr = report.get("time_to_recover_s")
    if ttr is not None:
        x = None
        for step, x0, w in zip(steps, xs, widths):
            start, end = step["start_s"] or 0.0, step["end_s"] or 0.0
            if start <= ttr <= end + 1e-6:
                x = x0 + 2 + (w - 4) * ((ttr - start) / max(end - start, 1e-6))
                break
        if x is not None:
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#2e7d32" stroke-width="2" '
                       'stroke-dasharray="5,3"/>' % (x, top - 4, x, base))
            out.append('<text x="%.1f" y="%d" fill="#2e7d32" font-weight="bold">recovered +%.1fs</text>' % (
                x + 4, base + 44, ttr))
    # legend
    ly = height - 24
    lx = 10
    for outcome in ("ok", "changed", "failed", "ignored", "skipped", "unreachable", "running"):
        out.append('<rect x="%d" y="%d" width="12" height="12" rx="2" fill="%s"/>' % (lx, ly - 10, COLORS[outcome]))
        out.append('<text x="%d" y="%d">%s</text>' % (lx + 16, ly, outcome))
        lx += 28 + 7 * len(outcome)
    if hidden:
        out.append('<text x="%d" y="%d" fill="#607d8b">%d step%s skipped on every host not drawn</text>' % (
            lx + 10, ly, hidden, "" if hidden == 1 else "s"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- files
class ReportError(Exception):
    """The report could not be written: the message names the directory, what is wrong and what to do."""


def _stage(directory, text):
    """`text` in a new private temporary file of `directory`; its path."""
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(tmp, 0o600)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def report_basename(report):
    rid = str(report.get("rollback_id") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in rid)
    return "report-%s" % safe


def write_report(report, directory, formats=("json", "md", "svg")):
    """Write the report files into `directory` (created 0700); returns {format: path}.

    All or nothing: every file is staged first and only then renamed into place, so a full or read-only
    filesystem leaves no half report (and no directory this call made). A directory that is not one (a FIFO, a
    file, a dangling link) is refused before anything is written."""
    if not isinstance(directory, str) or not directory.strip() or "\x00" in directory:
        raise ReportError("report_dir: %r is not a directory path; set rollback_report_dir or "
                          "FLEETOPS_ROLLBACK_REPORT_DIR to an absolute path" % (directory,))
    directory = os.path.abspath(os.path.expanduser(directory))
    problem = directory_problem(directory)
    if problem:
        raise ReportError("report_dir %s: %s; point rollback_report_dir or FLEETOPS_ROLLBACK_REPORT_DIR at a "
                          "directory" % (directory, problem))
    base = report_basename(report)
    paths = {fmt: os.path.join(directory, "%s.%s" % (base, fmt)) for fmt in formats}
    texts = {}
    if "svg" in paths:
        texts["svg"] = render_svg(report)
    if "md" in paths:
        texts["md"] = render_markdown(report, os.path.basename(paths["svg"]) if "svg" in paths else None)
    if "json" in paths:
        texts["json"] = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    missing, current = [], directory
    while not os.path.lexists(current):
        missing.append(current)  # deepest first
        current = os.path.dirname(current)
    staged = {}
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for fmt, text in texts.items():
            staged[fmt] = _stage(directory, text)
        for fmt, tmp in staged.items():
            os.replace(tmp, paths[fmt])
    except OSError as err:
        for tmp in staged.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        for made in missing:  # only the directories this call made
            try:
                os.rmdir(made)
            except OSError:
                break
        raise ReportError("report_dir %s: %s; no report file was written" % (directory, describe_os_error(err))) \
            from None
    return paths
