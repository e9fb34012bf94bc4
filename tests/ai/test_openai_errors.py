"""The gateway's errors in OpenAI's shape: types and codes per status, APISIX bodies only."""

from __future__ import annotations

import orjson
import pytest
from multidict import CIMultiDict

from llmgate.ai.openai_errors import (
    apisix_message,
    error_code,
    error_type,
    openai_error,
    retry_after_for,
)


@pytest.mark.parametrize(
    ("status", "limited", "type_", "code"),
    [
        (400, False, "invalid_request_error", "invalid_request"),
        (401, False, "authentication_error", "invalid_api_key"),
        (403, False, "permission_error", "permission_denied"),
        (403, True, "rate_limit_error", "rate_limit_exceeded"),  # the seed blog's limit-count
        (404, False, "invalid_request_error", "not_found"),
        (413, False, "invalid_request_error", "request_too_large"),
        (418, False, "invalid_request_error", "invalid_request"),
        (429, False, "rate_limit_error", "rate_limit_exceeded"),
        (500, False, "api_error", "internal_error"),
        (502, False, "api_error", "bad_gateway"),
        (503, False, "api_error", "service_unavailable"),
        (503, True, "rate_limit_error", "rate_limit_exceeded"),  # limit-count's default code
        (504, False, "api_error", "gateway_timeout"),
        (599, False, "api_error", "api_error"),
    ],
)
def test_type_and_code(status: int, limited: bool, type_: str, code: str) -> None:
    assert (error_type(status, limited), error_code(status, limited)) == (type_, code)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error_msg":"too many requests"}', "too many requests"),
        (b'{"message":"Missing API key in request"}', "Missing API key in request"),
        (b'{"error_msg":"failed to check token","description":"wrong apikey"}',
         "failed to check token: wrong apikey"),
        # Not the gateway's: kept as they are.
        (b'{"error":{"message":"x"}}', None),
        (b'{"error_msg":"x","detail":1}', None),
        (b'{"message":5}', None),
        (b"{}", None),
        (b"[1]", None),
        (b"<html>", None),
        (b'{"message":', None),
    ],
)  # fmt: skip
def test_only_apisix_bodies_are_reshaped(body: bytes, message: str | None) -> None:
    assert apisix_message(body) == message
    reshaped = openai_error(429, body)
    if message is None:
        assert reshaped is None
    else:
        assert orjson.loads(reshaped or b"") == {
            "error": {
                "message": message,
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {}, "1"),
        (429, {"Retry-After": "7"}, None),  # the provider's (or a limiter's) is kept
        (429, {"retry-after-ms": "1500"}, "2"),
        (429, {"retry-after-ms": "20"}, "1"),
        (429, {"retry-after-ms": "soon"}, "1"),
        (429, {"retry-after-ms": "inf"}, "1"),
        (503, {}, None),
        (200, {}, None),
    ],
)
def test_every_429_gets_a_retry_after(
    status: int, headers: dict[str, str], expected: str | None
) -> None:
    assert retry_after_for(status, CIMultiDict(headers)) == expected
