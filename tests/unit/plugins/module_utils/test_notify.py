"""Unit tests for module_utils/_notify.py: the Slack-compatible payload, its redaction, and delivery with retries
and backoff against a real HTTP server on 127.0.0.1 (tests/integration/webhook_receiver.py)."""

import json
import os
import sys
from datetime import datetime, timezone

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils import _notify
from ansible_collections.fleetops.rollback.plugins.module_utils._common import RollbackError
from ansible_collections.fleetops.rollback.plugins.module_utils._redact import REDACTED

# The test servers shared with the integration tests live in tests/integration.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "integration"))
from health_endpoints import closed_port  # noqa: E402  pylint: disable=wrong-import-position
from webhook_receiver import Receiver  # noqa: E402  pylint: disable=wrong-import-position

NOW = datetime(2026, 11, 22, 3, 15, tzinfo=timezone.utc)


@pytest.fixture
def receiver():
    with Receiver() as served:
        yield served


# ---------------------------------------------------------------------------------------- payload


@pytest.mark.parametrize("event, words", [
    ("start", "started"), ("success", "succeeded"), ("failure", "FAILED"), ("escalation", "ESCALATION")])
def test_every_event_has_slack_text_and_structured_fields(event, words):
    failures = {"web-02": {"step": "Gate on health", "msg": "unhealthy"}} if event in ("failure", "escalation") else {}
    payload = _notify.build_payload(event, "run-1", "immediate", ["web-02", "web-01"], failures, "INC-7",
                                    duration=12.345, now=NOW)
    assert payload["text"].startswith("Rollback run-1 %s (immediate) - INC-7: " % words)
    assert payload["event"] == event and payload["rollback_id"] == "run-1" and payload["type"] == "immediate"
    assert payload["hosts"] == ["web-01", "web-02"] and payload["host_count"] == 2
    assert payload["reason"] == "INC-7" and payload["summary"] in payload["text"]
    assert payload["timestamp"] == "2026-11-22T03:15:00+00:00" and payload["duration_s"] == 12.345
    card = payload["attachments"][0]
    assert card["color"] == _notify.COLORS[event] and card["fallback"] == payload["text"]
    assert {f["title"] for f in card["fields"]} >= {"Rollback", "Type", "Event", "Reason", "Hosts"}
    if failures:
        assert payload["failed_hosts"] == ["web-02"]
        assert payload["failures"] == [{"host": "web-02", "step": "Gate on health", "error": "unhealthy"}]
        assert "web-02" in payload["summary"] and "Gate on health" in payload["summary"]
    json.dumps(payload)  # plain JSON


def test_default_summaries_say_what_happened():
    hosts = ["h%02d" % i for i in range(1, 21)]
    assert _notify.build_payload("start", hosts=hosts)["summary"] == "rollback started on 20 hosts"
    assert _notify.build_payload("success", hosts=hosts, duration=9.96)["summary"] == \
        "all 20 hosts rolled back and healthy in 10.0 s"
    many = [{"host": h, "step": "Restore", "error": "locked"} for h in hosts[:12]]
    failed = _notify.build_payload("failure", hosts=hosts, failures=many)["summary"]
    assert failed.startswith("12 of 20 hosts failed (Restore): h01, h02") and failed.endswith("and 2 more")
    escalated = _notify.build_payload("escalation", hosts=hosts[:1], failures=many[:1])["summary"]
    assert "a human must act now" in escalated and "h01" in escalated
    assert _notify.build_payload("failure", summary="custom words")["summary"] == "custom words"


def test_payload_carries_no_secret():
    failures = [{"host": "db-1", "step": "Restore", "error": "auth failed for postgres://app:pa55word@db/app, "
                 "DB_PASSWORD=hunter2 token hunter2-token"}]
    payload = _notify.build_payload("failure", "run-2", "standard", ["db-1"], failures,
                                    reason="INC-9 api_key=abc123456", secret_values=["hunter2-token"], now=NOW)
    text = json.dumps(payload)
    for secret in ("pa55word", "hunter2", "abc123456", "hunter2-token"):
        assert secret not in text
    assert REDACTED in payload["failures"][0]["error"] and payload["reason"] == "INC-9 api_key=%s" % REDACTED


def test_errors_are_cut_and_bad_input_is_named():
    long = _notify.build_payload("failure", failures=[{"host": "a", "error": "x" * 5000}])
    assert len(long["failures"][0]["error"]) == _notify.ERROR_LIMIT
    with pytest.raises(RollbackError, match="event: 'done'"):
        _notify.build_payload("done")
    with pytest.raises(RollbackError, match="failures"):
        _notify.build_payload("failure", failures=[{"step": "no host"}])


def test_backoff_doubles_up_to_a_cap():
    assert _notify.backoff_delays(4, 1.0) == [1.0, 2.0, 4.0, 8.0]
    assert _notify.backoff_delays(3, 40.0) == [40.0, 60.0, 60.0]
    assert _notify.backoff_delays(0, 1.0) == []


def test_webhooks_are_checked_without_showing_their_urls():
    hooks = _notify.validate_webhooks([{"url": "https://hooks.example.com/services/T0/B0/SeCrEt", "token": "t"},
                                       {"url": "http://127.0.0.1:9/x", "name": "local", "headers": {"X-Key": 1}}])
    assert hooks[0]["name"] == "webhook 1 (https://hooks.example.com)" and hooks[0]["token"] == "t"
    assert hooks[1]["name"] == "local" and hooks[1]["headers"] == {"X-Key": "1"}
    for bad in ([{"url": "ftp://hooks.example.com/SeCrEt"}], [{"name": "n"}], ["https://x"],
                [{"url": "https://h/x", "headers": ["a"]}]):
        with pytest.raises(RollbackError) as err:
            _notify.validate_webhooks(bad)
        assert "SeCrEt" not in err.value.msg and "webhooks[0]" in err.value.msg


# ---------------------------------------------------------------------------------------- delivery


def hook(receiver, path="/hook", **extra):
    return _notify.validate_webhooks([dict({"url": receiver.url(path)}, **extra)])[0]


def test_post_delivers_json_with_the_token_as_bearer(receiver):
    payload = _notify.build_payload("start", "run-3", "immediate", ["a"], now=NOW)
    result = _notify.post(hook(receiver, token="tok-999", headers={"X-Team": "ops"}),
                          json.dumps(payload).encode(), timeout=5)
    assert result["ok"] and result["status"] == 200 and result["attempts"] == 1 and result["error"] is None
    assert result["target"] == "http://127.0.0.1:%d" % receiver.port
    [post] = receiver.posts
    assert post["body"] == payload
    assert post["headers"]["Authorization"] == "Bearer tok-999" and post["headers"]["X-Team"] == "ops"
    assert post["headers"]["Content-Type"].startswith("application/json")


def test_post_retries_server_errors_with_backoff(receiver):
    receiver.plan("/flaky", [503, 500, 200])
    waits = []
    result = _notify.post(hook(receiver, "/flaky"), b"{}", timeout=5, retries=3, backoff=0.25, sleep=waits.append)
    assert result["ok"] and result["attempts"] == 3 and waits == [0.25, 0.5]
    assert [p["status"] for p in receiver.posts] == [503, 500, 200]


@pytest.mark.parametrize("retry_after, waited", [("2", 2.0), ("3600", _notify.RETRY_AFTER_CAP), ("soon", 0.1)])
def test_post_honours_retry_after_up_to_a_cap(receiver, retry_after, waited):
    receiver.plan("/busy", [429, 200], retry_after=retry_after)
    waits = []
    result = _notify.post(hook(receiver, "/busy"), b"{}", timeout=5, retries=2, backoff=0.1, sleep=waits.append)
    assert result["ok"] and result["attempts"] == 2 and waits == [waited]


def test_post_gives_up_after_the_retries_and_says_why(receiver):
    receiver.plan("/down", [500])
    result = _notify.post(hook(receiver, "/down"), b"{}", timeout=5, retries=2, backoff=0.0, sleep=lambda s: None)
    assert not result["ok"] and result["attempts"] == 3 and result["status"] == 500
    assert result["error"].startswith("HTTP 500")


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_client_errors_and_redirects_are_final(receiver, status):
    receiver.plan("/final", [status])
    result = _notify.post(hook(receiver, "/final"), b"{}", timeout=5, retries=3, backoff=0.0, sleep=lambda s: None)
    assert not result["ok"] and result["attempts"] == 1 and result["status"] == status


def test_a_slow_receiver_times_out_and_is_retried(receiver):
    receiver.plan("/slow", [200], delay=5)
    result = _notify.post(hook(receiver, "/slow"), b"{}", timeout=0.3, retries=1, backoff=0.0, sleep=lambda s: None)
    assert not result["ok"] and result["attempts"] == 2 and result["status"] is None
    assert "timed out" in result["error"]


def test_a_closed_port_is_retried_then_reported():
    target = _notify.validate_webhooks([{"url": "http://127.0.0.1:%d/x" % closed_port(), "name": "gone"}])[0]
    result = _notify.post(target, b"{}", timeout=2, retries=2, backoff=0.0, sleep=lambda s: None)
    assert not result["ok"] and result["attempts"] == 3 and result["name"] == "gone"
    assert "refused" in result["error"].lower()


def test_deliver_posts_to_every_webhook_in_order(receiver):
    receiver.plan("/bad", [404])
    hooks = _notify.validate_webhooks([{"url": receiver.url("/a"), "name": "a"}, {"url": receiver.url("/bad")},
                                       {"url": receiver.url("/c"), "name": "c"}])
    payload = _notify.build_payload("success", "run-4", hosts=["x"], now=NOW)
    results = _notify.deliver(hooks, payload, timeout=5, retries=0)
    assert [(r["name"], r["ok"]) for r in results] == [("a", True), (hooks[1]["name"], False), ("c", True)]
    assert sorted(p["path"] for p in receiver.posts) == ["/a", "/bad", "/c"]
    assert all(p["body"] == payload for p in receiver.posts)
