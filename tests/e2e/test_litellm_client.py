"""litellm as a client of llmgate, sync and async, against a real ``llmgate serve``: the
gateway's own 401 and 429 become litellm's AuthenticationError and RateLimitError with the
gateway's message.

A 403 becomes ``litellm.APIError`` with ``status_code`` 403 and the gateway's message: litellm's
mapping for OpenAI-compatible endpoints (``model="openai/..."``, ``exception_mapping_utils.
_map_openai_exception``) has no 403 case, so any 403 from such an endpoint, OpenAI's own
included, is an APIError there; its generic status mapping (other providers) is the one that
gives PermissionDeniedError.  What the gateway controls, the reason, is intact."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# litellm fetches a model price map from the network at import unless told to use its own copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm

from tests.net import LiveGateway

KEY = "app-key-0001"
MESSAGES = [{"role": "user", "content": "Tell me about Pikachu"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("litellm")) as gw:
        ai_proxy = {
            "provider": "openai-compatible",
            "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
            "options": {"model": "gpt-4o-mini"},
            "override": {"endpoint": f"http://{gw.fake_address}/v1/chat/completions"},
        }
        auth = {"key-auth": {"header": "Authorization"}}
        gw.put("consumers/app", {"username": "app", "plugins": {"key-auth": {"key": KEY}}})
        gw.put("routes/llm", {"uri": "/v1/*", "plugins": {**auth, "ai-proxy": ai_proxy}})
        gw.put(
            "routes/restricted",
            {
                "uri": "/restricted/v1/*",
                "plugins": {
                    **auth,
                    "consumer-restriction": {"whitelist": ["someone-else"]},
                    "ai-proxy": ai_proxy,
                },
            },
        )
        limit = {"count": 1, "time_window": 60, "rejected_code": 429, "key": "consumer_name"}
        gw.put(
            "routes/limited",
            {
                "uri": "/limited/v1/*",
                "plugins": {**auth, "limit-count": limit, "ai-proxy": ai_proxy},
            },
        )
        yield gw


def call(live: LiveGateway, prefix: str = "", key: str = KEY) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": f"{live.gw.proxy_url}{prefix}/v1",
        "api_key": key,
        "num_retries": 0,
        "max_retries": 0,
    }


def test_a_completion_goes_through(live: LiveGateway) -> None:
    answer = litellm.completion(**call(live))
    assert answer.choices[0].message.content.startswith("This is a fake reply")
    assert answer.usage.total_tokens > 0


def test_a_wrong_key_is_an_authentication_error(live: LiveGateway) -> None:
    with pytest.raises(litellm.AuthenticationError) as raised:
        litellm.completion(**call(live, key="nope"))
    assert "Invalid API key in request" in str(raised.value)
    assert raised.value.status_code == 401


async def test_a_refused_consumer_keeps_its_reason(live: LiveGateway) -> None:
    with pytest.raises(litellm.APIError) as raised:
        await litellm.acompletion(**call(live, "/restricted"))
    assert raised.value.status_code == 403
    assert "The consumer_name is forbidden." in str(raised.value)


async def test_rate_limit_maps_to_rate_limit_error_async(live: LiveGateway) -> None:
    await litellm.acompletion(**call(live, "/limited"))  # spends the window
    with pytest.raises(litellm.RateLimitError) as raised:
        await litellm.acompletion(**call(live, "/limited"))
    assert "too many requests" in str(raised.value)
    assert raised.value.status_code == 429
