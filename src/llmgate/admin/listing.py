"""List queries: the ``name`` / ``label`` / ``uri`` / ``filter`` filters and pagination.

``name`` and ``uri`` are regexes from whoever holds a key, the read-only viewer too: they run
on RE2 only (``llmgate.http.regex`` with ``linear``), in time linear in each value, so no
filter can freeze the process; a pattern that would need backtracking, or is longer than
``MAX_FILTER_PATTERN``, is a 400.
"""

from __future__ import annotations

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


def _int(param: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"invalid {param}: should be an integer") from None


def parse_query(args: Mapping[str, str], filter_fields: frozenset[str]) -> ListQuery:
    """Read a list query from the URL arguments, refusing invalid ones with a 400."""
    page, page_size = _int("page", args.get("page")), _int("page_size", args.get("page_size"))
    if page is not None and page_size is not None:
        if not PAGE_SIZE_MIN <= page_size <= PAGE_SIZE_MAX:
            raise BadRequest(f"page_size must be between {PAGE_SIZE_MIN} and {PAGE_SIZE_MAX}")
        page = max(page, 1)
    else:
        page = page_size = None  # as APISIX: paging needs both
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
    """The page of ``items`` the query asks for, and the total after filtering."""
    selected = [item for item in items if _matches(item.value, query)]
    total = len(selected)
    if query.page is not None and query.page_size is not None:
        selected.sort(key=lambda item: item.created_index)
        start = (query.page - 1) * query.page_size
        selected = selected[start : start + query.page_size]
    return selected, total
