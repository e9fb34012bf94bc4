"""basic-auth at run time, through the admin API and the data plane."""

from __future__ import annotations

import base64

import pytest

from llmgate import credentials
from llmgate.plugins.basic_auth import parse_basic

CONSUMER1 = {
    "username": "consumer1",
    "plugins": {"basic-auth": {"username": "username1", "password": "password1"}},
}
CHALLENGE = 'Basic realm="basic"'


def basic(user_pass: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}


async def setup(gateway, **conf) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers", CONSUMER1)
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"basic-auth": conf}, "upstream": gateway.upstream()},
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("Basic dXNlcjpwYXNz", ("user", "pass"), id="plain"),
        pytest.param("basic dXNlcjpwYXNz", ("user", "pass"), id="scheme-any-case"),
        pytest.param("Basic dTpwOnE=", ("u", "p:q"), id="colon-in-password"),
        pytest.param("Basic dTpwOnE", ("u", "p:q"), id="padding-left-out"),
        pytest.param("Basic dTo=", ("u", ""), id="empty-password"),
        pytest.param("Basic w6k6w6k=", ("é", "é"), id="utf-8"),
        pytest.param("Basic !!!", None, id="not-base64"),
        pytest.param("Basic " + base64.b64encode(b"nocolon").decode(), None, id="no-colon"),
        pytest.param("Basic", None, id="no-token"),
        pytest.param("Basic ", None, id="empty-token"),
        pytest.param("Bearer dXNlcjpwYXNz", None, id="other-scheme"),
        pytest.param("XBasic dXNlcjpwYXNz", None, id="scheme-prefix"),
        pytest.param("Basic dXNlcjpwYXNz extra", None, id="trailing-garbage"),
        pytest.param("Basic dXNlcjpwYXN", ("user", "pas"), id="unpadded-2"),
        pytest.param("Basic dXNlcjpwYXNzZ", None, id="impossible-length"),
        pytest.param("Basic " + base64.b64encode(b"\xff:\xfe").decode(), None, id="not-utf-8"),
        pytest.param("Basic dXNlcjpwYXNz===", None, id="too-much-padding"),
        # Letters the case-insensitive pattern takes for ASCII ones (KELVIN SIGN, LONG S).
        pytest.param("Basic \u212aaaa", None, id="non-ascii-letter"),
        pytest.param("Basic dXNlcjpwYX\u017fz", None, id="non-ascii-letter-inside"),
        pytest.param("Ba\u017fic dXNlcjpwYXNz", None, id="non-ascii-scheme"),
    ],
)
def test_parse_basic(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


async def test_seed_consumer_authenticates(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
    assert resp.status == 200
    echo = await resp.json()
    assert echo["path"] == "/anything/x"
    # Authorization is forwarded by default; the upstream learns who called.
    assert echo["headers"]["authorization"] == basic("username1:password1")["Authorization"]
    assert echo["headers"]["x-consumer-username"] == "consumer1"
    assert "x-credential-identifier" not in echo["headers"]


async def test_missing_header(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x")
    assert resp.status == 401
    assert await resp.json() == {"message": "Missing authorization in request"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE
    assert await gateway.fake_requests() == []


async def test_custom_realm(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, realm="llm api")
    resp = await gateway.proxy.get("/anything/x")
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="llm api"'


@pytest.mark.parametrize(
    "user_pass",
    [
        pytest.param("username1:wrong", id="wrong-password"),
        pytest.param("username1:", id="empty-password"),
        pytest.param("nobody:password1", id="unknown-user"),
        pytest.param("consumer1:password1", id="consumer-name-is-not-username"),
        pytest.param("username1:password1 ", id="trailing-space"),
    ],
)
async def test_wrong_credentials(gateway, user_pass: str) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers=basic(user_pass))
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid user authorization"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic !!!", id="bad-base64"),
        pytest.param("Basic " + base64.b64encode(b"username1password1").decode(), id="no-colon"),
        pytest.param("Bearer x", id="wrong-scheme"),
        pytest.param("Basic", id="scheme-only"),
        pytest.param("Basic w6k=\u00e9", id="non-ascii"),
        pytest.param("Basic \u00e9\u00e9\u00e9\u00e9", id="non-ascii-token"),
    ],
)
async def test_malformed_header(gateway, value: str) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers={"Authorization": value})
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid authorization in request"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_raw_non_utf8_header_is_401(gateway) -> None:  # type: ignore[no-untyped-def]
    """Bytes that are not even UTF-8 reach the plugin undecoded; still a clean 401."""
    import asyncio

    await setup(gateway)
    server = gateway.proxy.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /anything/x HTTP/1.1\r\nHost: t\r\nAuthorization: Basic \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
    assert b'{"message":"Invalid authorization in request"}' in answer


async def test_hide_credentials(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, hide_credentials=True)
    resp = await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert "authorization" not in headers
    assert headers["x-consumer-username"] == "consumer1"


async def test_identity_headers_cannot_be_forged(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    resp = await gateway.proxy.get(
        "/anything/x",
        headers={
            **basic("username1:password1"),
            "X-Consumer-Username": "admin",
            "X-Credential-Identifier": "forged",
        },
    )
    headers = (await resp.json())["headers"]
    assert headers["x-consumer-username"] == "consumer1"
    assert "x-credential-identifier" not in headers


async def test_credential_of_a_consumer(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers", {"username": "jack", "labels": {"custom_id": "j-42"}})
    await gateway.put(
        "consumers/jack/credentials/c1",
        {"plugins": {"basic-auth": {"username": "jack-basic", "password": "s3cret:with:colons"}}},
    )
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"basic-auth": {}}, "upstream": gateway.upstream()},
    )
    resp = await gateway.proxy.get("/anything/x", headers=basic("jack-basic:s3cret:with:colons"))
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert headers["x-consumer-username"] == "jack"
    assert headers["x-credential-identifier"] == "c1"
    assert headers["x-consumer-custom-id"] == "j-42"


async def test_env_password(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_ENVREF_BASIC_PASSWORD", "from-env")
    await gateway.put(
        "consumers",
        {
            "username": "envy",
            "plugins": {
                "basic-auth": {"username": "e", "password": "$env://TEST_ENVREF_BASIC_PASSWORD"}
            },
        },
    )
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"basic-auth": {}}, "upstream": gateway.upstream()},
    )
    assert (await gateway.proxy.get("/anything/x", headers=basic("e:from-env"))).status == 200
    literal = await gateway.proxy.get(
        "/anything/x", headers=basic("e:$env://TEST_ENVREF_BASIC_PASSWORD")
    )
    assert literal.status == 401


async def test_unset_env_password_lets_nobody_in(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TEST_ENVREF_UNSET_PASSWORD", raising=False)
    await gateway.put(
        "consumers",
        {
            "username": "envy",
            "plugins": {
                "basic-auth": {"username": "e", "password": "$env://TEST_ENVREF_UNSET_PASSWORD"}
            },
        },
    )
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"basic-auth": {}}, "upstream": gateway.upstream()},
    )
    resp = await gateway.proxy.get("/anything/x", headers=basic("e:"))
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid user authorization"}


async def test_password_change_invalidates(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway)
    assert (
        await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
    ).status == 200
    changed = {
        "username": "consumer1",
        "plugins": {"basic-auth": {"username": "username1", "password": "password2"}},
    }
    await gateway.put("consumers", changed)
    assert (
        await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
    ).status == 401
    assert (
        await gateway.proxy.get("/anything/x", headers=basic("username1:password2"))
    ).status == 200
    await gateway.delete("consumers/consumer1")
    assert (
        await gateway.proxy.get("/anything/x", headers=basic("username1:password2"))
    ).status == 401


async def test_passlib_runs_once_per_password(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    real = credentials.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(credentials, "verify_password", counting)
    await setup(gateway)
    for _ in range(5):
        resp = await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
        assert resp.status == 200
    assert calls == ["password1"]
    for _ in range(3):
        resp = await gateway.proxy.get("/anything/x", headers=basic("username1:nope"))
        assert resp.status == 401
    assert calls == ["password1", "nope"]


async def test_anonymous_consumer(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers", {"username": "guest"})
    await setup(gateway, anonymous_consumer="guest", hide_credentials=True)
    resp = await gateway.proxy.get("/anything/x", headers=basic("username1:wrong"))
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert headers["x-consumer-username"] == "guest"
    assert "authorization" not in headers
    resp = await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
    assert (await resp.json())["headers"]["x-consumer-username"] == "consumer1"


async def test_anonymous_consumer_missing(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, anonymous_consumer="ghost")
    resp = await gateway.proxy.get("/anything/x")
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid user authorization"}
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_seed_blog_plugin_config(gateway) -> None:  # type: ignore[no-untyped-def]
    """Seed 001: basic-auth added to a plugin_config, consumer1 calling a completions route."""
    await gateway.put("consumers", CONSUMER1)
    await gateway.put("plugin_configs/1", {"plugins": {"basic-auth": {}}})
    await gateway.put(
        "routes/1",
        {"uri": "/v1/completions", "plugin_config_id": 1, "upstream": gateway.upstream()},
    )
    body = {"model": "text-davinci-003", "prompt": "Apple 13 pro", "max_tokens": 16}
    denied = await gateway.proxy.post("/v1/completions", json=body)
    assert denied.status == 401
    assert await denied.json() == {"message": "Missing authorization in request"}
    resp = await gateway.proxy.post(
        "/v1/completions", json=body, headers=basic("username1:password1")
    )
    assert resp.status == 200
    assert "choices" in await resp.json()


async def test_an_unknown_user_costs_the_same_check_as_a_wrong_password(
    gateway, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # Answering an unknown user name at once, and a known one after a hash, would tell an
    # attacker which user names exist (APISIX compares plaintexts: no such gap).
    calls: list[str] = []
    real = credentials.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(credentials, "verify_password", counting)
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers=basic("nobody:guess1"))
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid user authorization"}
    assert len(calls) == 1
    # and it is a failed check like any other: cached, counted towards the client's limit
    resp = await gateway.proxy.get("/anything/x", headers=basic("nobody:guess1"))
    assert resp.status == 401
    assert len(calls) == 1
    # The cache of failed checks is no oracle either: a password tried for one unknown name
    # still costs a hash for another, as it would for a user who exists.
    await gateway.proxy.get("/anything/x", headers=basic("ghost:guess2"))
    await gateway.proxy.get("/anything/x", headers=basic("nobody:guess2"))
    await gateway.proxy.get("/anything/x", headers=basic("username1:guess2"))
    assert len(calls) == 4


@pytest.mark.parametrize("suffix", ["\x00", "\x00\x00", "\x00x"])
async def test_a_password_with_nuls_added_is_wrong(gateway, suffix: str) -> None:  # type: ignore[no-untyped-def]
    # pbkdf2's HMAC pads a short key with NULs: "password1\x00" hashes as "password1" does.
    # APISIX compares the plaintexts, which differ.
    await setup(gateway)
    resp = await gateway.proxy.get("/anything/x", headers=basic("username1:password1" + suffix))
    assert resp.status == 401
    assert await resp.json() == {"message": "Invalid user authorization"}
    resp = await gateway.proxy.get("/anything/x", headers=basic("username1:password1"))
    assert resp.status == 200
