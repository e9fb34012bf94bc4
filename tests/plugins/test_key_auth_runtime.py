"""key-auth at run time, through the admin API and the data plane."""

from __future__ import annotations

import pytest

from llmgate.plugins.key_auth import drop_query_arg

CHALLENGE = 'apikey realm="key"'


async def setup(gateway, key: str = "auth-one", **conf) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers", {"username": "jack", "plugins": {"key-auth": {"key": key}}})
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"key-auth": conf}, "upstream": gateway.upstream()},
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("apikey=k", "", id="only"),
        pytest.param("a=1&apikey=k&b=%20x", "a=1&b=%20x", id="middle-keeps-encoding"),
        pytest.param("apikey=k&apikey=j&c", "c", id="repeated-and-bare"),
        pytest.param("api%6Bey=k&x=1", "x=1", id="encoded-name"),
        pytest.param("apikey2=k&xapikey=1", "apikey2=k&xapikey=1", id="other-names"),
        pytest.param("apikey", "", id="no-value"),
    ],
)
def test_drop_query_arg(query: str, expected: str) -> None:
    assert drop_query_arg(query, "apikey") == expected


async def test_key_in_header(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers={"apikey": "auth-one"})
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert headers["apikey"] == "auth-one"
    assert headers["x-consumer-username"] == "jack"


async def test_key_in_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x?apikey=auth-one&a=1")
    assert resp.status == 200
    assert (await resp.json())["query"] == "apikey=auth-one&a=1"


async def test_header_wins_over_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x?apikey=auth-one", headers={"apikey": "bad"})
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid API key in request"}


async def test_missing_key(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x?other=1")
    assert resp.status == 401
    assert await resp.json() == {"message": "Missing API key in request"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE
    assert await gateway.fake_requests() == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"apikey": "auth-two"}, id="unknown"),
        pytest.param({"apikey": ""}, id="empty"),
        pytest.param({"apikey": "AUTH-ONE"}, id="case-matters"),
        pytest.param({"apikey": "sha256$" + "0" * 64}, id="a-digest-is-not-a-key"),
        pytest.param({"apikey": "auth-one\u00e9"}, id="non-ascii"),
        pytest.param({"apikey": "Bearer auth-one"}, id="bearer-only-for-authorization"),
    ],
)
async def test_invalid_key(gateway, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers=headers)
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid API key in request"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_stored_digest_does_not_authenticate(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    stored = (await (await gateway.admin.get("/apisix/admin/consumers/jack")).json())["value"]
    digest = stored["plugins"]["key-auth"]["key"]
    assert digest.startswith("sha256$")
    resp = await gateway.proxy.get("/anything/x", headers={"apikey": digest})
    assert resp.status == 401


async def test_raw_non_utf8_key_is_401(gateway) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    await setup(gateway)
    server = gateway.proxy.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /anything/x?apikey=%ff HTTP/1.1\r\nHost: t\r\napikey: \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
    assert b'{"message":"Invalid API key in request"}' in answer


async def test_custom_header_and_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, header="X-Api-Key", query="token", realm="llm")
    assert (await gateway.proxy.get("/anything/x", headers={"x-api-key": "auth-one"})).status == 200
    assert (await gateway.proxy.get("/anything/x?token=auth-one")).status == 200
    resp = await gateway.proxy.get("/anything/x?apikey=auth-one")
    assert resp.status == 401
    assert await resp.json() == {"message": "Missing API key in request"}
    assert resp.headers["WWW-Authenticate"] == 'apikey realm="llm"'


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Bearer auth-one", id="bearer"),
        pytest.param("bearer  auth-one", id="bearer-any-case"),
        pytest.param("auth-one", id="raw-key"),
    ],
)
async def test_authorization_bearer(gateway, value: str) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, header="Authorization", hide_credentials=True)
    resp = await gateway.proxy.get("/anything/x", headers={"Authorization": value})
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert headers["x-consumer-username"] == "jack"
    assert "authorization" not in headers


async def test_authorization_bearer_wrong_key(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, header="Authorization")
    resp = await gateway.proxy.get("/anything/x", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid API key in request"}


async def test_hide_credentials_header(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, hide_credentials=True)
    resp = await gateway.proxy.get("/anything/x?apikey=other", headers={"apikey": "auth-one"})
    echo = await resp.json()
    assert "apikey" not in echo["headers"]
    assert echo["query"] == "apikey=other"  # the key came from the header: the query is kept


async def test_hide_credentials_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, hide_credentials=True)
    resp = await gateway.proxy.get("/anything/x?a=1&apikey=auth-one&b=x%26y")
    assert resp.status == 200
    assert (await resp.json())["query"] == "a=1&b=x%26y"


async def test_hide_credentials_query_hides_it_from_later_variables(gateway) -> None:  # type: ignore[no-untyped-def]
    """As APISIX's ``core.request.set_uri_args``: once key-auth dropped the key from the query,
    ``$arg_apikey``, ``$args``, ``$query_string`` and ``$is_args`` read the query without it
    (here in proxy-rewrite, which runs after key-auth); ``$request_uri`` stays as sent."""
    await gateway.put("consumers", {"username": "jack", "plugins": {"key-auth": {"key": "k-1"}}})
    seen = "[$arg_apikey|$args|$query_string|$is_args|$arg_a]"
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {
                "key-auth": {"hide_credentials": True},
                "proxy-rewrite": {"headers": {"set": {"X-Seen": seen}}},
            },
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/anything/x?a=1&apikey=k-1")
    assert resp.status == 200
    assert (await resp.json())["headers"]["x-seen"] == "[|a=1|a=1|?|1]"
    resp = await gateway.proxy.get("/anything/x?apikey=k-1")
    assert (await resp.json())["headers"]["x-seen"] == "[||||]"


async def test_credential_key(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers", {"username": "jack"})
    await gateway.put(
        "consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": "cred-key"}}}
    )
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"key-auth": {}}, "upstream": gateway.upstream()},
    )
    resp = await gateway.proxy.get("/anything/x", headers={"apikey": "cred-key"})
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert headers["x-consumer-username"] == "jack"
    assert headers["x-credential-identifier"] == "c1"
    await gateway.delete("consumers/jack/credentials/c1")
    assert (await gateway.proxy.get("/anything/x", headers={"apikey": "cred-key"})).status == 401


async def test_env_key(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_ENVREF_KEY_AUTH", "key-from-env")
    await setup(gateway, key="$env://TEST_ENVREF_KEY_AUTH")
    assert (
        await gateway.proxy.get("/anything/x", headers={"apikey": "key-from-env"})
    ).status == 200
    resp = await gateway.proxy.get("/anything/x", headers={"apikey": "$env://TEST_ENVREF_KEY_AUTH"})
    assert resp.status == 401


async def test_unset_env_key_lets_nobody_in(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TEST_ENVREF_UNSET_KEY", raising=False)
    await setup(gateway, key="$env://TEST_ENVREF_UNSET_KEY")
    resp = await gateway.proxy.get("/anything/x", headers={"apikey": ""})
    assert resp.status == 401
    assert (await gateway.proxy.get("/anything/x?apikey=")).status == 401


async def test_key_change_invalidates(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    assert (await gateway.proxy.get("/anything/x", headers={"apikey": "auth-one"})).status == 200
    await gateway.put(
        "consumers", {"username": "jack", "plugins": {"key-auth": {"key": "auth-new"}}}
    )
    assert (await gateway.proxy.get("/anything/x", headers={"apikey": "auth-one"})).status == 401
    assert (await gateway.proxy.get("/anything/x", headers={"apikey": "auth-new"})).status == 200


async def test_anonymous_consumer(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers", {"username": "guest"})
    await setup(gateway, anonymous_consumer="guest", hide_credentials=True)
    resp = await gateway.proxy.get("/anything/x?apikey=wrong&a=1", headers={"apikey": "wrong"})
    assert resp.status == 200
    echo = await resp.json()
    assert echo["headers"]["x-consumer-username"] == "guest"
    assert "apikey" not in echo["headers"]
    assert echo["query"] == "a=1"


async def test_anonymous_consumer_missing(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, anonymous_consumer="ghost")
    resp = await gateway.proxy.get("/anything/x")
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid user authorization"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_consumer_plugins_are_merged(gateway) -> None:  # type: ignore[no-untyped-def]
    """The authenticated consumer's own consumer-restriction applies on this route."""
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {
                "key-auth": {"key": "auth-one"},
                "consumer-restriction": {"type": "route_id", "whitelist": ["2"]},
            },
        },
    )
    await gateway.put(
        "consumers", {"username": "rose", "plugins": {"key-auth": {"key": "auth-two"}}}
    )
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"key-auth": {}}, "upstream": gateway.upstream()},
    )
    resp = await gateway.proxy.get("/anything/x", headers={"apikey": "auth-one"})
    assert resp.status == 403
    assert await resp.json() == {"message": "The route_id is forbidden."}
    assert (await gateway.proxy.get("/anything/x", headers={"apikey": "auth-two"})).status == 200
