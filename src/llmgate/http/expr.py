"""Conditions on request variables, as lua-resty-expr (APISIX's ``vars``) writes them.

    [["arg_name", "==", "json"], ["status", ">", 399]]        every rule must hold
    ["OR", ["arg_x", "==", "1"], ["arg_y", "==", "1"]]        AND, OR, !AND, !OR (2+ rules)
    ["http_x", "!", "~~", "^a"]                                "!" negates one comparison
    ["arg_x", "1"]                                             two items mean "=="

Operators: ``==`` ``~=`` ``>`` ``>=`` ``<`` ``<=`` ``~~`` (regex search) ``~*`` (case-insensitive)
``in`` ``has`` ``ipmatch``. A condition is compiled once (``Expr.compile`` raises ``ExprError``
with lua-resty-expr's message) and evaluated per request against a variable lookup.

As in Lua, a number on the right makes ``==``/``~=`` compare numerically and the ordering
operators always do; unlike Lua, ``in`` also finds a numeric variable in a list of numbers
(``["status", "in", [200, 201]]``), which lua-resty-expr never matches because variables are
strings.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmgate.http import regex

log = logging.getLogger("llmgate.http.expr")

Lookup = Callable[[str], str | None]
Test = Callable[[str | None], bool]

LOGIC_OPS = frozenset({"AND", "OR", "!AND", "!OR"})


class ExprError(ValueError):
    """A condition lua-resty-expr would refuse."""


def _number(value: Any) -> float | None:
    """Lua's ``tonumber`` on a variable's value (None when it is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isinf(number) or math.isnan(number) else number


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _regex_test(pattern: Any, options: str) -> Test:
    """``~~`` / ``~*`` on the bounded engine (``llmgate.http.regex``, the one place regexes are
    compiled): lua-resty-expr only finds a broken regex when it evaluates (and then never
    matches); llmgate refuses it, and one no engine can bound, when the condition is compiled.
    A match that reaches the bound does not match."""
    text = _lua_text(pattern)
    if text is None:
        raise ExprError(f"invalid regex {pattern!r}")
    try:
        compiled = regex.compile(text, options, captures=False)
    except regex.RegexError as exc:
        raise ExprError(f"invalid regex {pattern!r}: {exc}") from None

    def test(value: str | None) -> bool:
        if value is None:
            return False
        try:
            return compiled.test(value)
        except regex.RegexLimit:
            log.warning("condition regex %r reached its bound; no match", compiled.pattern)
            return False

    return test


def _ordering(right: Any, compare: Callable[[float, float], bool]) -> Test:
    limit = _number(right)
    if limit is None:
        return lambda value: False
    return lambda value: (number := _number(value)) is not None and compare(number, limit)


def _in_list(right: Any) -> Test:
    if not isinstance(right, list):
        return lambda value: False
    texts = frozenset(item for item in right if isinstance(item, str))
    numbers = frozenset(float(item) for item in right if _is_number(item))

    def test(value: str | None) -> bool:
        if value in texts:
            return True
        return bool(numbers) and _number(value) in numbers

    return test


# IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``): what a dual-stack socket reports for an
# IPv4 client.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def ip_matcher(items: Any) -> Test:
    """A test of whether an address is one of ``items`` (IPv4/IPv6 addresses or CIDRs), as
    lua-resty-ipmatcher matches ``ipmatch`` and routes' ``remote_addrs``; ``ExprError`` for an
    item that is neither.

    A client on a dual-stack socket (``::ffff:10.0.0.1``) is compared as the IPv4 address it
    carries, as nginx sees it on its IPv4 socket; an IPv4-mapped item is IPv6 to
    resty.ipmatcher, so it never holds an IPv4 client, here neither (it is left out)."""
    items = items if isinstance(items, list) else [items]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ExprError("invalid ip address")
    try:
        parsed = [ipaddress.ip_network(item, strict=False) for item in items]
    except ValueError as exc:
        raise ExprError(str(exc)) from None
    networks = tuple(
        n for n in parsed if not (isinstance(n, ipaddress.IPv6Network) and n.subnet_of(_MAPPED))
    )
    exact = frozenset(str(n.network_address) for n in networks if n.prefixlen == n.max_prefixlen)
    ranges = tuple(n for n in networks if n.prefixlen != n.max_prefixlen)

    def test(value: str | None) -> bool:
        if value is None:
            return False
        if value in exact:
            return True
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address) in exact or any(address in network for network in ranges)

    return test


def _equals(right: Any) -> Test:
    if _is_number(right):
        return lambda value: _number(value) == right
    return lambda value: value == right


def _differs(right: Any) -> Test:
    if _is_number(right):
        return lambda value: (number := _number(value)) is None or number != right
    return lambda value: value != right


_OPERATORS: dict[str, Callable[[Any], Test]] = {
    "==": _equals,
    "~=": _differs,
    ">": lambda right: _ordering(right, lambda a, b: a > b),
    ">=": lambda right: _ordering(right, lambda a, b: a >= b),
    "<": lambda right: _ordering(right, lambda a, b: a < b),
    "<=": lambda right: _ordering(right, lambda a, b: a <= b),
    "~~": lambda right: _regex_test(right, "jo"),
    "~*": lambda right: _regex_test(right, "ijo"),
    "in": _in_list,
    "has": lambda right: lambda value: False,  # variables are strings, never lists
    "ipmatch": ip_matcher,
}


@dataclass(frozen=True, slots=True)
class _Compare:
    name: str
    test: Test
    reverse: bool

    def eval(self, lookup: Lookup) -> bool:
        return self.test(lookup(self.name)) != self.reverse


@dataclass(frozen=True, slots=True)
class _Logic:
    op: str
    rules: tuple[_Compare | _Logic, ...]

    def eval(self, lookup: Lookup) -> bool:
        # Plain loops: this runs per request, for every route condition tried.
        if self.op in ("AND", "!AND"):
            result = True
            for rule in self.rules:
                if not rule.eval(lookup):
                    result = False
                    break
        else:
            result = False
            for rule in self.rules:
                if rule.eval(lookup):
                    result = True
                    break
        return result if self.op[0] != "!" else not result


def _lua_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(int(value)) if float(value).is_integer() else str(value)
    return None


def _compile_compare(rule: list[Any]) -> _Compare:
    reverse = len(rule) == 4
    if reverse:
        if rule[1] != "!":
            raise ExprError("bad 'not' expression")
        name, op, right = rule[0], rule[2], rule[3]
    else:
        name, op, right = [*rule[:3], None, None, None][:3]
    if op is not None:
        text = _lua_text(op)
        if text is None:
            raise ExprError("invalid expression")
        op = text.lower()
    if right is None and op not in _OPERATORS:
        # The two-item form: ["var", "value"] means "==".
        op, right = "==", op
        if right is None:
            raise ExprError("invalid expression")
    if not isinstance(name, str) or op is None:
        raise ExprError("invalid expression")
    factory = _OPERATORS.get(op)
    if factory is None:
        raise ExprError(f"invalid operator '{op}'")
    return _Compare(name.removeprefix("$"), factory(right), reverse)


# Deeper nesting is refused (lua-resty-expr has no bound): compiling and evaluating recurse.
MAX_DEPTH = 32


def _compile(rules: Any, depth: int = 0) -> _Compare | _Logic:
    if not isinstance(rules, list):
        raise ExprError("invalid expression")
    if not rules:
        raise ExprError("rule too short")
    if depth >= MAX_DEPTH:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels")
    if isinstance(rules[0], list):
        return _Logic("AND", tuple(_compile(rule, depth + 1) for rule in rules))
    op = rules[0].upper() if isinstance(rules[0], str) else None
    if op in LOGIC_OPS:
        if len(rules) <= 2:
            raise ExprError("rule too short")
        return _Logic(op, tuple(_compile(rule, depth + 1) for rule in rules[1:]))
    return _compile_compare(rules)


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled condition; an empty one always holds."""

    root: _Compare | _Logic | None

    @classmethod
    def compile(cls, rule: Any) -> Expr:
        if not isinstance(rule, list):
            raise ExprError("rule should be a list")
        if not rule:
            return cls(None)
        if not isinstance(rule[0], list) and (
            not isinstance(rule[0], str) or rule[0].upper() not in LOGIC_OPS
        ):
            raise ExprError("rule should be wrapped inside brackets")
        root = _compile(rule)
        if isinstance(root, _Logic) and root.op == "AND" and len(root.rules) == 1:
            root = root.rules[0]  # [[...]]: one comparison, tested directly
        return cls(root)

    @classmethod
    def never(cls) -> Expr:
        """A condition that never holds."""
        return cls(_Logic("OR", ()))

    def eval(self, lookup: Lookup) -> bool:
        return self.root is None or self.root.eval(lookup)
