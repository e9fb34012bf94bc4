"""PATCH semantics as APISIX's ``core.table.merge``: tables of cases."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.admin.patching import merge_patch, patch_path

STORED = {"uri": "/a", "plugins": {"cors": {}, "limit-count": {"count": 1, "time_window": 9}}}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param({}, STORED, id="empty-body-changes-nothing"),
        pytest.param({"name": "n"}, {**STORED, "name": "n"}, id="adds"),
        pytest.param({"uri": None}, {"plugins": STORED["plugins"]}, id="null-deletes"),
        pytest.param(
            {"plugins": {"limit-count": {"count": 2}}},
            {"uri": "/a", "plugins": {"cors": {}, "limit-count": {"count": 2, "time_window": 9}}},
            id="objects-merge",
        ),
        # OpenResty's table.isarray({}) is true: an empty object replaces, as an array does.
        pytest.param({"plugins": {}}, {"uri": "/a", "plugins": {}}, id="empty-object-replaces"),
        pytest.param(
            {"plugins": {"limit-count": {}}},
            {"uri": "/a", "plugins": {"cors": {}, "limit-count": {}}},
            id="nested-empty-object-replaces",
        ),
        pytest.param({"plugins": ["x"]}, {"uri": "/a", "plugins": ["x"]}, id="array-replaces"),
    ],
)
def test_merge_patch(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    before = repr(STORED)
    assert merge_patch(STORED, patch) == expected
    assert repr(STORED) == before  # never in place


def test_merge_into_an_empty_object() -> None:
    assert merge_patch({"labels": {}}, {"labels": {"a": "1", "b": None}}) == {"labels": {"a": "1"}}


def test_patch_path() -> None:
    assert patch_path(STORED, "plugins/cors", {"max_age": 1})["plugins"]["cors"] == {"max_age": 1}
    assert "cors" not in patch_path(STORED, "plugins/cors", None)["plugins"]
    with pytest.raises(ValueError, match="not an object"):
        patch_path(STORED, "uri/x", 1)
