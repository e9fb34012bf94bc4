"""The label values of the metrics: matched URI and host, node, request length, and the
bounded ``llm_model`` values."""

from __future__ import annotations

import pytest

from llmgate.http.context import RouteInfo
from llmgate.observability.metric_labels import (
    ModelLabels,
    matched_host,
    matched_uri,
    node_of,
    request_length,
)


def test_model_labels() -> None:
    labels = ModelLabels(2)
    assert labels.known("a") == "other"  # nothing is admitted by looking
    assert (labels.admit("a"), labels.admit("b"), labels.admit("c")) == ("a", "b", "other")
    assert (labels.known("a"), labels.known("c"), labels.admit("a")) == ("a", "other", "a")
    assert labels.admit(None) == labels.known("") == ""
    assert labels.admit("x" * 500) == "other"


def route(uris: tuple[str, ...] = (), hosts: tuple[str, ...] = ()) -> RouteInfo:
    return RouteInfo("1", None, uris, hosts)


@pytest.mark.parametrize(
    ("uris", "path", "expected"),
    [
        (("/a",), "/anything", "/a"),  # one pattern: the one that matched
        (("/a", "/b/*", "/b/c/*"), "/b/c/d", "/b/c/*"),
        (("/b/*", "/b/c"), "/b/c", "/b/c"),
        (("/a", "/b"), "/b", "/b"),
        ((), "/x", ""),
    ],
)
def test_matched_uri(uris: tuple[str, ...], path: str, expected: str) -> None:
    assert matched_uri(route(uris=uris), path) == expected


@pytest.mark.parametrize(
    ("hosts", "host", "expected"),
    [
        ((), "a.com", ""),
        (("a.com",), None, "a.com"),
        (("a.com", "*.b.com"), "X.B.com:9080", "*.b.com"),
        (("a.com", "b.com"), "B.COM", "b.com"),
        (("a.com", "*.b.com"), "b.com", ""),
    ],
)
def test_matched_host(hosts: tuple[str, ...], host: str | None, expected: str) -> None:
    assert matched_host(route(hosts=hosts), host) == expected


@pytest.mark.parametrize(
    ("address", "node"),
    [
        (None, ""),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("api.openai.com:443", "api.openai.com"),
    ],
)
def test_node_label(address: str | None, node: str) -> None:
    assert node_of(address) == node


def test_request_length_counts_line_headers_and_body() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(
        "POST", "/v1/x?a=1", headers={"Host": "h", "Content-Length": "10"}
    )
    line = len("POST /v1/x?a=1 HTTP/1.1\r\n")
    headers = len("Host: h\r\n") + len("Content-Length: 10\r\n") + len("\r\n")
    assert request_length(request) == line + headers + 10
