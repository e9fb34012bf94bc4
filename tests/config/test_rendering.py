"""Writing the standalone file format: stored items as APISIX's apisix.yaml / apisix.json."""

from __future__ import annotations

from llmgate.admin.kind import Address
from llmgate.config.document import Entry
from llmgate.config.reading import parse
from llmgate.config.rendering import render
from llmgate.store import Item


def test_render_reads_back_as_the_same_entries() -> None:
    items = [
        Item(
            "routes",
            "1",
            {"id": "1", "uri": "/a", "upstream_id": "u", "create_time": 1, "update_time": 2},
            3,
            3,
        ),
        Item("upstreams", "u", {"nodes": {"127.0.0.1:80": 1}, "id": "u", "create_time": 1}, 1, 1),
        Item("consumers", "jack", {"username": "jack", "create_time": 1}, 2, 2),
        Item(
            "credentials", "jack/k", {"id": "k", "plugins": {"key-auth": {"key": "sha256$x"}}}, 4, 4
        ),
        Item("consumers", "jill", {"username": "jill"}, 5, 5),
    ]
    for fmt in ("yaml", "json"):
        text = render(items, fmt)
        assert "create_time" not in text and "update_time" not in text
        assert list(parse(text, fmt, "apisix." + fmt, {}).entries) == [
            Entry("routes", Address("1"), {"id": "1", "uri": "/a", "upstream_id": "u"}),
            Entry("upstreams", Address("u"), {"id": "u", "nodes": {"127.0.0.1:80": 1}}),
            Entry("consumers", Address("jack"), {"username": "jack"}),
            Entry(
                "credentials", Address("k", "jack"), {"plugins": {"key-auth": {"key": "sha256$x"}}}
            ),
            Entry("consumers", Address("jill"), {"username": "jill"}),
        ]
    assert render([], "yaml") == "#END\n"
    assert render(items, "yaml").endswith("\n#END\n")
