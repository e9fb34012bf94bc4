"""The route matcher: ``(method, host, path, variables) -> RouteEntry | None``, compiled once
per snapshot.

Semantics follow APISIX's radixtree router:

* a URI is an exact path (``/a/b``) or a prefix pattern ending in ``*``: ``/a/*`` matches ``/a/``
  and ``/a/b/c`` but not ``/a``; ``/a*`` matches ``/a``, ``/ab`` and ``/a/b``; ``/*`` matches
  every path starting with ``/``.  A ``*`` anywhere else is a literal character.
* Routes with ``hosts`` that match the request's host are tried first, as APISIX's default
  ``radixtree_host_uri`` router does: those whose exact host name matches, then those matching
  by wildcard from the longest suffix to the shortest (``*`` alone last); host-less routes only
  when none of them matches.  Within each group, candidates are tried in order: the exact path's
  routes, then the prefix patterns' routes from the longest prefix to the shortest.  Within one
  path or prefix, higher ``priority`` first, then the order the entries were given.
* A candidate whose ``methods`` lacks the method, whose ``hosts`` do not match, whose
  ``remote_addrs`` do not hold the client's address, or whose ``vars`` condition does not hold
  (checked in that order, as lua-resty-radixtree does) is skipped and the next one is tried, so a
  less specific route can still match.

How it is fast: exact paths are a dict whose values already hold the whole ordered candidate list
(exact routes followed by every prefix route that covers the path); prefix patterns live in a
compressed radix tree whose every node holds the ordered candidates of all prefixes ending at or
above it.  A match is one dict lookup, or a walk of a few tree edges with ``str.startswith(label,
pos)``, then a loop over a precomputed tuple (host routes first) until the first candidate that
passes its method and host checks (a wildcard host keeps looking for a more specific host).  The
path is never copied or decoded; the Host header is normalised at most once, and only when a
candidate filters on hosts; request variables are read only when a candidate has a condition on
them.  The matcher compiles no condition itself: the caller hands each entry its
``remote_addrs`` and ``vars`` tests already compiled.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from llmgate.routing.hosts import EXACT, HostSet, normalize_host

__all__ = ["Lookup", "RouteEntry", "Router"]

T = TypeVar("T")
_STEP = 500  # units of work (entries, prefixes, nodes) between two yields of a stepwise build

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

    __slots__ = (
        "_by_id",
        "_entries",
        "_exact",
        "_exact_buckets",
        "_exact_paths",
        "_prefix_buckets",
        "_prefixes",
        "_root",
        "_with_condition",
        "needs_variables",
    )

    def __init__(self, entries: Iterable[RouteEntry[T]]) -> None:
        _run(self._fill(entries))

    @classmethod
    def building(cls, entries: Iterable[RouteEntry[T]]) -> Generator[None, None, Router[T]]:
        """``Router(entries)`` built in steps: a generator that yields every ``_STEP`` units of
        work (a caller on an event loop lets requests run there) and returns the router."""
        router: Router[T] = cls.__new__(cls)
        yield from router._fill(entries)
        return router

    def _fill(self, entries: Iterable[RouteEntry[T]]) -> Generator[None, None, None]:
        self._entries: tuple[RouteEntry[T], ...] = tuple(entries)
        exact: dict[str, list[_Candidate[T]]] = {}
        prefixes: dict[str, list[_Candidate[T]]] = {}
        self._by_id: dict[str, _Candidate[T]] = {}
        self._with_condition = 0
        for count, entry in enumerate(self._entries, 1):
            candidate = _candidate(entry)
            self._by_id[entry.id] = candidate
            self._with_condition += candidate.condition is not None
            for uri in dict.fromkeys(entry.uris):  # dedupe, keep order
                if uri.endswith("*"):
                    prefixes.setdefault(uri[:-1], []).append(candidate)
                else:
                    exact.setdefault(uri, []).append(candidate)
            if count % _STEP == 0:
                yield
        # Whether any entry reads request variables: callers skip building a lookup otherwise.
        self.needs_variables = self._with_condition > 0
        root: _Node[T] = _Node(_chain(prefixes.get("", ()), ()))
        root.edges = yield from _edges_built({k: v for k, v in prefixes.items() if k}, root.chain)
        self._root = root
        self._exact: dict[str, _Chain[T]] = {}
        for count, (path, bucket) in enumerate(exact.items(), 1):
            self._exact[path] = _chain(bucket, _walk(root, path))
            if count % _STEP == 0:
                yield
        # What ``updated`` needs to change a few entries without building everything again.
        self._prefix_buckets = {prefix: tuple(bucket) for prefix, bucket in prefixes.items()}
        self._exact_buckets = {path: tuple(bucket) for path, bucket in exact.items()}
        self._prefixes = sorted(prefixes)
        self._exact_paths = sorted(exact)

    def updated(self, entries: Sequence[RouteEntry[T]], changed: Iterable[str]) -> Router[T]:
        """A new router for ``entries`` (every entry, in order), where only the entries whose
        ids are in ``changed`` differ from this router's (added, replaced or gone).

        Only what those entries touch is built again: their buckets, the radix subtrees below
        their prefixes, and the exact paths those prefixes cover.  Entries not in ``changed``
        must keep their order relative to each other.  Matches exactly as ``Router(entries)``.
        """
        changed = set(changed)
        new: Router[T] = Router.__new__(Router)
        new._entries = tuple(entries)
        if len(changed) * 4 > len(new._entries) + 16:
            return Router(new._entries)  # most of it changes: build it whole
        order = {entry.id: index for index, entry in enumerate(new._entries)}
        by_id = dict(self._by_id)
        prefix_buckets = dict(self._prefix_buckets)
        exact_buckets = dict(self._exact_buckets)
        with_condition = self._with_condition
        touched_prefixes: set[str] = set()
        touched_paths: set[str] = set()
        for id in changed:
            old = by_id.pop(id, None)
            if old is None:
                continue
            with_condition -= old.condition is not None
            for uri in dict.fromkeys(old.entry.uris):
                buckets, key = _bucket_of(uri, prefix_buckets, exact_buckets)
                (touched_prefixes if uri.endswith("*") else touched_paths).add(key)
                remaining = tuple(c for c in buckets.get(key, ()) if c is not old)
                if remaining:
                    buckets[key] = remaining
                else:
                    buckets.pop(key, None)
        for entry in new._entries:
            if entry.id not in changed:
                continue
            candidate = _candidate(entry)
            by_id[entry.id] = candidate
            with_condition += candidate.condition is not None
            for uri in dict.fromkeys(entry.uris):
                buckets, key = _bucket_of(uri, prefix_buckets, exact_buckets)
                (touched_prefixes if uri.endswith("*") else touched_paths).add(key)
                bucket = [*buckets.get(key, ()), candidate]
                bucket.sort(key=lambda c: order[c.entry.id])
                buckets[key] = tuple(bucket)
        new._by_id = by_id
        new._with_condition = with_condition
        new.needs_variables = with_condition > 0
        new._prefix_buckets = prefix_buckets
        new._exact_buckets = exact_buckets
        new._prefixes = _resorted(self._prefixes, touched_prefixes, prefix_buckets)
        new._exact_paths = _resorted(self._exact_paths, touched_paths, exact_buckets)
        root = self._root
        if len(touched_prefixes) > 64 or "" in touched_prefixes:
            root = _build_tree({p: list(prefix_buckets[p]) for p in new._prefixes})
        else:
            for prefix in touched_prefixes:
                root = _with_prefix(root, prefix, new._prefixes, prefix_buckets)
        new._root = root
        # Exact paths whose own bucket changed, or that a changed prefix covers.
        paths = {p for p in touched_paths if p in exact_buckets}
        for prefix in touched_prefixes:
            start = bisect.bisect_left(new._exact_paths, prefix)
            for path in new._exact_paths[start:]:
                if not path.startswith(prefix):
                    break
                paths.add(path)
        # Other exact paths keep their chains: their walks meet the same candidates.
        exact = dict(self._exact)
        for path in touched_paths - paths:
            exact.pop(path, None)
        for path in paths:
            exact[path] = _chain(exact_buckets[path], _walk(root, path))
        new._exact = exact
        return new

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
        best: RouteEntry[T] | None = None  # the host route with the most specific host so far
        best_rank = -1
        # Every chain holds its host routes first (see _chain): a host-less candidate is reached
        # only after all of them, and then only if none matched.
        for methods, hosts, condition, entry in candidates:
            if hosts is None:
                if best is not None:
                    return best
                if methods is not None and method not in methods:
                    continue
                if condition is not None and not condition(variables or _unset):
                    continue
                return entry
            if host is None or (methods is not None and method not in methods):
                continue
            if request_host is None:
                request_host = normalize_host(host)
            rank = hosts.rank(request_host)
            if rank <= best_rank:  # no match, or a host no more specific than the best's
                continue
            if condition is not None and not condition(variables or _unset):
                continue
            if rank == EXACT:
                return entry
            best, best_rank = entry, rank
        return best


def _candidate(entry: RouteEntry[T]) -> _Candidate[T]:
    return _Candidate(
        frozenset(m.upper() for m in entry.methods) if entry.methods else None,
        HostSet.compile(entry.hosts) if entry.hosts else None,
        _condition(entry),
        entry,
    )


_Buckets = dict[str, tuple[_Candidate[T], ...]]


def _bucket_of(uri: str, prefixes: _Buckets[T], exact: _Buckets[T]) -> tuple[_Buckets[T], str]:
    """The buckets a URI's candidates go in, and their key there."""
    if uri.endswith("*"):
        return prefixes, uri[:-1]
    return exact, uri


def _resorted(keys: list[str], touched: set[str], buckets: _Buckets[T]) -> list[str]:
    """``keys`` (sorted) with the touched keys that have a bucket now, and without the others."""
    if not touched:
        return keys
    result = list(keys)
    for key in touched:
        index = bisect.bisect_left(result, key)
        present = index < len(result) and result[index] == key
        if key in buckets and not present:
            result.insert(index, key)
        elif key not in buckets and present:
            del result[index]
    return result


def _with_prefix(
    root: _Node[T], prefix: str, prefixes: list[str], buckets: _Buckets[T]
) -> _Node[T]:
    """``root`` with ``prefix``'s candidates as ``buckets`` now has them (none: gone); only the
    nodes on the way to it are copied, and only the subtree below it is built again (its
    chains inherit the prefix's candidates).  A new prefix that splits an edge shares the
    subtree below the split.  The tree may end less compressed than a fresh build's (a node
    left without candidates and with one child stays); matching is the same.
    """
    path: list[tuple[_Node[T], str]] = []  # (node, first character of the edge taken)
    node = root
    pos = 0
    while pos < len(prefix):
        edge = node.edges.get(prefix[pos])
        if edge is None:
            break
        label, size, child = edge
        if not prefix.startswith(label, pos):
            break
        path.append((node, prefix[pos]))
        node = child
        pos += size
    bucket = buckets.get(prefix, ())
    if pos == len(prefix):  # the prefix has its node: its chain and everything below change
        inherited = path[-1][0].chain
        rebuilt: _Node[T] | None = _Node(_chain(bucket, inherited))
        assert rebuilt is not None
        rebuilt.edges = _build_edges(_below(prefix, prefixes, buckets), rebuilt.chain)
        if not bucket and not rebuilt.edges:
            rebuilt = None
        return _replaced(path, rebuilt)
    if not bucket:
        return root  # not in the tree, and still nothing to match
    first = prefix[pos]
    copy: _Node[T] = _Node(node.chain)
    copy.edges = dict(node.edges)
    own = _chain(bucket, node.chain)
    edge = node.edges.get(first)
    if edge is None:  # a new leaf
        copy.edges[first] = (prefix[pos:], len(prefix) - pos, _Node(own))
        return _replaced(path, copy)
    label, size, child = edge
    common = 1
    while common < size and pos + common < len(prefix) and label[common] == prefix[pos + common]:
        common += 1
    if pos + common == len(prefix):  # ends inside the edge: it covers what is below
        middle: _Node[T] = _Node(own)
        middle.edges = _build_edges(_below(prefix, prefixes, buckets), own)
    else:  # a new branch: the subtree below the split is shared
        middle = _Node(node.chain)
        rest = prefix[pos + common :]
        middle.edges = {
            label[common]: (label[common:], size - common, child),
            rest[0]: (rest, len(rest), _Node(own)),
        }
    copy.edges[first] = (label[:common], common, middle)
    return _replaced(path, copy)


def _below(
    prefix: str, prefixes: list[str], buckets: _Buckets[T]
) -> dict[str, list[_Candidate[T]]]:
    """The prefixes strictly longer than ``prefix`` that start with it, relative to it."""
    found: dict[str, list[_Candidate[T]]] = {}
    start = bisect.bisect_right(prefixes, prefix)
    size = len(prefix)
    for key in prefixes[start:]:
        if not key.startswith(prefix):
            break
        found[key[size:]] = list(buckets[key])
    return found


def _replaced(path: list[tuple[_Node[T], str]], node: _Node[T] | None) -> _Node[T]:
    """The root after replacing the node at the end of ``path`` (the whole tree when the path
    is empty) with ``node`` (None: the edge to it goes)."""
    if not path:
        assert node is not None
        return node
    new = node
    for parent, first in reversed(path):
        copy: _Node[T] = _Node(parent.chain)
        copy.edges = dict(parent.edges)
        if new is None:
            del copy.edges[first]
        else:
            label, size, _ = parent.edges[first]
            copy.edges[first] = (label, size, new)
        new = copy
    assert new is not None
    return new


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
    """``bucket`` ordered by priority (stable, so earlier entries win ties), then ``inherited``;
    then split (stably) into the candidates with hosts and, after them, those without.

    An entry already in ``bucket`` is dropped from ``inherited``: by then it has failed its method
    or host check, and those checks do not depend on which of its URIs matched.
    """
    own = sorted(bucket, key=lambda c: -c.entry.priority)
    seen = {id(c) for c in own}
    merged = (*own, *(c for c in inherited if id(c) not in seen))
    return (*(c for c in merged if c.hosts is not None), *(c for c in merged if c.hosts is None))


def _build_tree(prefixes: dict[str, list[_Candidate[T]]]) -> _Node[T]:
    """Compile prefix -> candidates into a compressed radix tree (iteratively: no depth limit)."""
    root: _Node[T] = _Node(_chain(prefixes.get("", ()), ()))
    root.edges = _build_edges({k: v for k, v in prefixes.items() if k}, root.chain)
    return root


def _build_edges(
    prefixes: dict[str, list[_Candidate[T]]], inherited: _Chain[T]
) -> dict[str, tuple[str, int, _Node[T]]]:
    """The edges below a node whose chain is ``inherited``, for the prefixes (relative to the
    node, none empty) and their candidates."""
    return _run(_edges_built(prefixes, inherited))


def _edges_built(
    prefixes: dict[str, list[_Candidate[T]]], inherited: _Chain[T]
) -> Generator[None, None, dict[str, tuple[str, int, _Node[T]]]]:
    """``_build_edges`` in steps of ``_STEP`` prefixes or nodes."""
    raw_root: _RawNode[T] = _RawNode()
    for count, (prefix, bucket) in enumerate(prefixes.items(), 1):
        raw = raw_root
        for char in prefix:
            raw = raw.children.setdefault(char, _RawNode())
        raw.bucket.extend(bucket)
        if count % _STEP == 0:
            yield

    top: _Node[T] = _Node(inherited)
    stack = [(raw_root, top)]
    count = 0
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
        count += 1
        if count % _STEP == 0:
            yield
    return top.edges


_R = TypeVar("_R")


def _run(steps: Generator[None, None, _R]) -> _R:
    """A stepwise computation run to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: _R = done.value
            return result
