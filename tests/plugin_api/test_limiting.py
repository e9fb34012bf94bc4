"""The limiters' shared helpers (plugin_api/limiting.py) as tables of cases (no network)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmgate.http.context import RequestContext
from llmgate.http.variables import Template
from llmgate.plugin_api.limiting import MAX_KEY_LENGTH, BadLimitValue, LimitKey, resolve_int
from tests.http.test_variables import make_ctx

COUNT = Template.compile("$http_x_count")


@pytest.mark.parametrize(("header", "number"), [("7", 7), (" 12 ", 12), ("007", 7)])
def test_a_variable_resolves_to_its_number(header: str, number: int) -> None:
    assert resolve_int(make_ctx(headers={"X-Count": header}), COUNT, "count") == number


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("lots", id="a-word"),
        pytest.param("0", id="below-the-minimum"),
        pytest.param("-3", id="negative"),
        pytest.param("\u00b2", id="superscript-two"),  # a digit to str.isdigit(), not to int()
        pytest.param("\u0663", id="arabic-indic-three"),  # int() reads 3
        pytest.param("9" * 5000, id="past-int-digits"),  # int() refuses over 4300 digits
    ],
)
def test_anything_but_ascii_digits_is_a_bad_limit_value(header: str) -> None:
    """A client's header is never read as a number it is not, nor raises anything else (each
    was a 500), and the message shows only the start of it."""
    with pytest.raises(BadLimitValue) as raised:
        resolve_int(make_ctx(headers={"X-Count": header}), COUNT, "count")
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize("key_type", ["var", "var_combination"])
def test_a_long_key_is_kept_as_a_digest(key_type: str) -> None:
    """A key a client controls (a header) costs the counters a bounded size, however long it is;
    distinct values still count apart."""
    text = "http_x_user" if key_type == "var" else "$http_x_user"
    key = LimitKey.compile(text, key_type)  # type: ignore[arg-type]
    long_a, long_b = "a" * 8000, "a" * 7999 + "b"
    resolved_a = key.resolve(make_ctx(headers={"X-User": long_a}))
    resolved_b = key.resolve(make_ctx(headers={"X-User": long_b}))
    assert resolved_a is not None and resolved_b is not None
    assert len(resolved_a) <= MAX_KEY_LENGTH and len(resolved_b) <= MAX_KEY_LENGTH
    assert resolved_a != resolved_b
    assert resolved_a == key.resolve(make_ctx(headers={"X-User": long_a}))
    short = "a" * MAX_KEY_LENGTH
    assert key.resolve(make_ctx(headers={"X-User": short})) == short


def test_a_key_of_undecodable_bytes_is_kept_as_a_digest() -> None:
    """A header of bytes that are not UTF-8 (kept as surrogates) cannot be sent to Redis or the
    counter service as text (a 500 each): it counts under a digest, distinct per value."""

    def ctx(value: str) -> RequestContext:
        # aiohttp's test request cannot carry such a header: only ``var`` is read.
        return SimpleNamespace(var=lambda name: value)  # type: ignore[return-value]

    for key in (
        LimitKey.compile("$http_x_user", "var_combination"),
        LimitKey.compile("http_x_user", "var"),
    ):
        first, second = key.resolve(ctx("\udcff\udcfe")), key.resolve(ctx("\udcff\udcfd"))
        assert first is not None and second is not None and first != second
        first.encode("utf-8")
        second.encode("utf-8")
        assert key.resolve(ctx("zoë")) == "zoë"
