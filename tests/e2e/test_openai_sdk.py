"""The official openai SDK against llmgate, with a consumer's key as its api_key."""

from __future__ import annotations

import openai
import pytest

CONSUMER_KEY = "consumer-key-0001"


@pytest.fixture
async def sdk(gateway):  # type: ignore[no-untyped-def]
    fake = f"http://{gateway.fake_address}"

    def ai_proxy(path: str, **extra_auth: str) -> dict:
        return {
            "provider": "openai-compatible",
            "auth": {"header": {"Authorization": "Bearer upstream-secret", **extra_auth}},
            "override": {"endpoint": f"{fake}{path}"},
        }

    key_auth = {"header": "Authorization"}
    await gateway.put(
        "consumers", {"username": "app", "plugins": {"key-auth": {"key": CONSUMER_KEY}}}
    )
    await gateway.put(
        "routes/chat",
        {
            "uri": "/v1/chat/completions",
            "plugins": {"key-auth": key_auth, "ai-proxy": ai_proxy("/v1/chat/completions")},
        },
    )
    await gateway.put(
        "routes/embeddings",
        {
            "uri": "/v1/embeddings",
            "plugins": {"key-auth": key_auth, "ai-proxy": ai_proxy("/v1/embeddings")},
        },
    )
    await gateway.put(
        "routes/limited",
        {
            "uri": "/limited/v1/chat/completions",
            "plugins": {
                "key-auth": key_auth,
                "ai-proxy": ai_proxy("/v1/chat/completions", **{"X-Fake-Status": "429"}),
            },
        },
    )
    base = str(gateway.proxy.make_url("/v1"))
    client = openai.AsyncOpenAI(api_key=CONSUMER_KEY, base_url=base, max_retries=0)
    yield client
    await client.close()


MESSAGES = [{"role": "user", "content": "Tell me about Pikachu"}]


async def test_chat_and_stream_give_the_same_content(sdk, gateway) -> None:  # type: ignore[no-untyped-def]
    completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    content = completion.choices[0].message.content
    assert content
    assert completion.usage.total_tokens > 0

    for stream_options in (None, {"include_usage": True}):
        extra = {} if stream_options is None else {"stream_options": stream_options}
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra
        )
        parts = []
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        assert len(parts) > 3
        assert "".join(parts) == content
        if stream_options is None:  # as from OpenAI: no usage unless asked for
            assert usage is None
        else:
            assert usage is not None and usage.total_tokens == completion.usage.total_tokens

    # The consumer's key never reaches the provider; the configured one does.
    seen = await gateway.fake_requests()
    assert all(r["headers"].get("authorization") == "Bearer upstream-secret" for r in seen)


async def test_embeddings(sdk) -> None:  # type: ignore[no-untyped-def]
    result = await sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) > 0


async def test_wrong_key_is_an_authentication_error(gateway, sdk) -> None:  # type: ignore[no-untyped-def]
    bad = openai.AsyncOpenAI(
        api_key="nope", base_url=str(gateway.proxy.make_url("/v1")), max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="m", messages=MESSAGES)
    await bad.close()


async def test_upstream_429_is_a_rate_limit_error(gateway, sdk) -> None:  # type: ignore[no-untyped-def]
    limited = openai.AsyncOpenAI(
        api_key=CONSUMER_KEY, base_url=str(gateway.proxy.make_url("/limited/v1")), max_retries=0
    )
    with pytest.raises(openai.RateLimitError):
        await limited.chat.completions.create(model="m", messages=MESSAGES)
    await limited.close()


async def test_other_endpoints_are_refused_not_reinterpreted(gateway, sdk) -> None:  # type: ignore[no-untyped-def]
    """A Responses API call has ``input`` and an image generation ``prompt``: on a route
    serving every ``/v1/`` path they must not come back as an embedding or a text
    completion."""
    fake = f"http://{gateway.fake_address}"
    await gateway.put(
        "routes/all",
        {
            "uri": "/v1/*",
            "plugins": {
                "key-auth": {"header": "Authorization"},
                "ai-proxy": {
                    "provider": "openai-compatible",
                    "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
                    "override": {"endpoint": f"{fake}/v1/chat/completions"},
                },
            },
        },
    )
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(model="gpt-4o-mini", input="Tell me about Pikachu")
    assert "/responses" in raised.value.message
    with pytest.raises(openai.BadRequestError):
        await sdk.images.generate(model="dall-e-3", prompt="Pikachu")
    with pytest.raises(openai.BadRequestError):
        await sdk.moderations.create(input="Pikachu")
    assert await gateway.fake_requests() == []


async def test_the_clients_organization_and_project_stay_at_the_gateway(gateway) -> None:  # type: ignore[no-untyped-def]
    """The SDK sends OpenAI-Organization / OpenAI-Project when they are set (also from
    OPENAI_ORG_ID / OPENAI_PROJECT_ID in the environment): next to the gateway's key they would
    pick another account to bill, or make the provider refuse the key (mismatched_organization).
    The route's ``auth.header`` says which ones to send."""
    fake = f"http://{gateway.fake_address}"
    auth = {"Authorization": "Bearer upstream-secret", "OpenAI-Project": "proj_gateway"}
    await gateway.put(
        "routes/org",
        {
            "uri": "/org/v1/chat/completions",
            "plugins": {
                "ai-proxy": {
                    "provider": "openai-compatible",
                    "auth": {"header": auth},
                    "override": {"endpoint": f"{fake}/v1/chat/completions"},
                }
            },
        },
    )
    client = openai.AsyncOpenAI(
        api_key="anything",
        base_url=str(gateway.proxy.make_url("/org/v1")),
        organization="org-client",
        project="proj_client",
        max_retries=0,
    )
    await client.chat.completions.create(model="m", messages=MESSAGES)
    await client.close()
    (seen,) = await gateway.fake_requests()
    assert "openai-organization" not in seen["headers"]
    assert seen["headers"]["openai-project"] == "proj_gateway"


async def test_an_endpoint_configured_for_another_api_is_used_as_it_is(gateway, sdk) -> None:  # type: ignore[no-untyped-def]
    """An operator who points ai-proxy at the moderation (or Responses) API itself gets those
    calls through to it, as before."""
    fake = f"http://{gateway.fake_address}"
    await gateway.put(
        "routes/moderations",
        {
            "uri": "/v1/moderations",
            "plugins": {
                "key-auth": {"header": "Authorization"},
                "ai-proxy": {
                    "provider": "openai-compatible",
                    "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
                    "override": {"endpoint": f"{fake}/v1/moderations"},
                },
            },
        },
    )
    raw = await sdk.moderations.with_raw_response.create(input="Pikachu")
    assert raw.status_code == 200
    (seen,) = await gateway.fake_requests()
    assert (seen["path"], seen["body"]) == ("/v1/moderations", {"input": "Pikachu"})
