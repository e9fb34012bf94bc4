"""The shape rules of an admin value (admin/shape.py), as tables of cases."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.admin.shape import forbid_times, id_text, nested_deeper, null_field, whole_numbers
from llmgate.errors import BadRequest


@pytest.mark.parametrize(
    ("value", "limit", "deeper"),
    [
        (1, 0, False),
        ({}, 1, False),
        ({}, 0, True),
        ({"a": [{"b": 1}]}, 3, False),
        ({"a": [{"b": 1}]}, 2, True),
        ([[[[]]]], 4, False),
        ([[[[]]]], 3, True),
    ],
)
def test_nested_deeper(value: Any, limit: int, deeper: bool) -> None:
    assert nested_deeper(value, limit) is deeper


def test_nested_deeper_never_recurses() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    assert nested_deeper(value, 64)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.0, 2),
        (2.5, 2.5),
        (float(2**53), float(2**53)),  # past exact integers: kept as written
        ({"a": [1.0, {"b": -3.0}]}, {"a": [1, {"b": -3}]}),
        ("2.0", "2.0"),
        (True, True),
    ],
)
def test_whole_numbers(value: Any, expected: Any) -> None:
    result = whole_numbers(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"a": 1}, None),
        ({"a": None}, "a"),
        ({"upstream": {"timeout": None}}, "upstream.timeout"),
        ({"vars": [["arg_a", "==", None]]}, None),  # arrays are not looked into
        ({"plugins": {"limit-count": {"count": None}}}, None),  # each plugin's business
    ],
)
def test_null_field(conf: dict[str, Any], field: str | None) -> None:
    assert null_field(conf) == field


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"create_time": 1}, "the property is forbidden:  create_time"),
        ({"upstream": {"update_time": 1}}, "the property is forbidden:  upstream.update_time"),
        ({"plugins": {"create_time": 1}}, "the property is forbidden:  plugins.create_time"),
    ],
)
def test_forbid_times(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        forbid_times(conf)
    assert raised.value.body == {"error_msg": message}


def test_forbid_times_lets_other_fields_pass() -> None:
    forbid_times({"name": "create_time", "labels": {"update_time": "x"}})


@pytest.mark.parametrize(
    ("value", "text"), [("a", "a"), (1, "1"), (True, ""), (1.5, ""), (None, "")]
)
def test_id_text(value: Any, text: str) -> None:
    assert id_text(value) == text
