"""APISIX's other resources against a real ``llmgate serve``: services (a route inherits the
upstream, plugins and hosts of its ``service_id``), global rules (plugins on every request,
before the route's), with APISIX's reference checks and messages.

One gateway for the module; each test cleans up what it creates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import LiveGateway, http_json, metric_total, wait_for


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("apisix-resources")) as gateway:
        yield gateway


def get(
    live: LiveGateway, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    return live.get(path, headers)


def set_header(name: str, value: str) -> dict[str, Any]:
    """proxy-rewrite adding ``name: value`` to the upstream request."""
    return {"proxy-rewrite": {"headers": {"set": {name: value}}}}


def sent(body: Any, name: str) -> str | None:
    """A header the fake upstream received."""
    assert isinstance(body, dict) and "headers" in body, body
    value = body["headers"].get(name.lower())
    return str(value) if value is not None else None


# --- services -------------------------------------------------------------------------------


def test_route_with_only_service_id_is_served_by_the_service(live: LiveGateway) -> None:
    live.put("upstreams/svc-up", live.upstream())
    live.put(
        "services/s1",
        {"upstream": live.upstream(), "plugins": set_header("X-Svc", "s1"), "hosts": ["svc.test"]},
    )
    live.put("services/s2", {"upstream_id": "svc-up", "plugins": set_header("X-Svc", "s2")})
    live.put("routes/svc-only", {"uri": "/svc/*", "service_id": "s1"})
    live.put(
        "routes/svc-override",
        {"uri": "/svc-own/*", "service_id": "s1", "plugins": set_header("X-Route", "mine")},
    )
    live.put("routes/svc-upstream-id", {"uri": "/svc2/*", "service_id": "s2"})
    try:
        # The service's upstream, plugins and hosts.
        status, body, _ = get(live, "/svc/a", {"Host": "svc.test"})
        assert status == 200, body
        assert sent(body, "X-Svc") == "s1"
        assert get(live, "/svc/a", {"Host": "other.test"})[0] == 404
        # The route's plugin of the same name replaces the service's (APISIX's merge).
        status, body, _ = get(live, "/svc-own/a", {"Host": "svc.test"})
        assert status == 200, body
        assert sent(body, "X-Route") == "mine" and sent(body, "X-Svc") is None
        # A service's upstream_id.
        status, body, _ = get(live, "/svc2/a")
        assert status == 200 and sent(body, "X-Svc") == "s2", body

        # A change of the service is live on its routes.
        live.put("services/s2", {"upstream_id": "svc-up", "plugins": set_header("X-Svc", "v2")})
        assert sent(get(live, "/svc2/a")[1], "X-Svc") == "v2"

        # Reference checks, with APISIX's messages.
        status, answer = live.admin("DELETE", "services/s1")
        assert (status, answer["error_msg"]) == (
            400,
            "can not delete this service directly, route [svc-only] is still using it now",
        )
        status, answer = live.admin("DELETE", "upstreams/svc-up")
        assert (status, answer["error_msg"]) == (
            400,
            "can not delete this upstream, service [s2] is still using it now",
        )
        status, answer = live.admin("PUT", "routes/bad", {"uri": "/x", "service_id": "nope"})
        assert (status, answer["error_msg"]) == (
            400,
            "failed to fetch service info by service id [nope], response code: 404",
        )
        status, answer = live.admin("PUT", "services/s3", {"upstream_id": "nope"})
        assert status == 400 and "upstream id [nope]" in answer["error_msg"]
        # A service's plugins are checked as a route's are.
        status, answer = live.admin("PUT", "services/s3", {"plugins": {"no-such-plugin": {}}})
        assert status == 400, answer
        status, answer = live.admin("PUT", "services/s3", {"enable_websocket": True})
        assert status == 400 and "enable_websocket" in answer["error_msg"], answer
        # Listed in APISIX's envelope.
        status, listed = live.admin("GET", "services")
        assert status == 200 and listed["total"] == 2
        assert {item["key"] for item in listed["list"]} == {
            "/apisix/services/s1",
            "/apisix/services/s2",
        }
    finally:
        for route in ("svc-only", "svc-override", "svc-upstream-id"):
            live.delete(f"routes/{route}")
        live.delete("services/s1")
        live.delete("services/s2")
        live.delete("upstreams/svc-up")


def test_a_route_without_any_upstream_is_503_as_in_apisix(live: LiveGateway) -> None:
    # APISIX (t/node/not-exist-upstream.t): a route with plugins but no upstream, and none on
    # its service, is accepted; a request to it is 503 "missing upstream configuration in
    # Route or Service".
    live.put("services/no-up", {"plugins": set_header("X-Svc", "no-up")})
    live.put("routes/no-up", {"uri": "/no-up", "plugins": {}})
    live.put("routes/no-up-svc", {"uri": "/no-up-svc", "service_id": "no-up"})
    try:
        for path in ("/no-up", "/no-up-svc"):
            status, body, _ = get(live, path)
            assert (status, body) == (
                503,
                {"error_msg": "missing upstream configuration in Route or Service"},
            ), path
    finally:
        live.delete("routes/no-up")
        live.delete("routes/no-up-svc")
        live.delete("services/no-up")


def test_upstream_id_wins_over_an_inline_upstream_as_in_apisix(live: LiveGateway) -> None:
    """APISIX's handle_upstream looks at ``upstream_id`` first: an object holding both is
    served by the upstream it names, on a route and on a service alike."""
    dead = {"type": "roundrobin", "nodes": {"127.0.0.1:1": 1}}
    live.put("upstreams/both-up", live.upstream())
    live.put("routes/both", {"uri": "/both/*", "upstream_id": "both-up", "upstream": dead})
    live.put("services/both-svc", {"upstream_id": "both-up", "upstream": dead})
    live.put("routes/both-svc", {"uri": "/both-svc/*", "service_id": "both-svc"})
    try:
        status, body, _ = get(live, "/both/a")
        assert status == 200, body
        status, body, _ = get(live, "/both-svc/a")
        assert status == 200, body
    finally:
        live.delete("routes/both")
        live.delete("routes/both-svc")
        live.delete("services/both-svc")
        live.delete("upstreams/both-up")


# --- global rules ---------------------------------------------------------------------------


def test_global_rule_plugins_run_on_every_route_before_the_routes(live: LiveGateway) -> None:
    live.put("routes/g1", {"uri": "/g1", "upstream": live.upstream()})
    live.put(
        "routes/g2",
        {"uri": "/g2", "upstream": live.upstream(), "plugins": set_header("X-Order", "route")},
    )
    live.put("services/gs", {"upstream": live.upstream()})
    live.put("routes/g3", {"uri": "/g3", "service_id": "gs"})
    rule = {
        "plugins": {
            **set_header("X-Order", "global"),
            "response-rewrite": {"headers": {"set": {"X-Global": "seen"}}},
        }
    }
    live.put("global_rules/1", rule)
    try:
        for path in ("/g1", "/g2", "/g3"):
            status, body, head = get(live, path)
            assert status == 200, (path, body)
            assert head.get("X-Global") == "seen", (path, head)
        # An unmatched request runs them too, then gets the 404 (as APISIX does).
        status, body, head = get(live, "/no-such-route")
        assert (status, body) == (404, {"error_msg": "404 Route Not Found"})
        assert head.get("X-Global") == "seen"
        # Global rules run first: the route's proxy-rewrite has the last word.
        assert sent(get(live, "/g1")[1], "X-Order") == "global"
        assert sent(get(live, "/g2")[1], "X-Order") == "route"

        # A plugin lives in one global rule only (APISIX's message); POST is refused.
        status, answer = live.admin(
            "PUT", "global_rules/2", {"plugins": {"response-rewrite": {"status_code": 200}}}
        )
        assert (status, answer["error_msg"]) == (
            400,
            "plugin 'response-rewrite' already exists in global rule with id '1'",
        )
        assert live.admin("POST", "global_rules", {"plugins": {}})[0] == 405
        assert live.admin("PUT", "global_rules/2", {})[0] == 400  # plugins are required

        # A global key-auth guards every route, the service's included.
        live.put("consumers", {"username": "gjack", "plugins": {"key-auth": {"key": "g-key"}}})
        live.put("global_rules/2", {"plugins": {"key-auth": {}}})
        for path in ("/g1", "/g3"):
            assert get(live, path)[0] == 401
            assert get(live, path, {"apikey": "g-key"})[0] == 200
        assert get(live, "/no-such-route")[0] == 401  # authentication before the 404
        assert get(live, "/no-such-route", {"apikey": "g-key"})[0] == 404
        live.delete("global_rules/2")
        assert get(live, "/g1")[0] == 200

        # Deleted: gone from every route at once.
        live.delete("global_rules/1")
        assert "X-Global" not in get(live, "/g1")[2]
        status, _, head = get(live, "/no-such-route")
        assert status == 404 and "X-Global" not in head
    finally:
        for path in ("global_rules/1", "global_rules/2", "consumers/gjack"):
            live.admin("DELETE", path)
        for route in ("g1", "g2", "g3"):
            live.delete(f"routes/{route}")
        live.delete("services/gs")


def test_global_rules_take_no_metadata(live: LiveGateway) -> None:
    """APISIX's global rule has only an id and plugins: a name, desc or labels is refused."""
    plugins = {"response-rewrite": {"headers": {"set": {"X-A": "1"}}}}
    for field, value in (("name", "n"), ("desc", "d"), ("labels", {"a": "b"})):
        status, answer = live.admin("PUT", "global_rules/9", {"plugins": plugins, field: value})
        assert status == 400 and field in answer["error_msg"], (field, answer)


# --- consumer groups ------------------------------------------------------------------------


def test_consumer_group_limit_count_applies_to_its_consumers(live: LiveGateway) -> None:
    """A group's plugins reach its consumers (consumer > group, as APISIX merges them); the
    group's limit-count counts its consumers together (one counter per group and key)."""
    limit = {"count": 2, "time_window": 60, "rejected_code": 429, "key": "remote_addr"}
    live.put(
        "consumer_groups/team",
        {"plugins": {"limit-count": limit, **set_header("X-Group", "team")}},
    )
    live.put(
        "consumers",
        {"username": "cg_jack", "group_id": "team", "plugins": {"key-auth": {"key": "cg-jack"}}},
    )
    live.put(
        "consumers",
        {
            "username": "cg_rose",
            "group_id": "team",
            "plugins": {"key-auth": {"key": "cg-rose"}, **set_header("X-Group", "rose-own")},
        },
    )
    live.put("consumers", {"username": "cg_solo", "plugins": {"key-auth": {"key": "cg-solo"}}})
    live.put("routes/cg", {"uri": "/cg", "upstream": live.upstream(), "plugins": {"key-auth": {}}})
    try:
        status, body, head = get(live, "/cg", {"apikey": "cg-jack"})
        assert status == 200 and sent(body, "X-Group") == "team", body
        assert head.get("X-RateLimit-Limit") == "2"
        # rose's own proxy-rewrite replaces the group's; the group's limit still counts her.
        status, body, _ = get(live, "/cg", {"apikey": "cg-rose"})
        assert status == 200 and sent(body, "X-Group") == "rose-own", body
        # Two requests of the group: the third, whoever sends it, is over the group's limit.
        assert get(live, "/cg", {"apikey": "cg-jack"})[0] == 429
        assert get(live, "/cg", {"apikey": "cg-rose"})[0] == 429
        # A consumer outside the group is not limited.
        for _ in range(3):
            assert get(live, "/cg", {"apikey": "cg-solo"})[0] == 200

        # Reference checks, with APISIX's messages.
        status, answer = live.admin("DELETE", "consumer_groups/team")
        assert (status, answer["error_msg"]) == (
            400,
            "can not delete this consumer group, consumer [cg_jack] is still using it now",
        )
        status, answer = live.admin("PUT", "consumers", {"username": "x1", "group_id": "nope"})
        assert (status, answer["error_msg"]) == (
            400,
            "failed to fetch consumer group info by consumer group id [nope], response code: 404",
        )
        assert live.admin("POST", "consumer_groups", {"plugins": {}})[0] == 405
        status, answer = live.admin("PUT", "consumer_groups/g2", {"plugins": {"key-auth": {}}})
        assert status == 400 and "auth plugin" in answer["error_msg"], answer
    finally:
        live.delete("routes/cg")
        for name in ("cg_jack", "cg_rose", "cg_solo"):
            live.delete(f"consumers/{name}")
        live.delete("consumer_groups/team")


# --- plugin metadata ------------------------------------------------------------------------


def test_file_logger_log_format_from_plugin_metadata(live: LiveGateway) -> None:
    path = live.workdir / "metadata-access.log"
    live.put("plugin_metadata/file-logger", {"log_format": {"who": "$http_x_who", "k": "v"}})
    live.put(
        "routes/fl",
        {
            "uri": "/fl",
            "upstream": live.upstream(),
            "plugins": {"file-logger": {"path": str(path)}},
        },
    )
    try:
        assert get(live, "/fl", {"X-Who": "ann"})[0] == 200
        deadline = time.monotonic() + 5
        while not (path.exists() and path.read_text().strip()):
            assert time.monotonic() < deadline, "nothing logged"
            time.sleep(0.05)
        assert json.loads(path.read_text().splitlines()[0]) == {
            "who": "ann",
            "k": "v",
            "route_id": "fl",
        }
        status, got = live.admin("GET", "plugin_metadata/file-logger")
        assert status == 200 and got["key"] == "/apisix/plugin_metadata/file-logger"
        assert got["value"]["log_format"] == {"who": "$http_x_who", "k": "v"}
        assert live.admin("POST", "plugin_metadata/file-logger", {})[0] == 405
    finally:
        live.delete("routes/fl")
        live.delete("plugin_metadata/file-logger")


# --- kinds llmgate lists but does not have --------------------------------------------------


def test_stream_routes_protos_and_secrets_list_empty_and_refuse_writes(live: LiveGateway) -> None:
    """Tools that list every APISIX resource get APISIX's shapes; a write says why not."""
    for kind in ("stream_routes", "protos", "secrets"):
        status, body = live.admin("GET", kind)
        assert (status, body) == (200, {"list": [], "total": 0}), kind
    for path in ("stream_routes/1", "protos/1", "secrets/vault/1"):
        assert live.admin("GET", path)[0] == 404, path
        assert live.admin("DELETE", path)[0] == 404, path
    for method, path, word in (
        ("PUT", "stream_routes/1", "stream routes"),
        ("POST", "stream_routes", "stream routes"),
        ("PUT", "protos/1", "gRPC"),
        ("PATCH", "protos/1", "gRPC"),
        ("PUT", "secrets/vault/1", "$env://"),
    ):
        status, answer = live.admin(method, path, {"uri": "/x"})
        assert status == 400 and word in answer["error_msg"], (method, path, answer)


def test_metrics_label_the_routes_service(live: LiveGateway) -> None:
    """A service's prometheus and ai-proxy reach its route; the metrics carry the service
    (``service`` on HTTP series, by name with ``prefer_name``; ``service_id`` on LLM series)."""
    ai_proxy = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{live.fake_address}/v1/chat/completions"},
    }
    live.put(
        "services/llm",
        {"name": "llm-svc", "plugins": {"prometheus": {}, "ai-proxy": ai_proxy}},
    )
    live.put("routes/llm", {"uri": "/svc-llm/chat", "service_id": "llm"})
    try:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        status, answer = http_json("POST", f"{live.gw.proxy_url}/svc-llm/chat", body)
        assert status == 200 and answer["usage"]["prompt_tokens"] > 0, answer
        metrics = wait_for(
            lambda: (
                (m := live.metric_series())
                and metric_total(m, "llmgate_llm_prompt_tokens", route_id="llm", service_id="llm")
                and m
            ),
            "the LLM series",
        )
        assert metric_total(metrics, "llmgate_http_status", route="llm", service="llm") == 1
        # prefer_name: the service by its name, as APISIX's exporter.
        live.put(
            "services/llm",
            {
                "name": "llm-svc",
                "plugins": {"prometheus": {"prefer_name": True}, "ai-proxy": ai_proxy},
            },
        )
        assert http_json("POST", f"{live.gw.proxy_url}/svc-llm/chat", body)[0] == 200
        wait_for(
            lambda: metric_total(live.metric_series(), "llmgate_http_status", service="llm-svc"),
            "the series named after the service",
        )
    finally:
        live.delete("routes/llm")
        live.delete("services/llm")
