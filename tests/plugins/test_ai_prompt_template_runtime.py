"""ai-prompt-template at run time: what the upstream (the fake, echoing unknown paths) receives."""

from __future__ import annotations

from typing import Any

import pytest

SYSTEM_PROMPT = (
    "Eres un experto en Pokémons, sabes sobre la historia pokémon, el comercio pokémon y todo "
    "lo que hay a respecto de pokémon"
)

QNA = {
    "name": "QnA with complexity",
    "template": {
        "model": "gpt-4",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Answer in {{complexity}}."},
            {"role": "user", "content": "Explain {{prompt}}."},
        ],
    },
}
ECHO = {"name": "echo", "template": {"messages": [{"role": "user", "content": "{{prompt}}"}]}}


async def _route(gateway, *templates: dict[str, Any], **conf: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/chat",
            "plugins": {"ai-prompt-template": {"templates": list(templates), **conf}},
            "upstream": gateway.upstream(),
        },
    )


async def _sent(gateway, body: Any) -> Any:  # type: ignore[no-untyped-def]
    """The body the upstream received for ``body`` (a JSON value)."""
    resp = await gateway.proxy.post("/chat", json=body)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["body"]


async def test_named_template_is_filled_from_the_body(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, QNA, ECHO)
    sent = await _sent(
        gateway,
        {
            "template_name": "QnA with complexity",
            "complexity": "brief",
            "prompt": 'quantum "spin"\nin one line',
            "model": "gpt-hacked",
            "extra": "dropped",
        },
    )
    # The template is the body: the client fills its blanks, it cannot add or replace fields.
    assert sent == {
        "model": "gpt-4",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Answer in brief."},
            {"role": "user", "content": 'Explain quantum "spin"\nin one line.'},
        ],
    }


async def test_values_keep_their_text(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, ECHO)
    for value, text in [
        ('¿Quién es Pikachu? 🐭 <b>&amp;</b> \\ "', '¿Quién es Pikachu? 🐭 <b>&amp;</b> \\ "'),
        (42, "42"),
        ({"a": [1, True]}, '{"a":[1,true]}'),
        (None, ""),
    ]:
        sent = await _sent(gateway, {"prompt": value})
        assert sent["messages"] == [{"role": "user", "content": text}]


async def test_missing_variable_is_empty(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, QNA)
    sent = await _sent(gateway, {"template_name": "QnA with complexity", "prompt": "x"})
    assert sent["messages"][0]["content"] == "Answer in ."


async def test_lone_template_needs_no_name(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, QNA)
    sent = await _sent(gateway, {"complexity": "detail", "prompt": "gravity"})
    assert sent["messages"][1]["content"] == "Explain gravity."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"prompt": "x"}, "template name is missing in request.", id="no-name"),
        pytest.param(
            {"template_name": "nope"}, "template: nope not configured.", id="unknown-name"
        ),
        pytest.param({"template_name": 7}, "template: 7 not configured.", id="name-not-string"),
        pytest.param(
            ["x"], "could not parse JSON request body: expected a JSON object", id="array"
        ),
    ],
)
async def test_bad_requests(gateway, body: Any, message: str) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, QNA, ECHO)
    resp = await gateway.proxy.post("/chat", json=body)
    assert resp.status == 400
    assert await resp.json() == {"message": message}
    assert await gateway.fake_requests() == []


async def test_body_that_is_not_json(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, ECHO)
    resp = await gateway.proxy.post("/chat", data=b"{not json")
    assert resp.status == 400
    assert (await resp.json())["message"].startswith("could not parse JSON request body: ")
    resp = await gateway.proxy.post("/chat")
    assert resp.status == 400
    assert await resp.json() == {"message": "could not get body: request body is empty"}
    assert await gateway.fake_requests() == []


async def test_body_over_max_req_body_size(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, ECHO, max_req_body_size=64)
    assert (await gateway.proxy.post("/chat", json={"prompt": "x" * 10})).status == 200
    resp = await gateway.proxy.post("/chat", json={"prompt": "x" * 100})
    assert resp.status == 413
    assert await resp.json() == {"error_msg": "request body too large"}


async def test_seed_000_chat_service(gateway) -> None:  # type: ignore[no-untyped-def]
    """Seed 000's FastAPI /chat as configuration: the template builds the chat request, the
    decorator puts the Pokémon-expert system prompt first, proxy-rewrite targets the API."""
    await gateway.put(
        "routes/chat",
        {
            "uri": "/chat",
            "methods": ["POST"],
            "plugins": {
                "ai-prompt-template": {
                    "templates": [
                        {
                            "name": "pokemon",
                            "template": {
                                "model": "gpt-3.5-turbo",
                                "messages": [{"role": "user", "content": "{{prompt}}"}],
                            },
                        }
                    ]
                },
                "ai-prompt-decorator": {"prepend": [{"role": "system", "content": SYSTEM_PROMPT}]},
                "proxy-rewrite": {"uri": "/v1/chat/completions"},
            },
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.post("/chat", json={"prompt": "¿Quién es Pikachu?"})
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]

    (seen,) = await gateway.fake_requests()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["body"] == {
        "model": "gpt-3.5-turbo",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "¿Quién es Pikachu?"},
        ],
    }


async def test_seed_000_chat_service_with_ai_proxy(gateway) -> None:  # type: ignore[no-untyped-def]
    """The same service with ai-proxy: its options (temperature 0, max_tokens 100) apply to the
    body the template and the decorator built."""
    await gateway.put(
        "routes/chat",
        {
            "uri": "/chat",
            "methods": ["POST"],
            "plugins": {
                "ai-prompt-template": {
                    "templates": [
                        {
                            "name": "pokemon",
                            "template": {
                                "model": "gpt-3.5-turbo",
                                "messages": [{"role": "user", "content": "{{prompt}}"}],
                            },
                        }
                    ]
                },
                "ai-prompt-decorator": {"prepend": [{"role": "system", "content": SYSTEM_PROMPT}]},
                "ai-proxy": {
                    "provider": "openai",
                    "auth": {"header": {"Authorization": "Bearer sk-test"}},
                    "options": {"model": "gpt-3.5-turbo", "temperature": 0, "max_tokens": 100},
                    "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
                },
            },
        },
    )
    resp = await gateway.proxy.post("/chat", json={"prompt": "¿Quién es Pikachu?"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["choices"][0]["message"]["content"]

    (seen,) = await gateway.fake_requests()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == "Bearer sk-test"
    body = seen["body"]
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "¿Quién es Pikachu?"},
    ]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("gpt-3.5-turbo", 0, 100)
