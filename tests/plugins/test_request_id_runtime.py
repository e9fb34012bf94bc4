"""request-id at run time: generated or kept, sent upstream, returned to the client."""

from __future__ import annotations

import re
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from llmgate.http.context import ResponseHead
from llmgate.plugins.request_id import (
    BASE62,
    NANOID_ALPHABET,
    RequestId,
    RequestIdConfig,
    ksuid,
    nanoid,
    uuid_v7,
)
from llmgate.runtime.services import Services


async def _route(gateway, conf: dict[str, Any], **plugins: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {"uri": "/*", "plugins": {"request-id": conf, **plugins}, "upstream": gateway.upstream()},
    )


async def test_generates_a_uuid_sent_upstream_and_returned(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {})
    resp = await gateway.proxy.get("/echo")
    assert resp.status == 200
    returned = resp.headers["X-Request-Id"]
    assert uuid.UUID(returned).version == 4
    assert (await resp.json())["headers"]["x-request-id"] == returned

    second = await gateway.proxy.get("/echo")
    assert second.headers["X-Request-Id"] != returned


async def test_keeps_the_clients_id(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {})
    resp = await gateway.proxy.get("/echo", headers={"X-Request-Id": "client-id-1"})
    assert resp.headers["X-Request-Id"] == "client-id-1"
    assert (await resp.json())["headers"]["x-request-id"] == "client-id-1"
    # An empty id is replaced, and so is one that is not an id (llmgate's: APISIX keeps any).
    for bad in ("", "a b", "x" * 129, '"quoted"', "é"):
        resp = await gateway.proxy.get("/echo", headers={"X-Request-Id": bad})
        assert uuid.UUID(resp.headers["X-Request-Id"])
    resp = await gateway.proxy.get("/echo", headers={"X-Request-Id": "req_Ab.9:~/+=@-" + "x" * 113})
    assert len(resp.headers["X-Request-Id"]) == 128


async def test_custom_header_without_response_header(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"header_name": "X-Trace", "include_in_response": False})
    resp = await gateway.proxy.get("/echo")
    echo = await resp.json()
    assert uuid.UUID(echo["headers"]["x-trace"])
    assert "X-Trace" not in resp.headers
    assert "x-request-id" not in echo["headers"]


def test_the_upstreams_own_header_wins() -> None:
    plugin = RequestId(RequestIdConfig(), Services())
    ctx: Any = SimpleNamespace(request_id="generated")
    head = ResponseHead(200, CIMultiDict({"X-Request-Id": "from-upstream"}))
    plugin.header_filter(ctx, head)
    assert head.headers.getall("X-Request-Id") == ["from-upstream"]
    head = ResponseHead(200, CIMultiDict({"X-Request-Id": ""}))
    plugin.header_filter(ctx, head)
    assert head.headers.getall("X-Request-Id") == ["generated"]


async def test_id_on_a_plugin_reply(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {}, **{"basic-auth": {}})
    resp = await gateway.proxy.get("/echo", headers={"X-Request-Id": "rid-401"})
    assert resp.status == 401
    assert resp.headers["X-Request-Id"] == "rid-401"


@pytest.mark.parametrize(
    ("conf", "pattern"),
    [
        pytest.param({"algorithm": "nanoid"}, r"[-_0-9a-zA-Z]{21}", id="nanoid"),
        pytest.param(
            {"algorithm": "range_id", "range_id": {"length": 8, "char_set": "abcdef"}},
            r"[a-f]{8}",
            id="range_id",
        ),
        pytest.param({"algorithm": "range_id"}, r"[a-zA-Z0-9]{16}", id="range_id-defaults"),
        pytest.param({"algorithm": "ksuid"}, r"[0-9A-Za-z]{27}", id="ksuid"),
        pytest.param(
            {"algorithm": "uuidv7"},
            r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
            id="uuidv7",
        ),
    ],
)
async def test_algorithms(gateway, conf: dict[str, Any], pattern: str) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, conf)
    resp = await gateway.proxy.get("/echo")
    assert re.fullmatch(pattern, resp.headers["X-Request-Id"])


async def test_id_is_kept_on_the_context_for_loggers() -> None:
    plugin = RequestId(RequestIdConfig(), Services())
    ctx: Any = SimpleNamespace(
        inbound=SimpleNamespace(headers=CIMultiDictProxy(CIMultiDict())),
        outbound=SimpleNamespace(headers=CIMultiDict()),
        request_id=None,
        request_headers_changed=lambda *names: None,
    )
    await plugin.rewrite(ctx)
    assert ctx.request_id == ctx.outbound.headers["X-Request-Id"]


def test_generators_are_unique_and_well_formed() -> None:
    assert len({nanoid() for _ in range(200)}) == 200
    assert all(c in NANOID_ALPHABET for c in nanoid())
    ids = [uuid.UUID(uuid_v7()) for _ in range(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 50
    milliseconds = ids[0].int >> 80
    assert abs(milliseconds - time.time() * 1000) < 5000
    k = ksuid()
    assert len(k) == 27 and all(c in BASE62 for c in k)
    assert len({ksuid() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param(["good-1", "other value"], "good-1", id="valid-first"),
        pytest.param(["good-1", "good-2"], "good-1", id="two-valid"),
    ],
)
async def test_the_upstream_sees_only_the_id_the_gateway_keeps(
    gateway, sent: list[str], kept: str
) -> None:  # type: ignore[no-untyped-def]
    # Deliberate (docs/compatibility.md): APISIX passes every value through (and returns them
    # all); the upstream's logs must name the request as the gateway's do.
    await _route(gateway, {})
    headers = CIMultiDict(("X-Request-Id", value) for value in sent)
    resp = await gateway.proxy.get("/echo", headers=headers)
    assert resp.headers.getall("X-Request-Id") == [kept]
    assert (await resp.json())["headers"]["x-request-id"] == kept
