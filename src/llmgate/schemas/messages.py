"""Turn a pydantic ``ValidationError`` into one APISIX-style sentence naming the property."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# pydantic's tags for the members of a union (``str`` / ``int`` / a model name): not properties.
_TAG_PREFIXES = ("function-", "lax-", "json-or-python", "dict[", "list[", "tuple[", "literal[")
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "constrained-str", "constrained-int"}


def _path(loc: tuple[int | str, ...]) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        if part in _UNION_TAGS or part.startswith(_TAG_PREFIXES):
            continue
        if part and part[0].isupper() and part.isidentifier():  # a model name tag in a union
            continue
        parts.append(("." if parts else "") + part)
    return "".join(parts)


def describe_error(error: ErrorDetails) -> str:
    """One error as text: ``property "x.y" validation failed: <why>``."""
    path = _path(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f'property "{path}" is required'
    if kind == "extra_forbidden":
        parent, _, name = path.rpartition(".")
        where = f'property "{parent}" ' if parent else ""
        return f"{where}additional properties forbidden, found {name}"
    message = error["msg"]
    ctx = error.get("ctx") or {}
    if kind == "too_long" and ctx.get("field_type") == "Dictionary":
        # jsonschema's wording for maxProperties, as APISIX answers it.
        message = f"expect object to have at most {ctx['max_length']} properties"
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if not path:
        return message
    return f'property "{path}" validation failed: {message}'


def describe(exc: ValidationError) -> str:
    """The first error of ``exc``, described as APISIX's JSON-schema checker would."""
    errors = exc.errors(include_url=False)
    # Union members each report their own failure; the most specific one is the longest path.
    best = max(errors, key=lambda e: len(_path(e["loc"])))
    return describe_error(best)
