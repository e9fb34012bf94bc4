"""Upstream mutual TLS, as APISIX: an https upstream presents a client certificate, inline
(``tls.client_cert`` + ``tls.client_key``) or an ssl of ``type: client`` (``tls.client_cert_id``).

The upstream here is a real TLS server on a free port that requires a client certificate
issued by a CA made in the test, and answers with the subject of the certificate it saw.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from llmgate.credentials import SEALED_PREFIX, SSL_KEY_ENV
from llmgate.http.tls import load_certificate
from tests.harness import Gateway
from tests.net import TestCA
from tests.support import ADMIN_KEY, VIEWER_KEY


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SSL_KEY_ENV, "a passphrase only this test knows")


async def _subject(request: web.Request) -> web.Response:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    subject = {key: value for rdn in (cert or {}).get("subject", ()) for key, value in rdn}
    return web.json_response({"subject": subject})


@pytest.fixture
async def mtls_upstream(aiohttp_server: Any, ca: TestCA) -> AsyncIterator[TestServer]:
    """An HTTPS server that refuses any handshake without a client certificate of ``ca``."""
    cert, key = ca.issue("upstream.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_verify_locations(cadata=ca.pem)
    context.verify_mode = ssl.CERT_REQUIRED
    load_certificate(context, cert, key)
    app = web.Application()
    app.router.add_get("/{tail:.*}", _subject)
    yield await aiohttp_server(app, ssl=context)


def _upstream(server: TestServer, **tls: Any) -> dict[str, Any]:
    upstream: dict[str, Any] = {"scheme": "https", "nodes": {f"127.0.0.1:{server.port}": 1}}
    if tls:
        upstream["tls"] = tls
    return upstream


async def _call(
    gateway: Gateway, method: str, path: str, body: Any = None, key: str = ADMIN_KEY
) -> tuple[int, Any]:
    resp = await gateway.admin.request(
        method, f"/apisix/admin/{path}", json=body, headers={"X-API-KEY": key}
    )
    return resp.status, await resp.json()


async def _seen(gateway: Gateway, path: str) -> tuple[int, dict[str, str]]:
    resp = await gateway.proxy.get(path)
    body = await resp.json()
    return resp.status, body.get("subject", {}) if resp.status == 200 else body


async def test_without_a_client_certificate_the_upstream_refuses(
    gateway: Gateway, mtls_upstream: TestServer
) -> None:
    await gateway.put("routes/1", {"uri": "/plain", "upstream": _upstream(mtls_upstream)})
    status, _ = await _seen(gateway, "/plain")
    assert status == 502


async def test_an_inline_client_certificate_is_presented(
    gateway: Gateway, mtls_upstream: TestServer, ca: TestCA
) -> None:
    cert, key = ca.issue("inline.client", organization="inline")
    tls = {"client_cert": cert, "client_key": key}
    answer = await gateway.put("upstreams/u", _upstream(mtls_upstream, **tls))
    sealed = answer["value"]["tls"]["client_key"]
    assert sealed.startswith(SEALED_PREFIX) and "PRIVATE KEY" not in sealed
    await gateway.put("routes/1", {"uri": "/inline", "upstream_id": "u"})
    await gateway.put("routes/2", {"uri": "/route", "upstream": _upstream(mtls_upstream, **tls)})
    for path in ("/inline", "/route", "/inline"):  # the second /inline: a kept-alive connection
        status, subject = await _seen(gateway, path)
        assert status == 200, subject
        assert subject == {"commonName": "inline.client", "organizationName": "inline"}

    # Never in clear: the admin sees the sealed form (as APISIX's encrypted one), the viewer
    # not even that; the store holds only the sealed form.
    for path in ("upstreams/u", "routes/2"):
        status, shown = await _call(gateway, "GET", path)
        assert status == 200 and "PRIVATE KEY" not in str(shown)
        status, viewed = await _call(gateway, "GET", path, key=VIEWER_KEY)
        assert status == 200 and SEALED_PREFIX not in str(viewed) and "***" in str(viewed)
    async with gateway.store.read() as reader:
        rows = [item.value for item in await reader.all()]
    assert "PRIVATE KEY" not in str(rows)
    # A PATCH keeps the sealed key, which still opens.
    assert (await _call(gateway, "PATCH", "upstreams/u", {"desc": "x"}))[0] == 200
    await gateway.loader.reload()
    assert (await _seen(gateway, "/inline"))[0] == 200


async def test_a_client_ssl_is_presented_by_id(
    gateway: Gateway, mtls_upstream: TestServer, ca: TestCA
) -> None:
    cert, key = ca.issue("by-id.client", organization="first")
    # A client certificate needs no sni (APISIX's ssl schema).
    answer = await gateway.put("ssls/c", {"type": "client", "cert": cert, "key": key})
    assert answer["value"]["key"].startswith(SEALED_PREFIX)
    await gateway.put("upstreams/u", _upstream(mtls_upstream, client_cert_id="c"))
    await gateway.put("routes/1", {"uri": "/by-id", "upstream_id": "u"})
    status, subject = await _seen(gateway, "/by-id")
    assert status == 200 and subject["commonName"] == "by-id.client", subject

    # As a server ssl's, its key is never shown by a GET.
    _, one = await _call(gateway, "GET", "ssls/c")
    _, listed = await _call(gateway, "GET", "ssls")
    for shown in (one["value"], listed["list"][0]["value"]):
        assert "key" not in shown and shown["type"] == "client" and shown["cert"] == cert

    # A new certificate in the ssl is presented from the next snapshot on.
    cert, key = ca.issue("by-id.client", organization="second")
    await gateway.put("ssls/c", {"type": "client", "cert": cert, "key": key})
    status, subject = await _seen(gateway, "/by-id")
    assert status == 200 and subject["organizationName"] == "second", subject

    # Never served by the TLS listener, whatever sni it names.
    await gateway.put("ssls/c", {"type": "client", "cert": cert, "key": key, "sni": "a.test"})
    snapshot = gateway.loader.current
    assert snapshot is not None and len(snapshot.certificates) == 0


async def test_writes_are_checked_as_apisix(
    gateway: Gateway, mtls_upstream: TestServer, ca: TestCA
) -> None:
    cert, key = ca.issue("checked.client")
    other_cert, _ = ca.issue("other.client")
    server = {"cert": cert, "key": key, "sni": "server.test"}
    assert (await _call(gateway, "PUT", "ssls/server", server))[0] == 201
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"client_cert_id": "nope"},
            "failed to fetch ssl info by ssl id [nope], response code: 404",
        ),
        (
            {"client_cert_id": "server"},
            "failed to fetch ssl info by ssl id [server], wrong ssl type",
        ),
        ({"client_cert": cert}, '"client_key" is required when "client_cert" is set'),
        ({"client_key": key}, '"client_cert" is required when "client_key" is set'),
        (
            {"client_cert_id": "server", "client_cert": cert, "client_key": key},
            '"client_cert_id" can not be set with "client_cert" and "client_key"',
        ),
        ({"client_cert": other_cert, "client_key": key}, "failed to set PEM cert and key"),
        ({"client_cert": cert + key, "client_key": key}, "tls.client_cert holds a private key"),
    ]
    for tls, message in cases:
        for path, body in (
            ("upstreams/bad", _upstream(mtls_upstream, **tls)),
            ("routes/bad", {"uri": "/bad", "upstream": _upstream(mtls_upstream, **tls)}),
            ("services/bad", {"upstream": _upstream(mtls_upstream, **tls)}),
        ):
            status, answer = await _call(gateway, "PUT", path, body)
            assert status == 400 and message in answer["error_msg"], (path, message, answer)
    # A client ssl needs its key.
    status, answer = await _call(gateway, "PUT", "ssls/k", {"type": "client", "cert": cert})
    assert status == 400 and "key" in answer["error_msg"]


async def test_an_ssl_in_use_as_a_client_certificate_is_not_deleted(
    gateway: Gateway, mtls_upstream: TestServer, ca: TestCA
) -> None:
    cert, key = ca.issue("kept.client")
    await gateway.put("ssls/c", {"type": "client", "cert": cert, "key": key})
    for path, body, who in (
        ("upstreams/u", _upstream(mtls_upstream, client_cert_id="c"), "upstream [u]"),
        ("services/s", {"upstream": _upstream(mtls_upstream, client_cert_id="c")}, "service [s]"),
        (
            "routes/r",
            {"uri": "/r", "upstream": _upstream(mtls_upstream, client_cert_id="c")},
            "route [r]",
        ),
    ):
        await gateway.put(path, body)
        status, answer = await _call(gateway, "DELETE", "ssls/c")
        assert status == 400, answer
        assert answer["error_msg"] == f"can not delete this ssl, {who} is still using it now"
        await gateway.delete(path)
    await gateway.delete("ssls/c")
