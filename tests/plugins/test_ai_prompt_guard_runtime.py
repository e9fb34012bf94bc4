"""ai-prompt-guard at run time: which prompts reach the upstream, and APISIX's 400 bodies."""

from __future__ import annotations

from typing import Any

import pytest

NOT_ALLOWED = {"message": "Request doesn't match allow patterns"}
DENIED = {"message": "Request contains prohibited content"}


async def _route(gateway, extra_plugins: dict | None = None, **conf: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/chat",
            "plugins": {"ai-prompt-guard": conf, **(extra_plugins or {})},
            "upstream": gateway.upstream(),
        },
    )


def _chat(*messages: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in messages]}


async def _status(gateway, body: Any) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await gateway.proxy.post("/chat", json=body)
    return resp.status, await resp.json()


CASES = [
    # (guard config, request body, refusal or None when it passes)
    pytest.param({"deny_patterns": ["password"]}, _chat(("user", "hi")), None, id="deny-pass"),
    pytest.param(
        {"deny_patterns": ["pass(word)?"]}, _chat(("user", "my password")), DENIED, id="deny"
    ),
    pytest.param({"allow_patterns": ["pokémon"]}, _chat(("user", "un pokémon")), None, id="al"),
    pytest.param({"allow_patterns": ["pokémon"]}, _chat(("user", "weather")), NOT_ALLOWED, id="a"),
    pytest.param(
        {"allow_patterns": ["(?i)^pikachu"], "deny_patterns": ["raichu"]},
        _chat(("user", "PIKACHU evolves into raichu")),
        DENIED,
        id="allow-then-deny",
    ),
    pytest.param(
        {"deny_patterns": ["secret"]},
        _chat(("user", "secret"), ("assistant", "no"), ("user", "ok")),
        None,
        id="history-not-checked",
    ),
    pytest.param(
        {"deny_patterns": ["secret"], "match_all_conversation_history": True},
        _chat(("user", "secret"), ("assistant", "no"), ("user", "ok")),
        DENIED,
        id="history-checked",
    ),
    pytest.param(
        {"deny_patterns": ["secret"], "match_all_conversation_history": True},
        _chat(("system", "secret"), ("user", "ok")),
        None,
        id="other-roles-not-checked",
    ),
    pytest.param(
        {
            "deny_patterns": ["secret"],
            "match_all_conversation_history": True,
            "match_all_roles": True,
        },
        _chat(("system", "secret"), ("user", "ok")),
        DENIED,
        id="all-roles",
    ),
    pytest.param(
        {"allow_patterns": ["never"]},
        _chat(("user", "x"), ("assistant", "y")),
        NOT_ALLOWED,
        id="last-user-message-checked-behind-an-assistant-one",
    ),
    pytest.param(
        {"deny_patterns": ["secret"]},
        _chat(("user", "the secret"), ("system", "be brief")),
        DENIED,
        id="last-user-message-checked-behind-a-system-one",
    ),
    pytest.param(
        {"deny_patterns": ["secret"], "match_all_roles": True},
        _chat(("user", "the secret"), ("assistant", "ok")),
        DENIED,
        id="all-roles-last-turn-checked",
    ),
    pytest.param(
        {"allow_patterns": ["never"]},
        _chat(("system", "x"), ("assistant", "y")),
        None,
        id="no-user-message-nothing-to-check",
    ),
    pytest.param(
        {"deny_patterns": ["a b"], "match_all_conversation_history": True},
        _chat(("user", "a"), ("user", "b")),
        DENIED,
        id="joined-by-spaces",
    ),
    pytest.param(
        {"deny_patterns": ["secret"]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a secret"}]}]},
        DENIED,
        id="content-parts",
    ),
    pytest.param({"deny_patterns": ["secret"]}, {"prompt": "the secret"}, DENIED, id="completions"),
    pytest.param(
        {"deny_patterns": ["secret"]}, {"input": ["a", "secret"]}, DENIED, id="embeddings"
    ),
    pytest.param({"deny_patterns": ["secret"]}, {"model": "m"}, None, id="not-llm-skipped"),
]


@pytest.mark.parametrize(("conf", "body", "refusal"), CASES)
async def test_guard(gateway, conf: dict, body: Any, refusal: dict | None) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, **conf)
    status, answer = await _status(gateway, body)
    if refusal is None:
        assert status == 200, answer
        assert answer["body"] == body
    else:
        assert (status, answer) == (400, refusal)
        assert await gateway.fake_requests() == []


async def test_fail_mode(gateway) -> None:  # type: ignore[no-untyped-def]
    # Unset: a body that is not JSON at all is refused; JSON that is no LLM request passes.
    await _route(gateway, deny_patterns=["x"])
    resp = await gateway.proxy.post("/chat", data=b"<not json>")
    assert resp.status == 400
    assert "unexpected character" in (await resp.json())["message"]
    assert (await _status(gateway, {"model": "m"}))[0] == 200
    assert len(await gateway.fake_requests()) == 1

    # Written explicitly, "skip" lets both through, as APISIX's default does.
    await _route(gateway, deny_patterns=["x"], fail_mode="skip")
    assert (await gateway.proxy.post("/chat", data=b"<not json>")).status == 200

    await _route(gateway, deny_patterns=["x"], fail_mode="error")
    resp = await gateway.proxy.post("/chat", data=b"<not json>")
    assert resp.status == 400
    assert "unexpected character" in (await resp.json())["message"]
    status, answer = await _status(gateway, {"model": "m"})
    assert (status, answer) == (
        400,
        {"message": "Request format not recognized by ai-prompt-guard"},
    )


LENIENT_BODIES = [
    # What Python's json.loads (a FastAPI or Flask upstream) reads and orjson refuses.
    pytest.param(b"\xef\xbb\xbf" + b'{"prompt": "the secret"}', id="utf8-bom"),
    pytest.param('{"prompt": "the secret"}'.encode("utf-16"), id="utf16-bom"),
    pytest.param('{"prompt": "the secret"}'.encode("utf-16-le"), id="utf16-le"),
    pytest.param('{"prompt": "the secret"}'.encode("utf-32"), id="utf32"),
    pytest.param(b'{"prompt": "the secret", "temperature": NaN}', id="nan"),
    pytest.param(b'{"prompt": "the secret", "top_p": -Infinity}', id="infinity"),
]


@pytest.mark.parametrize("raw", LENIENT_BODIES)
async def test_bodies_a_lenient_upstream_reads_are_checked(gateway, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    """The attacker's side: a body the guard could not parse used to pass unchecked."""
    await _route(gateway, deny_patterns=["secret"])
    resp = await gateway.proxy.post("/chat", data=raw, headers={"Content-Type": "application/json"})
    assert (resp.status, await resp.json()) == (400, DENIED)
    assert await gateway.fake_requests() == []


@pytest.mark.parametrize("raw", LENIENT_BODIES)
async def test_a_lenient_body_goes_upstream_as_the_strict_json_checked(gateway, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, deny_patterns=["forbidden"])
    resp = await gateway.proxy.post(
        "/chat", data=raw, headers={"Content-Type": "application/json; charset=utf-16"}
    )
    assert resp.status == 200
    answer = await resp.json()
    assert answer["body"]["prompt"] == "the secret"
    assert answer["headers"]["content-type"] == "application/json"
    assert answer["body"].get("temperature", None) is None  # NaN is sent as null


async def test_a_pattern_that_reaches_its_bound_refuses(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, deny_patterns=[r"(?=a)(a|aa)+b"])
    status, answer = await _status(gateway, {"prompt": "a" * 64})
    assert (status, answer) == (400, DENIED)
    await _route(gateway, allow_patterns=[r"(?=a)(a|aa)+b"])
    status, answer = await _status(gateway, {"prompt": "a" * 64})
    assert (status, answer) == (400, NOT_ALLOWED)
    assert await gateway.fake_requests() == []


async def test_empty_body(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, deny_patterns=["x"])
    resp = await gateway.proxy.post("/chat")
    assert (resp.status, await resp.json()) == (400, {"message": "Empty request body"})


async def test_guard_checks_the_decorated_and_templated_body(gateway) -> None:  # type: ignore[no-untyped-def]
    """Template and decorator rewrite the body before the guard's access phase sees it."""
    template = {
        "name": "t",
        "template": {"messages": [{"role": "user", "content": "Tell me about {{topic}}"}]},
    }
    plugins = {
        "ai-prompt-template": {"templates": [template]},
        "ai-prompt-decorator": {"append": [{"role": "user", "content": "in one word"}]},
    }
    # Only the last message is checked: the appended one.
    await _route(gateway, plugins, allow_patterns=["^in one word$"], deny_patterns=["secret"])
    status, answer = await _status(gateway, {"topic": "the secret"})
    assert status == 200, answer
    assert answer["body"]["messages"][0]["content"] == "Tell me about the secret"

    await _route(
        gateway,
        plugins,
        deny_patterns=["Tell me about secret"],
        match_all_conversation_history=True,
    )
    assert await _status(gateway, {"topic": "secret"}) == (400, DENIED)


async def test_max_req_body_size_refuses_larger_bodies(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, deny_patterns=["password"], max_req_body_size=100)
    status, _ = await _status(gateway, _chat(("user", "x" * 200)))
    assert 400 <= status < 500
    assert await gateway.fake_requests() == []
    assert (await _status(gateway, _chat(("user", "hi"))))[0] == 200
