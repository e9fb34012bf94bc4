"""The request target as nginx reads it: tables of cases, and properties against a reference
model (a line-by-line port of nginx's ``ngx_http_parse_complex_uri``)."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from llmgate.http.paths import (
    BadTarget,
    canonical_host,
    check_target,
    escape_path,
    normalize_path,
    parse_target,
)
from llmgate.routing import RouteEntry, Router

# --- the reference: nginx's state machine, byte by byte ----------------------------------------

_HEX = "0123456789abcdef"


def nginx_uri(path: str, merge_slashes: bool = True) -> str | None:
    """``$uri`` of ``path`` as ``ngx_http_parse_complex_uri`` computes it, with NGX_WIN32's
    backslash rule; None where nginx answers 400.  Written from nginx's C, not from
    ``normalize_path``: the two share no code."""
    data = path.encode("utf-8", "surrogateescape")
    out = bytearray()
    usual, slash, dot, dot_dot, quoted, quoted_second = range(6)
    state = quoted_state = usual
    decoded = 0
    i = 0
    ch: int | None = data[0] if data else None
    i = 1

    def climb() -> bool:
        nonlocal out
        u = len(out) - 4
        while True:
            if u < 0:
                return False
            if out[u] == 0x2F:
                del out[u + 1 :]
                return True
            u -= 1

    while ch is not None:
        c = chr(ch)
        advance = True
        if state == usual:
            if c in "/\\":
                state = slash
                out.append(0x2F)
            elif c == "%":
                quoted_state, state = state, quoted
            elif c == "#":
                return out.decode("utf-8", "surrogateescape")
            else:
                out.append(ch)
        elif state == slash:
            if c in "/\\":
                if not merge_slashes:
                    out.append(0x2F)
            elif c == ".":
                state = dot
                out.append(ch)
            elif c == "%":
                quoted_state, state = state, quoted
            elif c == "#":
                return out.decode("utf-8", "surrogateescape")
            else:
                state = usual
                out.append(ch)
        elif state == dot:
            if c in "/\\":
                state = slash
                out.pop()
            elif c == ".":
                state = dot_dot
                out.append(ch)
            elif c == "%":
                quoted_state, state = state, quoted
            elif c == "#":
                out.pop()
                return out.decode("utf-8", "surrogateescape")
            else:
                state = usual
                out.append(ch)
        elif state == dot_dot:
            if c in "/\\#":
                if not climb():
                    return None
                if c == "#":
                    return out.decode("utf-8", "surrogateescape")
                state = slash
            elif c == "%":
                quoted_state, state = state, quoted
            else:
                state = usual
                out.append(ch)
        elif state == quoted:
            if c.lower() not in _HEX:
                return None
            decoded = int(c, 16)
            state = quoted_second
        else:  # quoted_second
            if c.lower() not in _HEX:
                return None
            ch = decoded * 16 + int(c, 16)
            if ch == 0:
                return None
            if chr(ch) in "%#?":
                state = usual
                out.append(ch)
            else:
                state = quoted_state
                advance = False  # the decoded byte goes through the state it interrupted
        if advance:
            ch = data[i] if i < len(data) else None
            i += 1
    if state in (quoted, quoted_second):
        return None
    if state == dot:
        out.pop()
    elif state == dot_dot and not climb():
        return None
    return out.decode("utf-8", "surrogateescape")


def reference(path: str, merge_slashes: bool = True) -> str | None:
    try:
        return normalize_path(path, merge_slashes)
    except BadTarget:
        return None


# --- tables --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "uri"),
    [
        ("/", "/"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/public/../v1/chat/completions", "/v1/chat/completions"),
        ("/public/%2e%2e/v1/chat/completions", "/v1/chat/completions"),
        ("/public/%2E%2E/v1/x", "/v1/x"),
        ("/public/.%2e/v1/x", "/v1/x"),
        ("/public/%2e./v1/x", "/v1/x"),
        ("/public/..%2fv1/x", "/v1/x"),
        ("/public%2f..%2fv1/x", "/v1/x"),
        ("/public/..%5cv1/x", "/v1/x"),  # a backslash is a separator (nginx on Windows, WHATWG)
        ("/public\\..\\v1\\x", "/v1/x"),
        ("/public/%252e%252e/v1/x", "/public/%2e%2e/v1/x"),  # decoded once, as nginx
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/../", "/a/"),
        ("/a//b///c", "/a/b/c"),
        ("//", "/"),
        ("/a/...", "/a/..."),
        ("/a/..b/.c", "/a/..b/.c"),
        ("/%61%62c", "/abc"),
        ("/a%20b", "/a b"),
        ("/a%3Fb", "/a?b"),
        ("/a%23b", "/a#b"),
        ("/a%25", "/a%"),
        ("/caf%C3%A9", "/café"),
        ("/x%FFy", "/x\udcffy"),  # not UTF-8: kept as the byte
        ("/a#/../..", "/a"),  # a fragment ends the path
    ],
)
def test_normalize_path(raw: str, uri: str) -> None:
    assert normalize_path(raw) == uri
    assert nginx_uri(raw) == uri


@pytest.mark.parametrize(
    "raw",
    ["/..", "/../v1", "/a/../..", "/%2e%2e", "/a/%2e%2e%2f..", "/..%5c", "/a%", "/a%2", "/a%zz",
     "/a%00b", "*", "v1/x", ""],
)  # fmt: skip
def test_bad_paths_are_400(raw: str) -> None:
    with pytest.raises(BadTarget) as info:
        normalize_path(raw)
    assert info.value.status == 400


def test_merge_slashes_off_keeps_empty_segments() -> None:
    assert normalize_path("/a//b", merge_slashes=False) == "/a//b"
    assert normalize_path("/a//../b", merge_slashes=False) == "/a/b"
    assert nginx_uri("/a//../b", merge_slashes=False) == "/a/b"


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com:9080", "example.com"),
        ("private.example.", "private.example"),
        ("private.example.:80", "private.example"),
        ("[::1]:9080", "[::1]"),
        ("[::1]", "[::1]"),
        ("127.0.0.1:1", "127.0.0.1"),
        (".leading.dot", ".leading.dot"),
        ("a-b_c~d!$&'()*+,;=%41", "a-b_c~d!$&'()*+,;=%41"),  # RFC 3986 reg-name
        ("a:65535", "a"),
        ("a:", "a"),
    ],
)
def test_canonical_host(raw: str, host: str) -> None:
    assert canonical_host(raw) == host


@pytest.mark.parametrize(
    "raw",
    [
        *("", ":80", "a..b", "a/b", "a\\b", "a b", "a\x00", ".", "a:1/x"),
        # nginx 1.29.4 (RFC 3986 host syntax): gen-delims, unwise characters, the upper half,
        # a port that is not 0-65535 in digits, an unclosed or trailed IP literal.
        *("user@evil.example", "a#b", "a?b", 'a"b', "a<b>", "a`b", "a{b}", "a|b", "a^b"),
        *(
            "h\u00e9.example",
            "a:80x",
            "a:65536",
            "a:-1",
            "a:" + "9" * 5000,
            "a:1:2",
            "[::1",
            "[::1]x",
            "a]b",
        ),
    ],
)
def test_bad_hosts_are_400(raw: str) -> None:
    with pytest.raises(BadTarget):
        canonical_host(raw)


def test_parse_target_origin_and_absolute_form() -> None:
    target = parse_target("/a/../b?x=1&y=%2F", "API.example.:9080")
    assert (target.uri, target.raw_path, target.query) == ("/b", "/a/../b", "x=1&y=%2F")
    assert (target.host, target.authority) == ("api.example", "API.example.:9080")
    assert target.request_uri == "/b?x=1&y=%2F"
    assert target.real_request_uri == "/a/../b?x=1&y=%2F"
    absolute = parse_target("http://Public.Example:9080/x/%2e%2e/y?q", None)
    assert (absolute.uri, absolute.host, absolute.authority) == (
        "/y",
        "public.example",
        "Public.Example:9080",
    )
    assert parse_target("http://h.example?q=1", "h.example").uri == "/"
    # The same host in both places is fine; another host is a 400.
    assert parse_target("http://a.example/x", "A.EXAMPLE.:80").host == "a.example"
    with pytest.raises(BadTarget):
        parse_target("http://public.example/x", "private.example")
    for bad in ("ftp://h/x", "http://user@h/x", "http:///x"):
        with pytest.raises(BadTarget):
            parse_target(bad, None)
    assert parse_target("/x", None).host is None


def test_parse_target_remembers_targets_not_errors() -> None:
    first = parse_target("/v1/remembered?a=1", "h.example")
    assert parse_target("/v1/remembered?a=1", "h.example") is first
    assert parse_target("/v1/remembered?a=1", "other.example").host == "other.example"
    assert parse_target("//v1//x", None, True).uri == "/v1/x"
    assert parse_target("//v1//x", None, False).uri == "//v1//x"
    for _ in range(2):  # a 400 each time, not a remembered answer
        with pytest.raises(BadTarget):
            parse_target("/a/%00", "h.example")
    long = "/" + "a" * 300 + "/../b"  # too long to remember: parsed each time, the same
    assert parse_target(long, "h.example") == parse_target(long, "h.example")
    assert parse_target(long, "h.example").uri == "/b"
    assert parse_target("/x", "h" * 300 + ".example").host == "h" * 300 + ".example"


def test_forward_path_reescapes_what_was_decoded() -> None:
    assert parse_target("/v1/chat", "h").forward_path == "/v1/chat"
    assert parse_target("/a/%2e%2e/b%20c%3F%25", "h").forward_path == "/b%20c%3F%25"
    assert parse_target("/p/%252e%252e/x", "h").forward_path == "/p/%252e%252e/x"
    assert parse_target("/caf%c3%a9/%FF", "h").forward_path == "/caf%C3%A9/%FF"


@pytest.mark.parametrize(
    "bad", ["/a\r\nX-Injected: 1", "/a b", "/a\nb", "/a\x00", "/a\x7f", "/a\tb"]
)
def test_check_target_refuses_controls_and_spaces(bad: str) -> None:
    with pytest.raises(BadTarget):
        check_target(bad, "")
    with pytest.raises(BadTarget):
        check_target("/ok", "q=" + bad)


def test_check_target_joins_path_and_query() -> None:
    assert check_target("/a", "") == "/a"
    assert check_target("/a", "b=1") == "/a?b=1"
    assert check_target("/café", "") == "/café"  # non-ASCII is not a control character


# --- properties against the reference ------------------------------------------------------------

# Paths made of the pieces that matter: separators and their escapes, dots and their escapes,
# escapes of escapes, plain text, fragments.
_PIECES = st.sampled_from(
    ["/", "//", "\\", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%25", "%252e", "%3f", "%23",
     "#", "a", "b", "v1", "%41", "%zz", "%", "%0", "%00", "%ff", "...", ";", "~"]
)  # fmt: skip
PATHS = st.lists(_PIECES, max_size=14).map(lambda parts: "/" + "".join(parts))


@settings(max_examples=600, deadline=None)
@given(PATHS, st.booleans())
@example("/public/%2e%2e/v1/x", True)
@example("/a/%2e%2e%2f..", True)
@example("//..", False)
def test_matches_nginx(path: str, merge: bool) -> None:
    assert reference(path, merge) == nginx_uri(path, merge)


@settings(max_examples=600, deadline=None)
@given(PATHS, st.booleans())
def test_never_climbs_and_is_idempotent(path: str, merge: bool) -> None:
    uri = reference(path, merge)
    assume(uri is not None)
    assert uri.startswith("/")
    segments = uri.split("/")
    assert ".." not in segments and "." not in segments
    if merge:
        assert "//" not in uri
    # Normalising the normalised path changes nothing (its re-escaped form too).
    assert normalize_path(escape_path(uri), merge) == uri
    if "%" not in uri and "#" not in uri and "\\" not in uri:
        assert normalize_path(uri, merge) == uri


ROUTER = Router(
    [
        RouteEntry(id=name, uris=(uri,), methods=None, hosts=None, priority=0, payload=name)
        for name, uri in [
            ("public", "/public/*"),
            ("v1", "/v1/*"),
            ("chat", "/v1/chat/completions"),
            ("root", "/*"),
        ]
    ]
)


@settings(max_examples=600, deadline=None)
@given(PATHS)
@example("/public/..%2fv1/chat/completions")
@example("/public/%2e%2e/v1/chat/completions")
def test_routes_as_its_normalised_form(path: str) -> None:
    """A request is routed as the request for its normalised path would be, and what is
    forwarded normalises to that same path: no encoding gets past its route."""
    target = None
    try:
        target = parse_target(path, "h")
    except BadTarget:
        assume(False)
    assert target is not None
    again = parse_target(target.forward_path, "h")
    assert again.uri == target.uri
    first = ROUTER.match("GET", None, target.uri)
    second = ROUTER.match("GET", None, again.uri)
    assert first is not None and second is not None and first.id == second.id
    if target.uri.startswith("/v1/"):
        assert first.id in ("v1", "chat")
