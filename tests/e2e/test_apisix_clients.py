"""Third-party APISIX clients drive a real ``llmgate serve``: ``apisix-client`` (PyPI, a
library) and ``mcp-apisix`` (PyPI, an MCP server run as its own process over stdio, its write
tools confirmed through MCP elicitation).  What they create is then served by the data plane.

Calls each client gets wrong against APISIX too are left out (docs: issue-15-16-tools note):

- apisix-client: ``route.get``/``get_all`` and ``consumer.get``/``get_all`` of a resource
  holding plugins raise cattrs' ``ClassValidationError`` (no structure hook for its
  ``PluginProtocol``); ``credential``, ``global_rule``, ``secret`` methods raise
  ``NotImplementedError``; ``upstream.delete`` of an upstream still in use raises ``KeyError``
  (APISIX's 400 has no ``deleted``).
- mcp-apisix: ``label=owner:mcp`` matches nothing: APISIX matches ``label`` against label
  keys only (``v3_adapter.filter``), as llmgate does; ``label=owner`` works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgate.plugins import REGISTRY
from tests.net import LiveGateway, http_json
from tests.support import ADMIN_KEY

KEY = "client-consumer-key"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("apisix-clients")) as live:
        yield live


def served(gw: LiveGateway, path: str, **headers: str) -> int:
    return http_json("GET", f"{gw.gw.proxy_url}{path}", headers=headers)[0]


# --- apisix-client -------------------------------------------------------------------------


def test_apisix_client(gw: LiveGateway) -> None:
    from apisix_client.client import ApisixClient
    from apisix_client.consumer.models import Consumer
    from apisix_client.plugin import KeyAuth, KeyAuthSettings, LimitCount
    from apisix_client.route.models import Route
    from apisix_client.upstream.models import Node, Upstream

    client = ApisixClient(gw.gw.admin_url + "/", ADMIN_KEY)
    host, port = gw.fake_address.split(":")
    upstream = Upstream(nodes=[Node(host=host, port=int(port), weight=1)], labels={"team": "a"})
    assert client.upstream.create_or_update(upstream, "ac-up") == "ac-up"
    generated = client.upstream.create_with_id_generation(upstream)
    assert generated is not None and generated.isdigit()
    got = client.upstream.get("ac-up")
    assert got is not None and got.value.nodes[0].port == int(port)
    assert got.key == "/apisix/upstreams/ac-up" and got.created_index > 0
    assert {u.value.id for u in client.upstream.get_all()} == {"ac-up", generated}
    assert len(client.upstream.get_all((1, 10))) == 2
    assert client.upstream.count() == 2
    assert client.upstream.delete(generated) == 1

    route = Route(
        uri="/ac/*",
        upstream_id="ac-up",
        plugins=[KeyAuthSettings(), LimitCount(count=2, time_window=60, rejected_code=429)],
    )
    assert client.route.create_or_update(route, "ac-route") == "ac-route"
    plain_id = client.route.create_with_id_generation(Route(uri="/ac-plain", upstream_id="ac-up"))
    assert plain_id is not None
    plain = client.route.get(plain_id)  # a route without plugins: the client can read it
    assert plain is not None and plain.value.uri == "/ac-plain"
    assert client.route.count() == 2
    assert client.consumer.create_or_update(Consumer(username="acjack", plugins=[KeyAuth(KEY)]))
    assert client.consumer.count() == 1

    # What the client wrote is live: key-auth, then limit-count's 2 per minute.
    assert served(gw, "/ac/x") == 401
    assert [served(gw, "/ac/x", apikey=KEY) for _ in range(3)] == [200, 200, 429]
    assert served(gw, "/ac-plain") == 200

    names = client.plugin.get_available()
    assert set(names) == set(REGISTRY) and names[0] == "request-id"
    assert client.plugin.reload() is True

    assert client.route.delete("ac-route") is True
    assert client.route.delete(plain_id) is True
    assert client.consumer.delete("acjack") == 1
    assert client.upstream.delete("ac-up") == 1
    assert client.upstream.get("ac-up") is None  # APISIX's 404 {"message": ...}
    assert served(gw, "/ac/x", apikey=KEY) == 404


def test_apisix_client_services(gw: LiveGateway) -> None:
    from apisix_client.client import ApisixClient
    from apisix_client.consumer.models import Consumer
    from apisix_client.plugin import KeyAuth, KeyAuthSettings
    from apisix_client.route.models import Route
    from apisix_client.service.models import Service
    from apisix_client.upstream.models import Node, Upstream

    client = ApisixClient(gw.gw.admin_url + "/", ADMIN_KEY)
    host, port = gw.fake_address.split(":")
    upstream = Upstream(nodes=[Node(host=host, port=int(port), weight=1)])
    assert client.upstream.create_or_update(upstream, "svc-up") == "svc-up"
    assert client.service.create_or_update(Service(upstream_id="svc-up"), "ac-svc") == "ac-svc"
    got = client.service.get("ac-svc")  # no plugins: the client can read it back
    assert got is not None and got.value.upstream_id == "svc-up"
    # An inline upstream from this client carries "labels": {} (APISIX's schema has labels).
    inline = client.service.create_with_id_generation(Service(upstream=upstream))
    assert inline is not None
    got = client.service.get(inline)
    assert got is not None and got.value.upstream.nodes[0].port == int(port)
    assert client.service.delete(inline) is True
    guarded = Service(upstream_id="svc-up", plugins=[KeyAuthSettings()])
    guarded_id = client.service.create_with_id_generation(guarded)
    assert guarded_id is not None
    assert client.service.count() == 2
    assert client.consumer.create_or_update(Consumer(username="svcjack", plugins=[KeyAuth(KEY)]))
    # Routes with only a service_id: served through the service's upstream and plugins.
    assert client.route.create_or_update(Route(uri="/svc/*", service_id="ac-svc"), "ac-svc-r")
    assert client.route.create_or_update(Route(uri="/svc-key/*", service_id=guarded_id), "ac-g")
    assert served(gw, "/svc/x") == 200
    assert served(gw, "/svc-key/x") == 401
    assert served(gw, "/svc-key/x", apikey=KEY) == 200
    for route_id in ("ac-svc-r", "ac-g"):
        assert client.route.delete(route_id) is True
    assert client.service.delete("ac-svc") is True
    assert client.service.delete(guarded_id) is True
    assert client.consumer.delete("svcjack") == 1
    assert client.upstream.delete("svc-up") == 1
    assert client.service.count() == 0


# --- mcp-apisix ----------------------------------------------------------------------------


class McpApisix:
    """``mcp-apisix`` as its own process (stdio transport, write tools on), one MCP session
    for the whole module.  The session lives in one task of an event loop in a thread of its
    own (anyio's scopes must end in the task that began them); ``call`` hands it one tool call
    and waits for the decoded result.  Every write tool is confirmed when the server asks (MCP
    elicitation)."""

    def __init__(self, gw: LiveGateway) -> None:
        self.gw = gw
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.requests: asyncio.Queue[Any] | None = None
        self.thread = threading.Thread(target=self._thread, daemon=True)

    def _thread(self) -> None:
        with open(self.gw.workdir / "mcp-apisix.log", "w") as errlog:
            try:
                asyncio.run(self._serve(errlog))
            except BaseException as exc:
                if not self.ready.done():
                    self.ready.set_exception(exc)

    async def _serve(self, errlog: Any) -> None:
        from mcp.client.session import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp_types import ElicitResult

        async def confirm(_context: Any, _params: Any) -> ElicitResult:
            return ElicitResult(action="accept", content={"confirm": True})

        params = StdioServerParameters(
            command=str(Path(sys.executable).with_name("mcp-apisix")),
            env={
                "APISIX_BASE_URL": self.gw.gw.admin_url,
                "APISIX_ADMIN_KEY": ADMIN_KEY,
                "APISIX_READ_ONLY": "false",
            },
        )
        async with contextlib.AsyncExitStack() as stack:
            stdio = stdio_client(params, errlog=errlog)
            read, write = await stack.enter_async_context(stdio)
            session = await stack.enter_async_context(
                ClientSession(read, write, elicitation_callback=confirm)
            )
            await session.initialize()
            self.loop, self.requests = asyncio.get_running_loop(), asyncio.Queue()
            self.ready.set_result(None)
            while (request := await self.requests.get()) is not None:
                name, arguments, answer = request
                try:
                    answer.set_result(await session.call_tool(name, arguments))
                except Exception as exc:
                    answer.set_exception(exc)

    def start(self) -> McpApisix:
        self.thread.start()
        self.ready.result(60)
        return self

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        assert self.loop is not None and self.requests is not None
        answer: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self.requests.put_nowait, (name, arguments or {}, answer))
        text = answer.result(30).content[0].text
        assert not text.startswith(("错误", "Error")), (name, arguments, text)
        try:
            return json.loads(text)
        except ValueError:
            raise AssertionError((name, arguments, text)) from None

    def close(self) -> None:
        """End the session, and with it the mcp-apisix process."""
        if self.loop is not None and self.requests is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.requests.put_nowait, None)
        self.thread.join(30)


@pytest.fixture(scope="module")
def mcp(gw: LiveGateway) -> Iterator[McpApisix]:
    client = McpApisix(gw)
    try:
        yield client.start()
    finally:
        client.close()


def test_mcp_apisix(gw: LiveGateway, mcp: McpApisix) -> None:
    route = {
        "uri": "/mcp/*",
        "name": "mcp-route",
        "labels": {"owner": "mcp"},
        "upstream_id": "mcp-up",
        "plugins": {"key-auth": {}},
    }
    gw.put("upstreams/mcp-up", gw.upstream())
    gw.put("consumers/mcpjack", {"username": "mcpjack", "plugins": {"key-auth": {"key": KEY}}})
    gw.put("plugin_configs/mcp-pc", {"plugins": {"request-id": {}}})
    valid = {"resource": "routes", "config": route}
    assert mcp.call("apisix_validate_resource_config", valid) == {"valid": True}
    invalid = {"resource": "routes", "config": {"uri": 5}}
    answer = mcp.call("apisix_validate_resource_config", invalid)
    assert answer["valid"] is False and "uri" in answer["error_msg"]
    created = mcp.call("apisix_create_route", {"config": route})
    route_id = created["id"]
    assert created["value"]["name"] == "mcp-route"
    assert served(gw, "/mcp/x", apikey=KEY) == 200
    upstream = mcp.call("apisix_create_upstream", {"config": {"nodes": {gw.fake_address: 1}}})
    upstream_id = upstream["id"]

    routes = mcp.call("apisix_list_routes", {"detail": True})
    assert routes["total"] == 1 and routes["list"][0]["value"]["uri"] == "/mcp/*"
    filters = {"name": "^mcp-", "uri": "/mcp", "label": "owner"}
    assert mcp.call("apisix_list_routes", filters)["total"] == 1
    # APISIX matches label against label keys only: "owner:mcp" finds nothing there either.
    assert mcp.call("apisix_list_routes", {"label": "owner:mcp"})["total"] == 0
    by_upstream = {"upstream_id": "mcp-up", "page_size": 10}
    assert mcp.call("apisix_list_routes", by_upstream)["total"] == 1
    assert mcp.call("apisix_get_route", {"id": route_id})["value"]["labels"] == {"owner": "mcp"}
    assert mcp.call("apisix_list_upstreams")["total"] == 2
    one_upstream = mcp.call("apisix_get_upstream", {"id": upstream_id})
    assert one_upstream["value"]["nodes"] == {gw.fake_address: 1}
    assert mcp.call("apisix_list_consumers", {"detail": True})["total"] == 1
    # mcp-apisix masks credentials itself; llmgate never returned the key anyway.
    assert KEY not in json.dumps(mcp.call("apisix_get_consumer", {"username": "mcpjack"}))
    assert mcp.call("apisix_list_plugin_configs")["total"] == 1
    plugins = mcp.call("apisix_list_plugins")
    assert set(plugins["plugins"] if isinstance(plugins, dict) else plugins) == set(REGISTRY)
    schema = mcp.call("apisix_get_plugin_schema", {"name": "key-auth"})
    assert schema["properties"]["header"]["default"] == "apikey"
    info = mcp.call("apisix_get_server_info")
    assert info["response_format"] == "v3" and info["capabilities"].get("schema_validate", True)
    patched = mcp.call("apisix_update_route", {"id": route_id, "patch": {"desc": "patched"}})
    assert patched["value"]["desc"] == "patched"
    retries = mcp.call("apisix_update_upstream", {"id": upstream_id, "patch": {"retries": 1}})
    assert retries["value"]["retries"] == 1
    toggled = mcp.call("apisix_toggle_route", {"id": route_id, "enabled": False})
    assert toggled["value"]["status"] == 0
    assert served(gw, "/mcp/x", apikey=KEY) == 404  # disabled through MCP: gone from the data plane
    toggled = mcp.call("apisix_toggle_route", {"id": route_id, "enabled": True})
    assert served(gw, "/mcp/x", apikey=KEY) == 200


def test_mcp_apisix_services_global_rules_stream_routes(gw: LiveGateway, mcp: McpApisix) -> None:
    service = mcp.call("apisix_create_service", {"config": {"upstream": gw.upstream()}})
    service_id = service["id"]
    assert mcp.call("apisix_list_services")["total"] >= 1
    assert mcp.call("apisix_get_service", {"id": service_id})["value"]["upstream"]
    patched = mcp.call("apisix_update_service", {"id": service_id, "patch": {"desc": "d"}})
    assert patched["value"]["desc"] == "d"
    assert mcp.call("apisix_list_global_rules")["total"] == 0
    assert mcp.call("apisix_list_stream_routes")["total"] == 0
    # A route with only the service_id is served through the service's upstream.
    gw.put("routes/mcp-svc", {"uri": "/mcp-svc", "service_id": service_id})
    assert served(gw, "/mcp-svc") == 200
