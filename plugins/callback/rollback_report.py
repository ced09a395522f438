# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: rollback_report
type: aggregate
short_description: Write an audit report (markdown, JSON and an SVG timeline) of every rollback run
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Records a rollback run as it happens and, when it ends, writes C(report-<rollback id>.md), C(.json) and C(.svg)
    into O(report_dir).
  - "The report holds the rollback id, the trigger (C(rollback_reason)) and the type (which playbook), the outcome,
    for each host and step (task) its start, end and outcome, what each host's restore changed (per component, from
    the plan of M(fleetops.rollback.restore_point)), the safety points taken, each host's health verdict and the time
    to recover: from the start of the run until the last restored host passed its health gate."
  - The SVG is a timeline an incident review can paste in. One row per host, one column per step that ran (wider
    the longer it took), each host's bar coloured by outcome, steps run once for the whole play drawn across every
    row, and a marker where the fleet had recovered.
  - Nothing secret is written. Results of C(no_log) tasks contribute their outcome and times only; every string is
    redacted (C(KEY=value) text with secret-looking keys, URL credentials, private keys); and the values of the run's
    variables with secret-looking names (C(password), C(token), C(secret), C(key), webhooks...; from extra
    variables, play variables, inventory host and group variables and C(set_fact)) are replaced wherever they
    appear.
  - A run is a rollback when its playbook sets the C(rollback_run) fact, as every rollback playbook of this
    collection does (C(playbooks/tasks/run_begin.yml)); other playbooks get no report unless O(all_playbooks=true).
requirements:
  - Enable it with C(callbacks_enabled = fleetops.rollback.rollback_report) in the C([defaults]) section of
    C(ansible.cfg), or E(ANSIBLE_CALLBACKS_ENABLED=fleetops.rollback.rollback_report).
options:
  report_dir:
    description:
      - Where the reports are written (created 0700; files 0600).
      - A path that is a file, a FIFO, a device or a dangling link, or that lies under a file, gets no report and a
        warning saying what is there. The files are written all or nothing; on a full or read-only filesystem no
        report file (and no directory the callback made) is left behind, and the run's outcome stands.
      - The variable C(rollback_report_dir), if the run sets it (the rollback playbooks save their plans there too),
        takes precedence over the environment and the ini file.
    type: path
    default: ~/.fleetops/rollback/reports
    env:
      - name: FLEETOPS_ROLLBACK_REPORT_DIR
    ini:
      - section: callback_rollback_report
        key: report_dir
    vars:
      - name: rollback_report_dir
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [json, md, svg]
    default: [json, md, svg]
    env:
      - name: FLEETOPS_ROLLBACK_REPORT_FORMATS
    ini:
      - section: callback_rollback_report
        key: formats
  all_playbooks:
    description: Also report playbooks that are not rollback runs (no C(rollback_run) fact), named by their start time.
    type: bool
    default: false
    env:
      - name: FLEETOPS_ROLLBACK_REPORT_ALL
    ini:
      - section: callback_rollback_report
        key: all_playbooks
notes:
  - In AWX or Automation Controller, add C(fleetops.rollback.rollback_report) to C(callbacks_enabled) in the project's
    C(ansible.cfg) (or set E(ANSIBLE_CALLBACKS_ENABLED) in the job template's environment) and point
    E(FLEETOPS_ROLLBACK_REPORT_DIR) at a persistent volume; job containers are thrown away after the job.
"""

import os
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.fleetops.rollback.plugins.plugin_utils._report import ReportError, RunRecorder, write_report

_STAT_KEYS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")


def _plain(value):
    """A plain Python copy of variables (vault values decrypted where possible, anything odd as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    try:
        return str(value)
    except Exception:  # pylint: disable=broad-except  # an undecryptable vault value is no value to scrub
        return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleetops.rollback.rollback_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = RunRecorder(clock=time.time)
        self._inventory_seen = set()

    # ------------------------------------------------------------------ playbook and plays
    def v2_playbook_on_start(self, playbook):
        name = os.path.basename(getattr(playbook, "_file_name", "") or "")
        self.recorder.on_playbook(name, check_mode=bool(context.CLIARGS.get("check")))

    def v2_playbook_on_play_start(self, play):
        hosts = []
        manager = play.get_variable_manager() if hasattr(play, "get_variable_manager") else None
        inventory = getattr(manager, "_inventory", None)
        try:
            if inventory is not None:
                hosts = [h.name for h in inventory.get_hosts(play.hosts, ignore_restrictions=True)]
        except Exception:  # pylint: disable=broad-except  # a pattern that does not resolve here: hosts come with events
            hosts = []
        self.recorder.on_play(play.get_name(), hosts)
        try:
            self._collect_secrets(play, manager, inventory, hosts)
        except Exception as err:  # pylint: disable=broad-except
            self._display.warning("rollback_report: could not read the play's variables to scrub secrets: %s" % err)

    def _collect_secrets(self, play, manager, inventory, hosts):
        if manager is not None:
            self.recorder.add_secrets(_plain(getattr(manager, "extra_vars", {}) or {}))
        self.recorder.add_secrets(_plain(play.vars or {}))
        if inventory is None:
            return
        for name in hosts:
            if name in self._inventory_seen:
                continue
            self._inventory_seen.add(name)
            host = inventory.get_host(name)
            if host is None:
                continue
            self.recorder.add_secrets(_plain(host.vars or {}))
            for group in host.get_groups():
                if group.name not in self._inventory_seen:
                    self._inventory_seen.add(group.name)
                    self.recorder.add_secrets(_plain(group.vars or {}))

    # ------------------------------------------------------------------ tasks and results
    def _task_start(self, task, handler=False):
        check = task.check_mode if isinstance(task.check_mode, bool) else bool(context.CLIARGS.get("check"))
        play = task.get_play() if hasattr(task, "get_play") else None
        self.recorder.on_task(task._uuid, task.get_name(), action=task.action or "",
                              play=play.get_name() if play is not None else "",
                              # A templated run_once (the health gate's) is not known here: None lets the report
                              # tell from the results (one host answered for all).
                              run_once=task.run_once if isinstance(task.run_once, bool) else None,
                              check_mode=check, handler=handler)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task, handler=True)

    def v2_runner_on_start(self, host, task):
        self.recorder.on_host_start(task._uuid, host.get_name())

    def _result(self, result, outcome):
        self.recorder.on_result(result._task._uuid, result._host.get_name(), outcome, result._result)

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        # A skipped result says nothing the report keeps; reading it would only cost a copy per host.
        self.recorder.on_result(result._task._uuid, result._host.get_name(), "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    # ------------------------------------------------------------------ the end
    def v2_playbook_on_stats(self, stats):
        summary = {}
        for host in sorted(stats.processed.keys()):
            totals = stats.summarize(host)
            summary[host] = {key: totals.get(key, 0) for key in _STAT_KEYS}
        self.recorder.on_stats(summary)
        if not self.recorder.is_rollback and not self.get_option("all_playbooks"):
            return
        directory = self.recorder.run.get("report_dir") or self.get_option("report_dir")
        try:
            report = self.recorder.build()
            paths = write_report(report, directory, formats=tuple(self.get_option("formats") or ("json", "md", "svg")))
        except ReportError as err:  # the directory's fault, said plainly; the run's outcome stands
            self._display.warning("rollback_report: the report of this run was not written: %s" % err)
            return
        except Exception as err:  # pylint: disable=broad-except  # a report must never turn a run into a failure
            self._display.warning("rollback_report: the report of this run could not be written to %s: %s: %s"
                                  % (directory, type(err).__name__, err))
            return
        self._display.display("rollback report: %s" % ", ".join(paths[f] for f in ("md", "json", "svg") if f in paths))
