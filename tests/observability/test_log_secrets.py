"""Credentials masked in log entries: query strings and headers."""

from __future__ import annotations

import pytest

from llmgate.observability.log_secrets import (
    MASK,
    SECRET_ARGS,
    SECRET_HEADERS,
    masked_headers,
    masked_query,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("a=1&b=%20x", "a=1&b=%20x", id="kept-as-sent"),
        pytest.param("api_key=s1&x=1", f"api_key={MASK}&x=1", id="api_key"),
        pytest.param("APIKEY=s&key=s&token=s", f"APIKEY={MASK}&key={MASK}&token={MASK}", id="case"),
        pytest.param("access%5Ftoken=s", f"access%5Ftoken={MASK}", id="encoded-name"),
        pytest.param("token", f"token={MASK}", id="bare"),
        pytest.param("keys=1&tokens=2", "keys=1&tokens=2", id="other-names"),
    ],
)
def test_masked_query(query: str, expected: str) -> None:
    assert masked_query(query, SECRET_ARGS) == expected


def test_masked_headers_lowercases_groups_and_masks() -> None:
    items = [
        ("Authorization", "Basic dTpw"),
        ("X-Custom", "a"),
        ("x-custom", "b"),
        ("X-API-KEY", "s1"),
        ("x-api-key", "s2"),
        ("Cookie", "sid=1"),
        ("Set-Cookie", "sid=2"),
    ]
    assert masked_headers(items, SECRET_HEADERS) == {
        "authorization": MASK,
        "x-custom": ["a", "b"],
        "x-api-key": [MASK, MASK],
        "cookie": MASK,
        "set-cookie": MASK,
    }
