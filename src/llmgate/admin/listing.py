"""List queries: the ``name`` / ``label`` / ``uri`` / ``filter`` filters and pagination.

``name`` and ``uri`` are regexes from whoever holds a key, the read-only viewer too: they run
on RE2 only (``llmgate.http.regex`` with ``linear``), in time linear in each value, so no
filter can freeze the process; a pattern that would need backtracking, or is longer than
``MAX_FILTER_PATTERN``, is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from llmgate.errors import BadRequest
from llmgate.http import regex
from llmgate.store import Item

PAGE_SIZE_MIN = 10
PAGE_SIZE_MAX = 500
MAX_FILTER_PATTERN = 1024


@dataclass(frozen=True, slots=True)
class ListQuery:
    name: regex.Regex | None = None
    label: str | None = None
    uri: regex.Regex | None = None
    fields: tuple[tuple[str, str], ...] = ()
    page: int | None = None
    page_size: int | None = None


def _regex(param: str, text: str | None) -> regex.Regex | None:
    if text is None:
        return None
    if len(text) > MAX_FILTER_PATTERN:
        raise BadRequest(f"invalid {param} filter: longer than {MAX_FILTER_PATTERN} characters")
    try:
        return regex.compile(text, "jo", captures=False, linear=True)
    except regex.RegexError as exc:
        raise BadRequest(f"invalid {param} filter: {exc}") from None


# What Lua's ``tonumber`` reads (APISIX reads ``page`` and ``page_size`` with it), in ASCII:
# decimal (with a fraction, an exponent), hexadecimal integers, inf and nan; spaces around.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_LUA_SPACE = " \t\n\v\f\r"


def _lua_number(text: str | None) -> int | float | None:
    """The number Lua's ``tonumber`` reads from ``text`` (None: not a number)."""
    if text is None:
        return None
    text = text.strip(_LUA_SPACE)
    if _HEX.fullmatch(text):
        return int(text, 16)
    if _INTEGER.fullmatch(text):
        return int(text)  # exactly, however long
    if _DECIMAL.fullmatch(text) or _SPECIAL.fullmatch(text):
        return float(text)
    return None


def _whole(param: str, number: int | float) -> int:
    """A paging number that is not whole is a 400 (APISIX slices the list with it:
    ``page_size=10.5`` gives 10 items on page 1 and none after)."""
    if isinstance(number, float):
        if not number.is_integer():
            raise BadRequest(f"invalid {param}: should be an integer")
        return int(number)
    return number


def parse_query(args: Mapping[str, str], filter_fields: frozenset[str]) -> ListQuery:
    """Read a list query from the URL arguments, refusing invalid ones with a 400."""
    # As APISIX: paging needs both, and one that is not a number turns it off.
    page_arg, size_arg = _lua_number(args.get("page")), _lua_number(args.get("page_size"))
    page = page_size = None
    if page_arg is not None and size_arg is not None:
        if not PAGE_SIZE_MIN <= size_arg <= PAGE_SIZE_MAX:
            raise BadRequest(f"page_size must be between {PAGE_SIZE_MIN} and {PAGE_SIZE_MAX}")
        page_size = _whole("page_size", size_arg)
        page = max(_whole("page", page_arg), 1)
    fields = tuple(
        (key, value)
        for key, value in parse_qsl(args.get("filter", ""), keep_blank_values=True)
        if key in filter_fields
    )
    return ListQuery(
        name=_regex("name", args.get("name")),
        label=args.get("label"),
        uri=_regex("uri", args.get("uri")),
        fields=fields,
        page=page,
        page_size=page_size,
    )


def _matches(value: dict[str, Any], query: ListQuery) -> bool:
    if query.name is not None:
        name = value.get("name")
        if not isinstance(name, str) or not query.name.test(name):
            return False
    if query.label is not None:
        labels = value.get("labels")
        if not isinstance(labels, dict) or query.label not in labels:
            return False
    if query.uri is not None:
        uris = [value["uri"]] if isinstance(value.get("uri"), str) else []
        uris += [u for u in value.get("uris") or () if isinstance(u, str)]
        if not any(query.uri.test(u) for u in uris):
            return False
    return all(str(value.get(key)) == wanted for key, wanted in query.fields)


def select_items(items: Sequence[Item], query: ListQuery) -> tuple[list[Item], int]:
    """The page of ``items`` the query asks for, and the total after filtering.

    As APISIX: a list comes in the order of an etcd range over the prefix (byte order of the
    ids: "1", "10", "2"); only a paged list is sorted by creation."""
    selected = [item for item in items if _matches(item.value, query)]
    total = len(selected)
    if query.page is not None and query.page_size is not None:
        selected.sort(key=lambda item: item.created_index)
        start = (query.page - 1) * query.page_size
        return selected[start : start + query.page_size], total
    selected.sort(key=lambda item: item.id.encode())
    return selected, total
