"""Consumers and credentials: secrets at rest, unique credentials, cascade delete."""

from __future__ import annotations

from typing import Any

from passlib.hash import pbkdf2_sha256

from llmgate.credentials import key_digest


async def put(admin, path: str, body: Any) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await admin.put(f"/apisix/admin/{path}", json=body)
    return resp.status, await resp.json()


async def get(admin, path: str) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await admin.get(f"/apisix/admin/{path}")
    return resp.status, await resp.json()


BLOG_CONSUMER = {
    "username": "consumer1",
    "plugins": {"basic-auth": {"username": "username1", "password": "password1"}},
}


async def test_put_collection_with_username(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "consumers", BLOG_CONSUMER)
    assert status == 201
    assert body["key"] == "/apisix/consumers/consumer1"
    assert "id" not in body["value"]
    status, body = await put(admin, "consumers", BLOG_CONSUMER)
    assert status == 200
    status, body = await put(admin, "consumers/consumer1", BLOG_CONSUMER)
    assert status == 200
    status, body = await put(admin, "consumers/other", BLOG_CONSUMER)
    assert (status, body) == (400, {"error_msg": "wrong username"})


async def test_an_id_in_the_body_is_kept_as_written(admin) -> None:  # type: ignore[no-untyped-def]
    """APISIX's consumer schema has an ``id`` (its id rule, no more): the consumer is still
    keyed, found and named by its username, and the ``id`` is stored as sent."""
    for path, body_id, status in (
        ("consumers", "other", 201),
        ("consumers/jack", 7, 200),
        ("consumers", "jack", 200),
    ):
        answer_status, body = await put(admin, path, {"username": "jack", "id": body_id})
        assert (answer_status, body["key"]) == (status, "/apisix/consumers/jack")
        assert body["value"]["id"] == body_id
        _, got = await get(admin, "consumers/jack")
        assert got["value"]["id"] == body_id and got["value"]["username"] == "jack"
    for bad in ("bad id", "", 0, True, 1.5, "x" * 65):
        status, body = await put(admin, "consumers", {"username": "jack", "id": bad})
        assert status == 400, bad
        assert body["error_msg"].startswith('invalid configuration: property "id"'), body
    _, listed = await get(admin, "consumers")
    assert listed["total"] == 1


async def test_password_is_stored_hashed_and_never_returned(admin) -> None:  # type: ignore[no-untyped-def]
    _, body = await put(admin, "consumers", BLOG_CONSUMER)
    stored = body["value"]["plugins"]["basic-auth"]["password"]
    assert stored != "password1"
    assert pbkdf2_sha256.verify("password1", stored)
    for path in ("consumers/consumer1", "consumers"):
        resp = await admin.get(f"/apisix/admin/{path}")
        assert "password1" not in await resp.text()
    # PUT back what GET showed: the hash is kept, not hashed again.
    _, got = await get(admin, "consumers/consumer1")
    value = {k: v for k, v in got["value"].items() if k not in ("create_time", "update_time")}
    _, again = await put(admin, "consumers", value)
    assert again["value"]["plugins"]["basic-auth"]["password"] == stored


async def test_key_is_stored_as_digest(admin) -> None:  # type: ignore[no-untyped-def]
    _, body = await put(
        admin, "consumers", {"username": "jack", "plugins": {"key-auth": {"key": "secret-key"}}}
    )
    assert body["value"]["plugins"]["key-auth"]["key"] == key_digest("secret-key")
    resp = await admin.get("/apisix/admin/consumers/jack")
    assert "secret-key" not in await resp.text()


async def test_env_references_are_stored_as_written(admin) -> None:  # type: ignore[no-untyped-def]
    consumer = {
        "username": "envy",
        "plugins": {
            "basic-auth": {"username": "u", "password": "$env://PASSWORD"},
            "key-auth": {"key": "$env://API_KEY"},
        },
    }
    _, body = await put(admin, "consumers", consumer)
    assert body["value"]["plugins"] == consumer["plugins"]


async def test_duplicate_credentials_are_refused(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "consumers", BLOG_CONSUMER)
    status, body = await put(
        admin,
        "consumers",
        {
            "username": "other",
            "plugins": {"basic-auth": {"username": "username1", "password": "p"}},
        },
    )
    assert (status, body) == (
        400,
        {"error_msg": "duplicate username of plugin basic-auth found with consumer: consumer1"},
    )
    await put(admin, "consumers", {"username": "jack", "plugins": {"key-auth": {"key": "k1"}}})
    await put(admin, "consumers", {"username": "rose"})
    status, body = await put(
        admin, "consumers/rose/credentials/c1", {"plugins": {"key-auth": {"key": "k1"}}}
    )
    assert (status, body) == (
        400,
        {"error_msg": "duplicate key of plugin key-auth found with consumer: jack"},
    )
    status, _ = await put(
        admin, "consumers/rose/credentials/c1", {"plugins": {"key-auth": {"key": "k2"}}}
    )
    assert status == 201
    status, body = await put(
        admin, "consumers", {"username": "jack", "plugins": {"key-auth": {"key": "k2"}}}
    )
    assert (status, body) == (
        400,
        {
            "error_msg": "duplicate key of plugin key-auth found with credential: c1 of consumer: rose"
        },
    )
    # Re-putting the same consumer or credential is no conflict with itself.
    assert (
        await put(admin, "consumers", {"username": "jack", "plugins": {"key-auth": {"key": "k1"}}})
    )[0] == 200
    assert (
        await put(admin, "consumers/rose/credentials/c1", {"plugins": {"key-auth": {"key": "k2"}}})
    )[0] == 200


async def test_control_characters_in_a_basic_auth_username_are_refused(admin) -> None:  # type: ignore[no-untyped-def]
    # RFC 7617: a user-id holds no control characters.  A NUL reached the credential index,
    # which PostgreSQL cannot store: 503 "store unavailable" for a client's mistake.
    for username in ("a\x00b", "a\nb", "a\x7fb"):
        for path in ("consumers", "consumers/ctl/credentials/c1"):
            if path != "consumers":
                assert (await put(admin, "consumers", {"username": "ctl"}))[0] in (200, 201)
            body: dict[str, Any] = {
                "plugins": {"basic-auth": {"username": username, "password": "p"}}
            }
            if path == "consumers":
                body["username"] = "ctl"
            status, answer = await put(admin, path, body)
            assert status == 400, (username, path, answer)
            assert "username" in answer["error_msg"], answer


async def test_consumer_plugin_configs_are_checked(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(
        admin, "consumers", {"username": "x", "plugins": {"basic-auth": {"username": "u"}}}
    )
    assert status == 400
    assert body["error_msg"].startswith(
        "invalid plugins configuration: failed to check the configuration of plugin basic-auth err: "
    )
    assert "password" in body["error_msg"]
    status, body = await put(admin, "consumers", {"username": "x", "plugins": {"nope": {}}})
    assert (status, body) == (
        400,
        {"error_msg": "invalid plugins configuration: unknown plugin [nope]"},
    )


async def test_credentials_crud(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(
        admin, "consumers/ghost/credentials/c1", {"plugins": {"key-auth": {"key": "k"}}}
    )
    assert (status, body) == (404, {"error_msg": "consumer not found"})
    await put(admin, "consumers", {"username": "jack"})
    status, body = await put(
        admin, "consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": "k"}}}
    )
    assert status == 201
    assert body["key"] == "/apisix/consumers/jack/credentials/c1"
    assert body["value"]["plugins"]["key-auth"]["key"] == key_digest("k")
    status, body = await put(
        admin,
        "consumers/jack/credentials/c2",
        {"plugins": {"limit-count": {"count": 1, "time_window": 1}}},
    )
    # APISIX's message, without the "invalid plugins configuration: " prefix of a plugin
    # that fails its own check (t/admin/credentials.t).
    assert (status, body) == (
        400,
        {"error_msg": "only supports auth type plugins in consumer credential"},
    )
    status, listing = await get(admin, "consumers/jack/credentials")
    assert status == 200 and listing["total"] == 1
    assert listing["list"][0]["key"] == "/apisix/consumers/jack/credentials/c1"
    status, one = await get(admin, "consumers/jack/credentials/c1")
    assert status == 200 and one["value"]["id"] == "c1"
    # The consumers list does not include credentials.
    _, consumers = await get(admin, "consumers")
    assert consumers["total"] == 1
    resp = await admin.delete("/apisix/admin/consumers/jack")
    assert await resp.json() == {"deleted": "1", "key": "/apisix/consumers/jack"}
    assert (await get(admin, "consumers/jack/credentials/c1"))[0] == 404


async def test_the_credentials_of_a_missing_consumer_are_not_found(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX (t/admin/credentials.t): listing the credentials of a deleted consumer is a 404.
    # (It answers 404 too for a consumer without credentials: no key under the prefix; llmgate
    # lists that one as empty.)
    assert await get(admin, "consumers/ghost/credentials") == (404, {"message": "Key not found"})
    await put(admin, "consumers", {"username": "jack"})
    assert await get(admin, "consumers/jack/credentials") == (200, {"list": [], "total": 0})
    await put(admin, "consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": "k"}}})
    assert (await admin.delete("/apisix/admin/consumers/jack")).status == 200
    assert await get(admin, "consumers/jack/credentials") == (404, {"message": "Key not found"})


async def test_a_credential_holds_one_plugin(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX's credential schema: plugins has maxProperties 1 (t/admin/credentials.t).
    await put(admin, "consumers", {"username": "jack"})
    two = {"key-auth": {"key": "k3"}, "basic-auth": {"username": "u", "password": "p"}}
    status, body = await put(admin, "consumers/jack/credentials/c3", {"plugins": two})
    assert (status, body) == (
        400,
        {
            "error_msg": 'invalid configuration: property "plugins" validation failed:'
            " expect object to have at most 1 properties"
        },
    )
    assert (await get(admin, "consumers/jack/credentials/c3"))[0] == 404


async def test_credential_post_is_not_allowed(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "consumers", {"username": "jack"})
    resp = await admin.post("/apisix/admin/consumers/jack/credentials", json={"plugins": {}})
    assert resp.status == 405


async def test_the_longest_username_and_credential_id_round_trip(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX: a username is 256 characters at most, a credential id 64; the store keeps the
    # credential as "{username}/{id}" (321).  PostgreSQL refused 201-256 (200-wide ids).
    username, credential = "u" * 256, "c" * 64
    status, body = await put(admin, "consumers", {"username": username})
    assert status == 201, body
    path = f"consumers/{username}/credentials/{credential}"
    status, body = await put(admin, path, {"plugins": {"key-auth": {"key": "longest"}}})
    assert status == 201, body
    status, body = await get(admin, f"consumers/{username}")
    assert (status, body["value"]["username"]) == (200, username)
    status, body = await get(admin, path)
    assert (status, body["key"]) == (200, f"/apisix/{path}")
    status, body = await get(admin, f"consumers/{username}/credentials")
    assert [item["key"] for item in body["list"]] == [f"/apisix/{path}"]
    # The credential index names the 321-character owner: a duplicate key is refused.
    assert (await put(admin, "consumers", {"username": "other"}))[0] == 201
    same_key = {"plugins": {"key-auth": {"key": "longest"}}}
    status, body = await put(admin, "consumers/other/credentials/c1", same_key)
    assert status == 400
    assert f"credential: {credential} of consumer: {username}" in body["error_msg"]
    resp = await admin.delete(f"/apisix/admin/consumers/{username}")
    assert resp.status == 200


async def test_one_character_longer_is_a_400(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "consumers", {"username": "u" * 257})
    assert status == 400
    assert body["error_msg"].startswith('invalid configuration: property "username" validation')
    assert (await put(admin, "consumers", {"username": "u" * 256}))[0] == 201
    path = f"consumers/{'u' * 256}/credentials/{'c' * 65}"
    status, body = await put(admin, path, {"plugins": {"key-auth": {"key": "k"}}})
    assert status == 400
    assert body["error_msg"].startswith('invalid configuration: property "id" validation')
