"""The prometheus check type: input validation and URL building (answers from a real Prometheus are in
tests/integration/test_guard.py)."""
from __future__ import annotations

import pytest

from ansible_collections.fleetops.rollback.plugins.module_utils._health.inputs import HealthInputError
from ansible_collections.fleetops.rollback.plugins.module_utils._health.parse import parse_check
from ansible_collections.fleetops.rollback.plugins.module_utils._health.prometheus import PrometheusCheck, query_url

URL = "http://127.0.0.1:9090"


def check(**raw):
    return parse_check(dict({"type": "prometheus", "url": URL}, **raw), "checks[0]")


def test_threshold_check_is_built():
    built = check(query=" sum(up) ", max="3", min=1, request_timeout=2)
    assert isinstance(built, PrometheusCheck)
    assert (built.query, built.max, built.min, built.baseline_query, built.max_ratio) == ("sum(up)", 3.0, 1.0, None, None)
    assert built.on_empty == "fail" and built.request_timeout == 2.0 and built.validate_certs is True
    assert built.label() == "prometheus 'sum(up)'"


def test_ratio_check_is_built_with_headers_and_on_empty():
    built = check(query="a", baseline_query="b", max_ratio=1.5, on_empty="zero", headers={"Authorization": "Bearer x"},
                  validate_certs="no")
    assert (built.baseline_query, built.max_ratio, built.on_empty) == ("b", 1.5, "zero")
    assert built.headers == {"Authorization": "Bearer x"} and built.validate_certs is False


def test_long_queries_are_shortened_in_labels():
    built = check(query="sum(rate(app_requests_total{code=~\"5..\"}[1m]))\n / sum(rate(app_requests_total[1m])) + 0 * 1",
                  max=1)
    assert len(built.label()) <= len("prometheus ''") + 80 and built.label().endswith("...'")
    assert "\n" not in built.label()


@pytest.mark.parametrize("raw,message", [
    ({"query": "up"}, "checks[0]: a prometheus check needs a threshold (max and/or min) or a baseline ratio"),
    ({"max": 1}, "checks[0].query: required for a prometheus check (a PromQL query)"),
    ({"query": "  ", "max": 1}, "checks[0].query: '  ' is not a PromQL query"),
    ({"query": ["up"], "max": 1}, "checks[0].query: ['up'] is not a PromQL query"),
    ({"query": "up", "max": "many"}, "checks[0].max: 'many' is not a number"),
    ({"query": "up", "min": 2, "max": 1}, "checks[0].min: 2 is above max 1; nothing could pass"),
    ({"query": "up", "baseline_query": "up offset 1h"}, "checks[0].max_ratio: a baseline ratio needs both"),
    ({"query": "up", "max_ratio": 1.5}, "checks[0].baseline_query: a baseline ratio needs both"),
    ({"query": "up", "baseline_query": "b", "max_ratio": 0}, "checks[0].max_ratio: 0 must be greater than 0"),
    ({"query": "up", "max": 1, "on_empty": "ignore"}, "checks[0].on_empty: 'ignore' is not one of fail, pass, zero"),
    ({"query": "up", "max": 1, "argv": ["x"]},
     "checks[0].argv: not an option of a prometheus check (it belongs to command checks"),
    ({"query": "up", "max": 1, "method": "GET"},
     "checks[0].method: not an option of a prometheus check (it belongs to http checks"),
    ({"query": "up", "max": 1, "maximum": 3}, "checks[0].maximum: unknown option (prometheus checks take"),
    ({"query": "up", "max": 1, "url": "127.0.0.1:9090"}, "checks[0].url: '127.0.0.1:9090' is not an http:// or https:// URL"),
    ({"query": "up", "max": 1, "url": "http://u:pw@prom:9090"},
     "checks[0].url: 'http://u:********@prom:9090' carries credentials"),
    ({"query": "up", "max": 1, "url": None, "type": "prometheus"}, "checks[0].url: required for a prometheus check"),
    ({"query": "up", "max": 1, "headers": {"X": "a\nb"}}, "checks[0].headers: the value of 'X' contains a line break"),
])
def test_bad_prometheus_checks_name_the_option_and_value(raw, message):
    with pytest.raises(HealthInputError) as err:
        check(**raw)
    assert str(err.value).startswith(message), str(err.value)


def test_query_options_are_not_options_of_http_checks():
    with pytest.raises(HealthInputError, match=r"checks\[0\].query: not an option of a http check .it belongs to "
                                               r"prometheus checks"):
        parse_check({"type": "http", "url": URL, "query": "up"}, "checks[0]")


@pytest.mark.parametrize("base,expected", [
    ("http://127.0.0.1:9090", "http://127.0.0.1:9090/api/v1/query?query=sum%28up%29"),
    ("http://127.0.0.1:9090/", "http://127.0.0.1:9090/api/v1/query?query=sum%28up%29"),
    ("https://proxy/prometheus", "https://proxy/prometheus/api/v1/query?query=sum%28up%29"),
    ("http://p:9090/api/v1/query", "http://p:9090/api/v1/query?query=sum%28up%29"),
])
def test_query_url(base, expected):
    assert query_url(base, "sum(up)") == expected
