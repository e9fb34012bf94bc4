"""APISIX/nginx variables (``RequestContext.var``, http/context.py and http/variables.py) and
templates, as tables of cases (no network)."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Mapping
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from llmgate.http.context import (
    UPSTREAM_TRIES,
    Consumer,
    OutboundRequest,
    RequestContext,
    RouteInfo,
)
from llmgate.http.variables import Reference, Template, chash_key_reader
from llmgate.schemas.upstream import check_chash_key

PEER = ("10.1.2.3", 50123)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SOCK = ("127.0.0.1", 9080)


def make_ctx(
    path: str = "/v1/chat?x=1",
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    peer: tuple[str, int] | None = PEER,
    **facts: Any,
) -> RequestContext:
    """A context for ``path``; ``facts`` set what later phases fill in (consumer, status...)."""
    extra = {"peername": peer, "sockname": SOCK}
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: extra.get(name, default)
    inbound = make_mocked_request(
        method, path, headers=CIMultiDict(headers or {}), transport=transport
    )
    route = RouteInfo(id="r1", name="chat-route")
    outbound = OutboundRequest(method, inbound.path, inbound.query_string, CIMultiDict())
    ctx = RequestContext(inbound, route, outbound)
    for name, value in facts.items():
        setattr(ctx, name, value)
    return ctx


@pytest.mark.parametrize(
    ("name", "ctx_args", "expected"),
    [
        pytest.param("remote_addr", {}, "10.1.2.3", id="remote_addr"),
        pytest.param("remote_port", {}, "50123", id="remote_port"),
        pytest.param("remote_port", {"peer": None}, None, id="remote_port-unknown"),
        pytest.param("server_addr", {}, "127.0.0.1", id="server_addr"),
        pytest.param("server_port", {}, "9080", id="server_port"),
        pytest.param("host", {"headers": {"Host": "Api.Example.COM:8443"}}, "api.example.com"),
        pytest.param("host", {"headers": {"Host": "api.example.com"}}, "api.example.com"),
        pytest.param("host", {"headers": {"Host": "[::1]:9080"}}, "[::1]", id="host-ipv6-port"),
        pytest.param("host", {"headers": {"Host": "[FE80::1]"}}, "[fe80::1]", id="host-ipv6"),
        pytest.param("host", {"headers": {"Host": "A:8080"}}, "a", id="host-port-dropped"),
        pytest.param(
            "host", {"headers": {"Host": "Api.Example.:80"}}, "api.example", id="host-dot"
        ),
        pytest.param("host", {}, None, id="host-absent"),
        pytest.param(
            "http_host", {"headers": {"Host": "Api.Example.COM:8443"}}, "Api.Example.COM:8443"
        ),
        pytest.param("uri", {"path": "/v1/a%20b?x=1"}, "/v1/a b", id="uri-decoded"),
        pytest.param("uri", {"path": "/v1/x/../a%2e/./b?x=1"}, "/v1/a./b", id="uri-normalised"),
        # As APISIX: $request_uri is the normalised path and the query; the target as sent is
        # $real_request_uri.
        pytest.param(
            "request_uri", {"path": "/v1/x/../a%20b?x=1"}, "/v1/a b?x=1", id="request_uri-normal"
        ),
        pytest.param(
            "real_request_uri",
            {"path": "/v1/x/../a%20b?x=1"},
            "/v1/x/../a%20b?x=1",
            id="real_request_uri-raw",
        ),
        pytest.param("request_method", {"method": "PATCH"}, "PATCH"),
        pytest.param("query_string", {"path": "/p?b=2&a=1"}, "b=2&a=1"),
        pytest.param("args", {"path": "/p?b=2&a=1"}, "b=2&a=1"),
        pytest.param("query_string", {"path": "/p"}, "", id="query_string-empty"),
        pytest.param("scheme", {}, "http"),
        pytest.param("server_protocol", {}, "HTTP/1.1"),
        pytest.param("arg_model", {"path": "/p?model=gpt-4o&x=1"}, "gpt-4o", id="arg"),
        pytest.param("arg_a", {"path": "/p?a=1&a=2"}, "1", id="arg-repeated-first"),
        pytest.param("arg_a", {"path": "/p?a=%2F%20x"}, "/ x", id="arg-decoded"),
        pytest.param("arg_missing", {"path": "/p?a=1"}, None, id="arg-missing"),
        pytest.param("http_x_api_key", {"headers": {"X-API-Key": "k1"}}, "k1", id="http-dashes"),
        pytest.param(
            "http_user_agent", {"headers": {"user-agent": "curl"}}, "curl", id="http-case"
        ),
        pytest.param("http_x_missing", {}, None, id="http-missing"),
        pytest.param(
            "http_x_tag",
            {"headers": CIMultiDict([("X-Tag", "a"), ("x-tag", "b, c"), ("X-Tag", "")])},
            "a, b, c, ",
            id="http-repeated-joined",
        ),
        pytest.param(
            "http_cookie",
            {"headers": CIMultiDict([("Cookie", "a=1"), ("Cookie", "b=2")])},
            "a=1; b=2",
            id="http-cookie-repeated-joined",
        ),
        pytest.param("cookie_session", {"headers": {"Cookie": "a=1; session=abc"}}, "abc"),
        pytest.param("cookie_none", {"headers": {"Cookie": "a=1"}}, None, id="cookie-missing"),
        pytest.param(
            "cookie_session",
            {"headers": CIMultiDict([("Cookie", "a=1"), ("Cookie", "b=2; session=abc")])},
            "abc",
            id="cookie-in-a-later-line",
        ),
        pytest.param(
            "cookie_a",
            {"headers": CIMultiDict([("Cookie", "a=1"), ("Cookie", "b=2")])},
            "1",
            id="cookie-in-the-first-of-two-lines",
        ),
        pytest.param("post_arg_x", {"headers": {"Content-Type": "x-www-form-urlencoded"}}, None),
        # nginx's $remote_user: the user part of any Basic Authorization header, valid or not
        # (never its password); nothing when there is no such header or it does not decode.
        pytest.param(
            "remote_user", {"headers": {"Authorization": "Basic " + _b64("jack:pw")}}, "jack"
        ),
        pytest.param(
            "remote_user",
            {"headers": {"Authorization": "basic   " + _b64("jack:a:b")}},
            "jack",
            id="remote_user-scheme-any-case",
        ),
        pytest.param(
            "remote_user",
            {"headers": {"Authorization": "Basic " + _b64("jack:pw").rstrip("=")}},
            "jack",
            id="remote_user-unpadded",
        ),
        pytest.param(
            "remote_user",
            {"headers": {"Authorization": "Basic " + _b64(":pw")}},
            "",
            id="remote_user-empty",
        ),
        pytest.param("remote_user", {}, None, id="remote_user-absent"),
        pytest.param(
            "remote_user",
            {"headers": {"Authorization": "Bearer " + _b64("jack:pw")}},
            None,
            id="remote_user-bearer",
        ),
        pytest.param(
            "remote_user",
            {"headers": {"Authorization": "Basic " + _b64("jack")}},
            None,
            id="remote_user-no-colon",
        ),
        pytest.param(
            "remote_user", {"headers": {"Authorization": "Basic !!!"}}, None, id="remote_user-bad"
        ),
        pytest.param(
            "remote_user",
            {"headers": {"Authorization": "Basic "}},
            None,
            id="remote_user-empty-b64",
        ),
        pytest.param("hostname", {}, socket.gethostname(), id="hostname"),
        # APISIX's data-plane server block is ``server_name _;`` (apisix/cli/ngx_tpl.lua).
        pytest.param("server_name", {}, "_", id="server_name"),
        pytest.param("route_id", {}, "r1"),
        pytest.param("route_name", {}, "chat-route"),
        pytest.param("consumer_name", {}, None, id="consumer_name-anonymous"),
        pytest.param("consumer_name", {"consumer": Consumer("jack")}, "jack"),
        pytest.param("upstream_addr", {"upstream_addr": "127.0.0.1:1980"}, "127.0.0.1:1980"),
        pytest.param("upstream_addr", {}, None, id="upstream_addr-unset"),
        pytest.param("status", {}, None, id="status-not-yet"),
        pytest.param("status", {"status": 429}, "429"),
        pytest.param("upstream_status", {"upstream_status": 502}, "502"),
        pytest.param("upstream_status", {}, None, id="upstream_status-unset"),
        pytest.param("request_id", {"request_id": "abc-1"}, "abc-1"),
        pytest.param("apisix_request_id", {"request_id": "abc-1"}, "abc-1"),
        pytest.param("request_id", {}, None, id="request_id-unset"),
        pytest.param("no_such_variable", {}, None, id="unknown"),
        pytest.param("", {}, None, id="empty-name"),
    ],
)
def test_var(name: str, ctx_args: dict[str, Any], expected: str | None) -> None:
    ctx = make_ctx(**ctx_args)
    assert ctx.var(name) == expected
    assert ctx.var(name) == expected  # the second read (cached for most variables) agrees


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        pytest.param("", (), id="empty"),
        pytest.param("plain text", ("plain text",), id="literal"),
        pytest.param("$uri", (Reference("uri"),), id="bare"),
        pytest.param("${uri}", (Reference("uri"),), id="braced"),
        pytest.param("${uri}x", (Reference("uri"), "x"), id="braced-then-text"),
        pytest.param("$urix", (Reference("urix"),), id="bare-takes-the-longest-name"),
        pytest.param("/a/$arg_b/c", ("/a/", Reference("arg_b"), "/c"), id="middle"),
        pytest.param("$uri$args", (Reference("uri"), Reference("args")), id="adjacent"),
        pytest.param("$$uri", ("$", Reference("uri")), id="dollar-dollar"),
        # APISIX's resolve_var takes [\w.]+ as a name: digits and dots too.
        pytest.param("cost $5", ("cost ", Reference("5")), id="digits-are-a-name"),
        pytest.param("$a.b-c", (Reference("a.b"), "-c"), id="dots-are-part-of-a-name"),
        pytest.param("${1abc}", (Reference("1abc"),), id="braced-may-start-with-digit"),
        pytest.param("${a-b}", (Reference("a-b"),), id="braced-takes-anything-but-a-brace"),
        pytest.param("${ a }", (Reference("a"),), id="braced-spaces-dropped"),
        pytest.param("${a??b}", (Reference("a", "b"),), id="default"),
        pytest.param("${ a  ??  b c }", (Reference("a", "b c"),), id="default-spaces"),
        pytest.param("${a??}", (Reference("a"),), id="empty-default"),
        pytest.param("${open", ("${open",), id="unclosed-brace"),
        pytest.param("end $", ("end $",), id="trailing-dollar"),
        pytest.param("\\$uri", ("\\$uri",), id="escaped-dollar-kept-with-its-backslash"),
        pytest.param("\\${uri}", ("\\${uri}",), id="escaped-braced"),
        pytest.param("a\\$b $c", ("a\\$b ", Reference("c")), id="escape-is-one-reference"),
    ],
)
def test_template_compile(text: str, parts: tuple[str | Reference, ...]) -> None:
    template = Template.compile(text)
    assert template.parts == parts
    assert template.is_literal == all(isinstance(part, str) for part in parts)


class _Names:
    def __init__(self, **values: str) -> None:
        self.values = values

    def var(self, name: str) -> str | None:
        return self.values.get(name)


# APISIX's own table for resolve_var (t/core/utils.t, "resolve_var"), you=John, me=David.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("xx", "xx"),
        ("$me", "David"),
        ("$me run", "David run"),
        ("talk with $me", "talk with David"),
        ("tell $me to", "tell David to"),
        ("$you and $me", "John and David"),
        ("$eva and $me", " and David"),
        ("$you and \\$me", "John and \\$me"),
        ("${you}_${me}", "John_David"),
        ("${you}${me}", "JohnDavid"),
        ("${you}$me", "JohnDavid"),
        ("${you??}$me", "JohnDavid"),
        ("${you??Rose}$me", "JohnDavid"),
        ("${she??Rose}$me", "RoseDavid"),
        ("${she ??Rose}$me", "RoseDavid"),
        ("${she?? Rose}$me", "RoseDavid"),
        ("${she ?? Rose}$me", "RoseDavid"),
        ("${she   ??     Rose}$me", "RoseDavid"),
        ("${ she ?? Rose }$me", "RoseDavid"),
        ("${you ?? Rose}$he??", "John??"),
        ("${you ?? Rose}$he??Jack", "John??Jack"),
    ],
)
def test_template_resolves_as_apisix_resolve_var(text: str, expected: str) -> None:
    assert Template.compile(text).render(_Names(you="John", me="David")) == expected


def test_template_escapes_values_and_defaults_not_text() -> None:
    template = Template.compile("/?$a/${b??x?y}")
    assert template.expand(_Names(a="1?2").var, lambda v: v.replace("?", "%3F")) == "/?1%3F2/x%3Fy"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("static", "static", id="literal"),
        pytest.param("$arg_a", "1", id="one-variable"),
        pytest.param("[$arg_missing]", "[]", id="unset-renders-empty"),
        pytest.param("$request_method $uri?$args", "GET /v1/x y?a=1&b=2", id="several"),
        pytest.param("${http_x_user}-${route_id}", "u7-r1", id="braced"),
        pytest.param("$remote_addr:$remote_port", "10.1.2.3:50123", id="peer"),
    ],
)
def test_template_render(text: str, expected: str) -> None:
    ctx = make_ctx("/v1/x%20y?a=1&b=2", {"X-User": "u7"}, method="GET")
    assert Template.compile(text).render(ctx) == expected


def test_template_render_sees_values_that_change_while_the_request_runs() -> None:
    ctx = make_ctx()
    template = Template.compile("$status/$upstream_status")
    assert template.render(ctx) == "/"
    ctx.status, ctx.upstream_status = 200, 201
    assert template.render(ctx) == "200/201"


def test_variables_learned_while_the_request_runs_are_never_stale() -> None:
    ctx = make_ctx()
    names = ("consumer_name", "request_id", "upstream_addr", "status", "upstream_status")
    assert [ctx.var(name) for name in names] == [None] * len(names)
    ctx.consumer, ctx.request_id, ctx.upstream_addr = Consumer("jack"), "id-1", "10.0.0.1:80"
    ctx.status, ctx.upstream_status = 200, 502
    assert [ctx.var(name) for name in names] == ["jack", "id-1", "10.0.0.1:80", "200", "502"]


def test_upstream_variables_list_every_try_as_nginx() -> None:
    """nginx's $upstream_addr and $upstream_status list every try, the failed ones first
    ("127.0.0.1:1, 127.0.0.1:2" / "502, 200"), as the access log does."""
    ctx = make_ctx()
    ctx.state[UPSTREAM_TRIES] = [("127.0.0.1:1", 502, 0.001), ("127.0.0.1:2", 504, 1.0)]
    assert ctx.var("upstream_addr") == "127.0.0.1:1, 127.0.0.1:2"
    assert ctx.var("upstream_status") == "502, 504"  # every try failed: no last answer
    ctx.upstream_addr, ctx.upstream_status = "127.0.0.1:3", 200
    assert ctx.var("upstream_addr") == "127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3"
    assert ctx.var("upstream_status") == "502, 504, 200"


def test_upstream_response_time_lists_every_try_as_nginx() -> None:
    """nginx's $upstream_response_time has one entry per try, in seconds with milliseconds
    ("0.002, 0.010"), as $upstream_addr and $upstream_status, and as the access log."""
    ctx = make_ctx()
    assert ctx.var("upstream_response_time") is None  # no upstream tried yet
    ctx.upstream_addr, ctx.upstream_latency = "127.0.0.1:3", 0.0104
    assert ctx.var("upstream_response_time") == "0.010"
    ctx.state[UPSTREAM_TRIES] = [("127.0.0.1:1", 502, 0.0021), ("127.0.0.1:2", 504, 1.0)]
    assert ctx.var("upstream_response_time") == "0.002, 1.000, 0.010"
    ctx.upstream_addr, ctx.upstream_latency = None, None  # every try failed
    assert ctx.var("upstream_response_time") == "0.002, 1.000"
    assert Template.compile("[$upstream_response_time]").render(ctx) == "[0.002, 1.000]"


@pytest.mark.parametrize(
    ("hash_on", "key", "headers", "consumer", "expected"),
    [
        ("header", "X-User", [("X-User", "a"), ("X-User", "b")], None, "a, b"),
        ("header", "x_user", [("X-User", "a")], None, "a"),  # as $http_x_user
        ("header", "X-User", [], None, "10.1.2.3"),  # unset: remote_addr, as APISIX
        ("cookie", "s", [("Cookie", "a=1"), ("Cookie", "s=2")], None, "2"),
        ("cookie", "s", [("Cookie", "a=1")], None, "10.1.2.3"),
        ("vars", "arg_x", [], None, "1"),
        ("vars", "$arg_x", [], None, "1"),
        ("vars", "arg_y", [], None, "10.1.2.3"),
        ("vars", "http_x_user", [("X-User", "a"), ("X-User", "b")], None, "a, b"),
        ("consumer", None, [], "jack", "jack"),
        ("consumer", None, [], None, "10.1.2.3"),
        ("vars_combinations", "$http_x_user-$arg_x", [], None, "-1"),
        ("vars_combinations", "${arg_y ?? none}", [], None, "none"),
        # No variable has a value (APISIX's n_resolved == 0): remote_addr.
        ("vars_combinations", "$http_x_user-$arg_y", [], None, "10.1.2.3"),
        ("vars_combinations", "plain", [], None, "10.1.2.3"),
    ],
)
def test_chash_key_is_apisix_fetch_chash_hash_key(
    hash_on: str,
    key: str | None,
    headers: list[tuple[str, str]],
    consumer: str | None,
    expected: str,
) -> None:
    """APISIX's ``fetch_chash_hash_key``: ``$http_<key>`` for a header (its lines joined),
    ``$cookie_<key>``, the variable, the consumer's name or the template; remote_addr when
    that has no value, so keyless requests spread by client rather than all hashing ""."""
    ctx = make_ctx("/v1/chat?x=1", CIMultiDict(headers))
    ctx.consumer = Consumer(consumer) if consumer else None
    assert chash_key_reader(hash_on, key)(ctx) == expected


@pytest.mark.parametrize(
    ("hash_on", "key"),
    [
        ("vars", "remote_addr"),
        ("vars", "uri"),
        ("vars", "request_uri"),
        ("vars", "server_addr"),
        ("vars", "remote_port"),
        ("vars", "query_string"),
        ("vars", "host"),
        ("vars", "arg_user-id"),
        ("vars", "$remote_addr"),  # llmgate also reads a leading "$"
        ("vars", "http_x_user"),  # and $http_<name>, $cookie_<name>
        ("vars", "cookie_session"),
        ("header", "X-User_id"),
        ("cookie", "session-1"),
        ("vars_combinations", "anything $goes"),
        ("consumer", None),
    ],
)
def test_chash_keys_apisix_accepts(hash_on: str, key: str | None) -> None:
    check_chash_key(hash_on, key)


@pytest.mark.parametrize(
    ("hash_on", "key", "message"),
    [
        ("vars", "nonsense", 'key "nonsense" is no variable chash can hash on'),
        ("vars", "arg_", 'key "arg_" is no variable'),
        ("vars", "arg_a b", 'key "arg_a b" is no variable'),
        ("vars", "server_name", 'key "server_name" is not supported'),
        ("vars", "hostname", 'key "hostname" is not supported'),
        ("vars", "mqtt_client_id", 'key "mqtt_client_id" is not supported'),
        ("header", "X User", 'key "X User" is no header name'),
        ("cookie", "a=b", 'key "a=b" is no cookie name'),
        ("header", "", 'key "" is no header name'),
    ],
)
def test_chash_keys_that_hash_nothing_are_refused(hash_on: str, key: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_chash_key(hash_on, key)


def test_set_args_changes_the_query_variables_but_not_request_uri() -> None:
    """APISIX's ``core.request.set_uri_args``: ``$args`` and ``$arg_<name>`` read the new
    query, even after they were read once; ``$request_uri`` is the target as sent."""
    ctx = make_ctx(path="/p?a=1&key=s&b=x%26y")
    assert (ctx.var("arg_key"), ctx.var("args")) == ("s", "a=1&key=s&b=x%26y")
    ctx.set_args("a=1&b=x%26y")
    assert ctx.outbound.query == "a=1&b=x%26y"
    assert [ctx.var(n) for n in ("arg_key", "args", "query_string", "is_args", "arg_b")] == [
        None, "a=1&b=x%26y", "a=1&b=x%26y", "?", "x&y"
    ]  # fmt: skip
    assert ctx.var("request_uri") == "/p?a=1&key=s&b=x%26y"
    ctx.set_args("")
    assert (ctx.var("args"), ctx.var("is_args"), ctx.var("arg_a")) == ("", "", None)
