"""Accepted means enforced, against a real ``llmgate serve``: route conditions (``vars``,
``remote_addrs``, ``priority``) choose the route, ``_meta.filter`` gates a plugin, configs that
used to be dropped now compile, and a stored config that stops compiling keeps serving its last
good version (or answers 503) without ever letting its traffic fall through to another route.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import LiveGateway, exchange, http_json, request_bytes
from tests.processes import free_port

UNIQUE_ENV = "LLMGATE_TEST_CONSUMER_ORIGINS"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("route-conditions")
    # A value that is no origin: consumers referring to it never compile in this process.
    with LiveGateway(workdir, env={UNIQUE_ENV: "not an origin"}) as gateway:
        yield gateway


def get(
    live: LiveGateway, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    return live.get(path, headers)


def tagged(live: LiveGateway, tag: str, **route: Any) -> dict[str, Any]:
    """A route whose requests reach the fake's echo with ``X-Route: tag``."""
    plugins = {"proxy-rewrite": {"headers": {"set": {"X-Route": tag}}}}
    return {"plugins": plugins, "upstream": live.upstream(), **route}


def route_of(live: LiveGateway, path: str, headers: dict[str, str] | None = None) -> str | None:
    status, body, _ = get(live, path, headers)
    if status == 404:
        return None
    assert status == 200, (status, body)
    return body["headers"].get("x-route")


def test_vars_select_routes(live: LiveGateway) -> None:
    uri = "/anything/vars"
    routes = {
        "header": {"vars": [["http_x_tenant", "==", "acme"]], "priority": 60},
        "arg": {"vars": [["arg_team", "==", "blue"]], "priority": 50},
        "cookie": {"vars": [["cookie_session", "~~", "^beta-[0-9]+$"]], "priority": 40},
        "in": {"vars": [["http_x_region", "in", ["eu", "uk"]]], "priority": 30},
        "nested-or": {
            "vars": [
                "OR",
                ["arg_debug", "==", "1"],
                ["AND", ["arg_b", "==", "2"], ["http_x_c", "~*", "^yes$"]],
            ],
            "priority": 20,
        },
        "not": {"vars": [["http_x_block", "!", "==", "1"], ["arg_not", "1"]], "priority": 10},
        "default": {},
    }
    for tag, fields in routes.items():
        live.put(f"routes/vars-{tag}", tagged(live, tag, uri=uri, **fields))

    assert route_of(live, uri, {"X-Tenant": "acme"}) == "header"
    assert route_of(live, uri, {"X-Tenant": "other"}) == "default"
    assert route_of(live, uri + "?team=blue") == "arg"
    assert route_of(live, uri + "?team=blue", {"X-Tenant": "acme"}) == "header"  # priority
    assert route_of(live, uri, {"Cookie": "a=1; session=beta-42"}) == "cookie"
    assert route_of(live, uri, {"Cookie": "session=beta-x"}) == "default"
    assert route_of(live, uri, {"X-Region": "uk"}) == "in"
    assert route_of(live, uri, {"X-Region": "us"}) == "default"
    assert route_of(live, uri + "?debug=1") == "nested-or"
    assert route_of(live, uri + "?b=2", {"X-C": "YES"}) == "nested-or"
    assert route_of(live, uri + "?b=2", {"X-C": "no"}) == "default"
    assert route_of(live, uri + "?not=1") == "not"
    assert route_of(live, uri + "?not=1", {"X-Block": "1"}) == "default"


def test_priority_and_vars_pick_the_ai_proxy_model(live: LiveGateway) -> None:
    def llm_route(model: str, **fields: Any) -> dict[str, Any]:
        ai_proxy = {
            "provider": "openai-compatible",
            "auth": {"header": {"Authorization": "Bearer sk-test"}},
            "options": {"model": model},
            "override": {"endpoint": f"http://{live.fake_address}/v1/chat/completions"},
        }
        return {"uri": "/v1/chat/completions", "plugins": {"ai-proxy": ai_proxy}, **fields}

    live.put("routes/llm-premium", llm_route("gpt-4o", vars=[["http_x_tier", "==", "premium"]]))
    live.put("routes/llm-default", llm_route("gpt-4o-mini", priority=-1))
    # A higher-priority route on the same URI only for one team's argument.
    live.put(
        "routes/llm-team",
        llm_route("team-model", priority=10, vars=[["arg_team", "in", ["red", "green"]]]),
    )
    chat = {"model": "client-choice", "messages": [{"role": "user", "content": "hi"}]}

    def model_for(query: str = "", **headers: str) -> str:
        status, body = http_json(
            "POST",
            f"{live.gw.proxy_url}/v1/chat/completions{query}",
            chat,
            {"Content-Type": "application/json", **headers},
        )
        assert status == 200, body
        return str(body["model"])

    assert model_for(**{"X-Tier": "premium"}) == "gpt-4o"
    assert model_for() == "gpt-4o-mini"
    assert model_for(**{"X-Tier": "basic"}) == "gpt-4o-mini"
    assert model_for("?team=red", **{"X-Tier": "premium"}) == "team-model"
    assert model_for("?team=blue", **{"X-Tier": "premium"}) == "gpt-4o"


def test_uris_methods_hosts_and_status(live: LiveGateway) -> None:
    live.put("routes/many-uris", tagged(live, "uris", uris=["/anything/u/a", "/anything/u/b*"]))
    live.put(
        "routes/post-only", tagged(live, "post", uri="/anything/u/a", methods=["POST"], priority=5)
    )
    live.put(
        "routes/one-host", tagged(live, "host", uri="/anything/u/a", host="api.example", priority=9)
    )
    live.put(
        "routes/hosts",
        tagged(live, "hosts", uri="/anything/u/a", hosts=["*.tenant.example"], priority=8),
    )
    assert route_of(live, "/anything/u/a") == "uris"
    assert route_of(live, "/anything/u/bcd") == "uris"
    assert route_of(live, "/anything/u/c") is None
    assert route_of(live, "/anything/u/a", {"Host": "API.example:9080"}) == "host"
    assert route_of(live, "/anything/u/a", {"Host": "x.tenant.example"}) == "hosts"
    assert route_of(live, "/anything/u/a", {"Host": "tenant.example"}) == "uris"
    status, body = http_json("POST", f"{live.gw.proxy_url}/anything/u/a", {})
    assert status == 200 and body["headers"]["x-route"] == "post"
    # status 0 takes a route out without deleting it.
    live.put(
        "routes/one-host",
        {**tagged(live, "host", uri="/anything/u/a", host="api.example"), "status": 0},
    )
    assert route_of(live, "/anything/u/a", {"Host": "api.example"}) == "uris"


def test_host_routes_win_over_host_less_ones_on_the_same_uri(live: LiveGateway) -> None:
    # APISIX's default router (radixtree_host_uri) tries routes whose hosts match first, then the
    # host-less ones, whatever the creation order or priority.
    live.put("routes/hp-plain", tagged(live, "plain", uri="/anything/hp", priority=50))
    live.put("routes/hp-host", tagged(live, "host", uri="/anything/hp", hosts=["h.test"]))
    live.put("services/hp-svc", {"hosts": ["*.svc.test"]})
    live.put("routes/hp-svc", tagged(live, "svc", uri="/anything/*", service_id="hp-svc"))
    assert route_of(live, "/anything/hp", {"Host": "h.test"}) == "host"
    assert route_of(live, "/anything/hp", {"Host": "a.svc.test"}) == "svc"  # hosts inherited
    assert route_of(live, "/anything/hp", {"Host": "other.test"}) == "plain"
    assert route_of(live, "/anything/other", {"Host": "h.test"}) is None


def test_upstream_scheme_tls_verify_and_node_priority(live: LiveGateway) -> None:
    # The fake answers TLS on the same port, with a certificate no public CA signed.
    https = live.upstream(scheme="https")
    live.put("routes/https", tagged(live, "https", uri="/anything/https", upstream=https))
    status, body, _ = get(live, "/anything/https")
    assert status == 200 and body["headers"]["x-route"] == "https"
    verified = live.upstream(scheme="https", tls={"verify": True})
    live.put("routes/https", tagged(live, "https", uri="/anything/https", upstream=verified))
    assert get(live, "/anything/https")[0] == 502
    # List-form nodes: the higher priority takes every request; the lower one is never tried.
    host, port = live.fake_address.split(":")
    dead = {"host": "127.0.0.1", "port": free_port(), "weight": 1}
    nodes = [{"host": host, "port": int(port), "weight": 1, "priority": 1}, {**dead, "priority": 0}]
    live.put("routes/prio", tagged(live, "prio", uri="/anything/prio", upstream={"nodes": nodes}))
    assert all(get(live, "/anything/prio")[0] == 200 for _ in range(6))
    nodes = [{**nodes[0], "priority": 0}, {**dead, "priority": 1}]
    upstream = {"nodes": nodes, "retries": 0}
    live.put("routes/prio", tagged(live, "prio", uri="/anything/prio", upstream=upstream))
    assert get(live, "/anything/prio")[0] == 502


def test_remote_addrs_restrict(live: LiveGateway) -> None:
    live.put(
        "routes/loopback",
        tagged(live, "loopback", uri="/anything/loopback", remote_addrs=["127.0.0.0/8", "::1"]),
    )
    live.put(
        "routes/private", tagged(live, "private", uri="/anything/private", remote_addr="10.0.0.0/8")
    )
    assert route_of(live, "/anything/loopback") == "loopback"
    status, body, _ = get(live, "/anything/private")
    assert (status, body) == (404, {"error_msg": "404 Route Not Found"})
    # As the attacker: forwarding headers are the client's word, never its address.
    spoofed = {
        "X-Forwarded-For": "10.1.2.3",
        "X-Real-IP": "10.1.2.3",
        "Forwarded": "for=10.1.2.3",
    }
    assert get(live, "/anything/private", spoofed)[0] == 404


def test_a_repeated_header_is_read_whole_as_nginx(live: LiveGateway) -> None:
    """``$http_x`` of a header sent on two lines is both, joined with ", " ("; " for Cookie),
    as nginx >= 1.23: in ``vars`` and in proxy-rewrite alike."""
    plugins = {"proxy-rewrite": {"headers": {"set": {"X-Seen": "$http_x_tag|$http_cookie"}}}}
    route = {
        "uri": "/anything/repeated",
        "vars": [["http_x_tag", "==", "a, b"]],
        "plugins": plugins,
        "upstream": live.upstream(),
    }
    live.put("routes/repeated", route)
    lines = [("X-Tag", "a"), ("Cookie", "c=1"), ("X-Tag", "b"), ("Cookie", "d=2")]
    answer = exchange(live.proxy_port, request_bytes("GET", "/anything/repeated", lines))
    assert answer.status == 200, answer
    assert answer.json()["headers"]["x-seen"] == "a, b|c=1; d=2"
    one = exchange(live.proxy_port, request_bytes("GET", "/anything/repeated", [("X-Tag", "a")]))
    assert one.status == 404


@pytest.mark.parametrize(
    ("hash_on", "key"),
    [("header", "X-User"), ("vars", "http_x_user"), ("vars_combinations", "$http_x_user")],
)
def test_chash_hashes_a_repeated_header_whole(live: LiveGateway, hash_on: str, key: str) -> None:
    """APISIX's chash key for ``hash_on: header`` is ``ctx.var["http_" .. key]``: nginx's
    ``$http_x_user``, a header sent on two lines joined with ", " (nginx >= 1.23).  The node
    a key picks shows in the status: one node is the fake (200), the other refuses (502)."""
    dead = f"127.0.0.1:{free_port()}"
    nodes = {live.fake_address: 1, dead: 1}
    upstream = {"type": "chash", "hash_on": hash_on, "key": key, "nodes": nodes, "retries": 0}
    live.put("routes/chash", {"uri": "/anything/chash", "upstream": upstream})

    def status(*values: str) -> int:
        lines = [("X-User", value) for value in values]
        return exchange(live.proxy_port, request_bytes("GET", "/anything/chash", lines)).status

    pairs = [(f"user-{n}", f"team-{n}") for n in range(12)]
    split = [status(first, second) for first, second in pairs]
    assert split == [status(f"{first}, {second}") for first, second in pairs]
    assert set(split) == {200, 502}
    # Some first line alone lands elsewhere: the second line is part of the key.
    assert split != [status(first) for first, _ in pairs]
    live.delete("routes/chash")


def test_a_cookie_is_found_in_any_cookie_line(live: LiveGateway) -> None:
    """``$cookie_x`` reads the Cookie lines joined as ``$http_cookie`` (nginx >= 1.23), so a
    cookie sent on the second line is found: in ``vars`` and in proxy-rewrite alike."""
    plugins = {"proxy-rewrite": {"headers": {"set": {"X-Seen": "$cookie_a|$cookie_session"}}}}
    route = {
        "uri": "/anything/cookies",
        "vars": [["cookie_session", "==", "beta"]],
        "plugins": plugins,
        "upstream": live.upstream(),
    }
    live.put("routes/cookies", route)
    lines = [("Cookie", "a=1; b=2"), ("X-Other", "x"), ("Cookie", "session=beta")]
    answer = exchange(live.proxy_port, request_bytes("GET", "/anything/cookies", lines))
    assert answer.status == 200, answer
    assert answer.json()["headers"]["x-seen"] == "1|beta"
    one = [("Cookie", "a=1; b=2")]
    assert exchange(live.proxy_port, request_bytes("GET", "/anything/cookies", one)).status == 404


def test_meta_filter_gates_a_plugin(live: LiveGateway) -> None:
    rewrite = {
        "headers": {"set": {"X-Trusted": "yes"}},
        "_meta": {"filter": [["arg_internal", "==", "1"]]},
    }
    live.put(
        "routes/filtered",
        {
            "uri": "/anything/filtered",
            "plugins": {"proxy-rewrite": rewrite},
            "upstream": live.upstream(),
        },
    )
    _, inside, _ = get(live, "/anything/filtered?internal=1")
    assert inside["headers"]["x-trusted"] == "yes"
    for query in ("", "?internal=0", "?internal=11"):
        _, outside, _ = get(live, "/anything/filtered" + query)
        assert "x-trusted" not in outside["headers"], query


def test_the_issues_configs_compile_and_work(live: LiveGateway) -> None:
    # cors: one pattern carrying "(?i)" (joined with "|" it used to be illegal, and dropped).
    cors = {"allow_origins_by_regex": [r"(?i)^https://app\.example\.com$", r"^https://b\."]}
    live.put("routes/cors", {"uri": "/anything/cors", "plugins": {"cors": cors}, **_up(live)})
    _, _, head = get(live, "/anything/cors", {"Origin": "https://APP.example.com"})
    assert head.get("Access-Control-Allow-Origin") == "https://APP.example.com"
    _, _, head = get(live, "/anything/cors", {"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in head
    timing = {"timing_allow_origins_by_regex": [r"^https://x\.", r"(?i)^https://APP\."]}
    live.put("routes/cors", {"uri": "/anything/cors", "plugins": {"cors": timing}, **_up(live)})
    _, _, head = get(live, "/anything/cors", {"Origin": "https://app.example.com"})
    assert head.get("Timing-Allow-Origin") == "https://app.example.com"
    # response-rewrite: "ajo" anchors the match; the pattern's own "(?i)" stays in front.
    filters = [
        {"regex": '(?i)\\{"METHOD"', "replace": '{"rewritten"', "options": "ajo"},
        {"regex": '"PATH"', "replace": '"not-at-the-start"', "options": "aijo"},
    ]
    live.put(
        "routes/rr",
        {
            "uri": "/anything/rr",
            "plugins": {"response-rewrite": {"filters": filters}},
            **_up(live),
        },
    )
    status, body, _ = get(live, "/anything/rr")
    assert status == 200, body
    assert body["rewritten"] == "GET" and body["path"] == "/anything/rr"


def test_configs_that_cannot_compile_are_400(live: LiveGateway) -> None:
    bad = {
        "cors": {"allow_origins_by_regex": ["^https://ok$", "(?i"]},
        "response-rewrite": {"filters": [{"regex": "a", "replace": "b", "options": "ajd"}]},
    }
    for name, conf in bad.items():
        status, answer = live.admin("PUT", "routes/bad", {"uri": "/bad", "plugins": {name: conf}})
        assert status == 400, answer
        assert f"plugin {name}" in answer["error_msg"]
    assert live.admin("GET", "routes/bad")[0] == 404


def _up(live: LiveGateway) -> dict[str, Any]:
    return {"upstream": live.upstream()}


def _store_directly(live: LiveGateway, kind: str, id: str, value: dict[str, Any]) -> None:
    """Write a row as an older llmgate (or a hand edit) might have: no admin validation."""
    with sqlite3.connect(live.workdir / "llmgate.db") as db:
        (revision,) = db.execute("SELECT value FROM revision WHERE id = 1").fetchone()
        revision += 1
        db.execute("UPDATE revision SET value = ? WHERE id = 1", (revision,))
        db.execute(
            "INSERT INTO resources (kind, id, value, created_index, modified_index) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET "
            "value = excluded.value, modified_index = excluded.modified_index",
            (kind, id, json.dumps(value), revision, revision),
        )


def _wait_for_problem(live: LiveGateway, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = http_json("GET", f"{live.gw.admin_url}/readyz")
        assert status == 200, body  # still ready: it serves
        if key in body.get("config_errors", []):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{key} never reported as not compiling")


def test_a_config_that_stops_compiling_keeps_its_last_good_version(live: LiveGateway) -> None:
    # A public prefix that would serve /secure/x if the protected route were dropped.
    live.put("routes/public", tagged(live, "public", uri="/secure/*"))
    protected = tagged(live, "protected", uri="/secure/x", plugins={"key-auth": {}})
    live.put("routes/protected", protected)
    assert get(live, "/secure/x")[0] == 401
    # Stored by "an older version": a vars regex no engine compiles.
    _store_directly(
        live, "routes", "protected", {**protected, "vars": [["http_x", "~~", "(unclosed"]]}
    )
    _wait_for_problem(live, "routes/protected")
    for _ in range(3):
        status, body, _ = get(live, "/secure/x")
        assert status == 401, body  # the last good version, never the public route
    assert route_of(live, "/secure/y") == "public"
    # Reported once (not at every reload), and counted in the metrics.
    live.put("routes/unrelated-1", tagged(live, "u", uri="/anything/u1"))
    live.put("routes/unrelated-2", tagged(live, "u", uri="/anything/u2"))
    assert live.log().count("routes/protected does not compile") == 1
    with urllib.request.urlopen(
        f"http://127.0.0.1:{live.gw.metrics_port}/apisix/prometheus/metrics", timeout=10
    ) as resp:
        metrics = resp.read().decode()
    assert any(
        line.startswith("llmgate_config_errors ") and float(line.split()[1]) >= 1
        for line in metrics.splitlines()
    ), metrics
    # Fixed through the admin API: compiled afresh, the problem gone.
    live.put("routes/protected", protected)
    status, body = http_json("GET", f"{live.gw.admin_url}/readyz")
    assert "routes/protected" not in body.get("config_errors", [])


def test_a_config_that_never_compiled_answers_503_and_never_falls_through(
    live: LiveGateway,
) -> None:
    live.put("routes/public2", tagged(live, "public", uri="/locked/*"))
    _store_directly(
        live,
        "routes",
        "never",
        {"uri": "/locked/x", "plugins": {"key-auth": {}, "no-such-plugin": {}}, **_up(live)},
    )
    _wait_for_problem(live, "routes/never")
    status, body, _ = get(live, "/locked/x")
    assert (status, body) == (
        503,
        {"error_msg": "route never is unavailable: its configuration does not compile"},
    )
    assert route_of(live, "/locked/y") == "public"


def test_a_consumer_whose_env_value_does_not_validate_gets_503_not_500(live: LiveGateway) -> None:
    # In this process the variable is known and wrong, so the admin API refuses it...
    consumer = {
        "username": "envy",
        "plugins": {
            "key-auth": {"key": "envy-key"},
            "cors": {"allow_origins": f"$env://{UNIQUE_ENV}"},
        },
    }
    status, answer = live.admin("PUT", "consumers", consumer)
    assert status == 400 and "not an origin" not in answer["error_msg"]
    # ... but a row stored elsewhere (another node's admin, an older version) gets here too.
    _store_directly(
        live,
        "consumers",
        "envy",
        {**consumer, "plugins": {**consumer["plugins"], "key-auth": {"key": "envy-key"}}},
    )
    live.put("routes/envy", tagged(live, "envy", uri="/anything/envy", plugins={"key-auth": {}}))
    _wait_for_problem(live, "consumers/envy")
    status, body, _ = get(live, "/anything/envy", {"apikey": "envy-key"})
    assert status == 503, body
    assert get(live, "/anything/envy", {"apikey": "wrong"})[0] == 401
