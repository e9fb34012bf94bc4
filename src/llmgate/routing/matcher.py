"""The route matcher: ``(method, host, path, variables) -> RouteEntry | None``, compiled once
per snapshot.

Semantics follow APISIX's radixtree router:

* a URI is an exact path (``/a/b``) or a prefix pattern ending in ``*``: ``/a/*`` matches ``/a/``
  and ``/a/b/c`` but not ``/a``; ``/a*`` matches ``/a``, ``/ab`` and ``/a/b``; ``/*`` matches
  every path starting with ``/``.  A ``*`` anywhere else is a literal character.
* Candidates are tried in order: the exact path's routes, then the prefix patterns' routes from
  the longest prefix to the shortest.  Within one path or prefix, higher ``priority`` first, then
  the order the entries were given.
* A candidate whose ``methods`` lacks the method, whose ``hosts`` do not match, whose
  ``remote_addrs`` do not hold the client's address, or whose ``vars`` condition does not hold
  (checked in that order, as lua-resty-radixtree does) is skipped and the next one is tried, so a
  less specific route can still match.

How it is fast: exact paths are a dict whose values already hold the whole ordered candidate list
(exact routes followed by every prefix route that covers the path); prefix patterns live in a
compressed radix tree whose every node holds the ordered candidates of all prefixes ending at or
above it.  A match is one dict lookup, or a walk of a few tree edges with ``str.startswith(label,
pos)``, then a loop over a precomputed tuple until the first candidate that passes its method and
host checks.  The path is never copied or decoded; the Host header is normalised at most once,
and only when a candidate filters on hosts; request variables are read only when a candidate
has a condition on them.  The matcher compiles no condition itself: the caller hands each entry
its ``remote_addrs`` and ``vars`` tests already compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from llmgate.routing.hosts import HostSet, normalize_host

__all__ = ["Lookup", "RouteEntry", "Router"]

T = TypeVar("T")

# A request variable by name ("remote_addr", "arg_x", "http_x", ...): None when unset.
Lookup = Callable[[str], "str | None"]
Condition = Callable[[Lookup], bool]


def _unset(_name: str) -> str | None:
    return None


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


class _Candidate(NamedTuple, Generic[T]):
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


_Chain = tuple[_Candidate[T], ...]


class _Node(Generic[T]):
    """A radix tree node; immutable once :func:`_build_tree` returns.

    ``edges`` maps the first character of an edge label to ``(label, len(label), child)``;
    ``chain`` holds the candidates of every prefix pattern that covers a path whose walk ends here,
    longest prefix first.
    """

    __slots__ = ("chain", "edges")

    def __init__(self, chain: _Chain[T]) -> None:
        self.chain = chain
        self.edges: dict[str, tuple[str, int, _Node[T]]] = {}


class _RawNode(Generic[T]):
    """A one-character trie node, used only while building the tree."""

    __slots__ = ("bucket", "children")

    def __init__(self) -> None:
        self.children: dict[str, _RawNode[T]] = {}
        self.bucket: list[_Candidate[T]] = []


class Router(Generic[T]):
    """Matches requests against a fixed set of :class:`RouteEntry`; build one per config snapshot.

    Construction compiles everything; :meth:`match` is pure, allocation-light and never raises.
    """

    __slots__ = ("_entries", "_exact", "_root", "needs_variables")

    def __init__(self, entries: Iterable[RouteEntry[T]]) -> None:
        self._entries: tuple[RouteEntry[T], ...] = tuple(entries)
        exact: dict[str, list[_Candidate[T]]] = {}
        prefixes: dict[str, list[_Candidate[T]]] = {}
        # Whether any entry reads request variables: callers skip building a lookup otherwise.
        self.needs_variables = False
        for entry in self._entries:
            candidate = _Candidate(
                frozenset(m.upper() for m in entry.methods) if entry.methods else None,
                HostSet.compile(entry.hosts) if entry.hosts else None,
                _condition(entry),
                entry,
            )
            self.needs_variables = self.needs_variables or candidate.condition is not None
            for uri in dict.fromkeys(entry.uris):  # dedupe, keep order
                if uri.endswith("*"):
                    prefixes.setdefault(uri[:-1], []).append(candidate)
                else:
                    exact.setdefault(uri, []).append(candidate)
        self._root: _Node[T] = _build_tree(prefixes)
        self._exact: dict[str, _Chain[T]] = {
            path: _chain(bucket, _walk(self._root, path)) for path, bucket in exact.items()
        }

    @property
    def entries(self) -> tuple[RouteEntry[T], ...]:
        """The entries, in the order given."""
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def match(
        self, method: str, host: str | None, path: str, variables: Lookup | None = None
    ) -> RouteEntry[T] | None:
        """Return the first entry that matches, or ``None``.

        ``path`` is the request path without the query string, matched byte for byte (the
        caller decides whether it is normalised; the matcher never decodes).  ``host`` is the
        Host header (port and case do not matter) or ``None`` when there is none; entries with
        ``hosts`` never match ``None``.  ``variables`` reads the request's variables for entries
        with ``remote_addrs`` or ``vars`` (``None``: every variable is unset).
        """
        candidates = self._exact.get(path)
        if candidates is None:
            candidates = _walk(self._root, path)
        request_host: str | None = None
        for methods, hosts, condition, entry in candidates:
            if methods is not None and method not in methods:
                continue
            if hosts is not None:
                if host is None:
                    continue
                if request_host is None:
                    request_host = normalize_host(host)
                if not hosts.matches(request_host):
                    continue
            if condition is not None and not condition(variables or _unset):
                continue
            return entry
        return None


def _walk(root: _Node[T], path: str) -> _Chain[T]:
    """The candidates of every prefix pattern that ``path`` starts with, longest prefix first."""
    node = root
    chain = node.chain
    pos = 0
    end = len(path)
    while pos < end:
        edge = node.edges.get(path[pos])
        if edge is None:
            break
        label, size, node = edge
        if not path.startswith(label, pos):
            break
        pos += size
        chain = node.chain
    return chain


def _chain(bucket: Sequence[_Candidate[T]], inherited: _Chain[T]) -> _Chain[T]:
    """``bucket`` ordered by priority (stable, so earlier entries win ties), then ``inherited``.

    An entry already in ``bucket`` is dropped from ``inherited``: by then it has failed its method
    or host check, and those checks do not depend on which of its URIs matched.
    """
    own = sorted(bucket, key=lambda c: -c.entry.priority)
    seen = {id(c) for c in own}
    return (*own, *(c for c in inherited if id(c) not in seen))


def _build_tree(prefixes: dict[str, list[_Candidate[T]]]) -> _Node[T]:
    """Compile prefix -> candidates into a compressed radix tree (iteratively: no depth limit)."""
    raw_root: _RawNode[T] = _RawNode()
    for prefix, bucket in prefixes.items():
        raw = raw_root
        for char in prefix:
            raw = raw.children.setdefault(char, _RawNode())
        raw.bucket.extend(bucket)

    root: _Node[T] = _Node(_chain(raw_root.bucket, ()))
    stack = [(raw_root, root)]
    while stack:
        raw, node = stack.pop()
        for first, child_raw in raw.children.items():
            label = [first]
            # Fold single-child, route-less nodes into the edge label.
            while not child_raw.bucket and len(child_raw.children) == 1:
                ((char, child_raw),) = child_raw.children.items()
                label.append(char)
            child: _Node[T] = _Node(_chain(child_raw.bucket, node.chain))
            text = "".join(label)
            node.edges[first] = (text, len(text), child)
            stack.append((child_raw, child))
    return root
