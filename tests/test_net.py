"""The raw-socket helpers themselves, against the fake upstream (a correct HTTP server)."""

from __future__ import annotations

import os

from tests.net import RawClient, request_bytes, sha256, split
from tests.processes import fake_upstream_process


def test_split_keeps_every_byte_in_order() -> None:
    data = bytes(range(256)) * 41
    for pieces in (1, 2, 3, 7, 100):
        parts = split(data, pieces)
        assert b"".join(parts) == data
        assert len(parts) == pieces
        assert all(parts)


def test_request_bytes_frames_bodies() -> None:
    raw = request_bytes("POST", "/a/../b", {"X-A": "1"}, b"hello")
    assert raw.startswith(b"POST /a/../b HTTP/1.1\r\nHost: gateway.test\r\nX-A: 1\r\n")
    assert raw.endswith(b"Content-Length: 5\r\n\r\nhello")
    chunked = request_bytes("POST", "/", body=b"abcdef", chunked=True, chunk_size=4)
    assert chunked.endswith(b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n")
    assert b"Host" not in request_bytes("GET", "/", host=None, version="HTTP/1.0")


def test_a_body_in_pieces_reaches_a_correct_server_whole() -> None:
    body = os.urandom(300 * 1024)
    with fake_upstream_process() as port:
        for chunked in (False, True):
            with RawClient(port) as client:
                client.send_pieces(
                    request_bytes("POST", "/echo", body=body, chunked=chunked), pieces=6
                )
                answer = client.read_response("POST")
                assert answer.status == 200
            with RawClient(port) as client:
                client.send_request("GET", "/__fake/requests")
                seen = client.read_response().json()["requests"][-1]
            assert seen["body_length"] == len(body)
            assert seen["body_sha256"] == sha256(body)
