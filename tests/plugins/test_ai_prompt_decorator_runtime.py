"""ai-prompt-decorator at run time: what the upstream (the fake, echoing unknown paths) receives."""

from __future__ import annotations

from typing import Any

SYSTEM = {"role": "system", "content": "You are a mathematician."}
FIRST = {"role": "user", "content": "Answer briefly."}
LAST = {"role": "system", "content": "End with an emoji."}
USER = {"role": "user", "content": "What is 1+1?"}


async def _route(gateway, **conf: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/chat",
            "plugins": {"ai-prompt-decorator": conf},
            "upstream": gateway.upstream(),
        },
    )


async def _sent(gateway, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
    resp = await gateway.proxy.post("/chat", **kwargs)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["body"]


async def test_prepend_and_append_around_the_messages(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, prepend=[SYSTEM, FIRST], append=[LAST])
    sent = await _sent(
        gateway, json={"model": "m", "messages": [USER], "stream": False, "temperature": 0.5}
    )
    assert sent == {
        "model": "m",
        "messages": [SYSTEM, FIRST, USER, LAST],
        "stream": False,
        "temperature": 0.5,
    }


async def test_prepend_only_and_append_only(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, prepend=[SYSTEM])
    assert (await _sent(gateway, json={"messages": [USER]}))["messages"] == [SYSTEM, USER]
    await _route(gateway, append=[LAST])
    assert (await _sent(gateway, json={"messages": [USER]}))["messages"] == [USER, LAST]


async def test_unicode_survives(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, prepend=[{"role": "system", "content": "Eres un experto en Pokémons"}])
    user = {"role": "user", "content": 'Pikachu "ピカチュウ"\n🐭'}
    sent = await _sent(gateway, json={"messages": [user]})
    assert sent["messages"] == [{"role": "system", "content": "Eres un experto en Pokémons"}, user]


async def test_body_without_messages_is_unchanged(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, prepend=[SYSTEM], append=[LAST])
    for body in ({"model": "m", "input": "embed me"}, {"prompt": "complete me"}, [1, 2]):
        assert await _sent(gateway, json=body) == body


async def test_bad_bodies_get_400(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, prepend=[SYSTEM])
    resp = await gateway.proxy.post("/chat", data=b'{"messages": [')
    assert resp.status == 400
    assert (await resp.json())["message"].startswith("could not parse JSON request body: ")
    resp = await gateway.proxy.post("/chat")
    assert resp.status == 400
    assert await resp.json() == {"message": "could not get body: request body is empty"}
    assert await gateway.fake_requests() == []


async def test_consumer_decorator_runs_after_the_routes(gateway) -> None:  # type: ignore[no-untyped-def]
    """As in APISIX, the route's rewrite phases run before the consumer is known; the
    consumer's decorator then runs on the body the route's one wrote."""
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {"key-auth": {"key": "jack-key"}, "ai-prompt-decorator": {"append": [LAST]}},
        },
    )
    await gateway.put(
        "routes/1",
        {
            "uri": "/chat",
            "plugins": {"key-auth": {}, "ai-prompt-decorator": {"prepend": [SYSTEM]}},
            "upstream": gateway.upstream(),
        },
    )
    sent = await _sent(gateway, json={"messages": [USER]}, headers={"apikey": "jack-key"})
    assert sent["messages"] == [SYSTEM, USER, LAST]


async def test_max_req_body_size_refuses_larger_bodies(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, prepend=[SYSTEM], max_req_body_size=100)
    big = {"messages": [{"role": "user", "content": "x" * 200}]}
    resp = await gateway.proxy.post("/chat", json=big)
    assert 400 <= resp.status < 500, await resp.text()
    assert await gateway.fake_requests() == []
    assert (await _sent(gateway, json={"messages": [USER]}))["messages"] == [SYSTEM, USER]
