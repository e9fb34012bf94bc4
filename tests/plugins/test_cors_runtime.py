"""cors at run time: preflights answered by the gateway, CORS headers on every response."""

from __future__ import annotations

from typing import Any

from llmgate.plugins.cors import OriginRule

PREFLIGHT = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}


async def _route(gateway, conf: dict[str, Any], **plugins: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {"uri": "/*", "plugins": {"cors": conf, **plugins}, "upstream": gateway.upstream()},
    )


async def test_preflight_is_answered_by_the_gateway(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {})
    resp = await gateway.proxy.options("/v1/chat/completions", headers=PREFLIGHT)
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "*"
    assert resp.headers["Access-Control-Allow-Headers"] == "*"
    assert resp.headers["Access-Control-Max-Age"] == "5"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert "Access-Control-Expose-Headers" not in resp.headers
    assert "Vary" not in resp.headers
    assert await gateway.fake_requests() == []


async def test_simple_request_is_proxied_with_cors_headers(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://app.example"})
    assert resp.status == 200
    assert (await resp.json())["path"] == "/echo"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    # Without an Origin, "*" still answers "*".
    resp = await gateway.proxy.get("/echo")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_listed_origins(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"allow_origins": "http://a.example,http://b.example:8080"})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://b.example:8080"})
    assert resp.headers["Access-Control-Allow-Origin"] == "http://b.example:8080"
    assert resp.headers.getall("Vary") == ["Origin"]

    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://evil.example"})
    assert resp.status == 200
    assert (await resp.json())["path"] == "/echo"  # still proxied
    assert not any(name.startswith("Access-Control-") for name in resp.headers)
    assert resp.headers["Vary"] == "Origin"


async def test_single_origin_must_match_exactly(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"allow_origins": "https://a.example"})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "https://a.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://a.example"
    resp = await gateway.proxy.get("/echo", headers={"Origin": "https://a.example.evil"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_disallowed_preflight_gets_no_cors_headers(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"allow_origins": "http://a.example"})
    resp = await gateway.proxy.options("/echo", headers=PREFLIGHT)
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Access-Control-Allow-Methods" not in resp.headers


async def test_origins_by_regex_replace_allow_origins(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "allow_origins": "http://listed.example",
            "allow_origins_by_regex": [r"^https://.*\.example\.com$"],
        },
    )
    resp = await gateway.proxy.get("/echo", headers={"Origin": "https://chat.example.com"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://chat.example.com"
    for origin in ("https://example.com.evil", "http://listed.example"):
        resp = await gateway.proxy.get("/echo", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in resp.headers, origin


async def test_each_origin_regex_stands_on_its_own(gateway) -> None:  # type: ignore[no-untyped-def]
    """APISIX joins the regexes with "|": an inline (?i) in one would leak into (or, in
    Python, break) the others.  Each is compiled and matched alone."""
    await _route(
        gateway,
        {"allow_origins_by_regex": [r"^https://a\.example$", r"(?i)^https://B\.example$"]},
    )
    for origin, allowed in (
        ("https://a.example", True),
        ("https://A.example", False),  # the first pattern is case-sensitive
        ("https://b.EXAMPLE", True),
        ("https://c.example", False),
    ):
        resp = await gateway.proxy.get("/echo", headers={"Origin": origin})
        assert ("Access-Control-Allow-Origin" in resp.headers) is allowed, origin


async def test_an_origin_regex_that_reaches_its_bound_does_not_match(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"allow_origins_by_regex": [r"^h(?=a)(a|aa)+b$", r"^https://ok$"]})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "h" + "a" * 64})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await gateway.proxy.get("/echo", headers={"Origin": "https://ok"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ok"


async def test_credentials_and_explicit_lists(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "allow_origins": "http://a.example",
            "allow_methods": "GET,POST",
            "allow_headers": "Authorization,Content-Type",
            "expose_headers": "X-Request-Id",
            "max_age": 600,
            "allow_credential": True,
        },
    )
    resp = await gateway.proxy.options(
        "/echo", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "http://a.example"
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "Authorization,Content-Type"
    assert resp.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
    assert resp.headers["Access-Control-Max-Age"] == "600"


async def test_credentials_with_wildcard_is_refused(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/*",
            "plugins": {"cors": {"allow_credential": True}},
            "upstream": gateway.upstream(),
        },
        status=400,
    )


async def test_double_star_echoes(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "allow_origins": "**",
            "allow_methods": "**",
            "allow_headers": "**",
            "allow_credential": True,
        },
    )
    resp = await gateway.proxy.options(
        "/echo",
        headers={**PREFLIGHT, "Access-Control-Request-Headers": "X-Custom, Content-Type"},
    )
    assert resp.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert resp.headers["Access-Control-Allow-Headers"] == "X-Custom, Content-Type"
    assert resp.headers["Access-Control-Allow-Methods"].split(",") == [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ]  # fmt: skip
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    # No Access-Control-Request-Headers: nothing to echo.
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://app.example"})
    assert "Access-Control-Allow-Headers" not in resp.headers


async def test_cors_headers_on_an_upstream_error(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"allow_origins": "http://a.example"})
    resp = await gateway.proxy.get(
        "/missing", headers={"Origin": "http://a.example", "X-Fake-Status": "404"}
    )
    assert resp.status == 404
    assert resp.headers["Access-Control-Allow-Origin"] == "http://a.example"


async def test_cors_headers_on_a_plugin_reply(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"allow_origins": "http://a.example"}, **{"basic-auth": {}})
    resp = await gateway.proxy.post("/v1/completions", headers={"Origin": "http://a.example"})
    assert resp.status == 401
    assert await resp.json() == {"message": "Missing authorization in request"}
    assert resp.headers["Access-Control-Allow-Origin"] == "http://a.example"
    assert resp.headers["Vary"] == "Origin"
    assert await gateway.fake_requests() == []


async def test_timing_allow_origin(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"timing_allow_origins": "http://a.example,http://b.example"})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://b.example"})
    assert resp.headers["Timing-Allow-Origin"] == "http://b.example"
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://c.example"})
    assert "Timing-Allow-Origin" not in resp.headers


def test_origin_rule_table() -> None:
    cases = [
        (OriginRule("*"), "http://x", "*"),
        (OriginRule("*"), None, "*"),
        (OriginRule("**"), "http://x", "http://x"),
        (OriginRule("**"), None, "*"),
        (OriginRule("null"), "null", "null"),
        (OriginRule("http://a"), "http://b", None),
        (OriginRule("http://a,http://b"), "http://b", "http://b"),
        (OriginRule("http://a,http://b"), None, None),
        (OriginRule("*", [r"\.test\.com$", "^http://x$"]), "http://x", "http://x"),
        (OriginRule("*", [r"\.test\.com$"]), "http://a.test.com", "http://a.test.com"),
        (OriginRule("*", [r"\.test\.com$"]), None, None),
    ]
    for rule, origin, expected in cases:
        assert rule.answer(origin) == expected, (origin, expected)


async def test_allow_origins_by_regex_is_tried_after_metadata(gateway) -> None:  # type: ignore[no-untyped-def]
    """With the default ``allow_origins`` ("*"), APISIX skips ``allow_origins_by_regex`` once
    ``allow_origins_by_metadata`` is set: the regexes were accepted and never used."""
    await gateway.put("plugin_metadata/cors", {"allow_origins": {"team": "http://a.example"}})
    conf = {"allow_origins_by_metadata": ["team"], "allow_origins_by_regex": [r"\.b\.example$"]}
    await _route(gateway, conf)
    for origin in ("http://a.example", "http://x.b.example"):
        resp = await gateway.proxy.get("/echo", headers={"Origin": origin})
        assert resp.headers.get("Access-Control-Allow-Origin") == origin, origin
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_allow_origins_by_metadata(gateway) -> None:  # type: ignore[no-untyped-def]
    """Origin lists named in ``allow_origins_by_metadata`` come from cors's plugin metadata,
    are tried first and echo the origin; ``allow_origins`` decides otherwise unless it is
    ``*``.  A metadata change is live on the route without touching it."""
    await gateway.put(
        "plugin_metadata/cors",
        {"allow_origins": {"team": "http://a.example,http://b.example", "any": "**"}},
    )
    await _route(
        gateway,
        {"allow_origins_by_metadata": ["team", "missing"], "allow_origins": "http://c.example"},
    )
    for origin in ("http://a.example", "http://b.example", "http://c.example"):
        resp = await gateway.proxy.get("/echo", headers={"Origin": origin})
        assert resp.headers.get("Access-Control-Allow-Origin") == origin, origin
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers

    # With the default "*", only the metadata decides.
    await _route(gateway, {"allow_origins_by_metadata": ["team"]})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers

    # The metadata changes: the route follows.
    await gateway.put("plugin_metadata/cors", {"allow_origins": {"team": "http://evil.example"}})
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://evil.example"})
    assert resp.headers.get("Access-Control-Allow-Origin") == "http://evil.example"
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://a.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers

    # Gone: nothing is allowed by metadata any more.
    await gateway.delete("plugin_metadata/cors")
    resp = await gateway.proxy.get("/echo", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers

    # Checked as APISIX checks it.
    answer = await gateway.put("plugin_metadata/cors", {"allow_origins": {"x": "nope"}}, 400)
    assert answer["error_msg"].startswith("invalid configuration"), answer
    await gateway.put("plugin_metadata/cors", {"allow_origin": {}}, 400)
