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
import math
import re
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
# Bounds of the delivery options: past these a number is a typo, and a rollback would wait on its chat.
MAX_TIMEOUT = 300.0
MAX_RETRIES = 10
MAX_BACKOFF = 60.0

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_URL_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f]")


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
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    return "%s://%s" % (parts.scheme, parts.hostname or "") + (":%d" % port if port else "")


def _within(value, low, high, above_low=False):
    if value is None or isinstance(value, bool) or math.isnan(value):
        return False
    return (low < value if above_low else low <= value) and value <= high


def check_delivery(timeout, retries, backoff, duration=None):
    """Validate the delivery options (and the optional duration) before anything is posted."""
    if not _within(timeout, 0, MAX_TIMEOUT, above_low=True):
        raise RollbackError("timeout: %r is not a number of seconds above 0 and at most %d; give the seconds one "
                            "attempt may take" % (timeout, MAX_TIMEOUT))
    if not _within(retries, 0, MAX_RETRIES):
        raise RollbackError("retries: %r is not a whole number from 0 to %d; give how many times a failed post is "
                            "tried again" % (retries, MAX_RETRIES))
    if not _within(backoff, 0, MAX_BACKOFF):
        raise RollbackError("backoff: %r is not a number of seconds from 0 to %d; give the wait before the first "
                            "retry" % (backoff, MAX_BACKOFF))
    if duration is not None and (math.isnan(duration) or math.isinf(duration) or duration < 0):
        raise RollbackError("duration: %r is not a number of seconds, 0 or more; give the seconds since the rollback "
                            "started, or leave it out" % (duration,))


def _bad_header_value(text):
    if any((ord(char) < 32 and char != "\t") or ord(char) == 127 for char in text):
        return "contains a line break or a control character; give it on one line"
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return "holds characters HTTP headers cannot carry (only Latin-1); encode it (base64, percent-encoding)"
    return None


def validate_webhooks(webhooks):
    """The webhooks, checked. A message names the webhook by index and name, never by its URL or token."""
    if webhooks is None:
        return []
    if not isinstance(webhooks, list):
        raise RollbackError("webhooks: give a list of {url, name, headers, token}")
    out = []
    for index, hook in enumerate(webhooks):
        where = "webhooks[%d]" % index
        if not isinstance(hook, dict) or not hook.get("url"):
            raise RollbackError("%s: give a dict with at least url (and optional name, headers, token)" % where)
        name = hook.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip() or not name.isprintable()):
            raise RollbackError("%s.name: %r is not a name (printable text); give a short name" % (where, name))
        shown = "%s (%s)" % (where, name or "unnamed")
        url = hook["url"]
        # The URL itself is never shown: webhook URLs often are the secret.
        if not isinstance(url, str) or _URL_FORBIDDEN_RE.search(url):
            raise RollbackError("%s: the url holds a space or a control character; give it without them (percent-"
                                "encode them: %%20)" % shown)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise RollbackError("%s: the url is not a valid URL (its host or port cannot be read); give an http:// "
                                "or https:// URL" % shown) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RollbackError("%s: the url must be http:// or https:// with a host" % shown)
        if port == 0:
            raise RollbackError("%s: the url has port 0; give a TCP port (1-65535)" % shown)
        headers = hook.get("headers") or {}
        if not isinstance(headers, dict):
            raise RollbackError("%s.headers: give a dict of header names to values" % where)
        clean = {}
        for key, value in headers.items():
            if not isinstance(key, str) or not _HEADER_NAME_RE.match(key):
                raise RollbackError("%s.headers: %r is not a valid header name" % (where, key))
            if value is None or isinstance(value, (dict, list)):
                raise RollbackError("%s.headers: the value of %r must be a string" % (where, key))
            problem = _bad_header_value(str(value))
            if problem:
                raise RollbackError("%s.headers: the value of %r %s" % (where, key, problem))
            clean[key] = str(value)
        token = hook.get("token") or None
        if token is not None:
            problem = _bad_header_value(str(token))
            if problem:
                raise RollbackError("%s: the token %s" % (shown, problem))
        out.append({"name": str(name or "webhook %d (%s)" % (index + 1, describe(url))),
                    "url": url, "headers": clean, "token": None if token is None else str(token)})
    return out


def _secrets_of(hook):
    """What of a webhook must never be shown: the URL, its path and query, the token and header values."""
    parts = urlsplit(hook["url"])
    found = [hook["url"], parts.path, parts.query, parts.netloc, hook["token"] or ""] + list(hook["headers"].values())
    return sorted((item for item in found if item and len(item) > 1), key=len, reverse=True)


def _scrub(text, hook):
    for secret in _secrets_of(hook):
        text = text.replace(secret, "********")
    return text


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
        return None, _scrub("%s: %s" % (type(reason).__name__, reason), hook), None
    except Exception as err:  # pylint: disable=broad-except  # http.client's own errors: a broken answer
        return None, _scrub("bad answer: %s: %s" % (type(err).__name__, err), hook), None


def _attempt(hook, body, timeout):
    """One attempt, ended after `timeout` seconds whatever the server does: a socket timeout bounds each read,
    not a server that sends one byte at a time, so the attempt runs in a daemon thread that is abandoned."""
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_post_once(hook, body, timeout)), daemon=True)
    worker.start()
    # The grace lets a socket timeout report itself (the clearer error) before the attempt is abandoned.
    worker.join(timeout + min(1.0, timeout))
    if outcome:
        return outcome[0]
    return None, "no complete answer within %ss (timeout)" % round(timeout, 3), None


def _retryable(status):
    return status is None or status == 429 or status >= 500


def post(hook, body, timeout=10.0, retries=3, backoff=1.0, sleep=time.sleep, clock=time.monotonic):
    """Post to one webhook with retries; returns {name, target, ok, status, attempts, seconds, error}."""
    started = clock()
    delays = backoff_delays(retries, backoff)
    attempts, status, error = 0, None, None
    while True:
        attempts += 1
        status, error, retry_after = _attempt(hook, body, timeout)
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
        try:
            results[index] = post(hook, body, timeout=timeout, retries=retries, backoff=backoff)
        except Exception as err:  # pylint: disable=broad-except  # one broken webhook must not hide the others
            results[index] = {"name": hook["name"], "target": describe(hook["url"]), "ok": False, "status": None,
                              "attempts": 0, "seconds": 0.0,
                              "error": _scrub("could not post: %s: %s" % (type(err).__name__, err), hook)}

    threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(webhooks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
