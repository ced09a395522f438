# -*- coding: utf-8 -*-
# Copyright: fleetops.rollback contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback notifications: the Slack-compatible JSON payload and its delivery to webhooks.

* `build_payload` makes the payload of one event (start, success, failure, escalation): a `text` line any chat
  tool shows, the same facts as structured fields for machines, and an attachment Slack renders as a card.
  Every string goes through `_redact.sanitize`, so no secret-looking key, text or known secret value leaves.
* `deliver` posts it to every webhook at once (one thread each), each with a timeout per attempt and retries
  with exponential backoff on connection errors, timeouts, 429 and 5xx; other answers are final.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, build_opener, HTTPRedirectHandler

from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import sanitize

EVENTS = ("start", "success", "failure", "escalation")
COLORS = {"start": "#1565c0", "success": "#2e7d32", "failure": "#c62828", "escalation": "#6a1b9a"}
TEXT_HOSTS = 10          # hosts named in the text line; the structured fields name them all
ERROR_LIMIT = 300        # characters of one host's error in the payload
RETRY_AFTER_CAP = 30.0   # seconds: a longer Retry-After is not waited for
USER_AGENT = "fleetops.rollback-notify"


def _names(hosts, limit=TEXT_HOSTS):
    hosts = list(hosts)
    shown = ", ".join(hosts[:limit])
    return shown + (" and %d more" % (len(hosts) - limit) if len(hosts) > limit else "")


def default_summary(event, rollback_type, hosts, failures, duration=None):
    """One sentence that says what happened, used when the caller gives no summary."""
    failed = [f["host"] for f in failures]
    took = " in %.1f s" % duration if duration is not None else ""
    if event == "start":
        return "rollback started on %d host%s" % (len(hosts), "" if len(hosts) == 1 else "s")
    if event == "success":
        return "all %d host%s rolled back and healthy%s" % (len(hosts), "" if len(hosts) == 1 else "s", took)
    steps = sorted({f.get("step") or "unknown step" for f in failures})
    if event == "escalation":
        return "recovery failed on %d host%s (%s): %s; a human must act now" % (
            len(failed), "" if len(failed) == 1 else "s", "; ".join(steps), _names(failed))
    return "%d of %d host%s failed (%s): %s%s" % (
        len(failed), len(hosts), "" if len(hosts) == 1 else "s", "; ".join(steps) or "no step recorded",
        _names(failed), took)


def normalize_failures(failures):
    """[{host, step, error}] from a list of such dicts or a {host: {step, msg|error}} dict."""
    if isinstance(failures, dict):
        failures = [dict(value if isinstance(value, dict) else {"error": value}, host=host)
                    for host, value in failures.items()]
    out = []
    for item in failures or []:
        if not isinstance(item, dict) or not item.get("host"):
            raise RollbackError("failures: give {host: {step, msg}} or a list of {host, step, error}; got %r" % (item,))
        error = item.get("error", item.get("msg")) or ""
        out.append({"host": str(item["host"]), "step": str(item.get("step") or ""),
                    "error": str(error)[:ERROR_LIMIT]})
    return sorted(out, key=lambda f: f["host"])


def build_payload(event, rollback_id="", rollback_type="", hosts=(), failures=(), reason="", summary="",
                  duration=None, check_mode=False, secret_values=(), now=None):
    """The JSON posted for one event; nothing secret in it."""
    if event not in EVENTS:
        raise RollbackError("event: %r is not one of %s" % (event, ", ".join(EVENTS)))
    hosts = sorted({str(h) for h in hosts or ()})
    failures = normalize_failures(failures)
    failed = [f["host"] for f in failures]
    summary = summary or default_summary(event, rollback_type, hosts, failures, duration)
    title = {"start": "started", "success": "succeeded", "failure": "FAILED", "escalation": "ESCALATION"}[event]
    text = "Rollback %s %s%s%s: %s" % (rollback_id or "(no id)", title,
                                       " (%s)" % rollback_type if rollback_type else "",
                                       " - %s" % reason if reason else "", summary)
    when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    fields = [("Rollback", rollback_id), ("Type", rollback_type), ("Event", event), ("Reason", reason),
              ("Hosts", str(len(hosts))), ("Failed", _names(failed) if failed else "none")]
    payload = {
        "text": text,
        "event": event,
        "rollback_id": rollback_id,
        "type": rollback_type,
        "reason": reason,
        "summary": summary,
        "hosts": hosts,
        "host_count": len(hosts),
        "failed_hosts": failed,
        "failures": failures,
        "duration_s": round(duration, 3) if duration is not None else None,
        "check_mode": bool(check_mode),
        "timestamp": when,
        "source": "fleetops.rollback",
        "attachments": [{
            "color": COLORS[event],
            "fallback": text,
            "title": "Rollback %s %s" % (rollback_id, title),
            "text": summary,
            "fields": [{"title": name, "value": value, "short": True} for name, value in fields if value],
            "footer": "fleetops.rollback",
        }],
    }
    return sanitize(payload, secret_values)


def backoff_delays(retries, backoff, cap=60.0):
    """Seconds to wait before each retry: backoff, 2*backoff, 4*backoff... each at most `cap`."""
    return [min(cap, backoff * (2 ** n)) for n in range(max(0, retries))]


def describe(url):
    """Where a webhook points, without its path or credentials (webhook URLs often hold a secret)."""
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.hostname or "") + (":%d" % parts.port if parts.port else "")


def validate_webhooks(webhooks):
    out = []
    for index, hook in enumerate(webhooks or []):
        where = "webhooks[%d]" % index
        if not isinstance(hook, dict) or not hook.get("url"):
            raise RollbackError("%s: give a dict with at least url (and optional name, headers, token)" % where)
        parts = urlsplit(str(hook["url"]))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL itself is not shown: webhook URLs often are the secret.
            raise RollbackError("%s (%s): the url must be http:// or https:// with a host" % (where, hook.get("name") or
                                                                                              "unnamed"))
        headers = hook.get("headers") or {}
        if not isinstance(headers, dict):
            raise RollbackError("%s.headers: give a dict of header names to values" % where)
        out.append({"name": str(hook.get("name") or "webhook %d (%s)" % (index + 1, describe(hook["url"]))),
                    "url": str(hook["url"]), "headers": {str(k): str(v) for k, v in headers.items()},
                    "token": hook.get("token") or None})
    return out


class _NoRedirect(HTTPRedirectHandler):
    """A redirect is an answer, not something to follow with the token attached."""

    def redirect_request(self, *args, **kwargs):  # pylint: disable=unused-argument
        return None


def _post_once(hook, body, timeout):
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    headers.update(hook["headers"])
    if hook["token"]:
        headers["Authorization"] = "Bearer %s" % hook["token"]
    request = Request(hook["url"], data=body, headers=headers, method="POST")
    try:
        with build_opener(_NoRedirect).open(request, timeout=timeout) as response:
            response.read(65536)
            return response.status, None, None
    except HTTPError as err:
        retry_after = err.headers.get("Retry-After") if err.headers else None
        return err.code, "HTTP %d %s" % (err.code, err.reason), retry_after
    except (URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return None, "%s: %s" % (type(reason).__name__, reason), None


def _retryable(status):
    return status is None or status == 429 or status >= 500


def post(hook, body, timeout=10.0, retries=3, backoff=1.0, sleep=time.sleep, clock=time.monotonic):
    """Post to one webhook with retries; returns {name, target, ok, status, attempts, seconds, error}."""
    started = clock()
    delays = backoff_delays(retries, backoff)
    attempts, status, error = 0, None, None
    while True:
        attempts += 1
        status, error, retry_after = _post_once(hook, body, timeout)
        if status is not None and 200 <= status < 300:
            error = None
            break
        if (status is not None and not _retryable(status)) or attempts > len(delays):
            break
        wait = delays[attempts - 1]
        try:
            wait = max(wait, min(float(retry_after), RETRY_AFTER_CAP)) if retry_after else wait
        except ValueError:
            pass
        sleep(wait)
    return {"name": hook["name"], "target": describe(hook["url"]), "ok": error is None, "status": status,
            "attempts": attempts, "seconds": round(clock() - started, 3), "error": error}


def deliver(webhooks, payload, timeout=10.0, retries=3, backoff=1.0):
    """Post the payload to every webhook concurrently; one result per webhook, in the order given."""
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    results = [None] * len(webhooks)

    def one(index, hook):
        results[index] = post(hook, body, timeout=timeout, retries=retries, backoff=backoff)

    threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(webhooks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
