"""ngx.re conventions: option letters and ``$1`` replacement templates."""

from __future__ import annotations

import re

import pytest

from llmgate.plugins.ngx_regex import Replacement, compile_pattern, flags_of


@pytest.mark.parametrize(
    ("template", "subject", "pattern", "expected"),
    [
        ("/v2/$2/${1}", "/api/users/42", r"^/api/(\w+)/(\w+)$", "/v2/42/users"),
        ("[$0]", "abc", "b", "a[b]c"),
        ("$$1", "abc", "(b)", "a$1c"),
        ("x$9y", "abc", "(b)", "axyc"),  # a group that does not exist is empty
        ("<$2>", "ac", "(b)?(c)", "a<c>"),
        ("$name", "abc", "b", "a$namec"),  # not a group reference: literal
    ],
)
def test_replacement(template: str, subject: str, pattern: str, expected: str) -> None:
    assert Replacement.compile(template).sub(re.compile(pattern), subject, 1) == expected


def test_binary_replacement_and_count() -> None:
    pattern = compile_pattern("o", "jo", binary=True)
    replacement = Replacement.compile_binary("0")
    assert replacement.sub(pattern, b"foo boo", 1) == b"f0o boo"
    assert replacement.sub(pattern, b"foo boo", 0) == b"f00 b00"


def test_options() -> None:
    assert flags_of("jo") == 0
    assert flags_of("ijo") == re.IGNORECASE
    assert flags_of("ms") == re.MULTILINE | re.DOTALL
    anchored = compile_pattern("b", "a")
    assert anchored.search("ab") is None
    assert anchored.search("ba") is not None
