"""Table-driven tests of the pure route matcher (src/llmgate/routing)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from llmgate.http.expr import Expr, ip_matcher
from llmgate.routing import HostSet, RouteEntry, Router, normalize_host
from llmgate.routing.hosts import EXACT


def entry(
    id: str,
    *uris: str,
    methods: tuple[str, ...] | None = None,
    hosts: tuple[str, ...] | None = None,
    priority: int = 0,
    remote_addrs: list[str] | None = None,
    vars: list[Any] | None = None,
) -> RouteEntry[str]:
    return RouteEntry(
        id=id,
        uris=uris,
        methods=frozenset(methods) if methods is not None else None,
        hosts=hosts,
        priority=priority,
        payload=f"payload-{id}",
        remote_addrs=ip_matcher(remote_addrs) if remote_addrs is not None else None,
        vars=Expr.compile(vars).eval if vars is not None else None,
    )


def matched_id(router: Router[str], method: str, host: str | None, path: str) -> str | None:
    found = router.match(method, host, path)
    return None if found is None else found.id


# --- paths: exact vs prefix, longest prefix, the shapes of "*" -------------------------------

PATHS = Router(
    [
        entry("catch-all", "/*"),
        entry("a-slash", "/a/*"),
        entry("a-star", "/a*"),
        entry("a-b-slash", "/a/b/*"),
        entry("a-b-exact", "/a/b"),
        entry("exact-c", "/c"),
        entry("v1-chat", "/v1/chat/completions"),
        entry("v1", "/v1/*"),
        entry("mid-star", "/x/*/y"),
    ]
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b", "a-b-exact"),  # exact beats every prefix
        ("/a/b/", "a-b-slash"),  # "/a/b/*" matches "/a/b/" ...
        ("/a/b/c/d", "a-b-slash"),  # ... and anything below
        ("/a/bc", "a-slash"),  # "/a/b/*" needs the slash; "/a/" is the next longest
        ("/a/", "a-slash"),  # "/a/*" matches "/a/"
        ("/a", "a-star"),  # ... but not "/a"; "/a*" does
        ("/ab", "a-star"),
        ("/abc/d", "a-star"),
        ("/c", "exact-c"),
        ("/c/", "catch-all"),  # exact means exact
        ("/cd", "catch-all"),
        ("/v1/chat/completions", "v1-chat"),
        ("/v1/chat/completions/", "v1"),
        ("/v1/models", "v1"),
        ("/v1", "catch-all"),
        ("/", "catch-all"),
        ("//", "catch-all"),
        ("/x/*/y", "mid-star"),  # a "*" not at the end is a literal character
        ("/x/z/y", "catch-all"),
        ("/A/b", "catch-all"),  # paths are case-sensitive
        ("/a%2Fb", "a-star"),  # no decoding: "%2F" is not "/"
    ],
)
def test_path_specificity(path: str, expected: str) -> None:
    assert matched_id(PATHS, "GET", None, path) == expected


@pytest.mark.parametrize(
    ("uris", "path", "matches"),
    [
        (("/*",), "/", True),
        (("/*",), "/anything/at/all", True),
        (("/*",), "", False),  # "/*" needs the leading "/"
        (("/*",), "no-slash", False),
        (("*",), "", True),  # the empty prefix matches everything
        (("*",), "no-slash", True),
        (("/a/*",), "/a", False),
        (("/a/*",), "/a/", True),
        (("/a/*",), "/a/b/c", True),
        (("/a*",), "/a", True),
        (("/a*",), "/ab", True),
        (("/a*",), "/a/b", True),
        (("/a*",), "/b", False),
        (("/a",), "/a", True),
        (("/a",), "/a/", False),
        (("/a",), "/ab", False),
        (("",), "", True),
        (("/a", "/b/*"), "/b/c", True),  # any of several uris
        (("/a", "/b/*"), "/a/c", False),
    ],
)
def test_uri_shapes(uris: tuple[str, ...], path: str, matches: bool) -> None:
    router = Router([entry("r", *uris)])
    assert (matched_id(router, "GET", None, path) == "r") is matches


# --- priority and ties --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "path", "expected"),
    [
        ([entry("low", "/p"), entry("high", "/p", priority=10)], "/p", "high"),
        ([entry("high", "/p", priority=10), entry("low", "/p")], "/p", "high"),
        ([entry("neg", "/p", priority=-1), entry("zero", "/p")], "/p", "zero"),
        ([entry("first", "/p"), entry("second", "/p")], "/p", "first"),  # tie: given order
        ([entry("second", "/p/*"), entry("first", "/p/*")], "/p/x", "second"),
        # priority never beats specificity: exact and longer prefixes still win
        ([entry("prefix", "/p*", priority=100), entry("exact", "/p")], "/p", "exact"),
        ([entry("short", "/p/*", priority=100), entry("long", "/p/q/*")], "/p/q/r", "long"),
    ],
)
def test_priority_and_ties(entries: list[RouteEntry[str]], path: str, expected: str) -> None:
    assert matched_id(Router(entries), "GET", None, path) == expected


# --- method filter and fall-through -------------------------------------------------------------

METHODS = Router(
    [
        entry("exact-post", "/chat", methods=("POST",), priority=5),
        entry("exact-get", "/chat", methods=("GET", "HEAD")),
        entry("prefix-put", "/chat*", methods=("PUT",)),
        entry("lower-case-config", "/lc", methods=("delete",)),
        entry("empty-methods", "/em", methods=()),
        entry("catch-all-get", "/*", methods=("GET",)),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/chat", "exact-post"),
        ("GET", "/chat", "exact-get"),
        ("HEAD", "/chat", "exact-get"),
        ("PUT", "/chat", "prefix-put"),  # falls through from exact to prefix
        ("PUT", "/chatty", "prefix-put"),
        ("GET", "/chatty", "catch-all-get"),  # falls through to a shorter prefix
        ("PATCH", "/chat", None),  # nothing left
        ("DELETE", "/lc", "lower-case-config"),  # configured methods are upper-cased
        ("get", "/chat", None),  # request methods are case-sensitive (RFC 9110)
        ("OPTIONS", "/em", "empty-methods"),  # empty methods means any
        ("", "/chat", None),
    ],
)
def test_methods(method: str, path: str, expected: str | None) -> None:
    assert matched_id(METHODS, method, None, path) == expected


# --- host filter --------------------------------------------------------------------------------

HOSTS = Router(
    [
        entry("api", "/h", hosts=("api.example.com",)),
        entry("wild", "/h", hosts=("*.example.com",)),
        entry("ipv6", "/h", hosts=("[::1]",)),
        entry("ipv4", "/h", hosts=("127.0.0.1",)),
        entry("mixed-case-config", "/h", hosts=("Other.ORG",)),
        entry("any-host", "/h*"),
    ]
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", "api"),
        ("API.Example.COM", "api"),  # case-insensitive
        ("api.example.com:9080", "api"),  # port ignored
        ("a.example.com", "wild"),
        ("a.b.example.com", "wild"),  # the wildcard spans labels
        ("example.com", "any-host"),  # ... but needs at least one
        (".example.com", "any-host"),
        ("badexample.com", "any-host"),
        ("example.com.evil.net", "any-host"),
        ("[::1]:9080", "ipv6"),
        ("[::1]", "ipv6"),
        ("::1", "ipv6"),  # bare IPv6 is kept whole
        ("127.0.0.1:80", "ipv4"),
        ("other.org", "mixed-case-config"),
        (" api.example.com ", "api"),
        (None, "any-host"),  # no Host header: only host-less routes
        ("", "any-host"),
        ("[", "any-host"),
        ("[::1", "ipv6"),  # unterminated bracket: best effort, never raises
        (":", "any-host"),
        ("\udc80", "any-host"),
    ],
)
def test_hosts(host: str | None, expected: str) -> None:
    assert matched_id(HOSTS, "GET", host, "/h") == expected


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Example.COM", "example.com"),
        ("example.com:9080", "example.com"),
        ("[::1]:9080", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("*.Example.com", "*.example.com"),
        ("", ""),
        ("[", ""),
        ("[]", ""),
        (":80", ""),
    ],
)
def test_normalize_host(raw: str, normalized: str) -> None:
    assert normalize_host(raw) == normalized


@pytest.mark.parametrize(
    ("patterns", "host", "matches"),
    [
        (("a.com",), "a.com", True),
        (("a.com",), "b.a.com", False),
        (("*.a.com",), "b.a.com", True),
        (("*.a.com",), "a.com", False),
        (("*a.com",), "ba.com", True),  # APISIX: the "*" is a plain "one or more characters"
        (("*",), "anything", True),
        (("*",), "", False),
        (("x.com", "*.a.com"), "x.com", True),
        ((), "a.com", False),
    ],
)
def test_host_set(patterns: tuple[str, ...], host: str, matches: bool) -> None:
    assert HostSet.compile(patterns).matches(host) is matches


# --- remote_addrs and vars (conditions on the request) ------------------------------------------

CONDITIONS = Router(
    [
        entry("tenant-a", "/llm", vars=[["http_x_tenant", "==", "a"]], priority=10),
        entry("gpt4", "/llm", vars=[["arg_model", "in", ["gpt-4", "gpt-4o"]]], priority=5),
        entry(
            "beta",
            "/llm",
            vars=["OR", ["cookie_beta", "==", "1"], ["http_x_beta", "~~", "^(yes|on)$"]],
        ),
        entry("office", "/llm", remote_addrs=["10.0.0.0/8", "2001:db8::/32"]),
        entry("office-and-post", "/internal", remote_addrs=["10.0.0.0/8"], methods=("POST",)),
        entry("both", "/internal", remote_addrs=["10.1.0.0/16"], vars=[["arg_x", "1"]]),
        entry("default", "/llm"),
        entry("mapped", "/mapped", remote_addrs=["::ffff:127.0.0.1"]),
    ]
)


@pytest.mark.parametrize(
    ("method", "variables", "path", "expected"),
    [
        ("GET", {"http_x_tenant": "a", "arg_model": "gpt-4"}, "/llm", "tenant-a"),  # priority
        ("GET", {"http_x_tenant": "b", "arg_model": "gpt-4"}, "/llm", "gpt4"),
        ("GET", {"arg_model": "gpt-4o"}, "/llm", "gpt4"),
        ("GET", {"arg_model": "gpt-3"}, "/llm", "default"),
        ("GET", {"cookie_beta": "1"}, "/llm", "beta"),
        ("GET", {"http_x_beta": "on"}, "/llm", "beta"),
        ("GET", {"http_x_beta": "only"}, "/llm", "default"),
        ("GET", {"remote_addr": "10.2.3.4"}, "/llm", "office"),
        ("GET", {"remote_addr": "2001:db8::7"}, "/llm", "office"),
        ("GET", {"remote_addr": "::ffff:10.2.3.4"}, "/llm", "office"),  # dual-stack socket
        ("GET", {"remote_addr": "127.0.0.1"}, "/mapped", None),  # IPv6 to resty.ipmatcher
        ("GET", {"remote_addr": "::ffff:127.0.0.1"}, "/mapped", None),
        ("GET", {"remote_addr": "127.0.0.1"}, "/llm", "default"),
        ("GET", {}, "/llm", "default"),  # no address known: remote_addrs never hold
        ("POST", {"remote_addr": "10.2.3.4"}, "/internal", "office-and-post"),
        ("GET", {"remote_addr": "10.2.3.4"}, "/internal", None),  # method checked first
        ("GET", {"remote_addr": "10.1.3.4", "arg_x": "1"}, "/internal", "both"),
        ("GET", {"remote_addr": "10.2.3.4", "arg_x": "1"}, "/internal", None),
        ("GET", {"remote_addr": "10.1.3.4", "arg_x": "2"}, "/internal", None),
    ],
)
def test_conditions(
    method: str, variables: dict[str, str], path: str, expected: str | None
) -> None:
    assert CONDITIONS.needs_variables
    found = CONDITIONS.match(method, None, path, variables.get)
    assert (found.id if found is not None else None) == expected


def test_conditions_without_variables_see_every_variable_unset() -> None:
    router = Router(
        [
            entry("needs-x", "/p", vars=[["arg_x", "==", "1"]], priority=1),
            entry("not-y", "/p", vars=[["arg_y", "~=", "1"]]),
        ]
    )
    assert matched_id(router, "GET", None, "/p") == "not-y"


def test_a_router_without_conditions_needs_no_variables() -> None:
    assert not PATHS.needs_variables


def test_a_condition_is_read_once_per_candidate_only_when_reached() -> None:
    reads: list[str] = []

    def lookup(name: str) -> str | None:
        reads.append(name)
        return None

    router = Router([entry("plain", "/p"), entry("cond", "/p", vars=[["arg_x", "==", "1"]])])
    assert router.match("GET", None, "/p", lookup).id == "plain"
    assert reads == []  # the first candidate matched: no variable was read


# --- combined filters, empty router, payload ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "host", "path", "expected"),
    [
        ("POST", "a.example.com", "/v1/chat", "both"),
        ("GET", "a.example.com", "/v1/chat", "fallback"),  # method fails
        ("POST", "example.com", "/v1/chat", "fallback"),  # host fails
        ("POST", None, "/v1/chat", "fallback"),
        ("POST", "a.example.com", "/v2", None),
    ],
)
def test_method_and_host_together(
    method: str, host: str | None, path: str, expected: str | None
) -> None:
    router = Router(
        [
            entry("both", "/v1/chat", methods=("POST",), hosts=("*.example.com",)),
            entry("fallback", "/v1/*"),
        ]
    )
    assert matched_id(router, method, host, path) == expected


# --- host routes before host-less ones (APISIX's default router, radixtree_host_uri) -----------

HOST_FIRST = Router(
    [
        entry("plain", "/hp"),  # created first, same URI, no hosts
        entry("plain-high", "/hp", priority=99),
        entry("host-prefix", "/*", hosts=("h.test",)),
        entry("wild", "/hp", hosts=("*.test",)),
        entry("wild-longer", "/h*", hosts=("*.b.test",)),
        entry("any-host", "/hp", hosts=("*",)),
        entry("exact-post", "/hp", methods=("POST",), hosts=("a.b.test",)),
    ]
)


@pytest.mark.parametrize(
    ("method", "host", "path", "expected"),
    [
        # An exact host beats every host-less route, whatever their URI or priority.
        ("GET", "h.test", "/hp", "host-prefix"),
        ("GET", "H.TEST:9080", "/other", "host-prefix"),
        # Among wildcards, the longest suffix first, even with a less specific URI.
        ("GET", "x.b.test", "/hp", "wild-longer"),
        ("GET", "x.test", "/hp", "wild"),
        ("GET", "other.org", "/hp", "any-host"),  # "*" is the last host to try
        # An exact host before the wildcards; failing its method, the wildcards go on.
        ("POST", "a.b.test", "/hp", "exact-post"),
        ("GET", "a.b.test", "/hp", "wild-longer"),
        # No host route matches (or no Host): host-less routes in their usual order.
        ("GET", None, "/hp", "plain-high"),
        ("GET", "other.org", "/x", None),
    ],
)
def test_host_routes_are_tried_before_host_less_ones(
    method: str, host: str | None, path: str, expected: str | None
) -> None:
    assert matched_id(HOST_FIRST, method, host, path) == expected


def test_host_route_created_after_a_host_less_one_on_the_same_uri_wins() -> None:
    router = Router([entry("h1", "/hp"), entry("h2", "/hp", hosts=("h.test",))])
    assert matched_id(router, "GET", "h.test", "/hp") == "h2"
    assert matched_id(router, "GET", "other.test", "/hp") == "h1"
    assert matched_id(router, "GET", None, "/hp") == "h1"
    # The same after an incremental update.
    updated = Router([entry("h1", "/hp")]).updated(router.entries, {"h2"})
    assert matched_id(updated, "GET", "h.test", "/hp") == "h2"


@pytest.mark.parametrize(
    ("patterns", "host", "rank"),
    [
        (("a.b.test", "*.test"), "a.b.test", EXACT),
        (("*.test", "*.b.test"), "a.b.test", len(".b.test")),
        (("*.test",), "a.b.test", len(".test")),
        (("*",), "x", 0),
        (("*.test",), "test", -1),
        (("a.test",), "b.test", -1),
    ],
)
def test_host_rank(patterns: tuple[str, ...], host: str, rank: int) -> None:
    assert HostSet.compile(patterns).rank(host) == rank


def test_empty_router_matches_nothing() -> None:
    router: Router[str] = Router([])
    assert len(router) == 0
    assert router.match("GET", "example.com", "/") is None


def test_payload_and_entries_are_returned_as_given() -> None:
    entries = [entry("one", "/1"), entry("two", "/2/*")]
    router = Router(iter(entries))  # any iterable, consumed once
    found = router.match("GET", None, "/2/x")
    assert found is entries[1]
    assert found.payload == "payload-two"
    assert router.entries == tuple(entries)


def test_entry_with_overlapping_uris_is_tried_at_its_most_specific_uri() -> None:
    router = Router(
        [
            entry("shallow", "/a/*", priority=5),
            entry("multi", "/a/*", "/a/b/*", priority=1),
        ]
    )
    # "multi" is a candidate at "/a/b/" (the longer prefix) and so beats the higher priority.
    assert matched_id(router, "GET", None, "/a/b/c") == "multi"
    assert matched_id(router, "GET", None, "/a/c") == "shallow"


# --- hostile input never raises -----------------------------------------------------------------

WEIRD = [
    "",
    "/",
    "//",
    "///a",
    "%00",
    "/%00",
    "/\x00",
    "\x00",
    "*",
    "/*",
    "/a/*",
    "/..",
    "/../../etc/passwd",
    "/\udc80",
    "/é/ü",
    "/\U0001f600",
    "?",
    "/a?b",
    "/" + "a" * 1_000_000,
    "/a/" * 100_000,
]


@pytest.mark.parametrize("path", WEIRD, ids=lambda p: repr(p[:20]) + f"-len{len(p)}")
@pytest.mark.parametrize("host", [None, "", "[", "[::1", "a" * 100_000, "\x00:\x00"])
def test_weird_input_never_raises(path: str, host: str | None) -> None:
    router = Router(
        [
            entry("exact", "/a"),
            entry("hosted", "/a/*", hosts=("*.example.com",)),
            entry("long", "/" + "a" * 50 + "*"),
            entry("methods", "/b*", methods=("GET",)),
        ]
    )
    found = router.match("\x00", host, path)
    assert found is None or found.id in {"exact", "hosted", "long", "methods"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/" + "z" * 1_000_000, "catch-all"),
        ("/" + "a" * 1_000_000, "a-star"),
        ("/a/" + "b" * 1_000_000, "a-slash"),
        ("/a/b/" * 200_000, "a-b-slash"),
    ],
    ids=["catch-all", "a-star", "under-a", "under-a-b"],
)
def test_very_long_paths_match(path: str, expected: str) -> None:
    assert matched_id(PATHS, "GET", None, path) == expected


def test_deeply_nested_prefixes_build_without_recursion_limits() -> None:
    router = Router([entry(str(n), "/" + "a" * n + "*") for n in range(3000)])
    assert matched_id(router, "GET", None, "/" + "a" * 5000) == "2999"
    assert matched_id(router, "GET", None, "/aab") == "2"


# --- agreement with a brute-force reference -----------------------------------------------------


def reference_match(
    entries: list[RouteEntry[str]],
    method: str,
    host: str | None,
    path: str,
    variables: dict[str, str] | None = None,
) -> str | None:
    """The rules spelled out naively: rank every (entry, uri) that covers the path."""
    ranked = []
    for order, e in enumerate(entries):
        # Host routes first: an exact host, then the longest wildcard suffix; host-less last.
        if not e.hosts:
            host_key = (2, 0)
        elif host is None:
            continue
        else:
            name = normalize_host(host)
            patterns = [normalize_host(p) for p in e.hosts]
            lengths = [
                len(p) - 1
                for p in patterns
                if p.startswith("*") and len(name) >= len(p) and name.endswith(p[1:])
            ]
            if name in patterns:
                host_key = (0, 0)
            elif lengths:
                host_key = (1, -max(lengths))
            else:
                continue
        keys = []
        for uri in e.uris:
            if uri.endswith("*"):
                if path.startswith(uri[:-1]):
                    keys.append((1, -len(uri)))
            elif uri == path:
                keys.append((0, 0))
        if keys:
            ranked.append((*host_key, *min(keys), -e.priority, order, e))
    for *_, e in sorted(ranked, key=lambda r: r[:6]):
        if e.methods and method not in e.methods:
            continue
        values = variables or {}
        if e.remote_addrs is not None and not e.remote_addrs(values.get("remote_addr")):
            continue
        if e.vars is not None and not e.vars(values.get):
            continue
        return e.id
    return None


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_reference(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab/"

    def random_path() -> str:
        return "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    entries = []
    for n in range(rng.randint(1, 40)):
        uris = tuple(
            random_path() + ("*" if rng.random() < 0.6 else "") for _ in range(rng.randint(1, 3))
        )
        entries.append(
            entry(
                f"r{n}",
                *uris,
                methods=rng.choice([None, ("GET",), ("POST",), ("GET", "POST")]),
                hosts=rng.choice(
                    [None, ("a.com",), ("*.a.com",), ("b.com", "*.a.com"), ("*.x.a.com", "*")]
                ),
                priority=rng.choice([0, 0, 1, -1, 5]),
                remote_addrs=rng.choice([None, None, ["10.0.0.0/8"], ["10.1.2.3", "::1"]]),
                vars=rng.choice([None, None, [["arg_a", "==", "1"]], [["arg_a", "~=", "1"]]]),
            )
        )
    router = Router(entries)
    for _ in range(300):
        method = rng.choice(["GET", "POST", "PUT"])
        host = rng.choice([None, "a.com", "x.a.com:80", "B.com", "c.com", "y.x.a.com"])
        path = random_path()
        variables = {"remote_addr": rng.choice(["10.1.2.3", "10.9.9.9", "::1", "127.0.0.1"])}
        if rng.random() < 0.5:
            variables["arg_a"] = rng.choice(["1", "2"])
        found = router.match(method, host, path, variables.get)
        assert (found.id if found else None) == reference_match(
            entries, method, host, path, variables
        ), (method, host, path, variables)
