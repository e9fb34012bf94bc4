"""Parsing the fake upstream's per-request knobs and the error bodies they produce."""

import pytest
from multidict import CIMultiDict

from llmgate.fake_upstream.knobs import (
    FakeSettings,
    KnobError,
    Knobs,
    default_knobs,
    parse_knobs,
    status_error_body,
)

DEFAULTS = default_knobs(FakeSettings(latency_ms=5, stream_delay_ms=7))


def test_parse_knobs_without_knobs_returns_the_defaults() -> None:
    assert parse_knobs(CIMultiDict(), {}, DEFAULTS) is DEFAULTS
    assert Knobs(latency_ms=5, stream_delay_ms=7) == DEFAULTS


def test_parse_knobs_from_headers_case_insensitively() -> None:
    headers = CIMultiDict(
        {
            "x-fake-latency-ms": "12.5",
            "X-FAKE-STATUS": "429",
            "X-Fake-Drop": " Mid-Stream ",
            "X-Fake-Stream-Delay-Ms": "0",
        }
    )
    assert parse_knobs(headers, {}, DEFAULTS) == Knobs(
        latency_ms=12.5, stream_delay_ms=0, status=429, drop="mid-stream"
    )


def test_parse_knobs_from_query_and_headers_win() -> None:
    query = {"fake_status": "503", "fake_drop": "before", "fake_latency_ms": "1"}
    knobs = parse_knobs(CIMultiDict({"X-Fake-Status": "500"}), query, DEFAULTS)
    assert knobs == Knobs(latency_ms=1, stream_delay_ms=7, status=500, drop="before")


def test_parse_knobs_status_200_and_drop_none_mean_normal() -> None:
    headers = CIMultiDict({"X-Fake-Status": "200", "X-Fake-Drop": "none"})
    assert parse_knobs(headers, {}, DEFAULTS) == DEFAULTS


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Fake-Latency-Ms", "soon"),
        ("X-Fake-Latency-Ms", "-1"),
        ("X-Fake-Stream-Delay-Ms", "nan"),
        ("X-Fake-Status", "abc"),
        ("X-Fake-Status", "302"),
        ("X-Fake-Status", "600"),
        ("X-Fake-Drop", "sometimes"),
    ],
)
def test_parse_knobs_rejects_bad_values(header: str, value: str) -> None:
    with pytest.raises(KnobError, match=header):
        parse_knobs(CIMultiDict({header: value}), {}, DEFAULTS)


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "server_error", None),
        (503, "server_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (400, "invalid_request_error", None),
        (499, "invalid_request_error", None),
    ],
)
def test_status_error_body(status: int, error_type: str, code: str | None) -> None:
    error = status_error_body(status)["error"]
    assert error["type"] == error_type
    assert error["code"] == code
    assert error["param"] is None
    assert str(status) in error["message"]


def test_settings_give_default_status_and_drop_that_requests_override() -> None:
    from llmgate.fake_upstream.knobs import FakeSettings, default_knobs, parse_knobs

    defaults = default_knobs(FakeSettings(status=503, drop="mid-stream"))
    assert (defaults.status, defaults.drop) == (503, "mid-stream")
    assert parse_knobs({}, {}, defaults) is defaults
    chosen = parse_knobs({"X-Fake-Status": "429"}, {}, defaults)
    assert (chosen.status, chosen.drop) == (429, "mid-stream")
