"""``$env://`` references: resolved from the environment, never from the gateway's own
variables, and only from the allowed names when ``env_allow`` is set."""

from __future__ import annotations

import uuid

import pytest

from llmgate.runtime.envrefs import missing, resolve
from llmgate.schemas.envrefs import EnvPolicy

ENVIRON = {
    "OPENAI_API_KEY": "sk-1",
    "AZURE_KEY": "az",
    "LLMGATE_ADMIN_KEY": "the-admin-key",
    "LLMGATE_DATABASE_URL": "postgresql://u:p@db/x",
}


@pytest.mark.parametrize(
    ("value", "policy", "expected"),
    [
        ("Bearer $env://OPENAI_API_KEY", EnvPolicy(), "Bearer sk-1"),
        ("$env://UNSET", EnvPolicy(), ""),
        # The gateway's own settings are never readable, whatever the policy.
        ("$env://LLMGATE_ADMIN_KEY", EnvPolicy(), ""),
        ("x$env://LLMGATE_DATABASE_URL", EnvPolicy(("LLMGATE_*",)), "x"),
        ("$env://OPENAI_API_KEY", EnvPolicy(("OPENAI_API_KEY",)), "sk-1"),
        ("$env://AZURE_KEY", EnvPolicy(("OPENAI_API_KEY",)), ""),
        ("$env://AZURE_KEY", EnvPolicy(("AZURE_*",)), "az"),
        ({"a": ["$env://AZURE_KEY", 1]}, EnvPolicy(), {"a": ["az", 1]}),
    ],
)
def test_resolve(value: object, policy: EnvPolicy, expected: object) -> None:
    assert resolve(value, ENVIRON, policy) == expected


def test_missing_names_unset_and_refused_variables() -> None:
    conf = {"a": "$env://OPENAI_API_KEY", "b": "$env://UNSET $env://LLMGATE_ADMIN_KEY"}
    assert missing(conf, ENVIRON) == ["UNSET", "LLMGATE_ADMIN_KEY"]
    assert missing(conf, ENVIRON, EnvPolicy(("AZURE_KEY",))) == [
        "OPENAI_API_KEY",
        "UNSET",
        "LLMGATE_ADMIN_KEY",
    ]


def test_unchanged_values_stay_shared() -> None:
    conf = {"a": ["x"], "b": "y"}
    assert resolve(conf, ENVIRON) is conf


async def test_env_allow_limits_what_the_data_plane_resolves(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_ENVREF_ALLOWED", "yes")
    monkeypatch.setenv("TEST_ENVREF_OTHER", "leaked")
    gateway.services.env_policy = EnvPolicy(("TEST_ENVREF_ALLOWED",))
    for id, name in (("1", "ALLOWED"), ("2", "OTHER")):
        await gateway.put(
            f"routes/{id}",
            {
                "uri": f"/anything/{id}",
                "plugins": {
                    "proxy-rewrite": {"headers": {"set": {"X-A": f"$env://TEST_ENVREF_{name}"}}}
                },
                "upstream": gateway.upstream(),
            },
        )
    resp = await gateway.proxy.get("/anything/1")
    assert resp.status == 200
    assert (await resp.json())["headers"]["x-a"] == "yes"
    # A variable outside env_allow counts as unset: the route does not compile and answers 503,
    # never sending the variable's value nor an empty header in its place.
    resp = await gateway.proxy.get("/anything/2")
    assert resp.status == 503
    assert "leaked" not in await resp.text()
    assert len(await gateway.fake_requests()) == 1
    problem = gateway.loader.current.problems["routes/2"]
    assert "TEST_ENVREF_OTHER" in problem and "leaked" not in problem


async def test_unset_env_reference_keeps_the_last_good_route(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: ``redis_host: "$env://VAR"`` on a node without VAR never drops the route."""
    monkeypatch.setenv("TEST_ENVREF_REDIS_HOST", "127.0.0.1")

    def route(count: int) -> dict[str, object]:
        limit = {
            "count": count,
            "time_window": 60,
            "key_type": "constant",
            "key": f"envref-{uuid.uuid4().hex}",
            "policy": "redis",
            "redis_host": "$env://TEST_ENVREF_REDIS_HOST",
        }
        return {
            "uri": "/anything/*",
            "plugins": {"limit-count": limit},
            "upstream": gateway.upstream(),
        }

    await gateway.put("routes/1", route(5))
    resp = await gateway.proxy.get("/anything/a")
    assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "5"
    monkeypatch.delenv("TEST_ENVREF_REDIS_HOST")
    await gateway.put("routes/1", route(7))  # accepted: other nodes may have the variable
    resp = await gateway.proxy.get("/anything/a")
    assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "5"  # the last good one
    assert "TEST_ENVREF_REDIS_HOST" in gateway.loader.current.problems["routes/1"]
    # A route that never compiled in this process stands in as a 503, never a 404.
    await gateway.put("routes/2", {**route(7), "uri": "/other"})
    resp = await gateway.proxy.get("/other")
    assert resp.status == 503


async def test_an_llm_route_that_never_compiled_answers_an_openai_error(gateway) -> None:  # type: ignore[no-untyped-def]
    """Seed 000's route on a node without its key: the stand-in's 503 is still an LLM
    route's answer (OpenAI's error shape, X-Request-Id), so the SDKs report it as such."""
    fake = f"http://{gateway.fake_address}"
    await gateway.put(
        "routes/1",
        {
            "uri": "/chat",
            "plugins": {
                "ai-proxy": {
                    "provider": "openai",
                    "auth": {"header": {"Authorization": "Bearer $env://TEST_ENVREF_UNSET_KEY"}},
                    "override": {"endpoint": f"{fake}/v1/chat/completions"},
                }
            },
        },
    )
    resp = await gateway.proxy.post("/chat", json={"messages": []})
    assert resp.status == 503
    assert resp.headers["X-Request-Id"]
    error = (await resp.json())["error"]
    assert error["message"] == "route 1 is unavailable: its configuration does not compile"
    assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
    assert await gateway.fake_requests() == []
