"""Faults and bad input of rollback_notify, as real module processes posting to real servers on 127.0.0.1.

A webhook that answers 500, hangs, drips its answer or resets the connection never holds the module past its
attempts' timeouts and never fails the rollback unless `required` says so; bad input is refused before anything is
posted. Webhook URLs, tokens and header values are secrets: none of them appears in any result, message or warning.
"""
import json
import os
import sys
import time

import pytest

from fault_host import SECRET
from harness import ROOT, assert_clear_failure, assert_no_secret, changed_entries, run_module

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from health_endpoints import RawServer  # noqa: E402  pylint: disable=wrong-import-position
from webhook_receiver import Receiver  # noqa: E402  pylint: disable=wrong-import-position

TOKEN = "wh-tok-7c4e1b9a20"
PATH_SECRET = "T0KEN-IN-PATH-55d1e3"
HEADER_SECRET = "api-key-0b8f27c6d1"
SECRETS = (SECRET, TOKEN, PATH_SECRET, HEADER_SECRET)


@pytest.fixture
def receiver():
    with Receiver() as served:
        yield served


def notify(*hooks, **extra):
    return dict({"event": "failure", "webhooks": list(hooks), "rollback_id": "rb-1", "hosts": ["web1"],
                 "failures": {"web1": {"step": "restore", "msg": "boom"}}, "secret_values": [SECRET]}, **extra)


def hook(url, **extra):
    return dict({"url": url, "name": "ops"}, **extra)


def secret_hook(url_base, **extra):
    """A webhook whose URL path and query, token and header all carry secrets."""
    return hook("%s/hooks/%s?key=%s" % (url_base, PATH_SECRET, PATH_SECRET), token=TOKEN,
                headers={"X-Api-Key": HEADER_SECRET}, **extra)


GOOD = "http://127.0.0.1:9/hook"
BAD = [
    ("url-no-colon", notify(hook("http//x")), ["webhooks[0] (ops)", "http:// or https:// with a host"]),
    ("url-ftp", notify(hook("ftp://127.0.0.1/hook")), ["webhooks[0] (ops)", "http:// or https://"]),
    ("url-broken-ipv6", notify(hook("http://[::1/hook")), ["webhooks[0] (ops)", "not a valid URL"]),
    ("url-no-host", notify(hook("http:///hook")), ["webhooks[0] (ops)", "with a host"]),
    ("url-port-word", notify(hook("http://127.0.0.1:%s/hook" % PATH_SECRET)), ["webhooks[0] (ops)", "not a valid URL"]),
    ("url-port-70000", notify(hook("http://127.0.0.1:70000/hook")), ["webhooks[0] (ops)", "not a valid URL"]),
    ("url-port-zero", notify(hook("http://127.0.0.1:0/hook")), ["webhooks[0] (ops)", "port 0"]),
    ("url-space", notify(hook("http://127.0.0.1:9/hook?key=a %s" % PATH_SECRET)), ["webhooks[0] (ops)", "space"]),
    ("url-nul", notify(hook("http://127.0.0.1:9/hook\x00%s" % PATH_SECRET)), ["webhooks[0] (ops)", "control character"]),
    ("url-newline", notify(hook("http://127.0.0.1:9/hook\r\nX: %s" % PATH_SECRET)), ["webhooks[0] (ops)"]),
    ("url-empty", notify(hook("")), ["webhooks[0]", "at least url"]),
    ("header-bad-name", notify(hook(GOOD, headers={"X Api": "value-1"})),
     ["webhooks[0].headers", "'X Api'", "not a valid header name"]),
    ("header-value-crlf", notify(hook(GOOD, headers={"X-Api-Key": HEADER_SECRET + "\r\nX-Evil: 1"})),
     ["webhooks[0].headers", "'X-Api-Key'", "line break"]),
    ("header-value-not-latin1", notify(hook(GOOD, headers={"X-Api-Key": HEADER_SECRET + "\u2603"})),
     ["webhooks[0].headers", "'X-Api-Key'", "Latin-1"]),
    ("header-value-nul", notify(hook(GOOD, headers={"X-Api-Key": HEADER_SECRET + "\x00"})),
     ["webhooks[0].headers", "'X-Api-Key'", "control character"]),
    ("token-newline", notify(hook(GOOD, token=TOKEN + "\nX-Evil: 1")), ["webhooks[0] (ops)", "token", "line break"]),
    ("token-not-latin1", notify(hook(GOOD, token=TOKEN + "\u00e9\u20ac")), ["webhooks[0] (ops)", "token", "Latin-1"]),
    ("name-nul", notify(hook(GOOD, name="ops\x00chat")), ["webhooks[0].name", "'ops\\x00chat'", "printable"]),
    ("name-blank", notify(hook(GOOD, name="  ")), ["webhooks[0].name", "'  '"]),
    ("timeout-zero", notify(hook(GOOD), timeout=0), ["timeout", "0", "above 0"]),
    ("timeout-negative", notify(hook(GOOD), timeout=-1), ["timeout", "-1", "above 0"]),
    ("timeout-huge", notify(hook(GOOD), timeout=1e12), ["timeout", "1000000000000", "at most 300"]),
    ("timeout-nan", notify(hook(GOOD), timeout=float("nan")), ["timeout", "nan"]),
    ("retries-negative", notify(hook(GOOD), retries=-1), ["retries", "-1", "0 to 10"]),
    ("retries-huge", notify(hook(GOOD), retries=10 ** 9), ["retries", "1000000000", "0 to 10"]),
    ("backoff-negative", notify(hook(GOOD), backoff=-1), ["backoff", "-1", "0 to 60"]),
    ("backoff-huge", notify(hook(GOOD), backoff=1e6), ["backoff", "1000000", "0 to 60"]),
    ("backoff-infinite", notify(hook(GOOD), backoff=float("inf")), ["backoff", "inf"]),
    ("duration-negative", notify(hook(GOOD), duration=-3), ["duration", "-3", "0 or more"]),
    ("duration-nan", notify(hook(GOOD), duration=float("nan")), ["duration", "nan"]),
    ("event-unknown", notify(hook(GOOD), event="restart"), ["event", "restart", "start, success, failure"]),
    ("failures-without-host", notify(hook(GOOD), failures=[{"step": "restore"}]), ["failures", "host"]),
]


@pytest.mark.bad_input("rollback_notify")
@pytest.mark.parametrize("args, mentions", [pytest.param(a, m, id=i) for i, a, m in BAD])
def test_rollback_notify_refuses_bad_input_and_posts_nothing(fault_host, receiver, args, mentions):
    before = fault_host.state()
    run = run_module("rollback_notify", args)
    assert_clear_failure(run, *mentions, secrets=SECRETS)
    assert receiver.posts == []
    assert not changed_entries(before, fault_host.state())


# ------------------------------------------------------------------------------------------ webhooks that misbehave
def _assert_warned_not_failed(run, *mentions):
    assert not run.failed, run.msg
    # Ansible 2.19 returns each warning as a structure; its text is what a person reads.
    warnings = json.dumps(run.result.get("warnings") or [])
    for needle in mentions:
        assert needle in warnings, warnings
    assert "the rollback goes on" in warnings
    assert_no_secret(run, SECRETS)


@pytest.mark.fault("webhook-returns-500")
def test_a_webhook_answering_500_is_retried_then_warns_and_the_rollback_goes_on(fault_host, receiver):
    before = fault_host.state()
    receiver.plan("/hooks/%s" % PATH_SECRET, [500])
    args = notify(secret_hook(receiver.url("")), retries=2, backoff=0, timeout=5)
    run = run_module("rollback_notify", args)
    _assert_warned_not_failed(run, "failure notification not delivered to ops (http://127.0.0.1:%d)" % receiver.port,
                              "HTTP 500", "after 3 attempts")
    assert len(receiver.posts) == 3 and run.result["delivered"] == 0
    # The token went where it belongs, and only there.
    assert receiver.posts[0]["headers"]["Authorization"] == "Bearer %s" % TOKEN
    assert all(SECRET not in p["raw"].decode() for p in receiver.posts)
    # Asked to, the same failure fails the task, still naming the webhook only by name and host.
    required = run_module("rollback_notify", dict(args, required=True))
    assert_clear_failure(required, "ops (http://127.0.0.1:%d): HTTP 500" % receiver.port, "required=true",
                         secrets=SECRETS)
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("webhook-hangs")
def test_a_webhook_that_never_answers_is_given_up_after_its_timeouts(fault_host, receiver):
    before = fault_host.state()
    receiver.plan("/hooks/%s" % PATH_SECRET, [200], delay=120)
    started = time.monotonic()
    run = run_module("rollback_notify", notify(secret_hook(receiver.url("")), retries=1, backoff=0, timeout=1))
    took = time.monotonic() - started
    _assert_warned_not_failed(run, "ops (http://127.0.0.1:%d)" % receiver.port, "after 2 attempts")
    # The receiver records a post when it has read it, which the module does not wait for: poll, with a deadline.
    assert run.result["webhooks"][0]["attempts"] == 2 and len(receiver.wait_for(2)) == 2
    # Two attempts of 1 s each (and a grace second each), not the server's 120 s.
    assert took < 40, took
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("webhook-drips-bytes")
def test_a_webhook_that_drips_its_answer_is_cut_at_the_timeout(fault_host):
    """A byte every 0.2 s keeps each read under the 1 s socket timeout; the attempt still ends at its timeout."""
    before = fault_host.state()
    with RawServer("drip", pause=0.2) as server:
        started = time.monotonic()
        run = run_module("rollback_notify", notify(secret_hook(server.url("")), retries=0, timeout=1))
        took = time.monotonic() - started
        assert server.accepted == 1
    _assert_warned_not_failed(run, "no complete answer within 1.0s (timeout)", "after 1 attempt")
    assert took < 40, took
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("webhook-resets-connection")
def test_a_webhook_that_resets_the_connection_is_retried_and_reported(fault_host):
    before = fault_host.state()
    with RawServer("reset") as server:
        run = run_module("rollback_notify", notify(secret_hook(server.url("")), retries=1, backoff=0, timeout=5))
        assert server.accepted == 2
    _assert_warned_not_failed(run, "after 2 attempts")
    error = run.result["webhooks"][0]["error"]
    assert "Reset" in error or "closed" in error or "Disconnected" in error, error
    assert not changed_entries(before, fault_host.state())


@pytest.mark.fault("webhook-one-of-several-broken")
def test_one_broken_webhook_does_not_stop_the_others(fault_host, receiver):
    before = fault_host.state()
    with RawServer("hang") as server:
        run = run_module("rollback_notify", notify(
            secret_hook(server.url(""), name="stuck"), hook(receiver.url("/ok"), name="chat", token=TOKEN),
            retries=0, timeout=1))
    assert not run.failed, run.msg
    assert [w["ok"] for w in run.result["webhooks"]] == [False, True]
    assert run.result["delivered"] == 1 and receiver.events("/ok") == ["failure"]
    assert_no_secret(run, SECRETS)
    assert not changed_entries(before, fault_host.state())
