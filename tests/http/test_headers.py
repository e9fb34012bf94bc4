"""Header rules of a proxy (http/headers.py): what ``end_to_end`` keeps and drops."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from llmgate.http.headers import end_to_end


def test_end_to_end_drops_hop_by_hop_and_connection_named_headers() -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        [
            ("Host", "h"),
            ("Connection", "keep-alive, X-Secret ,,"),
            ("connection", "X-Other"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("X-Secret", "1"),
            ("x-other", "2"),
            ("X-Kept", "a"),
            ("X-Kept", "b"),
            ("X-Dropped", "3"),
        ]
    )
    out = end_to_end(CIMultiDictProxy(headers), frozenset({"x-dropped"}))
    assert list(out.items()) == [("Host", "h"), ("X-Kept", "a"), ("X-Kept", "b")]
    assert "X-Secret" in headers  # the original is untouched


def test_end_to_end_with_the_usual_connection_values() -> None:
    for value in ("keep-alive", "close", "Keep-Alive", "Upgrade"):
        headers = CIMultiDict([("Connection", value), ("Upgrade", "x"), ("X-A", "1")])
        assert list(end_to_end(headers).items()) == [("X-A", "1")]
    assert list(end_to_end(CIMultiDict([("X-A", "1")])).items()) == [("X-A", "1")]
