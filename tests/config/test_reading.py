"""Reading the standalone file format: APISIX's apisix.yaml / apisix.json."""

from __future__ import annotations

import time

import pytest

from llmgate.admin.kind import Address
from llmgate.config.document import DocumentError, Entry
from llmgate.config.reading import MAX_NODES, format_of, parse, read

# The "Route + Upstream" example of APISIX's deployment-modes.md, as written there.
ROUTE_AND_UPSTREAM = """\
routes:
    -
        uri: /hello
        upstream_id: 1
upstreams:
    -
        id: 1
        nodes:
            "127.0.0.1:1980": 1
        type: roundrobin
#END
"""


def entries(text: str, fmt: str = "yaml", **environ: str) -> list[Entry]:
    return list(parse(text, fmt, "apisix.yaml", environ).entries)  # type: ignore[arg-type]


def test_apisix_documentation_example() -> None:
    assert entries(ROUTE_AND_UPSTREAM) == [
        Entry("routes", Address("arr_1"), {"uri": "/hello", "upstream_id": 1}),
        Entry(
            "upstreams",
            Address("1"),
            {"id": 1, "nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"},
        ),
    ]


def test_the_same_in_json_needs_no_end_marker() -> None:
    text = '{"routes": [{"uri": "/hello", "upstream_id": 1}], "upstreams": []}'
    assert entries(text, "json") == [
        Entry("routes", Address("arr_1"), {"uri": "/hello", "upstream_id": 1})
    ]


def test_yaml_without_end_marker_is_refused() -> None:
    with pytest.raises(DocumentError, match=r"apisix.yaml: missing #END at the end"):
        entries(ROUTE_AND_UPSTREAM.replace("#END\n", ""))
    # A file cut short (an editor still writing) has no marker either.
    with pytest.raises(DocumentError, match="missing #END"):
        entries(ROUTE_AND_UPSTREAM[:60])


def test_an_empty_file_is_an_empty_configuration() -> None:
    assert entries("#END\n") == []
    assert entries("{}", "json") == []


def test_credentials_ride_in_consumers_as_in_apisix() -> None:
    text = """\
consumers:
  - username: jack
    plugins:
      basic-auth: {username: jack, password: secret}
  - id: jack/credentials/key-1
    plugins:
      key-auth: {key: another}
#END
"""
    assert entries(text) == [
        Entry(
            "consumers",
            Address("jack"),
            {
                "username": "jack",
                "plugins": {"basic-auth": {"username": "jack", "password": "secret"}},
            },
        ),
        Entry(
            "credentials", Address("key-1", "jack"), {"plugins": {"key-auth": {"key": "another"}}}
        ),
    ]
    with pytest.raises(DocumentError, match="invalid credential id 'jack/credentials/'"):
        entries("consumers:\n  - id: jack/credentials/\n#END\n")
    with pytest.raises(DocumentError, match="item 1 of consumers: missing username"):
        entries("consumers:\n  - plugins: {}\n#END\n")


def test_environment_variables_in_yaml_text_keys_and_defaults() -> None:
    text = """\
routes:
  - uri: ${{PATH_VAR}}
    upstream:
      nodes:
        "${{HOST_IP}}:${{PORT}}": 1
    plugins:
      proxy-rewrite:
        uri: ${{REWRITE:=/default}}
        host: "${{NUMBER}}"
#END
"""
    [route] = entries(text, PATH_VAR="/test", HOST_IP="127.0.0.1", PORT="9091", NUMBER="12")
    assert route.conf["uri"] == "/test"
    assert route.conf["upstream"] == {"nodes": {"127.0.0.1:9091": 1}}
    assert route.conf["plugins"]["proxy-rewrite"] == {"uri": "/default", "host": "12"}
    with pytest.raises(DocumentError, match="can't find environment variable PORT"):
        entries(text, PATH_VAR="/test", HOST_IP="127.0.0.1", NUMBER="1")


def test_environment_variables_in_json_values_become_numbers_as_in_apisix() -> None:
    text = '{"upstreams": [{"id": "${{ID}}", "nodes": {"${{HOST}}": "${{WEIGHT}}"}, "desc": "${{LARGE}}x"}]}'
    [upstream] = entries(text, "json", ID="u1", HOST="127.0.0.1:80", WEIGHT="3", LARGE="1")
    assert upstream.address == Address("u1")
    assert upstream.conf["nodes"] == {"127.0.0.1:80": 3}
    assert upstream.conf["desc"] == "1x"


def test_whole_floats_are_integers_in_yaml_and_json_as_in_the_admin_api() -> None:
    """``count: 5.0`` reads as the integer 5, as a body sent to the admin API does (APISIX
    reads both with one Lua number type); from an environment variable too.  ``1.5`` stays."""
    yaml_text = "routes:\n  - uri: /x\n    priority: 2.0\n    desc: ${{N}}\n    x: 1.5\n#END\n"
    [route] = entries(yaml_text, N="3.0")
    assert route.conf == {"uri": "/x", "priority": 2, "desc": 3, "x": 1.5}
    assert [type(route.conf[k]) for k in ("priority", "desc", "x")] == [int, int, float]
    json_text = '{"routes": [{"uri": "/x", "priority": 2.0, "desc": "${{N}}", "x": [1.5, 4.0]}]}'
    [route] = entries(json_text, "json", N="3.0")
    assert route.conf == {"uri": "/x", "priority": 2, "desc": 3, "x": [1.5, 4]}
    assert [type(route.conf[k]) for k in ("priority", "desc")] == [int, int]
    assert type(route.conf["x"][1]) is int


def test_dates_stay_strings() -> None:
    [route] = entries("routes:\n  - uri: /x\n    desc: 2024-01-01\n#END\n")
    assert route.conf["desc"] == "2024-01-01"


def test_store_fields_and_conf_versions_are_ignored() -> None:
    text = """\
routes_conf_version: 12
upstreams_conf_version: 3
routes:
  - id: r1
    uri: /x
    upstream_id: u1
    modifiedIndex: 1000
    create_time: 1
    update_time: 2
#END
"""
    assert entries(text) == [
        Entry("routes", Address("r1"), {"id": "r1", "uri": "/x", "upstream_id": "u1"})
    ]
    with pytest.raises(DocumentError, match="routes_conf_version must be a number"):
        entries("routes_conf_version: abc\n#END\n")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("stream_routes", "stream_routes: llmgate does not support stream routes yet"),
        ("plugins", "plugins: llmgate does not read a list of enabled plugins"),
        ("nonsense", "unknown key 'nonsense'"),
    ],
)
def test_kinds_llmgate_lacks_are_refused_unless_empty(key: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        entries(f"{key}:\n  - id: 1\n#END\n")
    if key != "nonsense":
        assert entries(f"{key}: []\n#END\n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "routes:\n  - id: 1\n    uri: /a\n  - id: '1'\n    uri: /b\n#END\n",
            "found duplicate id 1 in routes",
        ),
        (
            "consumers:\n  - username: a\n  - username: a\n#END\n",
            "found duplicate username a in consumers",
        ),
        (
            "consumers:\n  - id: a/credentials/c\n  - id: a/credentials/c\n#END\n",
            "found duplicate credential id a/credentials/c in consumers",
        ),
        ("routes: {uri: /a}\n#END\n", "routes must be a list"),
        ("routes:\n  - /a\n#END\n", "item 1 of routes must be an object"),
        ("routes:\n  - id: true\n#END\n", "the id must be a string or an integer"),
        ("- a\n#END\n", "expected a mapping of resource lists"),
        ("routes: [\n#END\n", "invalid YAML at line 3, column 1: expected the node content"),
        ("routes:\n  - {1.5: x}\n#END\n", "invalid key 1.5: keys must be strings"),
        # What JSON (and the store) cannot hold is refused by name, not crashed on when stored.
        (f"routes:\n  - priority: {2**64}\n#END\n", f"integer {2**64} is out of range"),
        (f"routes:\n  - priority: {-(2**63) - 1}\n#END\n", "is out of range"),
        ("plugin_metadata:\n  - id: x\n    n: .nan\n#END\n", "nan is not a JSON number"),
        ("routes:\n  - priority: -.inf\n#END\n", "-inf is not a JSON number"),
    ],
)
def test_malformed_documents_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        entries(text)


def test_alias_bomb_is_refused_quickly() -> None:
    """Attacker: nine levels of nine aliases stand for 9**9 (387 million) strings in a file of
    a few hundred bytes; the document is refused before it is expanded."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, 10):
        refs = ", ".join(f"*a{level - 1}" for _ in range(9))
        lines.append(f"a{level}: &a{level} [{refs}]")
    text = "\n".join(lines) + "\nroutes:\n  - uri: /x\n    desc: *a9\n#END\n"
    started = time.monotonic()
    with pytest.raises(DocumentError, match="too large"):
        entries(text)
    assert time.monotonic() - started < 10


def test_format_of() -> None:
    assert format_of("apisix.json", "") == "json"
    assert format_of("apisix.yaml", "{}") == "yaml"
    assert format_of("-", ' {"routes": []}') == "json"
    assert format_of("-", "routes: []\n#END") == "yaml"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deep_nesting_is_refused_not_crashed(fmt: str) -> None:
    """Attacker: 50,000 nested lists must be a clear refusal, not a RecursionError."""
    nested = "[" * 50_000 + "]" * 50_000
    text = (
        f'{{"routes": [{{"desc": {nested}}}]}}'
        if fmt == "json"
        else f"routes:\n  - desc: {nested}\n#END\n"
    )
    with pytest.raises(DocumentError, match=r"nested too deeply|depth limit exceeded"):
        entries(text, fmt)


def test_an_endless_file_is_refused_not_read_into_memory() -> None:
    """Attacker: ``-f /dev/zero`` (or a standalone file swapped for it) must be a clear
    refusal after at most MAX_BYTES, not a MemoryError or an out-of-memory kill."""
    started = time.monotonic()
    with pytest.raises(DocumentError, match=r"/dev/zero: the file is too large \(over 64 MiB\)"):
        read("/dev/zero")
    assert time.monotonic() - started < 10


def test_a_file_of_too_many_values_is_refused_before_it_is_built() -> None:
    """Attacker: a few MiB of ``[1,1,1,…]`` is millions of values; building them all (minutes
    of CPU in the standalone watcher, which shares the data plane's process) before counting
    them is the cost the bound is there to avoid."""
    text = "routes:\n  - desc: [" + ",".join(["1"] * (MAX_NODES + 100_000)) + "]\n#END\n"
    started = time.monotonic()
    with pytest.raises(DocumentError, match="too large"):
        entries(text)
    assert time.monotonic() - started < 10
