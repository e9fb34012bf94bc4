"""The log phase: plugins that finish without waiting run in the handler, in order; from the
first one that waits, the rest runs in a task that outlives the request."""

from __future__ import annotations

import asyncio

import pytest

from llmgate.plugin_api.config import PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins import REGISTRY


class _Probe(Plugin):
    Config = PluginConfig

    def seen(self) -> list[str]:
        return self.services.shared.get_or_make("log-probes", list, list)  # type: ignore[no-any-return]


class Failing(_Probe):
    name = "failing-probe"
    priority = 30

    async def log(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.seen().append("failing")
        raise RuntimeError("a broken logger")


class Waiting(_Probe):
    name = "waiting-probe"
    priority = 20

    async def log(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.seen().append("waiting:start")
        await asyncio.sleep(0.05)
        self.seen().append("waiting:end")


class Quick(_Probe):
    name = "quick-probe"
    priority = 10

    async def log(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.seen().append("quick")


@pytest.fixture(autouse=True)
def probes(gateway, monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    for plugin in (Failing, Waiting, Quick):
        monkeypatch.setitem(REGISTRY, plugin.name, plugin)
    return gateway.services.shared.get_or_make("log-probes", list, list)  # type: ignore[no-any-return]


async def _route(gateway, *names: str) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/v1/*",
            "plugins": {name: {} for name in names},
            "upstream": {"nodes": {gateway.fake_address: 1}},
        },
    )


async def test_every_log_plugin_runs_in_priority_order_past_a_failing_one(gateway, probes) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, "quick-probe", "waiting-probe", "failing-probe")
    resp = await gateway.proxy.get("/v1/models")
    assert resp.status == 200
    for _ in range(100):
        if "quick" in probes:
            break
        await asyncio.sleep(0.01)
    assert probes == ["failing", "waiting:start", "waiting:end", "quick"]


async def test_plugins_that_do_not_wait_are_done_when_the_response_is(gateway, probes) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, "quick-probe", "failing-probe")
    resp = await gateway.proxy.get("/v1/models")
    assert resp.status == 200
    await resp.read()
    assert probes == ["failing", "quick"]
