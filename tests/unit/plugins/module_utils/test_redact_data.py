"""Unit tests for the data side of module_utils/_redact.py: redacting structures (journal entries, notification
payloads), collecting secret values from variables, and scrubbing them from everything that leaves a run."""

import json

from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fleetops.rollback.plugins.module_utils._redact import (
    REDACTED, Scrubber, redact_data, redact_line, sanitize, secret_values)


def test_redact_data_replaces_secret_keys_and_secret_text_but_keeps_structure():
    data = {"db_password": "hunter2", "api": {"Token": "tok-1", "url": "https://u:pw-in-url@h/x"},
            "reason": "INC-1 API_KEY=abc123 failed", "empty_secret": "", "count": 3, "ok": True,
            "list": ["SECRET=zz", {"session_cookie": 12345}], "password_set": False}
    out = redact_data(data)
    assert out["db_password"] == REDACTED and out["api"]["Token"] == REDACTED
    assert out["api"]["url"] == "https://u:%s@h/x" % REDACTED
    assert out["reason"] == "INC-1 API_KEY=%s failed" % REDACTED
    assert out["list"] == ["SECRET=%s" % REDACTED, {"session_cookie": REDACTED}]
    assert out["empty_secret"] == "" and out["count"] == 3 and out["ok"] is True and out["password_set"] is False
    assert data["db_password"] == "hunter2"  # a copy: the input is untouched
    assert not {"hunter2", "tok-1", "pw-in-url", "abc123", "zz"} & set(json.dumps(out).split('"'))


def test_inline_pairs_are_redacted_anywhere_in_a_line():
    assert redact_line("run app --db DB_PASSWORD=s3cret --port 80") == "run app --db DB_PASSWORD=%s --port 80" % REDACTED
    assert redact_line("GET /cb?user=bob&token=abc&x=1") == "GET /cb?user=bob&token=%s&x=1" % REDACTED
    assert redact_line("workers=4 timeout=30") == "workers=4 timeout=30"


def test_secret_values_collects_strings_under_secret_keys_only():
    variables = {
        "db_password": "hunter2-pw",
        "vault": {"api_token": "tok-abcdef", "nested": {"list": ["not-secret"]}},
        "credentials": {"user": "svc", "pin": 98765},
        "app_port": 8080,
        "secret_flag": True,
        "short_secret": "ab",
        "private_key_phrase": "yes",
        "release": "1.0.0",
    }
    found = secret_values(variables)
    assert found == {"hunter2-pw", "tok-abcdef", "98765"}  # "svc" too short, "yes" too common, bools skipped
    assert secret_values(["a-value", {"k": "b-value"}], inherited=True) == {"a-value", "b-value"}


def test_scrubber_replaces_known_values_everywhere_longest_first():
    scrub = Scrubber(["hunter2", "hunter2-long", "x"])
    assert scrub.text("pw hunter2-long and hunter2.") == "pw %s and %s." % (REDACTED, REDACTED)
    assert scrub.data({"hunter2": ["a hunter2 b", 5, None]}) == {REDACTED: ["a %s b" % REDACTED, 5, None]}
    assert Scrubber().text("nothing to do") == "nothing to do"
    assert "x" not in scrub.values  # too short to scrub: it would mangle text, not protect it


def test_sanitize_redacts_then_scrubs():
    payload = {"text": "failed: could not log in with hunter2-pw", "password": "anything", "hosts": ["web-1"]}
    out = sanitize(payload, ["hunter2-pw"])
    assert out == {"text": "failed: could not log in with %s" % REDACTED, "password": REDACTED, "hosts": ["web-1"]}


TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="*")


@given(secret=st.text(alphabet=TEXT, min_size=4, max_size=40), before=st.text(alphabet=TEXT, max_size=30),
       after=st.text(alphabet=TEXT, max_size=30))
def test_a_known_secret_never_survives_sanitizing(secret, before, after):
    if secret.lower() in ("true", "false", "none", "null", "yes", "no", "on", "off"):
        return
    out = sanitize({"msg": before + secret + after, "items": [secret], secret: "key"}, [secret])
    assert secret not in out["msg"] and out["items"] == [REDACTED] and secret not in out
