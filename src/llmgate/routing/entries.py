"""A route as the matcher sees it: ``RouteEntry`` as the caller compiled it from a route row,
and ``Candidate``, the form the matcher tries it in (upper-case method set, compiled
``HostSet``, and ``remote_addrs`` and ``vars`` folded into one condition, in that order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from llmgate.routing.hosts import HostSet

__all__ = ["Candidate", "Condition", "Lookup", "RouteEntry", "candidate_of"]

T = TypeVar("T")

# A request variable by name ("remote_addr", "arg_x", "http_x", ...): None when unset.
Lookup = Callable[[str], "str | None"]
Condition = Callable[[Lookup], bool]


@dataclass(frozen=True, slots=True)
class RouteEntry(Generic[T]):
    """One routable thing, as the caller compiled it from a route row.

    ``methods`` are upper-case HTTP methods (``None`` or empty: any method); ``hosts`` are exact
    names or ``*.``-wildcards (``None`` or empty: any host, including a request without a Host).
    ``remote_addrs`` tests the client's address (the ``remote_addr`` variable, None when
    unknown); ``vars`` tests the request's variables (lua-resty-expr, compiled by the caller).
    ``payload`` is opaque to the matcher and handed back with the entry.
    """

    id: str
    uris: tuple[str, ...]
    methods: frozenset[str] | None = None
    hosts: tuple[str, ...] | None = None
    priority: int = 0
    payload: T | None = None
    remote_addrs: Callable[[str | None], bool] | None = None
    vars: Condition | None = None


class Candidate(NamedTuple, Generic[T]):
    methods: frozenset[str] | None
    hosts: HostSet | None
    condition: Condition | None  # remote_addrs and vars, in that order
    entry: RouteEntry[T]


def _condition(entry: RouteEntry[T]) -> Condition | None:
    remote, variables = entry.remote_addrs, entry.vars
    if remote is None:
        return variables
    if variables is None:
        return lambda lookup: remote(lookup("remote_addr"))
    return lambda lookup: remote(lookup("remote_addr")) and variables(lookup)


def candidate_of(entry: RouteEntry[T]) -> Candidate[T]:
    return Candidate(
        frozenset(m.upper() for m in entry.methods) if entry.methods else None,
        HostSet.compile(entry.hosts) if entry.hosts else None,
        _condition(entry),
        entry,
    )
