"""ai-rate-limiting at run time: token budgets charged from each response's real usage.

The counter logic is tested on a bare request context (``LlmCall`` filled by hand, as ai-proxy
fills it); the gateway tests run the whole chain with ai-proxy and the fake upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from llmgate.ai.call import LlmCall
from llmgate.ai.usage import Usage
from llmgate.plugins.ai_rate_limiting import AIRateLimiting
from llmgate.runtime.counters import CountersUnavailable, LocalCounters
from llmgate.runtime.services import Services


@dataclass
class Ctx:
    """What the plugin reads from a request context."""

    route_id: str = "1"
    variables: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # the request body as it goes to the provider
    services: Services | None = None
    path: str = "/anything"  # where the request goes (no OpenAI endpoint: no passive call)

    @property
    def route(self) -> SimpleNamespace:
        return SimpleNamespace(id=self.route_id)

    @property
    def outbound(self) -> SimpleNamespace:
        return SimpleNamespace(body=self.body, method="POST", path=self.path)

    @property
    def snapshot(self) -> SimpleNamespace:
        return SimpleNamespace(services=self.services)

    def var(self, name: str) -> str | None:
        return self.variables.get(name)

    def add_response_header(self, name: str, value: str) -> None:
        self.headers[name] = value


def _plugin(services: Services, owner: str = "route/1#abc", **conf: Any) -> AIRateLimiting:
    return AIRateLimiting(AIRateLimiting.Config.model_validate(conf), services, owner)


def _ctx(instance: str | None = "ai-proxy-openai", **kwargs: Any) -> Ctx:
    ctx = Ctx(**kwargs)
    if instance is not None:
        call = LlmCall.of(ctx)  # type: ignore[arg-type]
        call.provider, call.instance = "openai", instance
    return ctx


async def _request(
    plugin: AIRateLimiting, usage: Usage | None = None, **kwargs: Any
) -> tuple[Ctx, Any]:
    """One request through access and log: the context and the refusal (None if it passed)."""
    ctx = _ctx(**kwargs)
    refusal = await plugin.access(ctx)  # type: ignore[arg-type]
    call = LlmCall.find(ctx)  # type: ignore[arg-type]
    if refusal is None and call is not None:
        call.usage = usage
        call.answered = usage is not None  # None: an error answer, without usage
    await plugin.log(ctx)  # type: ignore[arg-type]
    return ctx, refusal


async def test_budget_spent_refuses_the_next_request() -> None:
    plugin = _plugin(Services(), limit=30, time_window=60)
    ctx, refusal = await _request(plugin, Usage(10, 10, 20))
    assert refusal is None
    assert ctx.headers == {
        "X-AI-RateLimit-Limit-ai-proxy-openai": "30",
        "X-AI-RateLimit-Remaining-ai-proxy-openai": "30",
        "X-AI-RateLimit-Reset-ai-proxy-openai": "60",
    }
    ctx, refusal = await _request(plugin, Usage(10, 10, 20))  # 20 used: still 10 left
    assert refusal is None
    assert ctx.headers["X-AI-RateLimit-Remaining-ai-proxy-openai"] == "10"
    ctx, refusal = await _request(plugin, Usage(1, 1, 2))  # 40 used
    assert refusal is not None
    assert refusal.status == 503
    assert orjson.loads(refusal.body) == {"error_msg": "token limit exceeded"}
    assert ctx.headers["X-AI-RateLimit-Remaining-ai-proxy-openai"] == "0"
    assert ctx.headers["X-AI-RateLimit-Limit-ai-proxy-openai"] == "30"


@pytest.mark.parametrize(
    ("strategy", "allowed"),
    [("total_tokens", 1), ("prompt_tokens", 3), ("completion_tokens", 2)],
)
async def test_limit_strategy(strategy: str, allowed: int) -> None:
    """Usage(3, 4, 7) per request against a budget of 10: total passes once, prompt three
    times, completion twice."""
    plugin = _plugin(Services(), limit=10, time_window=60, limit_strategy=strategy)
    passed = 0
    for _ in range(5):
        _, refusal = await _request(plugin, Usage(3, 4, 7))
        passed += refusal is None
    assert passed == allowed + 1  # the request that crosses the limit still passes


async def test_rejected_code_msg_and_no_headers() -> None:
    plugin = _plugin(
        Services(),
        limit=1,
        time_window=60,
        rejected_code=429,
        rejected_msg="Too many tokens",
        show_limit_quota_header=False,
    )
    await _request(plugin, Usage(1, 0, 1))
    ctx, refusal = await _request(plugin, Usage(1, 0, 1))
    assert refusal is not None and refusal.status == 429
    assert orjson.loads(refusal.body) == {"error_msg": "Too many tokens"}
    assert ctx.headers == {}


async def test_refused_and_usageless_requests_are_not_charged() -> None:
    services = Services()
    plugin = _plugin(services, limit=5, time_window=60)
    await _request(plugin, None)  # an error answer without usage
    await _request(plugin, Usage(0, 0, 0))
    ctx, refusal = await _request(plugin, Usage(5, 0, 5))
    assert refusal is None and ctx.headers["X-AI-RateLimit-Remaining-ai-proxy-openai"] == "5"
    _, refusal = await _request(plugin, Usage(5, 0, 5))
    assert refusal is not None
    used, _ = await services.counters.peek("ai-rate-limiting|route/1#abc|1|#global", 60)
    assert used == 5


async def test_no_llm_call_is_neither_checked_nor_charged() -> None:
    plugin = _plugin(Services(), limit=1, time_window=60)
    for _ in range(3):
        ctx, refusal = await _request(plugin, instance=None)
        assert refusal is None and ctx.headers == {}


async def test_instances_have_their_own_budgets() -> None:
    services = Services()
    plugin = _plugin(
        services,
        limit=100,
        time_window=60,
        instances=[{"name": "small", "limit": 5, "time_window": 10}],
    )
    ctx, _ = await _request(plugin, Usage(0, 0, 5), instance="small")
    assert ctx.headers["X-AI-RateLimit-Limit-small"] == "5"
    assert ctx.headers["X-AI-RateLimit-Reset-small"] == "10"
    _, refusal = await _request(plugin, None, instance="small")
    assert refusal is not None
    # Other instances share the route's budget, untouched by "small".
    ctx, refusal = await _request(plugin, Usage(0, 0, 60), instance="big")
    assert refusal is None and ctx.headers["X-AI-RateLimit-Remaining-big"] == "100"
    ctx, refusal = await _request(plugin, None, instance="other")
    assert refusal is None and ctx.headers["X-AI-RateLimit-Remaining-other"] == "40"

    ctx = _ctx()
    assert 0 < await plugin.instance_wait(ctx, "small") <= 10  # type: ignore[arg-type]
    assert await plugin.instance_wait(ctx, "big") == 0  # type: ignore[arg-type]


async def test_instances_only_leave_other_instances_unlimited() -> None:
    plugin = _plugin(Services(), instances=[{"name": "a", "limit": 1, "time_window": 60}])
    for _ in range(3):
        ctx, refusal = await _request(plugin, Usage(0, 0, 10), instance="b")
        assert refusal is None and ctx.headers == {}
    assert await plugin.instance_wait(_ctx(), "b") == 0  # type: ignore[arg-type]


async def test_rules_are_keyed_by_variables() -> None:
    plugin = _plugin(
        Services(),
        rules=[
            {"count": 10, "time_window": 60, "key": "$http_user", "header_prefix": "user"},
            {"count": "$http_budget", "time_window": 30, "key": "$http_team"},
        ],
    )
    alice = {"http_user": "alice"}
    ctx, _ = await _request(plugin, Usage(0, 0, 10), variables=alice)
    assert ctx.headers == {
        "X-AI-user-RateLimit-Limit": "10",
        "X-AI-user-RateLimit-Remaining": "10",
        "X-AI-user-RateLimit-Reset": "60",
    }
    _, refusal = await _request(plugin, None, variables=alice)
    assert refusal is not None
    _, refusal = await _request(plugin, None, variables={"http_user": "bob"})
    assert refusal is None
    # A rule whose variables are unset does not apply.
    ctx, refusal = await _request(plugin, None, variables={})
    assert refusal is None and ctx.headers == {}
    team = {"http_team": "t", "http_budget": "3"}
    ctx, _ = await _request(plugin, Usage(0, 0, 3), variables=team)
    assert ctx.headers["X-AI-2-RateLimit-Limit"] == "3"
    _, refusal = await _request(plugin, None, variables=team)
    assert refusal is not None
    # A budget variable that is not a number is the client's error.
    _, refusal = await _request(plugin, None, variables={"http_team": "t", "http_budget": "x"})
    assert refusal is not None and refusal.status == 400


async def test_counters_are_per_route_or_per_consumer() -> None:
    services = Services()
    on_config = _plugin(services, owner="plugin_config/7#d", limit=5, time_window=60)
    await _request(on_config, Usage(0, 0, 5), route_id="1")
    assert (await _request(on_config, None, route_id="1"))[1] is not None
    assert (await _request(on_config, None, route_id="2"))[1] is None  # another route

    on_consumer = _plugin(services, owner="consumer/jack#d", limit=5, time_window=60)
    await _request(on_consumer, Usage(0, 0, 5), route_id="1")
    assert (await _request(on_consumer, None, route_id="2"))[1] is not None  # same consumer


async def test_config_change_resets_the_budget() -> None:
    services = Services()
    await _request(_plugin(services, owner="route/1#v1", limit=5, time_window=60), Usage(0, 0, 9))
    assert (await _request(_plugin(services, owner="route/1#v1", limit=5, time_window=60)))[1]
    assert (await _request(_plugin(services, owner="route/1#v2", limit=6, time_window=60)))[
        1
    ] is None


class DownCounters(LocalCounters):
    async def peek(self, key: str, window: float) -> tuple[int, float]:
        raise CountersUnavailable("down")

    async def reserve(
        self, key: str, window: float, amount: int, limit: int
    ) -> tuple[bool, int, float]:
        raise CountersUnavailable("down")

    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        raise CountersUnavailable("down")


async def test_counters_unavailable() -> None:
    services = Services(counters=DownCounters())
    _, refusal = await _request(_plugin(services, limit=5, time_window=60), Usage(1, 1, 2))
    assert refusal is not None and refusal.status == 503
    degraded = _plugin(services, limit=5, time_window=60, allow_degradation=True)
    _, refusal = await _request(degraded, Usage(1, 1, 2))  # log phase does not raise either
    assert refusal is None
    assert await degraded.instance_wait(_ctx(), "x") == 0  # type: ignore[arg-type]


# --- reservations ---------------------------------------------------------------------------

GLOBAL = "ai-rate-limiting|route/1#abc|1|#global"


async def test_concurrent_calls_reserve_before_they_are_sent() -> None:
    """As the attacker: ten calls at once against 100 tokens, each reserving 30 -- four are
    admitted (the count was 0, 30, 60, 90), six refused before reaching the upstream; then each
    admitted call is settled with its real usage."""
    services = Services()
    plugin = _plugin(services, limit=100, time_window=60, completion_estimate=30)
    contexts = [_ctx() for _ in range(10)]
    refusals = [await plugin.access(ctx) for ctx in contexts]  # type: ignore[arg-type]
    assert sum(refusal is None for refusal in refusals) == 4
    assert (await services.counters.peek(GLOBAL, 60))[0] == 120
    for ctx, refusal in zip(contexts, refusals, strict=True):
        call = LlmCall.find(ctx)  # type: ignore[arg-type]
        assert call is not None
        if refusal is None:
            call.usage, call.answered = Usage(5, 15, 20), True
        await plugin.log(ctx)  # type: ignore[arg-type]
    assert (await services.counters.peek(GLOBAL, 60))[0] == 80  # exactly what was consumed


async def test_the_estimate_is_the_prompt_size_and_max_tokens() -> None:
    services = Services()
    plugin = _plugin(services, limit=1000, time_window=60)
    body = orjson.dumps({"messages": [{"role": "user", "content": "x" * 77}], "max_tokens": 15})
    ctx = _ctx(body=body)
    assert await plugin.access(ctx) is None  # type: ignore[arg-type]
    assert len(body) == 136  # 34 tokens of prompt
    assert (await services.counters.peek(GLOBAL, 60))[0] == 34 + 15


async def test_a_stream_cut_short_is_charged_what_was_relayed() -> None:
    """No usage arrived (client abort, upstream drop): the prompt estimate plus the text relayed
    so far is charged, never 0; an answer that never came is charged nothing."""
    services = Services()
    plugin = _plugin(services, limit=1000, time_window=60)
    ctx = _ctx(body=b"p" * 80)
    assert await plugin.access(ctx) is None  # type: ignore[arg-type]
    call = LlmCall.find(ctx)  # type: ignore[arg-type]
    assert call is not None
    call.answered, call.relayed_chars = True, 41
    await plugin.log(ctx)  # type: ignore[arg-type]
    assert (await services.counters.peek(GLOBAL, 60))[0] == 20 + 11
    ctx = _ctx(body=b"p" * 80)
    assert await plugin.access(ctx) is None  # type: ignore[arg-type]
    await plugin.log(ctx)  # type: ignore[arg-type]  # the provider never answered
    assert (await services.counters.peek(GLOBAL, 60))[0] == 31


async def test_a_cache_hit_is_charged_nothing() -> None:
    services = Services()
    plugin = _plugin(services, limit=1000, time_window=60)
    ctx = _ctx()
    assert await plugin.access(ctx) is None  # type: ignore[arg-type]
    call = LlmCall.find(ctx)  # type: ignore[arg-type]
    assert call is not None
    call.cache, call.answered, call.usage = "hit", True, Usage(10, 20, 30)
    await plugin.log(ctx)  # type: ignore[arg-type]
    assert (await services.counters.peek(GLOBAL, 60))[0] == 0


async def test_a_refusal_gives_back_what_other_budgets_reserved() -> None:
    services = Services()
    rules = [
        {"count": 1000, "time_window": 60, "key": "$http_a"},
        {"count": 10, "time_window": 60, "key": "$http_b"},
    ]
    plugin = _plugin(services, rules=rules, completion_estimate=20)
    first = _ctx(variables={"http_a": "x", "http_b": "y"})
    assert await plugin.access(first) is None  # type: ignore[arg-type]
    second = _ctx(variables={"http_a": "x", "http_b": "y"})
    assert await plugin.access(second) is not None  # type: ignore[arg-type]
    rule_a = "ai-rate-limiting|route/1#abc|1|rule1|x"
    assert (await services.counters.peek(rule_a, 60))[0] == 20  # the second's 20 given back


async def test_a_fallback_is_charged_to_the_instance_that_answered() -> None:
    """ai-proxy-multi picked "a" (reserved there), then fell back to "b": "a" gets its
    reservation back and "b" is charged what the call consumed."""
    services = Services()
    budgets = [
        {"name": "a", "limit": 1000, "time_window": 60},
        {"name": "b", "limit": 1000, "time_window": 60},
    ]
    plugin = _plugin(services, instances=budgets, completion_estimate=50)
    ctx = _ctx(instance="a")
    assert await plugin.access(ctx) is None  # type: ignore[arg-type]
    prefix = "ai-rate-limiting|route/1#abc|1|"
    assert (await services.counters.peek(prefix + "a", 60))[0] == 50
    call = LlmCall.find(ctx)  # type: ignore[arg-type]
    assert call is not None
    call.instance, call.usage, call.answered = "b", Usage(7, 5, 12), True
    await plugin.log(ctx)  # type: ignore[arg-type]
    assert (await services.counters.peek(prefix + "a", 60))[0] == 0
    assert (await services.counters.peek(prefix + "b", 60))[0] == 12


async def test_cost_budgets_count_millionths_of_the_currency() -> None:
    from llmgate.ai.pricing import parse_table

    prices = parse_table({"prices": [{"model": "gpt-4o", "prompt": 2.5, "completion": 10}]})
    services = Services(prices=prices)
    plugin = _plugin(services, limit=1000, time_window=60, limit_strategy="cost")
    # 1000 prompt tokens at 2.5/1M = 2500 millionths, 50 completion at 10/1M = 500
    ctx = _ctx(services=services)
    assert await plugin.access(ctx) is None  # type: ignore[arg-type]
    call = LlmCall.find(ctx)  # type: ignore[arg-type]
    assert call is not None
    call.model = call.request_model = "gpt-4o"
    call.usage, call.answered = Usage(1000, 50, 1050), True
    await plugin.log(ctx)  # type: ignore[arg-type]
    assert (await services.counters.peek(GLOBAL, 60))[0] == 3000
    ctx = _ctx(services=services)
    refusal = await plugin.access(ctx)  # type: ignore[arg-type]
    assert refusal is not None and refusal.status == 503  # 0.003 spent of 0.001


# --- through the gateway, with ai-proxy -----------------------------------------------------


def _ai_proxy(gateway) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "provider": "openai",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there, fake!"}]}


async def _stream_chunks(resp) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Read an SSE answer to its end; its chunks."""
    return [orjson.loads(line[6:]) async for line in resp.content if line.startswith(b"data: {")]


async def test_budget_exhausted_by_a_stream(gateway) -> None:  # type: ignore[no-untyped-def]
    """A stream's tokens are charged when it ends; the next request is refused before it
    reaches the upstream."""
    await gateway.put(
        "routes/1",
        {
            "uri": "/v1/chat/completions",
            "plugins": {
                "ai-proxy": _ai_proxy(gateway),
                "ai-rate-limiting": {"limit": 10, "time_window": 60},
            },
        },
    )
    resp = await gateway.proxy.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status == 200
    assert resp.headers["X-AI-RateLimit-Limit-ai-proxy-openai"] == "10"
    assert resp.headers["X-AI-RateLimit-Remaining-ai-proxy-openai"] == "10"
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    # The client did not ask for the usage: it is charged all the same, never shown.
    chunks = await _stream_chunks(resp)
    assert chunks and all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    (seen,) = await gateway.fake_requests()
    assert seen["body"]["stream_options"] == {"include_usage": True}

    await gateway.clear_fake()
    resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 503
    assert (await resp.json())["error"] == {
        "message": "token limit exceeded",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.headers["X-AI-RateLimit-Remaining-ai-proxy-openai"] == "0"
    assert await gateway.fake_requests() == []


async def test_non_streamed_usage_is_charged(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/v1/chat/completions",
            "plugins": {
                "ai-proxy": _ai_proxy(gateway),
                "ai-rate-limiting": {
                    "limit": 10_000,
                    "time_window": 60,
                    "limit_strategy": "prompt_tokens",
                },
            },
        },
    )
    resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 200
    prompt_tokens = (await resp.json())["usage"]["prompt_tokens"]
    resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
    remaining = resp.headers["X-AI-RateLimit-Remaining-ai-proxy-openai"]
    assert int(remaining) == 10_000 - prompt_tokens


async def test_consumer_budget_follows_the_consumer(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {
                "key-auth": {"key": "jack-key"},
                "ai-rate-limiting": {"limit": 5, "time_window": 60, "rejected_code": 429},
            },
        },
    )
    await gateway.put("consumers", {"username": "jill", "plugins": {"key-auth": {"key": "jk"}}})
    for route_id, uri in (("1", "/a/v1/chat/completions"), ("2", "/b/v1/chat/completions")):
        await gateway.put(
            f"routes/{route_id}",
            {"uri": uri, "plugins": {"key-auth": {}, "ai-proxy": _ai_proxy(gateway)}},
        )
    jack = {"apikey": "jack-key"}
    assert (
        await gateway.proxy.post("/a/v1/chat/completions", json=CHAT, headers=jack)
    ).status == 200
    # Jack's budget is spent, on every route; Jill has none.
    resp = await gateway.proxy.post("/b/v1/chat/completions", json=CHAT, headers=jack)
    assert resp.status == 429
    jill = {"apikey": "jk"}
    assert (
        await gateway.proxy.post("/b/v1/chat/completions", json=CHAT, headers=jill)
    ).status == 200


async def test_spent_instance_is_skipped_by_ai_proxy_multi(gateway) -> None:  # type: ignore[no-untyped-def]
    """APISIX's example: a budget on the preferred instance; once it is spent, ai-proxy-multi
    sends the traffic to the other instance instead of refusing it."""

    def instance(name: str, priority: int) -> dict[str, Any]:
        return {
            "name": name,
            "priority": priority,
            "weight": 1,
            "provider": "openai",
            "auth": {"header": {"Authorization": "Bearer sk-test"}},
            "options": {"model": f"model-{name}"},
            "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
        }

    await gateway.put(
        "routes/1",
        {
            "uri": "/v1/chat/completions",
            "plugins": {
                "ai-proxy-multi": {
                    "instances": [instance("first", 1), instance("second", 0)],
                    "fallback_strategy": "instance_health_and_rate_limiting",
                },
                "ai-rate-limiting": {
                    "instances": [{"name": "first", "limit": 5, "time_window": 60}]
                },
            },
        },
    )
    resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 200
    assert resp.headers["X-AI-RateLimit-Remaining-first"] == "5"
    for _ in range(2):
        resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
        assert resp.status == 200
        assert "X-AI-RateLimit-Limit-first" not in resp.headers
    models = [seen["body"]["model"] for seen in await gateway.fake_requests()]
    assert models == ["model-first", "model-second", "model-second"]


async def test_a_plain_route_to_an_openai_endpoint_has_its_budget(gateway) -> None:  # type: ignore[no-untyped-def]
    """The seed blog's route (a plain upstream, proxy-rewrite to ``/v1/completions``): its
    answers are accounted, so a budget set on it is charged and enforced as on ai-proxy's."""
    await gateway.put(
        "routes/1",
        {
            "uri": "/openai/product/desc",
            "methods": ["POST"],
            "upstream": gateway.upstream(),
            "plugins": {
                "proxy-rewrite": {"uri": "/v1/completions"},
                "ai-rate-limiting": {"limit": 30, "time_window": 60},
            },
        },
    )
    body = {"model": "text-davinci-003", "prompt": "Escribe una descripción", "max_tokens": 256}
    statuses = []
    for _ in range(5):
        resp = await gateway.proxy.post("/openai/product/desc", json=body)
        statuses.append(resp.status)
        if resp.status != 200:
            break
        assert resp.headers["X-AI-RateLimit-Limit-openai-compatible"] == "30"
        await resp.read()
    assert statuses[-1] == 503, statuses
    assert await resp.json() == {"error_msg": "token limit exceeded"}
    assert int(resp.headers["Retry-After"]) >= 1
    # Every answer used ~20 tokens: the budget admits two calls, the upstream saw only them.
    assert len(await gateway.fake_requests()) == len(statuses) - 1 <= 2
    # Anything but a POST to an OpenAI endpoint is no LLM call: neither checked nor charged.
    await gateway.put(
        "routes/2",
        {
            "uri": "/other",
            "upstream": gateway.upstream(),
            "plugins": {"ai-rate-limiting": {"limit": 1, "time_window": 60}},
        },
    )
    for _ in range(3):
        resp = await gateway.proxy.post("/other", json=body)
        assert resp.status != 503 and "X-AI-RateLimit-Limit-openai-compatible" not in resp.headers
