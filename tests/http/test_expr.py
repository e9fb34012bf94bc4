"""lua-resty-expr conditions: compiling (with its error messages) and evaluating."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmgate.http.expr import Expr, ExprError

VARS = {
    "status": "200",
    "arg_name": "json",
    "http_x": "Alpha",
    "remote_addr": "10.1.2.3",
    "uri": "/v1/chat/completions",
    "mapped": "::ffff:10.1.2.3",  # an IPv4 client on a dual-stack socket
}

CASES = [
    ([], True),
    ([["status", "==", 200]], True),
    ([["status", "==", "200"]], True),
    ([["status", "==", 201]], False),
    ([["status", "~=", 201]], True),
    ([["arg_name", "~=", "json"]], False),
    ([["missing", "~=", 1]], True),
    ([["missing", "==", None]], True),
    ([["status", ">", 199], ["status", "<", 300]], True),
    ([["status", ">=", 200], ["status", "<=", "200"]], True),
    ([["arg_name", ">", 1]], False),  # not a number
    ([["http_x", "~~", "^Al"]], True),
    ([["http_x", "~~", "^al"]], False),
    ([["http_x", "~*", "^al"]], True),
    ([["missing", "~~", ".*"]], False),
    ([["uri", "~~", "chat/"]], True),  # searched, not anchored
    ([["arg_name", "in", ["xml", "json"]]], True),
    ([["arg_name", "in", "json"]], False),
    ([["status", "in", [200, 201]]], True),  # llmgate: numbers in the list match
    ([["arg_name", "has", "j"]], False),
    ([["remote_addr", "ipmatch", "10.0.0.0/8"]], True),
    ([["remote_addr", "ipmatch", ["192.168.0.0/16", "10.1.2.3"]]], True),
    ([["remote_addr", "ipmatch", "192.168.0.0/16"]], False),
    ([["arg_name", "!", "==", "json"]], False),
    ([["arg_name", "!", "~~", "^x"]], True),
    ([["arg_name", "json"]], True),  # two items mean ==
    ([["arg_name", "JSON"]], True),  # as lua-resty-expr: the operator slot is lower-cased first
    ([["$status", "==", 200]], True),
    (["OR", ["status", "==", 500], ["arg_name", "==", "json"]], True),
    (["AND", ["status", "==", 200], ["arg_name", "==", "xml"]], False),
    (["!AND", ["status", "==", 200], ["arg_name", "==", "xml"]], True),
    (["!OR", ["status", "==", 500], ["arg_name", "==", "xml"]], True),
    ([["status", "==", 200], ["OR", ["http_x", "==", "b"], ["http_x", "==", "Alpha"]]], True),
    ([["mapped", "ipmatch", "10.0.0.0/8"]], True),
    # An IPv4-mapped item is IPv6, and never holds an IPv4 client (nginx sees one on its IPv4
    # socket; llmgate compares a dual-stack client as the IPv4 it carries), as resty.ipmatcher.
    ([["mapped", "ipmatch", "::ffff:10.1.2.3"]], False),
    ([["remote_addr", "ipmatch", "::ffff:10.1.2.3"]], False),
    ([["remote_addr", "ipmatch", "::ffff:10.0.0.0/104"]], False),
    ([["remote_addr", "ipmatch", ["::ffff:10.1.2.3", "10.1.2.3"]]], True),
    ([["remote_addr", "ipmatch", "::/0"]], False),
    ([["mapped", "ipmatch", "::/0"]], False),
    ([["remote_addr", "ipmatch", ["10.1.2.3/32"]]], True),
    ([["uri", "ipmatch", "10.0.0.0/8"]], False),  # not an address
    ([["http_x", "~*", "^alp"]], True),
    ([["http_x", "~~", "^alp"]], False),
    ([["http_x", "~~", r"(?<=Al)pha"]], True),  # look-behind: the backtracking engine
]


@pytest.mark.parametrize(("rule", "expected"), CASES)
def test_eval(rule: list[Any], expected: bool) -> None:
    assert Expr.compile(rule).eval(VARS.get) is expected


def _nested(depth: int) -> list[Any]:
    rule: list[Any] = [["arg_x", "==", "1"]]
    for _ in range(depth):
        rule = ["OR", rule, ["arg_y", "==", "2"]]
    return rule


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (["status", "==", 200], "rule should be wrapped inside brackets"),
        ("status == 200", "rule should be a list"),
        ([["status", "<>", 200]], "invalid operator '<>'"),
        ([["status", "#", "==", 200]], "bad 'not' expression"),
        ([["status"]], "invalid expression"),
        ([[]], "rule too short"),
        (["OR", ["status", "==", 200]], "rule too short"),
        ([[1, "==", 2]], "invalid expression"),
        ([["remote_addr", "ipmatch", "not-an-ip"]], "not-an-ip"),
        ([["remote_addr", "ipmatch", []]], "invalid ip address"),
        # lua-resty-expr accepts these and they never match; llmgate refuses them.
        ([["http_x", "~~", "("]], "invalid regex"),
        ([["http_x", "~*", None]], "invalid regex"),
        (_nested(40), "nested deeper than 32 levels"),
        ([["http_x", "~~", "(?R)"]], "recursion"),
        ([["http_x", "~~", "a{1001}"]], "invalid repetition size"),
    ],
)
def test_compile_errors(rule: Any, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        Expr.compile(rule)


def test_nesting_up_to_the_bound_compiles_and_evaluates() -> None:
    assert Expr.compile(_nested(30)).eval({"arg_y": "2"}.get) is True
    assert Expr.compile(_nested(30)).eval({}.get) is False


def test_never() -> None:
    assert Expr.never().eval(VARS.get) is False


def test_a_regex_that_reaches_its_bound_does_not_match() -> None:
    """The backtracking engine's time limit: the condition is false, the caller is not stuck."""
    rule = Expr.compile([["http_x", "~~", r"(?=a)(a|aa)+b"]])
    started = time.perf_counter()
    assert rule.eval({"http_x": "a" * 64}.get) is False
    assert time.perf_counter() - started < 1.0  # unbounded, this takes hours
