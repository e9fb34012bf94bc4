"""LLM routes as the official openai SDK (sync and async) sees them, against a real
``llmgate serve`` and ``llmgate fake-upstream``: OpenAI-shaped gateway errors, Retry-After
honoured by the SDK's own retry, ``/models``, ``X-Request-Id`` in responses, access logs and
usage records, cost per consumer and model, cache hits, a plain route's streamed usage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.net import LiveGateway, RawClient, http_json, metric_total, request_bytes, wait_for

KEY = "app-key-0001"
OTHER_KEY = "other-key-0002"
MESSAGES = [{"role": "user", "content": "Tell me about Pikachu"}]
PRICES = {
    "currency": "USD",
    "prices": [
        {
            "provider": "openai-compatible",
            "model": "gpt-4o-mini",
            "prompt": 0.15,
            "completion": 0.6,
        },
        {"model": "gpt-3.5-turbo*", "prompt": 0.5, "completion": 1.5},
        {"model": "text-embedding-3-small", "prompt": 0.02},
    ],
}


def price(model: str, prompt: int, completion: int) -> Decimal:
    """What the table above says ``prompt`` + ``completion`` tokens of ``model`` cost."""
    rates = {
        "gpt-4o-mini": ("0.15", "0.6"),
        "gpt-3.5-turbo": ("0.5", "1.5"),
        "text-embedding-3-small": ("0.02", "0"),
    }[model]
    return (Decimal(rates[0]) * prompt + Decimal(rates[1]) * completion) / 10**6


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("llm-routes")
    (workdir / "prices.json").write_text(json.dumps(PRICES))
    env = {"LLMGATE_PRICES": str(workdir / "prices.json")}
    with LiveGateway(workdir, env=env) as gw:
        fake = f"http://{gw.fake_address}"
        log = str(workdir / "access.log")

        def ai_proxy(**extra: Any) -> dict[str, Any]:
            return {
                "provider": "openai-compatible",
                "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
                "options": {"model": "gpt-4o-mini"},
                "override": {"endpoint": f"{fake}/v1/chat/completions"},
                **extra,
            }

        auth = {"key-auth": {"header": "Authorization"}, "file-logger": {"path": log}}
        gw.put("consumers/app", {"username": "app", "plugins": {"key-auth": {"key": KEY}}})
        gw.put(
            "consumers/other", {"username": "other", "plugins": {"key-auth": {"key": OTHER_KEY}}}
        )
        gw.put("routes/llm", {"uri": "/v1/*", "plugins": {**auth, "ai-proxy": ai_proxy()}})
        limit = {"count": 1, "time_window": 2, "rejected_code": 429, "key": "consumer_name"}
        gw.put(
            "routes/limited",
            {
                "uri": "/limited/v1/*",
                "plugins": {**auth, "limit-count": limit, "ai-proxy": ai_proxy()},
            },
        )
        restriction = {"whitelist": ["other"]}
        gw.put(
            "routes/restricted",
            {
                "uri": "/restricted/v1/*",
                "plugins": {**auth, "consumer-restriction": restriction, "ai-proxy": ai_proxy()},
            },
        )
        cache = {"cache_strategy": "memory", "cache_method": ["POST"], "cache_key": ["$uri"]}
        gw.put(
            "routes/cached",
            {
                "uri": "/cached/v1/*",
                "plugins": {**auth, "proxy-cache": cache, "ai-proxy": ai_proxy()},
            },
        )
        gw.put(
            "routes/slashed",
            {
                "uri": "/slashed/v1/*",
                "plugins": {**auth, "ai-proxy": ai_proxy(options={"model": "openai/gpt-4o"})},
            },
        )
        gw.put(
            "routes/cached-streams",
            {
                "uri": "/cached-streams/v1/*",
                "plugins": {**auth, "proxy-cache": cache, "ai-proxy": ai_proxy()},
            },
        )
        instances = [
            {**ai_proxy(), "name": "fast", "weight": 1},
            {**ai_proxy(options={"model": "gpt-3.5-turbo"}), "name": "cheap", "weight": 1},
            {**ai_proxy(options={}), "name": "named-model", "weight": 1},
        ]
        gw.put(
            "routes/multi",
            {"uri": "/multi/v1/*", "plugins": {**auth, "ai-proxy-multi": {"instances": instances}}},
        )
        # Azure OpenAI at an api-version older than stream_options (2024-09-01-preview).
        azure = {
            "provider": "azure-openai",
            "auth": {"header": {"api-key": "azure-secret"}},
            "override": {
                "endpoint": f"{fake}/openai/deployments/gpt4/chat/completions"
                "?api-version=2024-06-01"
            },
        }
        gw.put(
            "routes/azure-old",
            {"uri": "/azure-old/v1/*", "plugins": {**auth, "ai-proxy": azure}},
        )
        # The seed blog's kind of route: a plain upstream speaking OpenAI, flagged as such.
        gw.put(
            "routes/plain",
            {
                "uri": "/plain/v1/*",
                "plugins": {
                    **auth,
                    "proxy-rewrite": {"regex_uri": ["^/plain(/.*)", "$1"]},
                    "openai-compatible": {"models": ["gpt-3.5-turbo"]},
                },
                "upstream": gw.upstream(),
            },
        )
        # A plain route without the flag keeps APISIX's error bodies.
        gw.put(
            "routes/apisix",
            {"uri": "/apisix/*", "plugins": auth, "upstream": gw.upstream()},
        )
        yield gw


def log_entries(live: LiveGateway) -> list[dict[str, Any]]:
    path = live.workdir / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def log_entry(live: LiveGateway, request_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((e for e in log_entries(live) if e.get("request_id") == request_id), None)

    return wait_for(find, f"the access log line of {request_id}")  # type: ignore[no-any-return]


def sdk(live: LiveGateway, prefix: str = "", key: str = KEY, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(api_key=key, base_url=f"{live.gw.proxy_url}{prefix}/v1", **options)


def async_sdk(
    live: LiveGateway, prefix: str = "", key: str = KEY, **options: Any
) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(api_key=key, base_url=f"{live.gw.proxy_url}{prefix}/v1", **options)


def scrape_until(live: LiveGateway, name: str, **labels: str) -> dict[str, float]:
    """A scrape in which ``name`` has a non-zero series with ``labels`` (metrics are sampled
    from the workers' files: wait for it)."""

    def found() -> dict[str, float] | None:
        metrics = live.metric_series()
        return metrics if metric_total(metrics, name, **labels) else None

    return wait_for(found, f"{name} {labels}")  # type: ignore[no-any-return]


def limited_entries(live: LiveGateway, before: int, count: int) -> list[dict[str, Any]]:
    """The ``count`` access log entries of the limited route after its first ``before`` ones,
    once they are written (the logger writes in batches)."""

    def found() -> list[dict[str, Any]] | None:
        entries = [e for e in log_entries(live) if e["route_id"] == "limited"][before:]
        return entries if len(entries) >= count else None

    return wait_for(found, "the limited route's log lines")  # type: ignore[no-any-return]


def limited_count(live: LiveGateway) -> int:
    """How many entries of the limited route are written, once the writes settled."""
    time.sleep(1.5)  # the file-logger's batches
    return len([e for e in log_entries(live) if e["route_id"] == "limited"])


def usage(live: LiveGateway, **query: str) -> dict[str, Any]:
    status, body = live.admin("GET", "usage?" + "&".join(f"{k}={v}" for k, v in query.items()))
    assert status == 200, body
    return body  # type: ignore[no-any-return]


# --- errors ------------------------------------------------------------------------------------


def test_wrong_key_is_an_authentication_error_with_the_gateways_reason(live: LiveGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk(live, key="nope").chat.completions.create(model="m", messages=MESSAGES)
    error = raised.value
    assert error.status_code == 401
    assert error.message == "Error code: 401 - Invalid API key in request"
    assert error.body == {
        "message": "Invalid API key in request",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert (error.code, error.type) == ("invalid_api_key", "authentication_error")
    assert error.request_id  # X-Request-Id, on a response the gateway made itself
    assert log_entry(live, error.request_id)["response"]["status"] == 401


async def test_async_wrong_key_and_missing_key(live: LiveGateway) -> None:
    client = async_sdk(live, key="nope")
    with pytest.raises(openai.AuthenticationError) as raised:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    assert raised.value.message == "Error code: 401 - Invalid API key in request"
    assert raised.value.code == "invalid_api_key"
    await client.close()
    status, body = http_json("POST", f"{live.gw.proxy_url}/v1/chat/completions", {})
    assert status == 401
    assert body == {
        "error": {
            "message": "Missing API key in request",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_consumer_restriction_is_a_permission_error(live: LiveGateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        sdk(live, "/restricted").chat.completions.create(model="m", messages=MESSAGES)
    assert raised.value.message == "Error code: 403 - The consumer_name is forbidden."
    assert (raised.value.code, raised.value.type) == ("permission_denied", "permission_error")
    # The allowed consumer goes through.
    answer = sdk(live, "/restricted", key=OTHER_KEY).chat.completions.create(
        model="m", messages=MESSAGES
    )
    assert answer.choices[0].message.content


def test_plain_routes_keep_apisix_bodies(live: LiveGateway) -> None:
    status, body = http_json("GET", f"{live.gw.proxy_url}/apisix/echo")
    assert (status, body) == (401, {"message": "Missing API key in request"})
    status, body = http_json("GET", f"{live.gw.proxy_url}/nowhere")
    assert (status, body) == (404, {"error_msg": "404 Route Not Found"})


def test_sdk_retry_waits_for_retry_after(live: LiveGateway) -> None:
    """limit-count's 429 is a RateLimitError; the SDK's own retry waits Retry-After."""
    client = sdk(live, "/limited")
    with pytest.raises(openai.RateLimitError) as raised:
        for _ in range(3):
            client.chat.completions.create(model="m", messages=MESSAGES)
    error = raised.value
    assert (error.code, error.type) == ("rate_limit_exceeded", "rate_limit_error")
    assert error.message == "Error code: 429 - too many requests"
    retry_after = int(error.response.headers["Retry-After"])
    assert 1 <= retry_after <= 2

    before = limited_count(live)
    time.sleep(2.1)  # a fresh window
    retrying = sdk(live, "/limited", max_retries=1)
    retrying.chat.completions.create(model="m", messages=MESSAGES)  # spends the window
    raw = retrying.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.http_response.status_code == 200  # after one 429 and the wait it asked for
    refused, retried = limited_entries(live, before, 3)[1:]
    assert refused["response"]["status"] == 429
    assert retried["response"]["status"] == 200
    waited = int(refused["response"]["headers"]["retry-after"])
    assert retried["start_time"] - refused["start_time"] >= waited * 1000 - 5


def test_a_providers_429_carries_retry_after(live: LiveGateway) -> None:
    """SPEC §6: 429s on LLM routes carry Retry-After, a provider's too (the fake sends none):
    the SDK's retry waits what the gateway says; the provider's body is relayed as sent."""
    fake = f"http://{live.fake_address}"
    target = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer upstream-secret", "X-Fake-Status": "429"}},
        "override": {"endpoint": f"{fake}/v1/chat/completions"},
    }
    auth = {"key-auth": {"header": "Authorization"}}
    live.put(
        "routes/provider-429",
        {"uri": "/provider-429/v1/*", "plugins": {**auth, "ai-proxy": target}},
    )
    instances = [{**target, "name": "a", "weight": 1}, {**target, "name": "b", "weight": 1}]
    live.put(
        "routes/provider-429-multi",
        {
            "uri": "/provider-429-multi/v1/*",
            "plugins": {**auth, "ai-proxy-multi": {"instances": instances}},
        },
    )
    for prefix in ("/provider-429", "/provider-429-multi"):
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as raised:
                sdk(live, prefix).chat.completions.create(
                    model="m", messages=MESSAGES, stream=stream
                )
            headers = raised.value.response.headers
            assert headers["Retry-After"] == "1", (prefix, stream)
            assert headers["X-Request-Id"]
            assert "Fake upstream error" in raised.value.message


async def test_async_sdk_retry_waits_for_retry_after(live: LiveGateway) -> None:
    before = limited_count(live)
    await asyncio.sleep(2.1)
    client = async_sdk(live, "/limited", max_retries=1)
    began = time.monotonic()
    await client.chat.completions.create(model="m", messages=MESSAGES)
    second = time.monotonic()
    await client.chat.completions.create(model="m", messages=MESSAGES)
    refused = limited_entries(live, before, 3)[1]
    assert refused["response"]["status"] == 429
    waited = int(refused["response"]["headers"]["retry-after"])
    assert time.monotonic() - second >= waited
    assert second - began < waited  # the first call was not held back
    await client.close()


# --- /models, request ids ------------------------------------------------------------------------


def test_models_list_and_retrieve(live: LiveGateway) -> None:
    client = sdk(live)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    assert client.models.retrieve("gpt-4o-mini").owned_by == "openai-compatible"
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-5")
    assert raised.value.code == "model_not_found"
    multi = sdk(live, "/multi")
    assert [m.id for m in multi.models.list()] == ["gpt-4o-mini", "gpt-3.5-turbo", "named-model"]
    plain = sdk(live, "/plain")
    assert [m.id for m in plain.models.list()] == ["gpt-3.5-turbo"]
    with pytest.raises(openai.AuthenticationError):
        sdk(live, key="nope").models.list()  # the list is the consumer's: auth first


def test_a_model_id_with_a_slash_is_retrieved(live: LiveGateway) -> None:
    """The SDK sends ``models.retrieve("openai/gpt-4o")`` as ``/models/openai%2Fgpt-4o``."""
    client = sdk(live, "/slashed")
    assert [m.id for m in client.models.list()] == ["openai/gpt-4o"]
    assert client.models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("openai/gpt-5")


def test_models_list_with_a_trailing_slash(live: LiveGateway) -> None:
    """``GET …/models/`` is the list too, not an LLM request missing its body (400)."""
    auth = {"Authorization": f"Bearer {KEY}"}
    for prefix, models in (("", ["gpt-4o-mini"]), ("/multi", ["gpt-4o-mini", "gpt-3.5-turbo"])):
        status, body, _ = live.get(f"{prefix}/v1/models/", auth)
        assert status == 200, body
        assert body["object"] == "list" and [m["id"] for m in body["data"]][:2] == models


async def test_async_models_list(live: LiveGateway) -> None:
    client = async_sdk(live, "/multi")
    assert [m.id async for m in client.models.list()][:1] == ["gpt-4o-mini"]
    await client.close()


def test_request_id_in_response_access_log_and_usage_record(live: LiveGateway) -> None:
    raw = sdk(live).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    request_id = raw.headers["x-request-id"]
    completion = raw.parse()
    assert completion._request_id == request_id
    entry = log_entry(live, request_id)
    assert entry["llm"]["total_tokens"] == completion.usage.total_tokens

    def record() -> dict[str, Any] | None:
        status, body = live.admin("GET", f"usage/calls?request_id={request_id}")
        assert status == 200, body
        return body["list"][0] if body["list"] else None

    found = wait_for(record, "the usage record")
    assert (found["consumer"], found["route"], found["model"]) == ("app", "llm", "gpt-4o-mini")
    assert found["prompt_tokens"] == completion.usage.prompt_tokens
    # A client's own valid id is kept; an invalid one is replaced.
    raw = sdk(live).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES, extra_headers={"X-Request-Id": "support-ticket-42"}
    )
    assert raw.headers["x-request-id"] == "support-ticket-42"
    raw = sdk(live).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES, extra_headers={"X-Request-Id": "bad id\twith spaces"}
    )
    assert raw.headers["x-request-id"] != "bad id\twith spaces"


# --- streams as OpenAI sends them ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/multi", "/cached-streams"])
@pytest.mark.parametrize("options", [None, {"include_usage": False}])
def test_a_stream_that_did_not_ask_for_usage_gets_none_and_is_accounted(
    live: LiveGateway, prefix: str, options: dict[str, Any] | None
) -> None:
    """OpenAI sends the usage chunk (``choices: []``) only to a client that set
    ``stream_options.include_usage``: SDK code doing ``chunk.choices[0]`` relies on it.  The
    gateway asks for the usage all the same, and records it."""
    client = sdk(live, prefix)
    extra = {} if options is None else {"stream_options": options}
    content = f"stream {prefix} {options}"
    statuses = ["MISS", "HIT"] if prefix == "/cached-streams" else [None]
    for status in statuses:  # the MISS, then its replay
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": content}], stream=True, **extra
        )
        assert raw.headers.get("apisix-cache-status") == status
        chunks = list(raw.parse())
        assert chunks and all(chunk.choices for chunk in chunks)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        assert text.startswith("This is a fake reply")
        assert all("usage" not in chunk.to_dict() for chunk in chunks)  # not even null
        llm = log_entry(live, raw.headers["x-request-id"])["llm"]
        assert llm["stream"] is True
        assert llm["prompt_tokens"] > 0 and llm["completion_tokens"] > 0
    seen = live.fake_requests()[-1]
    assert seen["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("prefix", ["", "/multi"])
def test_a_stream_that_asked_for_usage_ends_with_it(live: LiveGateway, prefix: str) -> None:
    client = sdk(live, prefix)
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    *text, last = chunks
    assert text and all(chunk.choices and chunk.usage is None for chunk in text)
    assert last.choices == [] and last.usage is not None
    llm = log_entry(live, raw.headers["x-request-id"])["llm"]
    assert last.usage.total_tokens == llm["total_tokens"] > 0
    # Legacy completions alike.
    stream = client.completions.create(model="m", prompt="Say hi", stream=True)
    assert all(chunk.choices for chunk in stream)
    stream = client.completions.create(
        model="m", prompt="Say hi", stream=True, stream_options={"include_usage": True}
    )
    *text, last = list(stream)
    assert text and last.choices == [] and last.usage is not None


@pytest.mark.parametrize("prefix", ["", "/multi"])
def test_stream_options_without_a_stream_is_the_providers_400(
    live: LiveGateway, prefix: str
) -> None:
    """OpenAI refuses ``stream_options`` on a call that does not stream: the gateway sends the
    body as it is (nothing added, nothing taken) and relays the refusal."""
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(live, prefix).chat.completions.create(
            model="m", messages=MESSAGES, stream_options={"include_usage": True}
        )
    assert raised.value.param == "stream_options"
    assert live.fake_requests()[-1]["body"]["stream_options"] == {"include_usage": True}


# --- cost and accounting ------------------------------------------------------------------------


def test_cost_per_consumer_and_model_streams_included(live: LiveGateway) -> None:
    """A consumer of its own: its usage row, and its llm_cost series, hold exactly the price
    table times the tokens the fake upstream reported, the stream's included."""
    live.put("consumers/payer", {"username": "payer", "plugins": {"key-auth": {"key": "pay-3"}}})
    client = sdk(live, key="pay-3")
    prompt = completion = 0
    for text in ("one", "two words", "three whole words"):
        answer = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": text}]
        )
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    streamed = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(streamed) == 1
    prompt += streamed[0].prompt_tokens
    completion += streamed[0].completion_tokens
    expected = price("gpt-4o-mini", prompt, completion)
    assert expected > 0

    def summary() -> dict[str, Any] | None:
        body = usage(live, consumer="payer", route="llm", model="gpt-4o-mini", group_by="model")
        return body if body["total"]["requests"] >= 4 else None

    total = wait_for(summary, "the usage flush")["total"]
    assert total["requests"] == 4
    assert (total["prompt_tokens"], total["completion_tokens"]) == (prompt, completion)
    assert Decimal(str(total["cost"])) == expected

    def metric() -> float:
        value = metric_total(
            live.metric_series(),
            "llmgate_llm_cost",
            consumer="payer",
            llm_model="gpt-4o-mini",
            route_id="llm",
        )
        return value if abs(value - float(expected)) < 1e-12 else 0.0

    assert wait_for(metric, "llm_cost to match the price table") == pytest.approx(float(expected))


def test_cache_hit_is_accounted_with_zero_cost(live: LiveGateway) -> None:
    client = sdk(live, "/cached")
    messages = [{"role": "user", "content": "cache me"}]
    first = client.chat.completions.with_raw_response.create(model="m", messages=messages)
    second = client.chat.completions.with_raw_response.create(model="m", messages=messages)
    assert first.headers["apisix-cache-status"] == "MISS"
    assert second.headers["apisix-cache-status"] == "HIT"
    served = second.parse().usage
    hit = log_entry(live, second.headers["x-request-id"])["llm"]
    assert hit["cache"] == "hit"
    assert hit["cost"] == 0
    assert hit["total_tokens"] == served.total_tokens
    miss = log_entry(live, first.headers["x-request-id"])["llm"]
    assert "cache" not in miss and miss["cost"] > 0

    def rows() -> list[dict[str, Any]] | None:
        body = usage(live, route="cached", group_by="cache")
        return body["list"] if len(body["list"]) == 2 else None

    miss_row, hit_row = wait_for(rows, "both usage rows")
    assert (miss_row["cache"], hit_row["cache"]) == ("miss", "hit")
    assert hit_row["cost"] == 0.0 and miss_row["cost"] > 0
    assert hit_row["total_tokens"] == served.total_tokens
    metrics = scrape_until(live, "llmgate_llm_cache_hit_tokens", route_id="cached")
    assert metric_total(metrics, "llmgate_llm_cache_hit_tokens", route_id="cached") == (
        served.total_tokens
    )


def test_request_llm_model_is_the_model_the_client_asked_for(live: LiveGateway) -> None:
    """As APISIX's ``request_llm_model`` (metric label and variable): the model the client's
    body named; ``llm_model`` is the one sent, here ai-proxy's ``options.model``."""
    sdk(live).chat.completions.create(model="client-choice", messages=MESSAGES)
    labels = {"request_llm_model": "client-choice", "llm_model": "gpt-4o-mini"}
    metrics = scrape_until(live, "llmgate_llm_prompt_tokens", route_id="llm", **labels)
    assert metric_total(metrics, "llmgate_llm_completion_tokens", route_id="llm", **labels) > 0


def test_embeddings_are_labelled_as_embeddings(live: LiveGateway) -> None:
    result = sdk(live).embeddings.with_raw_response.create(model="x", input=["a", "b"])
    entry = log_entry(live, result.headers["x-request-id"])
    assert entry["llm"]["request_type"] == "ai_embeddings"
    metrics = scrape_until(live, "llmgate_llm_prompt_tokens", request_type="ai_embeddings")
    assert (
        metric_total(metrics, "llmgate_llm_prompt_tokens", request_type="ai_chat", route_id="llm")
        > 0
    )


def test_plain_route_stream_shows_its_real_tokens(live: LiveGateway) -> None:
    """The client does not ask for usage: the gateway does, keeps it, and hides it."""
    client = sdk(live, "/plain")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-3.5-turbo", messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())
    assert chunks and all(chunk.usage is None for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("This is a fake reply")
    seen = live.fake_requests()[-1]
    assert seen["body"]["stream_options"] == {"include_usage": True}
    llm = log_entry(live, raw.headers["x-request-id"])["llm"]
    assert llm["completion_tokens"] > 0 and llm["prompt_tokens"] > 0
    assert Decimal(str(llm["cost"])) == price(
        "gpt-3.5-turbo", llm["prompt_tokens"], llm["completion_tokens"]
    )
    # A client that asks gets its usage chunk.
    asked = client.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert [c.usage.total_tokens for c in asked if c.usage is not None] == [llm["total_tokens"]]


def test_a_client_that_leaves_mid_stream_is_logged_with_the_bytes_sent(live: LiveGateway) -> None:
    """A 499's ``response.size`` (nginx's $bytes_sent) is what went out before the client left."""
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "X-Fake-Stream-Delay-Ms": "400",
    }
    with RawClient(live.gw.proxy_port) as client:
        client.send(request_bytes("POST", "/v1/chat/completions", headers, body.encode()))
        status, _, _, head = client.read_head()
        first = client.read_chunk()
        client.abort()
    assert status == 200 and first
    request_id = dict(head)["X-Request-Id"]
    entry = log_entry(live, request_id)
    assert entry["response"]["status"] == 499, entry
    assert entry["response"]["size"] > len(first), entry
    # The listener's port, though the connection was gone when the entry was made.
    assert entry["request"]["url"].endswith(f":{live.gw.proxy_port}/v1/chat/completions"), entry


# --- methods an endpoint does not take ----------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/multi"])
@pytest.mark.parametrize("path", ["/chat/completions", "/completions", "/embeddings"])
def test_a_get_or_delete_on_an_llm_endpoint_is_openais_405(
    live: LiveGateway, prefix: str, path: str
) -> None:
    """As api.openai.com: 405 ``Invalid method for URL (GET /v1/chat/completions)``, with the
    request's id, and no provider asked."""
    client = sdk(live, prefix)
    asked = len(live.fake_requests())
    for method in ("get", "delete"):
        with pytest.raises(openai.APIStatusError) as raised:
            getattr(client, method)(path, cast_to=object)
        error = raised.value
        assert error.status_code == 405
        full = f"{prefix}/v1{path}"
        assert error.message.endswith(f"Invalid method for URL ({method.upper()} {full})")
        assert error.body == {
            "message": f"Invalid method for URL ({method.upper()} {full})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        assert error.response.headers["allow"] == "POST"
        assert error.request_id
    assert len(live.fake_requests()) == asked


# --- upstream SSE line endings -------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["cr", "crlf"])
def test_a_stream_with_cr_or_crlf_line_endings_is_relayed_event_by_event(
    live: LiveGateway, newline: str
) -> None:
    """The SSE spec ends lines with CRLF, LF or a bare CR: each event goes on as soon as its
    empty line arrives (not held back until 1 MiB or the end), its usage hidden and counted."""
    client = sdk(live)
    delay_ms = 100
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        extra_headers={"X-Fake-Sse-Newline": newline, "X-Fake-Stream-Delay-Ms": str(delay_ms)},
    )
    stream = raw.parse()
    first = next(iter(stream))
    first_at = time.perf_counter() - started
    chunks = [first, *stream]
    total = time.perf_counter() - started
    assert len(chunks) > 5 and all(chunk.choices for chunk in chunks)
    assert all("usage" not in chunk.to_dict() for chunk in chunks)
    assert first_at < total - 3 * delay_ms / 1000
    llm = log_entry(live, raw.headers["x-request-id"])["llm"]
    assert llm["prompt_tokens"] > 0 and llm["completion_tokens"] > 0
    # A client that asked gets the usage chunk last, as from OpenAI.
    *text, last = list(
        client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Fake-Sse-Newline": newline},
        )
    )
    assert text and last.choices == [] and last.usage is not None


# --- Azure api-versions --------------------------------------------------------------------------


def test_an_old_azure_api_version_streams_without_stream_options(live: LiveGateway) -> None:
    """Azure refuses ``stream_options`` before api-version 2024-09-01-preview: the gateway does
    not add it there, so the stream works (it was a 400 before)."""
    chunks = list(
        sdk(live, "/azure-old").chat.completions.create(
            model="gpt-4", messages=MESSAGES, stream=True
        )
    )
    assert chunks and all(chunk.choices for chunk in chunks)
    seen = live.fake_requests()[-1]
    assert seen["path"] == "/openai/deployments/gpt4/chat/completions"
    assert "stream_options" not in seen["body"] and "model" not in seen["body"]


def test_an_old_azure_stream_records_an_estimate_of_its_tokens(live: LiveGateway) -> None:
    """Without ``stream_options`` no usage chunk comes: the stream is accounted at the estimate
    a budget charges (the prompt as sent, the text relayed), marked as one -- not 0 tokens."""
    raw = sdk(live, "/azure-old").chat.completions.with_raw_response.create(
        model="gpt-4", messages=MESSAGES, stream=True
    )
    request_id = raw.headers["x-request-id"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse())
    sent = live.fake_requests()[-1]["body_length"]
    llm = log_entry(live, request_id)["llm"]
    assert llm["usage_estimated"] is True
    assert llm["prompt_tokens"] == -(-sent // 4)
    assert llm["completion_tokens"] == -(-len(text) // 4) > 0
    line = stdout_access_line(live, request_id)
    assert f" llm_total_tokens={llm['total_tokens']} llm_usage_estimated=true" in line, line
    # A stream that brought its usage is not marked.
    raw = sdk(live).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES, stream=True
    )
    list(raw.parse())
    assert "usage_estimated" not in log_entry(live, raw.headers["x-request-id"])["llm"]


# --- the access log on standard output -------------------------------------------------------


def stdout_access_line(live: LiveGateway, request_id: str) -> str:
    """The standard-output access line naming ``request_id``."""

    def find() -> str | None:
        lines = live.log().splitlines()
        return next((line for line in lines if f" request_id={request_id} " in line), None)

    return wait_for(find, f"the stdout access line of {request_id}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("stream", [False, True])
def test_the_stdout_access_line_carries_route_model_and_tokens(
    live: LiveGateway, stream: bool
) -> None:
    """SPEC §4: every LLM response's usage is in the access log (per route, consumer and model):
    the default one on standard output too, after APISIX's fields, named as APISIX's
    variables (``$request_type``, ``$llm_model``, ``$llm_prompt_tokens``, ...)."""
    raw = sdk(live).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES, stream=stream
    )
    request_id = raw.headers["x-request-id"]
    if stream:
        list(raw.parse())
    llm = log_entry(live, request_id)["llm"]
    line = stdout_access_line(live, request_id)
    assert line.startswith("127.0.0.1 - app [")
    assert line.endswith(
        f'/v1/chat/completions" request_id={request_id} route_id=llm '
        f"request_type={'ai_stream' if stream else 'ai_chat'} llm_model=gpt-4o-mini "
        f"llm_prompt_tokens={llm['prompt_tokens']} "
        f"llm_completion_tokens={llm['completion_tokens']} "
        f"llm_total_tokens={llm['total_tokens']}"
    ), line
    assert llm["total_tokens"] > 0


def test_logging_summaries_adds_apisixs_llm_summary(live: LiveGateway) -> None:
    """ai-proxy's ``logging.summaries`` puts APISIX's ``llm_summary`` in the loggers' entries
    (the variables' names without ``llm_``); without it there is none."""
    log = str(live.workdir / "access.log")
    fake = f"http://{live.fake_address}"
    ai_proxy = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": f"{fake}/v1/chat/completions"},
        "logging": {"summaries": True},
    }
    plugins = {"key-auth": {"header": "Authorization"}, "file-logger": {"path": log}}
    live.put(
        "routes/summaries", {"uri": "/summaries/v1/*", "plugins": {**plugins, "ai-proxy": ai_proxy}}
    )
    for stream in (False, True):
        raw = sdk(live, "/summaries").chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, stream=stream
        )
        if stream:
            list(raw.parse())
        entry = log_entry(live, raw.headers["x-request-id"])
        summary, llm = entry["llm_summary"], entry["llm"]
        assert {k: summary[k] for k in ("request_model", "model", "stream")} == {
            "request_model": "m",  # the client's, as APISIX's $request_llm_model
            "model": "gpt-4o-mini",
            "stream": stream,
        }
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert summary[name] == llm[name] > 0
        assert summary["duration"] >= 0 and summary["upstream_response_time"] >= 0
    raw = sdk(live).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert "llm_summary" not in log_entry(live, raw.headers["x-request-id"])
