"""Settings of the fake upstream and the per-request fault knobs.

A knob is read from a request header, else from the query string, else from the settings:

    X-Fake-Latency-Ms: N        ?fake_latency_ms=N        sleep N ms before answering
    X-Fake-Status: CODE         ?fake_status=CODE         answer CODE (400-599) with an OpenAI error
    X-Fake-Drop: before         ?fake_drop=before         close the connection without answering
    X-Fake-Drop: mid-stream     ?fake_drop=mid-stream     send part of the response, then close
    X-Fake-Stream-Delay-Ms: N   ?fake_stream_delay_ms=N   sleep N ms between SSE events
    X-Fake-Body-Bytes: N        (echo paths only)         answer N bytes instead of the echo
    X-Fake-Sse-Newline: E       ?fake_sse_newline=E       end SSE lines with E: lf (default),
                                                          crlf or cr (a bare CR)

Knobs apply in this order: latency, drop before, status, then the normal answer (stream delay and
mid-stream drop shape how it is sent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from llmgate.fake_upstream.replies import error_body

HEADER_LATENCY = "X-Fake-Latency-Ms"
HEADER_STATUS = "X-Fake-Status"
HEADER_DROP = "X-Fake-Drop"
HEADER_STREAM_DELAY = "X-Fake-Stream-Delay-Ms"
HEADER_SSE_NEWLINE = "X-Fake-Sse-Newline"
SSE_NEWLINES: dict[str, bytes] = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}

DROP_BEFORE = "before"
DROP_MID_STREAM = "mid-stream"
Drop = Literal["before", "mid-stream"]
_DROPS: dict[str, Drop] = {DROP_BEFORE: "before", DROP_MID_STREAM: "mid-stream"}


@dataclass(frozen=True, slots=True)
class FakeSettings:
    """Process-wide behaviour of the fake upstream.

    `latency_ms` and `stream_delay_ms` are defaults that the per-request knobs override; `model` is
    reported when a request names none and by `/v1/models`; `record` bounds how many inbound
    requests `/__fake/requests` keeps.
    """

    latency_ms: float = 0
    stream_delay_ms: float = 0
    model: str = "gpt-3.5-turbo"
    record: int = 1000
    status: int | None = None  # answer every request with this error status (knobs override)
    drop: Drop | None = None  # drop every connection so (knobs override)


@dataclass(frozen=True, slots=True)
class Knobs:
    """The faults and delays to apply to one request."""

    latency_ms: float = 0
    stream_delay_ms: float = 0
    status: int | None = None
    drop: Drop | None = None
    sse_newline: bytes = b"\n"


class KnobError(ValueError):
    """A knob has a value the fake cannot honour; the message is meant for the client."""


def default_knobs(settings: FakeSettings) -> Knobs:
    return Knobs(
        latency_ms=settings.latency_ms,
        stream_delay_ms=settings.stream_delay_ms,
        status=settings.status,
        drop=settings.drop,
    )


def parse_knobs(headers: Mapping[str, str], query: Mapping[str, str], defaults: Knobs) -> Knobs:
    """Knobs of one request: headers win over the query string, which wins over `defaults`.

    `headers` must be case-insensitive (aiohttp's are). Raises KnobError on a malformed value.
    """
    latency = _lookup(headers, query, HEADER_LATENCY)
    stream_delay = _lookup(headers, query, HEADER_STREAM_DELAY)
    status = _lookup(headers, query, HEADER_STATUS)
    drop = _lookup(headers, query, HEADER_DROP)
    newline = _lookup(headers, query, HEADER_SSE_NEWLINE)
    if (latency, stream_delay, status, drop, newline) == (None, None, None, None, None):
        return defaults
    return Knobs(
        latency_ms=defaults.latency_ms if latency is None else _millis(HEADER_LATENCY, latency),
        stream_delay_ms=(
            defaults.stream_delay_ms
            if stream_delay is None
            else _millis(HEADER_STREAM_DELAY, stream_delay)
        ),
        status=defaults.status if status is None else _status(status),
        drop=defaults.drop if drop is None else _drop(drop),
        sse_newline=defaults.sse_newline if newline is None else _newline(newline),
    )


def status_error_body(status: int) -> dict[str, Any]:
    """The OpenAI-style error body sent for `X-Fake-Status: <status>`."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    message = f"Fake upstream error: HTTP {status} {phrase}."
    if status == 429:
        return error_body(message, "rate_limit_error", "rate_limit_exceeded")
    if status == 401:
        return error_body(message, "invalid_request_error", "invalid_api_key")
    if status >= 500:
        return error_body(message, "server_error")
    return error_body(message, "invalid_request_error")


def _lookup(headers: Mapping[str, str], query: Mapping[str, str], header: str) -> str | None:
    value = headers.get(header)
    if value is None and query:
        value = query.get(header[2:].lower().replace("-", "_"))
    return value


def _millis(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise KnobError(f"{name} must be a number of milliseconds, got {raw!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise KnobError(f"{name} must be a non-negative number of milliseconds, got {raw!r}.")
    return value


def _status(raw: str) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value == 200:
        return None
    if not 400 <= value <= 599:
        raise KnobError(f"{HEADER_STATUS} must be 200 or a code from 400 to 599, got {raw!r}.")
    return value


def _drop(raw: str) -> Drop | None:
    value = raw.strip().lower()
    if not value or value == "none":
        return None
    if value not in _DROPS:
        raise KnobError(f"{HEADER_DROP} must be 'before' or 'mid-stream', got {raw!r}.")
    return _DROPS[value]


def _newline(raw: str) -> bytes:
    value = SSE_NEWLINES.get(raw.strip().lower())
    if value is None:
        raise KnobError(f"{HEADER_SSE_NEWLINE} must be 'lf', 'crlf' or 'cr', got {raw!r}.")
    return value
