"""Applying whole documents to a store: validated as a whole, one revision, all or nothing,
idempotent.  Every test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.config.document import Document, DocumentError
from llmgate.config.plan import PasswordMemo, apply, diff, without_times
from llmgate.config.reading import parse
from llmgate.credentials import SSL_KEY_ENV, is_sealed, key_digest, unseal, verify_password
from llmgate.store import Item, Store
from tests.net import TestCA

UPSTREAM = {"id": "u1", "nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}
PLUGIN_CONFIG = {"id": "pc1", "plugins": {"basic-auth": {}}}
ROUTE = {"id": "r1", "uri": "/hello", "upstream_id": "u1", "plugin_config_id": "pc1"}
JACK = {"username": "jack", "plugins": {"basic-auth": {"username": "jack", "password": "s3cret"}}}


def doc(**lists: list[dict[str, Any]]) -> Document:
    import orjson

    return parse(orjson.dumps(lists).decode(), "json", "test.json", {})


async def stored(store: Store) -> dict[str, Item]:
    async with store.read() as reader:
        return {f"{item.kind}/{item.id}": item for item in await reader.all()}


async def test_apply_creates_everything_in_one_revision(store: Store) -> None:
    # References resolve whatever the order: the route comes before what it uses.
    document = doc(
        routes=[ROUTE], plugin_configs=[PLUGIN_CONFIG], upstreams=[UPSTREAM], consumers=[JACK]
    )
    plan, revision = await apply(store, document)
    assert [c.label for c in plan.changes] == [
        "upstreams/u1",
        "plugin_configs/pc1",
        "consumers/jack",
        "routes/r1",
    ]
    assert revision == await store.revision() == 1
    items = await stored(store)
    assert {item.created_index for item in items.values()} == {1}
    assert items["routes/r1"].value["create_time"] > 0
    password = items["consumers/jack"].value["plugins"]["basic-auth"]["password"]
    assert password != "s3cret" and verify_password("s3cret", password)


async def test_applying_again_changes_nothing_and_makes_no_revision(store: Store) -> None:
    document = doc(
        routes=[ROUTE], plugin_configs=[PLUGIN_CONFIG], upstreams=[UPSTREAM], consumers=[JACK]
    )
    await apply(store, document)
    before = await stored(store)
    plan, revision = await apply(store, document)
    assert plan.changes == () and revision is None
    assert await store.revision() == 1
    assert await stored(store) == before  # the password's hash too: it still matches


async def test_a_change_updates_only_what_changed(store: Store) -> None:
    await apply(
        store,
        doc(routes=[ROUTE], plugin_configs=[PLUGIN_CONFIG], upstreams=[UPSTREAM], consumers=[JACK]),
    )
    first = await stored(store)
    changed_jack = {**JACK, "plugins": {"basic-auth": {"username": "jack", "password": "new"}}}
    upstream = {**UPSTREAM, "nodes": {"127.0.0.1:1981": 1}}
    plan, revision = await apply(
        store,
        doc(
            routes=[ROUTE],
            plugin_configs=[PLUGIN_CONFIG],
            upstreams=[upstream],
            consumers=[changed_jack],
        ),
    )
    assert [(c.action, c.label) for c in plan.changes] == [
        ("update", "upstreams/u1"),
        ("update", "consumers/jack"),
    ]
    after = await stored(store)
    assert after["upstreams/u1"].modified_index == revision == 2
    assert after["upstreams/u1"].created_index == 1
    assert after["upstreams/u1"].value["create_time"] == first["upstreams/u1"].value["create_time"]
    assert after["routes/r1"] == first["routes/r1"]
    assert verify_password(
        "new", after["consumers/jack"].value["plugins"]["basic-auth"]["password"]
    )


async def test_an_invalid_resource_anywhere_writes_nothing(store: Store) -> None:
    await apply(store, doc(upstreams=[UPSTREAM]))
    good_route = {"id": "r1", "uri": "/x", "upstream_id": "u1"}
    bad_route = {"id": "r2", "uri": "/y", "upstream_id": "u1", "plugins": {"no-such-plugin": {}}}
    document = doc(upstreams=[{**UPSTREAM, "desc": "changed"}], routes=[good_route, bad_route])
    with pytest.raises(DocumentError, match=r"^routes/r2: unknown plugin \[no-such-plugin\]$"):
        await apply(store, document)
    assert await store.revision() == 1
    assert sorted(await stored(store)) == ["upstreams/u1"]
    assert "desc" not in (await stored(store))["upstreams/u1"].value


async def test_a_resource_nested_deeper_than_an_admin_body_may_is_refused(store: Store) -> None:
    """As the admin API refuses such a body: stored, it made every list of routes a 500 (the
    JSON encoder's recursion limit)."""
    deep: dict[str, Any] = {}
    for _ in range(200):
        deep = {"x": deep}
    upstream = {"nodes": {"127.0.0.1:1980": 1}}
    route = {"id": "r1", "uri": "/x", "upstream": upstream, "plugins": {"key-auth": deep}}
    with pytest.raises(DocumentError, match="nested deeper than 64 levels"):
        await apply(store, doc(routes=[route]))
    assert await stored(store) == {}


async def test_references_resolve_against_the_whole_result_and_may_dangle(store: Store) -> None:
    route = {"id": "r1", "uri": "/x", "upstream_id": "u1"}
    dangling = (
        "routes/r1: upstream_id [u1] names no upstream; kept as written, it fails at request "
        "time until one exists",
    )
    # A route before the upstream it uses, in one file: nothing dangles.
    plan, _ = await apply(store, doc(routes=[route], upstreams=[UPSTREAM]))
    assert plan.dangling == ()
    # What the store already has counts (no --prune) ...
    plan, _ = await apply(store, doc(routes=[{**route, "desc": "d"}]))
    assert plan.kept == ("upstreams/u1",) and plan.dangling == ()
    # ... unless the same apply prunes it: then the route keeps naming it, as APISIX's
    # standalone files and DELETE ?force=true allow, and the plan says so.
    plan, _ = await apply(store, doc(routes=[route]), prune=True)
    assert [(c.action, c.label) for c in plan.changes] == [
        ("update", "routes/r1"),
        ("delete", "upstreams/u1"),
    ]
    assert plan.dangling == dangling
    assert (await stored(store))["routes/r1"].value["upstream_id"] == "u1"
    # Anything else about the resource is still checked.
    with pytest.raises(DocumentError, match=r"^routes/r1: unknown plugin \[nope\]$"):
        await apply(store, doc(routes=[{**route, "plugins": {"nope": {}}}]))


async def test_a_dump_after_forced_deletes_applies_back(store: Store) -> None:
    """``DELETE ...?force=true`` leaves references naming nothing (as in APISIX, whose routes
    then fail at request time): the dump of that store applies back, to it and to an empty one."""
    from llmgate.admin.kind import Address
    from llmgate.admin.resource import ResourceApi
    from llmgate.admin.resources import RESOURCES
    from llmgate.config.rendering import render

    group = {"id": "g1", "plugins": {"limit-count": {"count": 1, "time_window": 60}}}
    await apply(
        store,
        doc(
            upstreams=[UPSTREAM],
            plugin_configs=[PLUGIN_CONFIG],
            services=[{"id": "s1", "upstream_id": "u1"}],
            consumer_groups=[group],
            routes=[ROUTE, {"id": "r2", "uri": "/two", "service_id": "s1"}],
            consumers=[{**JACK, "group_id": "g1"}],
        ),
    )
    for kind, id in (
        ("upstreams", "u1"),
        ("plugin_configs", "pc1"),
        ("services", "s1"),
        ("consumer_groups", "g1"),
    ):
        assert (await ResourceApi(RESOURCES[kind], store).delete(Address(id), force=True))[0] == 200
    before = {label: item.value for label, item in (await stored(store)).items()}
    dump = parse(render(list((await stored(store)).values()), "yaml"), "yaml", "dump.yaml", {})

    plan, revision = await apply(store, dump, prune=True)
    assert plan.changes == () and revision is None
    assert [line.split(";")[0] for line in plan.dangling] == [
        "consumers/jack: group_id [g1] names no consumer group",
        "routes/r1: upstream_id [u1] names no upstream",
        "routes/r1: plugin_config_id [pc1] names no plugin config",
        "routes/r2: service_id [s1] names no service",
    ]

    async with store.write() as writer:  # an empty store
        for label in before:
            kind, _, id = label.partition("/")
            await writer.delete(kind, id)
    plan, _ = await apply(store, dump)
    assert len(plan.changes) == 3 and len(plan.dangling) == 4
    after = {label: item.value for label, item in (await stored(store)).items()}
    assert {k: without_times(v) for k, v in after.items()} == {
        k: without_times(v) for k, v in before.items()
    }


async def test_prune_deletes_what_the_file_does_not_have(store: Store) -> None:
    await apply(
        store,
        doc(
            routes=[ROUTE, {"id": "r2", "uri": "/two", "upstream_id": "u1"}],
            plugin_configs=[PLUGIN_CONFIG],
            upstreams=[UPSTREAM, {**UPSTREAM, "id": "u2"}],
            consumers=[JACK, {"id": "jack/credentials/k1", "plugins": {"key-auth": {"key": "k"}}}],
        ),
    )
    document = doc(
        routes=[ROUTE], plugin_configs=[PLUGIN_CONFIG], upstreams=[UPSTREAM], consumers=[JACK]
    )
    plan, _ = await apply(store, document)
    assert plan.changes == () and set(plan.kept) == {
        "routes/r2",
        "upstreams/u2",
        "consumers/jack/credentials/k1",
    }
    plan, revision = await apply(store, document, prune=True)
    assert sorted((c.action, c.label) for c in plan.changes) == [
        ("delete", "consumers/jack/credentials/k1"),
        ("delete", "routes/r2"),
        ("delete", "upstreams/u2"),
    ]
    assert sorted(await stored(store)) == [
        "consumers/jack",
        "plugin_configs/pc1",
        "routes/r1",
        "upstreams/u1",
    ]
    assert revision == 2


async def test_credentials_need_their_consumer(store: Store) -> None:
    credential = {"id": "jack/credentials/k1", "plugins": {"key-auth": {"key": "k"}}}
    with pytest.raises(
        DocumentError, match="consumers/jack/credentials/k1: consumer jack not found"
    ):
        await apply(store, doc(consumers=[credential]))
    plan, _ = await apply(store, doc(consumers=[credential, JACK]))
    assert [c.label for c in plan.changes] == ["consumers/jack", "consumers/jack/credentials/k1"]
    assert (await stored(store))["credentials/jack/k1"].value["plugins"]["key-auth"][
        "key"
    ] == key_digest("k")


async def test_duplicate_credentials_are_refused_but_a_key_may_move(store: Store) -> None:
    """Attacker: a second consumer with the same key would let one log in as the other."""
    a = {"username": "a", "plugins": {"key-auth": {"key": "shared"}}}
    b = {"username": "b", "plugins": {"key-auth": {"key": "shared"}}}
    with pytest.raises(
        DocumentError, match="consumers/a: duplicate key of plugin key-auth found with consumer: b"
    ):
        await apply(store, doc(consumers=[a, b]))
    await apply(
        store, doc(consumers=[a, {"username": "b", "plugins": {"key-auth": {"key": "other"}}}])
    )
    # Swapping the keys of two consumers is one consistent change, whatever the order.
    swapped = [
        {"username": "a", "plugins": {"key-auth": {"key": "other"}}},
        {"username": "b", "plugins": {"key-auth": {"key": "shared"}}},
    ]
    plan, _ = await apply(store, doc(consumers=swapped))
    assert len(plan.changes) == 2
    items = await stored(store)
    assert items["consumers/b"].value["plugins"]["key-auth"]["key"] == key_digest("shared")


async def test_secrets_are_never_stored_in_plain_text(store: Store) -> None:
    await apply(
        store,
        doc(
            consumers=[
                JACK,
                {
                    "username": "env",
                    "plugins": {"basic-auth": {"username": "e", "password": "$env://PW"}},
                },
            ]
        ),
    )
    items = await stored(store)
    assert "s3cret" not in str(items)
    assert items["consumers/env"].value["plugins"]["basic-auth"]["password"] == "$env://PW"


async def test_diff_writes_nothing(store: Store) -> None:
    plan = await diff(store, doc(upstreams=[UPSTREAM]))
    assert [(c.action, c.label, c.old) for c in plan.changes] == [("create", "upstreams/u1", None)]
    assert await store.revision() == 0 and await stored(store) == {}


async def test_an_unchanged_password_is_verified_once_with_a_memo(store: Store) -> None:
    memo = PasswordMemo()
    await apply(store, doc(consumers=[JACK]), memo=memo)
    assert len(memo.matched) == 1  # learnt from the hash just made
    hashed = next(iter(memo.matched))
    assert (
        hashed == (await stored(store))["consumers/jack"].value["plugins"]["basic-auth"]["password"]
    )
    plan, _ = await apply(store, doc(consumers=[JACK]), memo=memo)
    assert plan.changes == () and list(memo.matched) == [hashed]
    assert not memo.matches("wrong", hashed)
    assert memo.matches("s3cret", hashed)
    # A memo never vouches for a password it was not shown.
    assert not PasswordMemo().matches("wrong", hashed)


async def test_dumped_values_apply_as_they_are(store: Store) -> None:
    """What dump writes (hashes, digests, ids as strings) is accepted back unchanged."""
    from llmgate.config.rendering import render

    document = doc(
        routes=[ROUTE],
        plugin_configs=[PLUGIN_CONFIG],
        upstreams=[UPSTREAM],
        consumers=[JACK, {"id": "jack/credentials/k1", "plugins": {"key-auth": {"key": "k"}}}],
    )
    await apply(store, document)
    items = list((await stored(store)).values())
    again = parse(render(items, "yaml"), "yaml", "dump.yaml", {})
    plan, revision = await apply(store, again, prune=True)
    assert plan.changes == () and revision is None


async def test_a_limit_count_group_has_one_conf_in_the_result(store: Store) -> None:
    def grouped(id: str, count: int) -> dict[str, Any]:
        limit = {"count": count, "time_window": 60, "group": "g"}
        return {"id": id, "uri": f"/{id}", "upstream_id": "u1", "plugins": {"limit-count": limit}}

    await apply(store, doc(upstreams=[UPSTREAM], routes=[grouped("r1", 1), grouped("r2", 1)]))
    with pytest.raises(DocumentError, match="group conf mismatched"):
        await apply(store, doc(upstreams=[UPSTREAM], routes=[grouped("r1", 2), grouped("r2", 1)]))
    # Every user of the group changed at once: the admin API cannot, one write at a time.
    await apply(store, doc(upstreams=[UPSTREAM], routes=[grouped("r1", 2), grouped("r2", 2)]))
    items = await stored(store)
    assert items["routes/r2"].value["plugins"]["limit-count"]["count"] == 2


async def test_an_unchanged_ssl_is_no_change(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's ssl carries its key in plain text; the store keeps it sealed (a new nonce each
    time).  Applying the same file again is no change, as for a basic-auth password; a new
    key is one."""
    monkeypatch.setenv(SSL_KEY_ENV, "a passphrase for this test only")
    ca = TestCA()
    cert, key = ca.issue("a.test")
    ssl = {"id": "s1", "cert": cert, "key": key, "snis": ["a.test"]}
    await apply(store, doc(ssls=[ssl]))
    plan, revision = await apply(store, doc(ssls=[ssl]))
    assert plan.changes == () and revision is None
    assert (await diff(store, doc(ssls=[ssl]))).changes == ()
    other_cert, other_key = ca.issue("a.test")
    plan, revision = await apply(store, doc(ssls=[{**ssl, "cert": other_cert, "key": other_key}]))
    assert [c.label for c in plan.changes] == ["ssls/s1"] and revision == 2
    sealed = (await stored(store))["ssls/s1"].value["key"]
    assert is_sealed(sealed) and unseal(sealed) == other_key


async def test_an_unchanged_upstream_client_key_is_no_change(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream's ``tls.client_key`` (mutual TLS) is sealed as an ssl's key: the same file
    applied again is no change, for an upstream and for a route's inline upstream."""
    monkeypatch.setenv(SSL_KEY_ENV, "a passphrase for this test only")
    cert, key = TestCA().issue("client.test")
    tls = {"client_cert": cert, "client_key": key}
    upstream = {**UPSTREAM, "scheme": "https", "tls": tls}
    inline = {k: v for k, v in upstream.items() if k != "id"}
    route = {"id": "r1", "uri": "/hello", "upstream": inline}
    await apply(store, doc(upstreams=[upstream], routes=[route]))
    items = await stored(store)
    for sealed in (
        items["upstreams/u1"].value["tls"]["client_key"],
        items["routes/r1"].value["upstream"]["tls"]["client_key"],
    ):
        assert is_sealed(sealed) and unseal(sealed) == key
    plan, revision = await apply(store, doc(upstreams=[upstream], routes=[route]))
    assert plan.changes == () and revision is None
