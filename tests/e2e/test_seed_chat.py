"""Seed 000's FastAPI `/chat` service, rebuilt as llmgate configuration only.

POST /chat {"prompt": ...} -> a fixed Pokémon-expert system prompt first, the user's prompt
second, temperature 0, max_tokens 100, the OpenAI key from llmgate's environment, CORS.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.processes import fake_upstream_process, llmgate_serve
from tests.support import ADMIN_KEY

SYSTEM_PROMPT = (
    "Eres un experto en Pokémons, sabes sobre la historia pokémon, el comercio pokémon y todo "
    "lo que hay a respecto de pokémon"
)
OPENAI_KEY = "sk-test-0123456789abcdef"


def chat_route(fake_port: int) -> dict:
    return {
        "uri": "/chat",
        "methods": ["POST", "OPTIONS"],
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
                "auth": {"header": {"Authorization": "Bearer $env://OPENAI_API_KEY"}},
                "options": {
                    "model": "gpt-3.5-turbo",
                    "temperature": 0,
                    "max_tokens": 100,
                    "top_p": 1,
                    "frequency_penalty": 0,
                    "presence_penalty": 0,
                },
                "override": {"endpoint": f"http://127.0.0.1:{fake_port}/v1/chat/completions"},
            },
            "cors": {"allow_origins": "http://localhost:3000", "allow_methods": "POST,OPTIONS"},
        },
    }


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers=headers or {},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_chat_service_as_configuration(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    with fake_upstream_process() as fake, llmgate_serve(tmp_path, env=env) as gw:
        status, _, _ = call(
            f"{gw.admin_url}/apisix/admin/routes/chat",
            "PUT",
            chat_route(fake),
            {"X-API-KEY": ADMIN_KEY},
        )
        assert status == 201
        status, headers, body = call(
            f"{gw.proxy_url}/chat",
            "POST",
            {"prompt": "¿Quién es Pikachu?"},
            {"Origin": "http://localhost:3000", "Content-Type": "application/json"},
        )
        assert status == 200, body
        answer = json.loads(body)
        assert answer["choices"][0]["message"]["content"]
        assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"

        with urllib.request.urlopen(f"http://127.0.0.1:{fake}/__fake/requests") as resp:
            seen = json.load(resp)["requests"][-1]
        assert seen["path"] == "/v1/chat/completions"
        assert seen["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
        sent = seen["body"]
        assert sent["messages"] == [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "¿Quién es Pikachu?"},
        ]
        assert sent["temperature"] == 0 and sent["max_tokens"] == 100
        assert sent["model"] == "gpt-3.5-turbo"

        # A browser's preflight is answered by the gateway.
        status, headers, _ = call(
            f"{gw.proxy_url}/chat",
            "OPTIONS",
            None,
            {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"

        # No admin GET shows the key.
        for path in ("routes/chat", "routes"):
            _, _, shown = call(
                f"{gw.admin_url}/apisix/admin/{path}", headers={"X-API-KEY": ADMIN_KEY}
            )
            assert OPENAI_KEY.encode() not in shown
            assert b"$env://OPENAI_API_KEY" in shown
    assert OPENAI_KEY not in gw.output()
