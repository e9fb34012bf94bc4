"""The snapshot compiler: stored rows in, an immutable snapshot out; a row that does not compile
keeps its last good version (or answers 503), and its traffic never falls through."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.plugin_api.plugin import MetaPlugin
from llmgate.proxy.upstream import PoolRegistry
from llmgate.runtime.compiler import compile_snapshot
from llmgate.runtime.instances import Unavailable
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import Snapshot
from llmgate.store import Item

UPSTREAM = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
PUBLIC = {"uri": "/*", "upstream": UPSTREAM}
SECURE = {"uri": "/secure", "plugins": {"key-auth": {}}, "upstream": UPSTREAM}
# Valid for the admin API's models, but no regex engine compiles it.
BROKEN_VARS = [["http_x", "~~", "("]]


def item(kind: str, id: str, value: dict[str, Any]) -> Item:
    return Item(kind, id, value, 1, 1)


@pytest.fixture
async def services() -> Any:
    services = Services()
    yield services
    await services.close()


def compile_items(
    services: Services, *items: Item, previous: Snapshot | None = None, revision: int = 1
) -> Snapshot:
    services.pools.begin()
    return compile_snapshot(revision, items, services, services.pools, previous=previous)


def served(snapshot: Snapshot, path: str, **variables: str) -> str | None:
    entry = snapshot.router.match("GET", None, path, variables.get)
    if entry is None:
        return None
    assert entry.payload is not None
    if any(isinstance(p, Unavailable) for p in entry.payload.chain.plugins):
        return f"503:{entry.id}"
    return entry.id


async def test_a_route_that_never_compiled_answers_503_instead_of_falling_through(
    services: Services,
) -> None:
    snapshot = compile_items(
        services,
        item("routes", "public", PUBLIC),
        item("routes", "secure", {**SECURE, "vars": BROKEN_VARS}),
    )
    # The public "/*" route would serve "/secure" if the broken route were dropped.
    assert served(snapshot, "/secure") == "503:secure"
    assert served(snapshot, "/other") == "public"
    assert set(snapshot.problems) == {"routes/secure"}
    assert "failed to validate the 'vars' expression" in snapshot.problems["routes/secure"]


async def test_a_route_that_stops_compiling_keeps_its_last_good_version(
    services: Services,
) -> None:
    good = compile_items(
        services, item("routes", "public", PUBLIC), item("routes", "secure", SECURE)
    )
    before = good.units["routes/secure"].compiled
    broken = compile_items(
        services,
        item("routes", "public", PUBLIC),
        item("routes", "secure", {**SECURE, "plugins": {"key-auth": {"header": 5}}}),
        previous=good,
        revision=2,
    )
    assert served(broken, "/secure") == "secure"
    assert broken.units["routes/secure"].compiled is before  # the very same compiled route
    assert "key-auth" in broken.problems["routes/secure"]
    # Its upstream pool is still counted as in use (it must not be retired with `good`).
    assert before.payload.upstream is not None
    assert broken.units["routes/secure"].pool_keys <= services.pools.touched
    # Fixed again: compiled afresh, no problem left.
    fixed = compile_items(
        services,
        item("routes", "public", PUBLIC),
        item("routes", "secure", SECURE),
        previous=broken,
        revision=3,
    )
    assert fixed.problems == {}
    assert fixed.units["routes/secure"].compiled is not before


@pytest.mark.parametrize(
    ("route", "why"),
    [
        ({**SECURE, "plugins": {"no-such-plugin": {}}}, "unknown plugin [no-such-plugin]"),
        ({**SECURE, "plugin_config_id": "gone"}, "failed to fetch plugin config by id [gone]"),
        ({**SECURE, "remote_addrs": ["10.0.0.0/33"]}, 'property "remote_addrs"'),
        ({**SECURE, "filter_func": "function(vars) return true end"}, "filter_func"),
        ({**SECURE, "upstream": {"nodes": {"a:1": "heavy"}}}, "invalid upstream"),
        (
            {**SECURE, "plugins": {"cors": {"allow_origins_by_regex": ["("]}}},
            "failed to check the configuration of plugin cors",
        ),
        (
            {**SECURE, "plugins": {"key-auth": {"_meta": {"filter": [["a", "<>", 1]]}}}},
            "failed to validate the 'vars' expression",
        ),
    ],
)
async def test_stored_configs_that_do_not_compile_are_named(
    services: Services, route: dict[str, Any], why: str
) -> None:
    snapshot = compile_items(services, item("routes", "public", PUBLIC), item("routes", "s", route))
    assert why in snapshot.problems["routes/s"]
    assert served(snapshot, "/secure") == "503:s"


async def test_a_disabled_route_is_not_served_and_is_no_problem(services: Services) -> None:
    snapshot = compile_items(
        services,
        item("routes", "public", PUBLIC),
        item("routes", "off", {**SECURE, "status": 0, "vars": BROKEN_VARS}),
    )
    assert served(snapshot, "/secure") == "public"
    assert snapshot.problems == {}


async def test_consumer_chains_are_built_with_the_snapshot(services: Services) -> None:
    consumer = {
        "username": "jack",
        "plugins": {
            "key-auth": {"key": "sha256$" + "0" * 64},
            "limit-count": {"count": 2, "time_window": 60},
            "proxy-rewrite": {"_meta": {"disable": True}, "uri": "/x"},
        },
    }
    snapshot = compile_items(
        services,
        item(
            "routes", "r", {**SECURE, "plugins": {"key-auth": {}, "proxy-rewrite": {"uri": "/y"}}}
        ),
        item("consumers", "jack", consumer),
    )
    jack = snapshot.consumers["jack"]
    assert [p.name for p in jack.chain.plugins] == ["limit-count"]
    # A disabled consumer plugin still replaces the route's plugin of that name (APISIX).
    assert jack.overrides == {"limit-count", "proxy-rewrite"}
    route = snapshot.router.match("GET", None, "/secure").payload  # type: ignore[union-attr]
    merged = snapshot.chain_for(route, jack)
    assert [p.name for p in merged.plugins] == ["key-auth", "limit-count"]
    # The very instances compiled with the snapshot: nothing is built per request.
    assert merged.plugins[1] is jack.chain.plugins[0]
    assert snapshot.chain_for(route, jack) == merged
    assert [c.consumer.username for c in snapshot.auth_index["key-auth"].values()] == ["jack"]


async def test_a_consumer_whose_env_value_no_longer_validates(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Valid when written (a $env:// reference skips the pattern check); what it resolves to
    # decides at compile time.
    consumer = {
        "username": "jack",
        "plugins": {
            "key-auth": {"key": "$env://JACK_KEY"},
            "cors": {"allow_origins": "$env://JACK_ORIGINS"},
        },
    }
    monkeypatch.setenv("JACK_KEY", "a-good-key")
    monkeypatch.setenv("JACK_ORIGINS", "https://jack.example")
    good = compile_items(services, item("consumers", "jack", consumer))
    assert good.problems == {}
    assert len(good.auth_index["key-auth"]) == 1
    monkeypatch.setenv("JACK_ORIGINS", "not an origin")
    broken = compile_items(services, item("consumers", "jack", consumer), previous=good)
    assert "cors" in broken.problems["consumers/jack"]
    assert "not an origin" not in broken.problems["consumers/jack"]
    assert broken.consumers["jack"] is good.consumers["jack"]  # last good version
    assert len(broken.auth_index["key-auth"]) == 1
    # Never compiled in this process: requests it authenticates answer 503.
    fresh = compile_items(services, item("consumers", "jack", consumer))
    assert isinstance(fresh.consumers["jack"].chain.plugins[0], Unavailable)
    assert len(fresh.auth_index["key-auth"]) == 1


async def test_problems_never_show_resolved_secrets(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_ORIGIN", "not an origin s3cr3t")
    route = {**SECURE, "plugins": {"cors": {"allow_origins": "$env://SECRET_ORIGIN"}}}
    snapshot = compile_items(services, item("routes", "r", route))
    assert "cors" in snapshot.problems["routes/r"]
    assert "s3cr3t" not in snapshot.problems["routes/r"]


async def test_meta_filter_and_error_response_wrap_the_plugin(services: Services) -> None:
    route = {
        **SECURE,
        "plugins": {
            "key-auth": {"_meta": {"filter": [["arg_k", "==", "1"]], "priority": -5}},
            "proxy-rewrite": {"uri": "/z", "_meta": {"error_response": {"x": 1}}},
        },
    }
    snapshot = compile_items(services, item("routes", "r", route))
    chain = snapshot.router.match("GET", None, "/secure").payload.chain  # type: ignore[union-attr]
    key_auth, rewrite = (
        next(p for p in chain.plugins if p.name == n) for n in ("key-auth", "proxy-rewrite")
    )
    assert isinstance(key_auth, MetaPlugin) and isinstance(rewrite, MetaPlugin)
    assert key_auth.kind == "auth"  # the wrapped plugin's declaration
    assert [p.name for p in chain.rewrite] == ["proxy-rewrite", "key-auth"]  # _meta.priority


async def test_pool_registry_is_not_mutated_by_a_failed_compile(services: Services) -> None:
    registry = PoolRegistry()
    registry.begin()
    compile_snapshot(1, [item("routes", "r", {**SECURE, "vars": BROKEN_VARS})], services, registry)
    assert registry.touched == set()
    await registry.close()
