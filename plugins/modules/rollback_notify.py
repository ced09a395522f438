#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_notify
short_description: Post a rollback event (start, success, failure, escalation) as JSON to webhooks
version_added: 0.1.0
author: fleetops maintainers (@fleetops)
description:
  - Posts one JSON document to every webhook in O(webhooks) at once. It is Slack-compatible (a C(text) line and an
    C(attachments) card) and carries the same facts as structured fields for other receivers (C(event),
    C(rollback_id), C(type), C(reason), C(summary), C(hosts), C(failed_hosts), C(failures), C(duration_s),
    C(timestamp)).
  - Each webhook gets O(timeout) seconds per attempt and up to O(retries) retries with exponential backoff
    (O(backoff), twice that, four times...) on connection errors, timeouts, HTTP 429 and 5xx; any other answer is
    final. Redirects are not followed.
  - A webhook that cannot be reached is a warning, not a failure, so a broken chat integration never stops a
    rollback; with O(required=true) it fails the task.
  - Nothing secret is posted. Every string is redacted (values of secret-looking keys, C(KEY=value) text, URL
    credentials, private keys) and every value in O(secret_values) is replaced wherever it occurs. Webhook URLs,
    headers and tokens are never returned or shown (webhook URLs often are the secret); results name a webhook by
    O(webhooks[].name) and its scheme and host.
  - Use the role C(fleetops.rollback.notify), which runs this once per play from the controller and fills the
    fields from the rollback run.
options:
  event:
    description: What happened.
    type: str
    required: true
    choices: [start, success, failure, escalation]
  webhooks:
    description: Where to post. An empty list posts nothing.
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description:
          - The webhook URL (http or https, with a host). Hidden from all output.
          - A URL with a space or a control character, or a host or port that cannot be read, is refused before
            anything is posted (the message names the webhook by index and name, never by its URL).
        type: str
        required: true
      name:
        description: A name for results and warnings (default C(webhook N (scheme://host))).
        type: str
      headers:
        description:
          - Extra HTTP headers, for example an API key header. Hidden from all output.
          - A value with a line break or a control character, or with characters beyond Latin-1, is refused.
        type: dict
      token:
        description:
          - "Sent as C(Authorization: Bearer <token>). Hidden from all output."
          - A token with a line break or a control character, or with characters beyond Latin-1, is refused.
        type: str
  rollback_id:
    description: The id of the rollback run.
    type: str
    default: ""
  rollback_type:
    description: The kind of rollback (C(immediate), C(standard), C(partial), C(failed_recovery), C(drill)).
    type: str
    default: ""
  reason:
    description: What triggered the rollback (an incident id, an alert).
    type: str
    default: ""
  summary:
    description: One sentence for humans; by default one is made from the event, the hosts and the failures.
    type: str
    default: ""
  hosts:
    description: The hosts of the rollback.
    type: list
    elements: str
    default: []
  failures:
    description:
      - "The hosts that failed and why, as V({host: {step, msg}}) or a list of V({host, step, error}). Each error is cut
        to 300 characters."
    type: raw
    default: []
  duration:
    description: Seconds since the rollback started, if known. 0 or more.
    type: float
  secret_values:
    description:
      - Values to scrub from the payload wherever they occur, for example the values of the play's password and token
        variables; strings, or lists and dicts whose every string is scrubbed. Hidden from all output. Values
        shorter than 4 characters are not scrubbed.
    type: raw
    default: []
  timeout:
    description:
      - Seconds allowed for each attempt to post, above 0 and at most 300.
      - The whole attempt ends then, even against a server that sends its answer a byte at a time.
    type: float
    default: 10
  retries:
    description: Retries after a failed attempt (connection error, timeout, HTTP 429 or 5xx), 0 to 10.
    type: int
    default: 3
  backoff:
    description: Seconds before the first retry, 0 to 60; each further retry waits twice as long (at most 60 s).
    type: float
    default: 1
  required:
    description: Fail when any webhook could not be posted to, instead of warning.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Posts nothing; returns the payload that would be posted.
  diff_mode:
    support: none
    description: A notification has no diff.
  idempotent:
    support: none
    description: Every call posts again. Posting changes nothing on any host, so the result says C(changed=false).
extends_documentation_fragment:
  - fleetops.rollback.attributes.platform
notes:
  - Runs wherever it is delegated; the role runs it on the controller (C(delegate_to=localhost)) once per play.
seealso:
  - module: fleetops.rollback.rollback_journal
"""

EXAMPLES = r"""
- name: Tell the on-call channel the rollback failed
  fleetops.rollback.rollback_notify:
    event: failure
    webhooks:
      - name: ops-slack
        url: "{{ vault_slack_webhook_url }}"
      - name: incident-bot
        url: https://bot.example.com/hooks/rollback
        token: "{{ vault_bot_token }}"
    rollback_id: "{{ rollback_run.id }}"
    rollback_type: immediate
    reason: INC-1234
    hosts: "{{ ansible_play_hosts_all }}"
    failures:
      web-03: {step: Gate on health, msg: "Health gate: web-03 did not pass."}
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
payload:
  description: The JSON document posted (or that would be posted in check mode), secrets redacted.
  returned: always
  type: dict
  sample: {text: "Rollback 20261122T031500Z-1a2b FAILED (immediate) - INC-1234: 1 of 20 hosts failed (Gate on health): web-03",
           event: failure, rollback_id: 20261122T031500Z-1a2b, type: immediate, host_count: 20, failed_hosts: [web-03]}
webhooks:
  description: Per webhook, in the order given, whether it was posted to, the last HTTP status, the attempts and seconds.
  returned: always
  type: list
  elements: dict
  sample: [{name: ops-slack, target: "https://hooks.slack.com", ok: true, status: 200, attempts: 1, seconds: 0.21, error: null}]
delivered:
  description: How many webhooks accepted the payload.
  returned: always
  type: int
"""

from ansible_collections.fleetops.rollback.plugins.module_utils._common import ModuleBase, RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils import _notify, _redact


class RollbackNotifyModule(ModuleBase):
    uses_store = False
    argument_spec = dict(
        event=dict(type="str", required=True, choices=list(_notify.EVENTS)),
        webhooks=dict(type="list", elements="dict", required=True, options=dict(
            url=dict(type="str", required=True, no_log=True),
            name=dict(type="str"),
            headers=dict(type="dict", no_log=True),
            token=dict(type="str", no_log=True),
        )),
        rollback_id=dict(type="str", default=""),
        rollback_type=dict(type="str", default=""),
        reason=dict(type="str", default=""),
        summary=dict(type="str", default=""),
        hosts=dict(type="list", elements="str", default=[]),
        failures=dict(type="raw", default=[]),
        duration=dict(type="float"),
        secret_values=dict(type="raw", default=[], no_log=True),
        timeout=dict(type="float", default=10.0),
        retries=dict(type="int", default=3),
        backoff=dict(type="float", default=1.0),
        required=dict(type="bool", default=False),
    )

    def run(self):
        params = self.params
        _notify.check_delivery(params["timeout"], params["retries"], params["backoff"], params["duration"])
        webhooks = _notify.validate_webhooks(params["webhooks"])
        secrets = sorted(_redact.secret_values(params["secret_values"], inherited=True))
        for hook in webhooks:  # never post a webhook's own credentials to another one
            secrets += [hook["url"], hook["token"] or ""] + list(hook["headers"].values())
        payload = _notify.build_payload(
            params["event"], params["rollback_id"], params["rollback_type"], params["hosts"], params["failures"],
            params["reason"], params["summary"], params["duration"], check_mode=self.check_mode,
            secret_values=secrets)
        if self.check_mode or not webhooks:
            return {"changed": False, "payload": payload, "delivered": 0,
                    "webhooks": [{"name": h["name"], "target": _notify.describe(h["url"]), "ok": None, "status": None,
                                  "attempts": 0, "seconds": 0.0, "error": None} for h in webhooks]}
        self.progress.at("posting the %s notification to %d webhook%s" % (
            params["event"], len(webhooks), "" if len(webhooks) == 1 else "s"))
        results = _notify.deliver(webhooks, payload, timeout=params["timeout"], retries=params["retries"],
                                  backoff=params["backoff"])
        failed = [r for r in results if not r["ok"]]
        result = {"changed": False, "payload": payload, "webhooks": results, "delivered": len(results) - len(failed)}
        if failed:
            message = "%s notification not delivered to %s" % (params["event"], "; ".join(
                "%s (%s): %s after %d attempt%s" % (r["name"], r["target"], r["error"], r["attempts"],
                                                    "" if r["attempts"] == 1 else "s") for r in failed))
            if params["required"]:
                raise RollbackError(message + " (required=true: this fails the task)", **result)
            self.module.warn(message + "; the rollback goes on")
        return result


def main():
    RollbackNotifyModule().main()


if __name__ == "__main__":
    main()
