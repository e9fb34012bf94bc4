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
compressed radix tree (``radix.py``) whose every node holds the ordered candidates of all
prefixes ending at or above it.  A match is one dict lookup, or a walk of a few tree edges with
``str.startswith(label, pos)``, then a loop over a precomputed tuple (host routes first) until
the first candidate that passes its method and host checks (a wildcard host keeps looking for a
more specific host).  The path is never copied or decoded; the Host header is normalised at
most once, and only when a candidate filters on hosts; request variables are read only when a
candidate has a condition on them.  The matcher compiles no condition itself: the caller hands
each entry its ``remote_addrs`` and ``vars`` tests already compiled (``entries.py``: what an
entry is, and the candidate it is tried as).

This module holds ``Router``: building it from entries (whole, in steps, or updated for a few
changed entries) and ``match``.
"""

from __future__ import annotations

import bisect
from collections.abc import Generator, Iterable, Sequence
from typing import Generic, TypeVar

from llmgate.routing.entries import Candidate, Lookup, RouteEntry, candidate_of
from llmgate.routing.hosts import EXACT, normalize_host
from llmgate.routing.radix import (
    STEP,
    Buckets,
    Chain,
    Node,
    build_tree,
    chain_of,
    edges_built,
    run,
    walk,
    with_prefix,
)

__all__ = ["Lookup", "RouteEntry", "Router"]

T = TypeVar("T")


def _unset(_name: str) -> str | None:
    return None


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
        run(self._fill(entries))

    @classmethod
    def building(cls, entries: Iterable[RouteEntry[T]]) -> Generator[None, None, Router[T]]:
        """``Router(entries)`` built in steps: a generator that yields every ``STEP`` units of
        work (a caller on an event loop lets requests run there) and returns the router."""
        router: Router[T] = cls.__new__(cls)
        yield from router._fill(entries)
        return router

    def _fill(self, entries: Iterable[RouteEntry[T]]) -> Generator[None, None, None]:
        self._entries: tuple[RouteEntry[T], ...] = tuple(entries)
        exact: dict[str, list[Candidate[T]]] = {}
        prefixes: dict[str, list[Candidate[T]]] = {}
        self._by_id: dict[str, Candidate[T]] = {}
        self._with_condition = 0
        for count, entry in enumerate(self._entries, 1):
            candidate = candidate_of(entry)
            self._by_id[entry.id] = candidate
            self._with_condition += candidate.condition is not None
            for uri in dict.fromkeys(entry.uris):  # dedupe, keep order
                if uri.endswith("*"):
                    prefixes.setdefault(uri[:-1], []).append(candidate)
                else:
                    exact.setdefault(uri, []).append(candidate)
            if count % STEP == 0:
                yield
        # Whether any entry reads request variables: callers skip building a lookup otherwise.
        self.needs_variables = self._with_condition > 0
        root: Node[T] = Node(chain_of(prefixes.get("", ()), ()))
        root.edges = yield from edges_built({k: v for k, v in prefixes.items() if k}, root.chain)
        self._root = root
        self._exact: dict[str, Chain[T]] = {}
        for count, (path, bucket) in enumerate(exact.items(), 1):
            self._exact[path] = chain_of(bucket, walk(root, path))
            if count % STEP == 0:
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
            candidate = candidate_of(entry)
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
            root = build_tree({p: list(prefix_buckets[p]) for p in new._prefixes})
        else:
            for prefix in touched_prefixes:
                root = with_prefix(root, prefix, new._prefixes, prefix_buckets)
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
            exact[path] = chain_of(exact_buckets[path], walk(root, path))
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
            candidates = walk(self._root, path)
        request_host: str | None = None
        best: RouteEntry[T] | None = None  # the host route with the most specific host so far
        best_rank = -1
        # Every chain holds its host routes first (see ``radix.chain_of``): a host-less candidate is
        # reached only after all of them, and then only if none matched.
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


def _bucket_of(uri: str, prefixes: Buckets[T], exact: Buckets[T]) -> tuple[Buckets[T], str]:
    """The buckets a URI's candidates go in, and their key there."""
    if uri.endswith("*"):
        return prefixes, uri[:-1]
    return exact, uri


def _resorted(keys: list[str], touched: set[str], buckets: Buckets[T]) -> list[str]:
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
