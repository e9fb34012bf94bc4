"""Turn a pydantic ``ValidationError`` into one sentence worded as APISIX's JSON-schema checker
(api7/jsonschema) words it.

The path is spelled out one level at a time, as jsonschema nests its messages:
``property "checks" validation failed: property "active" validation failed: …``, an array item
as ``failed to validate item 2: `` (counted from 1), a label as
``failed to validate env (matching ".*"): ``.  The reason is jsonschema's: ``wrong type: expected
string, got number``, ``string too long, expected at most 256, got 257``, ``expected 0 to be at
least 1``, ``matches none of the enum values``, ``expect array to have at least 1 items``; a
value no member of a union accepts: ``object matches none of the required``.  Reasons of our own
validators are kept as written.
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# pydantic's tags for the members of a union (``str`` / ``int`` / a model name): not properties.
_WRAPPER_PREFIXES = ("function-", "lax-", "json-or-python")
_MEMBER_PREFIXES = ("dict[", "list[", "tuple[", "literal[")
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "constrained-str", "constrained-int"}

# pydantic's type errors and the JSON type each expected.
_EXPECTED = {
    "string_type": "string",
    "int_type": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "bool_type": "boolean",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "list_type": "array",
    "tuple_type": "array",
    "set_type": "array",
}

Segment = str | int  # a property name, or an array index (from 0)


def _is_member(part: str) -> bool:
    """Whether ``part`` names a member of a union (``str``, ``list[Node]``, a model name)."""
    if part in _UNION_TAGS or part.startswith(_MEMBER_PREFIXES):
        return True
    return bool(part and part[0].isupper() and part.isidentifier())


def _is_tag(part: str) -> bool:
    return part.startswith(_WRAPPER_PREFIXES) or _is_member(part)


def _segments(loc: tuple[int | str, ...]) -> list[Segment]:
    return [part for part in loc if isinstance(part, int) or not _is_tag(part)]


def _path(loc: tuple[int | str, ...]) -> str:
    """The dotted path of ``loc`` (``nodes[0].host``): to compare errors, not to show."""
    parts: list[str] = []
    for part in _segments(loc):
        parts.append(f"[{part}]" if isinstance(part, int) else ("." if parts else "") + part)
    return "".join(parts)


def lua_type(value: object) -> str:
    """What Lua's ``type`` says of ``value`` decoded from JSON."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict | list | tuple):
        return "table"
    return "userdata" if value is None else "nil"


def _number(value: object) -> str:
    """A number as Lua's ``%s`` shows it (``1``, not ``1.0``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def lua_quoted(text: str) -> str:
    """``text`` as Lua's ``%q`` writes it."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n")
    return '"' + escaped.replace("\r", "\\r").replace("\0", "\\0") + '"'


def _reason(error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in _EXPECTED:
        return f"wrong type: expected {_EXPECTED[kind]}, got {lua_type(value)}"
    if kind == "string_too_short" and isinstance(value, str):
        return f"string too short, expected at least {ctx['min_length']}, got {len(value)}"
    if kind == "string_too_long" and isinstance(value, str):
        return f"string too long, expected at most {ctx['max_length']}, got {len(value)}"
    if kind == "string_pattern_mismatch" and isinstance(value, str):
        return f"failed to match pattern {lua_quoted(str(ctx['pattern']))} with {lua_quoted(value)}"
    bounds = {
        "greater_than_equal": ("ge", "at least"),
        "less_than_equal": ("le", "at most"),
        "greater_than": ("gt", "greater than"),
        "less_than": ("lt", "smaller than"),
        "multiple_of": ("multiple_of", "a multiple of"),
    }
    if kind in bounds:
        name, words = bounds[kind]
        return f"expected {_number(value)} to be {words} {_number(ctx[name])}"
    if kind in ("too_short", "too_long"):
        what = "object" if ctx.get("field_type") == "Dictionary" else "array"
        items = "properties" if what == "object" else "items"
        most = "at least" if kind == "too_short" else "at most"
        limit = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        return f"expect {what} to have {most} {limit} {items}"
    if kind in ("literal_error", "enum"):
        return "matches none of the enum values"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message


def _nest(segments: list[Segment], reason: str) -> str:
    """``reason`` under ``segments``, one level of jsonschema's wording at a time."""
    text = reason
    for depth in range(len(segments) - 1, -1, -1):
        part = segments[depth]
        if isinstance(part, int):
            text = f"failed to validate item {part + 1}: {text}"
        elif depth > 0 and segments[depth - 1] == "labels":
            text = f'failed to validate {part} (matching ".*"): {text}'
        else:
            text = f'property "{part}" validation failed: {text}'
    return text


def describe_error(error: ErrorDetails, union: bool = False) -> str:
    """One error as jsonschema words it (``union``: no member of a union accepted the value)."""
    segments = _segments(error["loc"])
    kind = error["type"]
    if kind == "missing" and segments and isinstance(segments[-1], str):
        return _nest(segments[:-1], f'property "{segments[-1]}" is required')
    if kind == "extra_forbidden" and segments:
        return _nest(segments[:-1], f"additional properties forbidden, found {segments[-1]}")
    reason = "object matches none of the required" if union else _reason(error)
    return _nest(segments, reason)


def _in_union(loc: tuple[int | str, ...]) -> list[Segment] | None:
    """The path to the first union ``loc`` goes through, or None."""
    for index, part in enumerate(loc):
        if isinstance(part, str) and _is_member(part):
            return _segments(loc[:index])
    return None


def describe(exc: ValidationError) -> str:
    """The first error of ``exc``, described as APISIX's JSON-schema checker would."""
    errors = exc.errors(include_url=False)
    # jsonschema's anyOf (a union here: ids, nodes) says only that no member matched, unless
    # one of our own checks (a value_error: "invalid port") said more.
    if errors and all(e["type"] != "value_error" for e in errors):
        unions = [_in_union(e["loc"]) for e in errors]
        if all(u is not None for u in unions) and len({repr(u) for u in unions}) == 1:
            assert unions[0] is not None
            return _nest(unions[0], "object matches none of the required")
    # Union members each report their own failure; the most specific one is the longest path.
    best = max(errors, key=lambda e: len(_path(e["loc"])))
    path = _path(best["loc"])
    tied = [e for e in errors if _path(e["loc"]) == path]
    union = len(tied) > 1 and len({e["loc"] for e in tied}) > 1 and best["type"] != "missing"
    return describe_error(best, union)
