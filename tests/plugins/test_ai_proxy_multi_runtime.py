"""ai-proxy-multi at run time: balancing, priorities, fallback and cool-down, on the fake upstream.

Every instance points at the fake; each one tags its requests with an ``X-Instance`` header
(through its own ``auth.header``) and may carry a fault knob (``X-Fake-Status: 500``) the same
way, so the fake's record tells which instance was asked what.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from llmgate.ai.call import LlmCall
from llmgate.plugin_api.config import PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins import REGISTRY

CHAT = {"messages": [{"role": "user", "content": "Who is Pikachu?"}]}


class LlmProbe(Plugin):
    name = "llm-probe"
    priority = 0
    Config = PluginConfig

    async def log(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.services.shared.get_or_make("llm-probe", list, list).append(LlmCall.find(ctx))


@pytest.fixture(autouse=True)
def calls(gateway, monkeypatch) -> list[LlmCall | None]:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(REGISTRY, "llm-probe", LlmProbe)
    return gateway.services.shared.get_or_make("llm-probe", list, list)


def instance(
    gateway, name: str, *, status: int | None = None, port: int | None = None, **extra: Any
):  # type: ignore[no-untyped-def]
    header = {"Authorization": f"Bearer key-{name}", "X-Instance": name}
    if status is not None:
        header["X-Fake-Status"] = str(status)
    address = f"127.0.0.1:{port}" if port is not None else gateway.fake_address
    return {
        "name": name,
        "provider": "openai-compatible",
        "weight": 1,
        "auth": {"header": header},
        "override": {"endpoint": f"http://{address}/v1/chat/completions"},
        **extra,
    }


async def multi_route(gateway, instances: list[dict[str, Any]], **conf: Any) -> None:  # type: ignore[no-untyped-def]
    plugin = {"instances": instances, **conf}
    await gateway.put(
        "routes/1", {"uri": "/chat", "plugins": {"ai-proxy-multi": plugin, "llm-probe": {}}}
    )


async def asked(gateway) -> list[str]:  # type: ignore[no-untyped-def]
    """Which instances the fake heard from, in order; forgets them."""
    names = [r["headers"].get("x-instance") for r in await gateway.fake_requests()]
    await gateway.clear_fake()
    return names


async def test_falls_back_from_a_dead_instance(gateway, calls, unused_tcp_port) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [
            instance(gateway, "dead", port=unused_tcp_port, priority=1),
            instance(gateway, "live", priority=0),
        ],
        fallback_strategy="instance_health_and_rate_limiting",
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 200
    assert await asked(gateway) == ["live"]
    (call,) = calls
    assert call is not None and call.instance == "live" and call.usage is not None


async def test_falls_back_on_5xx_then_cools_the_instance_down(gateway, calls) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [instance(gateway, "bad", status=500, priority=1), instance(gateway, "good")],
        fallback_strategy=["http_5xx"],
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 200
    assert (await resp.json())["choices"]
    assert await asked(gateway) == ["bad", "good"]
    # "bad" is cooling down: the next requests go straight to "good".
    for _ in range(2):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert await asked(gateway) == ["good", "good"]
    assert [c.instance for c in calls if c is not None] == ["good", "good", "good"]


async def test_stream_after_fallback(gateway, calls) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [instance(gateway, "limited", status=429, priority=1), instance(gateway, "good")],
        fallback_strategy="http_429",
    )
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    assert resp.status == 200
    text = await resp.text()
    assert text.endswith("data: [DONE]\n\n")
    requests = await gateway.fake_requests()
    assert [r["headers"]["x-instance"] for r in requests] == ["limited", "good"]
    assert requests[1]["body"]["stream_options"] == {"include_usage": True}
    # The gateway asked for the usage, not the client: it is kept, not relayed.
    chunks = [orjson.loads(e[6:]) for e in text.split("\n\n") if e and e != "data: [DONE]"]
    assert chunks and all(c["choices"] and "usage" not in c for c in chunks)
    (call,) = calls
    assert call is not None and call.stream and call.usage is not None
    assert call.usage.total_tokens > 0

    await gateway.clear_fake()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = await gateway.proxy.post("/chat", json=body)
    text = await resp.text()
    chunks = [orjson.loads(e[6:]) for e in text.split("\n\n") if e and e != "data: [DONE]"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": calls[-1].usage.prompt_tokens,
        "completion_tokens": calls[-1].usage.completion_tokens,
        "total_tokens": calls[-1].usage.total_tokens,
    }


@pytest.mark.parametrize(
    ("status", "conf"),
    [
        (500, {"fallback_strategy": "http_429"}),
        (429, {"fallback_strategy": "http_5xx"}),
        (500, {"fallback_strategy": "http_5xx", "max_retries": 0}),
        (401, {"fallback_strategy": "http_5xx"}),
    ],
)
async def test_failures_outside_the_strategy_are_relayed(gateway, status, conf) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway, [instance(gateway, "a", status=status, priority=1), instance(gateway, "b")], **conf
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == status
    assert "error" in await resp.json()
    assert await asked(gateway) == ["a"]


@pytest.mark.parametrize("status", [429, 500, 503, None])
async def test_without_a_strategy_429_and_5xx_fall_back(gateway, status, unused_tcp_port) -> None:  # type: ignore[no-untyped-def]
    """SPEC §4: ai-proxy-multi falls back on 429/5xx (and an instance that cannot be reached)
    without any ``fallback_strategy`` (APISIX: only with one naming them)."""
    failing = (
        instance(gateway, "a", status=status, priority=1)
        if status is not None
        else instance(gateway, "a", port=unused_tcp_port, priority=1)
    )
    await multi_route(gateway, [failing, instance(gateway, "b")])
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 200
    assert (await resp.json())["choices"]
    assert await asked(gateway) == (["a", "b"] if status is not None else ["b"])


async def test_without_a_strategy_other_failures_are_relayed(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway, [instance(gateway, "a", status=400, priority=1), instance(gateway, "b")]
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 400
    assert await asked(gateway) == ["a"]


async def test_fallback_http_statuses(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [instance(gateway, "expired", status=401, priority=1), instance(gateway, "b")],
        fallback_http_statuses=[401],
    )
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert await asked(gateway) == ["expired", "b"]


async def test_when_every_instance_fails_the_last_answer_is_relayed(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [
            instance(gateway, "a", status=500, priority=2),
            instance(gateway, "b", status=503, priority=1),
        ],
        fallback_strategy="http_5xx",
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 503
    assert (await resp.json())["error"]["type"] == "server_error"
    assert await asked(gateway) == ["a", "b"]


async def test_when_every_instance_is_down_the_error_is_502(gateway, unused_tcp_port) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [
            instance(gateway, "a", port=unused_tcp_port),
            instance(gateway, "b", port=unused_tcp_port),
        ],
        fallback_strategy="http_5xx",
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 502
    assert (await resp.json())["error"]["message"] == "502 Bad Gateway"


async def test_weights_share_the_traffic(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(gateway, [instance(gateway, "a", weight=3), instance(gateway, "b", weight=1)])
    for _ in range(8):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert Counter(await asked(gateway)) == {"a": 6, "b": 2}


async def test_highest_priority_takes_everything_standby_weight_zero_unused(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [
            instance(gateway, "low", priority=0, weight=5),
            instance(gateway, "high", priority=1),
            instance(gateway, "standby", priority=5, weight=0),
        ],
    )
    for _ in range(4):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert await asked(gateway) == ["high"] * 4


async def test_chash_on_a_header_is_sticky(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [instance(gateway, name) for name in ("a", "b", "c")],
        balancer={"algorithm": "chash", "hash_on": "header", "key": "X-User"},
    )
    for user in ("u1", "u2", "u3", "u4"):
        for _ in range(3):
            resp = await gateway.proxy.post("/chat", json=CHAT, headers={"X-User": user})
            assert resp.status == 200
        assert len(set(await asked(gateway))) == 1


async def test_chash_on_a_header_hashes_its_lines_joined(gateway) -> None:  # type: ignore[no-untyped-def]
    """A header sent on two lines is hashed as nginx's ``$http_x_user`` reads it: joined with
    ", " (nginx >= 1.23), so it picks the instance the joined value picks."""
    await multi_route(
        gateway,
        [instance(gateway, name) for name in ("a", "b", "c")],
        balancer={"algorithm": "chash", "hash_on": "header", "key": "X-User"},
    )

    async def picked(*values: str) -> str:
        headers = CIMultiDict(("X-User", value) for value in values)
        assert (await gateway.proxy.post("/chat", json=CHAT, headers=headers)).status == 200
        [name] = await asked(gateway)
        return name

    pairs = [(f"user-{n}", f"team-{n}") for n in range(8)]
    split = [await picked(first, second) for first, second in pairs]
    assert split == [await picked(f"{first}, {second}") for first, second in pairs]
    assert split != [await picked(first) for first, _ in pairs]


async def test_bad_body_is_400_and_nothing_is_sent(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(gateway, [instance(gateway, "a")])
    resp = await gateway.proxy.post(
        "/chat", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith("could not parse JSON request body")
    assert await gateway.fake_requests() == []


async def test_instances_without_the_protocol_are_skipped(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [
            instance(gateway, "chat-only", provider="deepseek", priority=1),
            instance(gateway, "any"),
        ],
    )
    resp = await gateway.proxy.post("/chat", json={"input": "embed me"})
    assert resp.status == 200
    assert await asked(gateway) == ["any"]


class BudgetStub(Plugin):
    """Stands for ai-rate-limiting: instance "spent" has no budget left."""

    name = "ai-rate-limiting"
    priority = 1030
    Config = PluginConfig

    def instance_wait(self, ctx, name: str) -> float:  # type: ignore[no-untyped-def]
        return 5.0 if name == "spent" else 0.0


async def test_rate_limited_instances_are_skipped(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(REGISTRY, "ai-rate-limiting", BudgetStub)
    plugin = {
        "instances": [instance(gateway, "spent", priority=1), instance(gateway, "fresh")],
        "fallback_strategy": ["rate_limiting"],
    }
    await gateway.put(
        "routes/1",
        {"uri": "/chat", "plugins": {"ai-proxy-multi": plugin, "ai-rate-limiting": {}}},
    )
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert await asked(gateway) == ["fresh"]


async def test_every_instance_out_of_budget_says_when_to_retry(gateway) -> None:  # type: ignore[no-untyped-def]
    """A refusal because every instance's token budget is spent is a limiter's rejection:
    OpenAI's rate-limit error with ``Retry-After``, the time until the first budget
    resets, so the SDKs' retries wait for it instead of hammering the gateway."""
    budgets = [
        {"name": "a", "limit": 1, "time_window": 30},
        {"name": "b", "limit": 1, "time_window": 60},
    ]
    plugin = {
        "instances": [instance(gateway, "a", priority=1), instance(gateway, "b")],
        "fallback_strategy": "instance_health_and_rate_limiting",
    }
    await gateway.put(
        "routes/1",
        {
            "uri": "/chat",
            "plugins": {"ai-proxy-multi": plugin, "ai-rate-limiting": {"instances": budgets}},
        },
    )
    for _ in range(2):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert await asked(gateway) == ["a", "b"]
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 503
    assert 25 <= int(resp.headers["Retry-After"]) <= 30
    error = (await resp.json())["error"]
    assert (error["message"], error["type"]) == ("all servers tried", "rate_limit_error")
    assert await asked(gateway) == []


async def test_slow_failures_are_not_retried(gateway) -> None:  # type: ignore[no-untyped-def]
    slow = instance(gateway, "slow", status=500, priority=1)
    slow["auth"]["header"]["X-Fake-Latency-Ms"] = "150"
    await multi_route(
        gateway,
        [slow, instance(gateway, "b")],
        fallback_strategy="http_5xx",
        retry_on_failure_within_ms=50,
    )
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 500
    assert await asked(gateway) == ["slow"]


async def test_max_retries_bounds_the_fallbacks(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(
        gateway,
        [instance(gateway, n, status=503, priority=p) for n, p in (("a", 3), ("b", 2), ("c", 1))],
        fallback_strategy="http_5xx",
        max_retries=1,
    )
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 503
    assert await asked(gateway) == ["a", "b"]


async def test_active_checks_take_an_unhealthy_instance_out(gateway) -> None:  # type: ignore[no-untyped-def]
    """Probes carry the instance's auth headers (as APISIX's), so the sick instance's
    ``X-Fake-Status: 500`` makes its probes fail; once it is out, it gets no requests."""
    import asyncio
    import time

    checks = {
        "active": {
            "http_path": "/v1/models",
            "healthy": {"interval": 1},
            "unhealthy": {"interval": 1, "http_failures": 1},
        }
    }
    await multi_route(
        gateway,
        [
            instance(gateway, "sick", status=500, checks=checks),
            instance(gateway, "well", checks=checks),
        ],
    )
    began = time.monotonic()
    while True:
        probes = [r for r in await gateway.fake_requests() if r["path"] == "/v1/models"]
        if any(p["headers"].get("x-instance") == "sick" for p in probes):
            break
        assert time.monotonic() - began < 5, "no probe within two intervals"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)
    await gateway.clear_fake()
    for _ in range(20):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    chats = [r for r in await gateway.fake_requests() if r["path"] != "/v1/models"]
    assert {r["headers"].get("x-instance") for r in chats} == {"well"}
    assert probes[0]["headers"]["authorization"].startswith("Bearer key-")


async def test_instance_checks_refuse_passive_and_unknown_fields(gateway) -> None:  # type: ignore[no-untyped-def]
    for checks in ({"active": {}, "passive": {}}, {"active": {"typo": 1}}):
        plugin = {"instances": [instance(gateway, "a", checks=checks)]}
        await gateway.put("routes/1", {"uri": "/chat", "plugins": {"ai-proxy-multi": plugin}}, 400)


async def test_a_get_on_the_chat_endpoint_is_openais_405(gateway) -> None:  # type: ignore[no-untyped-def]
    await multi_route(gateway, [instance(gateway, "a")])
    resp = await gateway.proxy.get("/chat")
    assert resp.status == 405
    error = (await resp.json())["error"]
    assert error == {
        "message": "Invalid method for URL (GET /chat)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert resp.headers["X-Request-Id"]
    assert await gateway.fake_requests() == []
