"""The data plane's HTTPS listener (``--proxy-listen-tls``) against a real ``llmgate serve``:
certificates from the ``ssls`` resource chosen by SNI, keys sealed at rest, a replaced
certificate served within a second, and clients that stall a handshake or a request head do not
hang the listener.

Certificates are made here (``tests.net.TestCA``); one gateway for the module, with a client
header timeout of 1 s so the stalls are short.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.net import (
    ConnectionClosed,
    LiveGateway,
    RawClient,
    TestCA,
    peer_subject,
    request_bytes,
    wait_for,
)

SSL_KEY = "a passphrase only this test knows"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ca: TestCA) -> Iterator[LiveGateway]:
    env = {"LLMGATE_SSL_KEY": f"{SSL_KEY},an older one", "LLMGATE_CLIENT_HEADER_TIMEOUT": "1"}
    with LiveGateway(tmp_path_factory.mktemp("tls"), env=env) as gateway:
        a_cert, a_key = ca.issue("a.test", organization="first")
        b_cert, b_key = ca.issue("b.test", "*.wild.test")
        gateway.put("ssls/a", {"cert": a_cert, "key": a_key, "snis": ["a.test"]})
        gateway.put("ssls/b", {"cert": b_cert, "key": b_key, "sni": "b.test"})
        gateway.put("routes/tls", {"uri": "/tls/*", "upstream": gateway.upstream()})
        yield gateway


def tls_port(live: LiveGateway) -> int:
    return live.gw.tls_port


def test_certificates_are_chosen_by_sni(live: LiveGateway, ca: TestCA) -> None:
    port, context = tls_port(live), ca.context()
    assert peer_subject(port, context, "a.test")["commonName"] == "a.test"
    assert peer_subject(port, context, "b.test")["commonName"] == "b.test"
    # Unknown names and no SNI at all fail the handshake, as APISIX without fallback_sni.
    with pytest.raises(ssl.SSLError):
        peer_subject(port, context, "c.test")
    unchecked = ssl.create_default_context()
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", port)) as raw:
        unchecked.wrap_socket(raw).close()  # no server_hostname: no SNI

    # httpx through the listener, verifying against the test CA: the route serves it.
    with httpx.Client(verify=context, timeout=5) as client:
        for name in ("a.test", "b.test"):
            response = client.get(
                f"https://127.0.0.1:{port}/tls/x",
                headers={"Host": name},
                extensions={"sni_hostname": name},
            )
            assert response.status_code == 200, response.text
            echoed = response.json()["headers"]
            assert echoed["x-forwarded-proto"] == "https"
    # The plain listener is still plain.
    assert httpx.get(f"{live.gw.proxy_url}/tls/x").status_code == 200


def test_private_keys_are_sealed_at_rest_and_never_returned(live: LiveGateway) -> None:
    # As APISIX, a GET (one or the list) leaves the key out; a write answers its sealed form.
    status, got = live.admin("GET", "ssls/a")
    assert status == 200 and "key" not in got["value"] and got["value"]["cert"]
    status, listed = live.admin("GET", "ssls")
    assert status == 200 and listed["total"] >= 2
    assert not any("key" in item["value"] for item in listed["list"])
    status, patched = live.admin("PATCH", "ssls/a", {})
    key = patched["value"]["key"]
    assert status == 200 and key.startswith("$llmgate-sealed$v1$") and "PRIVATE KEY" not in key
    with sqlite3.connect(live.workdir / "llmgate.db") as db:
        rows = db.execute("SELECT value FROM resources WHERE kind = 'ssls'").fetchall()
    assert len(rows) >= 2 and not any("PRIVATE KEY" in value for (value,) in rows)
    assert "PRIVATE KEY" not in live.log()


def test_writes_are_checked(live: LiveGateway, ca: TestCA) -> None:
    cert, key = ca.issue("x.test")
    other_cert, _ = ca.issue("y.test")
    cases = [
        ({"cert": cert, "key": key}, 'exactly one of "sni" or "snis"'),
        ({"cert": other_cert, "key": key, "sni": "x.test"}, "failed to set PEM cert and key"),
        ({"cert": "-" * 200, "key": key, "sni": "x.test"}, "failed to parse cert"),
        ({"cert": cert, "key": "k" * 100, "sni": "x.test"}, "failed to parse key"),
        ({"cert": cert, "key": key, "sni": "x.test", "client": {"ca": cert}}, "client"),
        ({"cert": cert, "key": key, "sni": "x.test", "type": "peer"}, "type"),
        ({"cert": cert, "key": key, "sni": "x.test", "name": "x"}, "name"),  # APISIX: none
        # The key pasted into cert too: it would be stored, returned and dumped in plaintext.
        ({"cert": cert + key, "key": key, "sni": "x.test"}, "cert holds a private key"),
    ]
    for body, message in cases:
        status, answer = live.admin("PUT", "ssls/x", body)
        assert status == 400 and message in answer["error_msg"], (message, answer)
    assert live.admin("GET", "ssls/x")[0] == 404


def test_a_replaced_certificate_is_served_within_a_second(live: LiveGateway, ca: TestCA) -> None:
    port, context = tls_port(live), ca.context()
    assert peer_subject(port, context, "a.test")["organizationName"] == "first"
    cert, key = ca.issue("a.test", "a2.test", organization="second")
    live.put("ssls/a", {"cert": cert, "key": key, "snis": ["a.test"]})
    replaced = time.monotonic()
    while peer_subject(port, context, "a.test")["organizationName"] != "second":
        assert time.monotonic() - replaced < 1.0, "the old certificate is still served"
        time.sleep(0.02)
    # A PATCH that keeps the sealed key still serves.
    status, answer = live.admin("PATCH", "ssls/a", {"snis": ["a.test", "a2.test"]})
    assert status == 200, answer
    assert peer_subject(port, context, "a2.test")["organizationName"] == "second"
    # A wildcard SNI.
    b_cert = live.admin("GET", "ssls/b")[1]["value"]["cert"]
    b_key = live.admin("PATCH", "ssls/b", {})[1]["value"]["key"]  # sealed: stored as it is
    live.put("ssls/w", {"cert": b_cert, "key": b_key, "snis": ["*.wild.test"]})
    assert peer_subject(port, context, "x.wild.test")["commonName"] == "b.test"
    live.delete("ssls/w")
    # Disabled: its names fail the handshake.
    assert live.admin("PATCH", "ssls/b", {"status": 0})[0] == 200
    with pytest.raises(ssl.SSLError):
        peer_subject(port, context, "b.test")
    assert live.admin("PATCH", "ssls/b", {"status": 1})[0] == 200
    assert peer_subject(port, context, "b.test")["commonName"] == "b.test"


def test_stalled_handshakes_and_heads_do_not_hang_the_listener(
    live: LiveGateway, ca: TestCA
) -> None:
    """An attacker opens many connections and never finishes the TLS handshake (nothing sent,
    or half a ClientHello), or finishes it and never sends a request head: a real client is
    served meanwhile, and each stalled connection is closed after the client header timeout
    (1 s here)."""
    port, context = tls_port(live), ca.context()
    stalled: list[socket.socket] = []
    try:
        for i in range(60):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                # The first bytes of a TLS record announcing a ClientHello, then nothing.
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            stalled.append(sock)
        with RawClient(port, tls=context, server_name="b.test", timeout=5) as idle:
            started = time.monotonic()
            with RawClient(port, tls=context, server_name="a.test", timeout=5) as client:
                client.send(request_bytes("GET", "/tls/ok", host="a.test"))
                assert client.read_response().status == 200
            assert time.monotonic() - started < 1.0
            # The handshaken but silent connection is closed by the header timeout.
            idle.sock.settimeout(4)
            assert idle.sock.recv(1) == b""
            assert time.monotonic() - started < 3.0
        # The stalled handshakes are closed too (end of file or a reset).
        deadline = time.monotonic() + 4
        for sock in stalled:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1024) == b""
    finally:
        for sock in stalled:
            sock.close()
    # Still serving.
    assert peer_subject(port, context, "a.test")["commonName"] == "a.test"


@pytest.mark.parametrize("headers", [{}, {"Connection": "keep-alive"}])
def test_plain_http_on_the_tls_port_is_answered_400_and_closed(
    live: LiveGateway, ca: TestCA, headers: dict[str, str]
) -> None:
    """nginx (so APISIX) answers plain HTTP sent to an HTTPS port with 400 "The plain HTTP
    request was sent to HTTPS port" and closes the connection; llmgate says it in its JSON
    error body.  The listener serves TLS as before."""
    with RawClient(tls_port(live), timeout=5) as client:
        client.send(request_bytes("GET", "/tls/x", headers, host="a.test"))
        response = client.read_response()
        assert response.status == 400
        assert response.json() == {"error_msg": "The plain HTTP request was sent to HTTPS port"}
        assert response.header("Connection") == "close"
        assert response.header("Server", "").startswith("llmgate/")
        assert client.is_closed_by_peer()
    assert peer_subject(tls_port(live), ca.context(), "a.test")["commonName"] == "a.test"


def test_without_a_passphrase_the_store_keeps_a_generated_one(
    tmp_path_factory: pytest.TempPathFactory, ca: TestCA
) -> None:
    """SPEC's ssls without LLMGATE_SSL_KEY (APISIX seals with its default keyring): a
    passphrase is generated once and kept in the store, so certificates can be written and
    served, also by ``--workers 2`` and after a restart; GETs still show only the sealed key."""
    workdir = tmp_path_factory.mktemp("tls-generated")
    cert, key = ca.issue("gen.test")
    with LiveGateway(workdir) as first:
        status, answer = first.admin(
            "PUT", "ssls/g", {"cert": cert, "key": key, "snis": ["gen.test"]}
        )
        assert status == 201, answer
        assert answer["value"]["key"].startswith("$llmgate-sealed$v1$")
        assert peer_subject(first.gw.tls_port, ca.context(), "gen.test")["commonName"] == "gen.test"
        assert "PRIVATE KEY" not in first.log()
    with LiveGateway(workdir, "--workers", "2") as again:
        deadline = time.monotonic() + 10
        while True:
            try:
                subject = peer_subject(again.gw.tls_port, ca.context(), "gen.test")
                break
            except (ssl.SSLError, OSError):
                assert time.monotonic() < deadline, again.log()
                time.sleep(0.1)
        assert subject["commonName"] == "gen.test"
        # PATCH keeps the sealed key, which this process can still open.
        assert again.admin("PATCH", "ssls/g", {"snis": ["gen.test", "gen2.test"]})[0] == 200


# --- the connection cap: TLS connections count as plain ones ----------------------------------

CAP = 40


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, ca: TestCA) -> Iterator[LiveGateway]:
    """A gateway with a small connection cap and nginx's default timeouts (idle connections
    stay for 60 s)."""
    env = {"LLMGATE_MAX_CONNECTIONS": str(CAP)}
    with LiveGateway(tmp_path_factory.mktemp("tls-cap"), env=env) as gateway:
        cert, key = ca.issue("a.test")
        gateway.put("ssls/a", {"cert": cert, "key": key, "snis": ["a.test"]})
        gateway.put("routes/tls", {"uri": "/tls/*", "upstream": gateway.upstream()})
        yield gateway


def tls_answer(port: int, context: ssl.SSLContext) -> int | None:
    """The status of a request over a new TLS connection; None when it was refused."""
    try:
        with RawClient(port, tls=context, server_name="a.test", timeout=5) as client:
            client.send(request_bytes("GET", "/tls/ok", host="a.test"))
            return client.read_response().status
    except (ConnectionClosed, OSError):
        return None


def test_idle_tls_connections_count_toward_the_connection_cap(
    capped: LiveGateway, ca: TestCA
) -> None:
    """A connection to the TLS port that sends nothing (no handshake yet) holds a socket as a
    plain one does: it takes a place under the same per-process cap from its accept.  With the
    cap filled by idle TLS connections a new one, TLS or plain, is reset at once, the admin API
    still answers, and closing the idle ones frees their places."""
    port, context = capped.gw.tls_port, ca.context()
    assert tls_answer(port, context) == 200
    idle: list[socket.socket] = []
    handshaken: list[RawClient] = []
    try:
        for i in range(CAP):
            if i % 4:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            else:  # handshaken, and no request head yet
                handshaken.append(RawClient(port, tls=context, server_name="a.test", timeout=5))
        for refused_port in (port, capped.proxy_port):
            try:
                extra = RawClient(refused_port, timeout=5)
            except ConnectionResetError:
                continue  # reset before connect() returned (a slow client): refused all the same
            with extra:
                started = time.monotonic()
                assert extra.is_closed_by_peer(3), "a connection past the cap was accepted"
                assert time.monotonic() - started < 1
        assert tls_answer(port, context) is None
        assert capped.admin("GET", "routes")[0] == 200
    finally:
        for sock in idle:
            sock.close()
        for client in handshaken:
            client.close()
    wait_for(lambda: tls_answer(port, context) == 200, "a place freed by the closed ones", 5)
