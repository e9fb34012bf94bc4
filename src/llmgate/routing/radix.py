"""The compressed radix tree of the prefix patterns (``/a/*``, ``/a*``): path -> the ordered
candidates of every prefix the path starts with, longest prefix first.

Every node holds the ordered candidates (``chain``) of all prefixes ending at or above it, so a
walk is a few edge lookups with ``str.startswith(label, pos)`` and its answer is the chain of
the last node reached; the path is never copied.  Within a chain, candidates are ordered by
``priority`` (stable), then the inherited ones, then split into those with hosts first (see
``chain_of``).  Trees are built iteratively (no depth limit), whole (``build_tree``) or in steps
of ``STEP`` units of work (``edges_built`` with ``run``), and changed by copying only the nodes
on the way to a prefix (``with_prefix``).  Nodes are immutable once built.
"""

from __future__ import annotations

import bisect
from collections.abc import Generator, Sequence
from typing import Generic, TypeVar

from llmgate.routing.entries import Candidate

T = TypeVar("T")
STEP = 500  # units of work (entries, prefixes, nodes) between two yields of a stepwise build

Chain = tuple[Candidate[T], ...]


class Node(Generic[T]):
    """A radix tree node; immutable once :func:`build_tree` returns.

    ``edges`` maps the first character of an edge label to ``(label, len(label), child)``;
    ``chain`` holds the candidates of every prefix pattern that covers a path whose walk ends here,
    longest prefix first.
    """

    __slots__ = ("chain", "edges")

    def __init__(self, chain: Chain[T]) -> None:
        self.chain = chain
        self.edges: dict[str, tuple[str, int, Node[T]]] = {}


class _RawNode(Generic[T]):
    """A one-character trie node, used only while building the tree."""

    __slots__ = ("bucket", "children")

    def __init__(self) -> None:
        self.children: dict[str, _RawNode[T]] = {}
        self.bucket: list[Candidate[T]] = []


Buckets = dict[str, tuple[Candidate[T], ...]]


def with_prefix(root: Node[T], prefix: str, prefixes: list[str], buckets: Buckets[T]) -> Node[T]:
    """``root`` with ``prefix``'s candidates as ``buckets`` now has them (none: gone); only the
    nodes on the way to it are copied, and only the subtree below it is built again (its
    chains inherit the prefix's candidates).  A new prefix that splits an edge shares the
    subtree below the split.  The tree may end less compressed than a fresh build's (a node
    left without candidates and with one child stays); matching is the same.
    """
    path: list[tuple[Node[T], str]] = []  # (node, first character of the edge taken)
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
        rebuilt: Node[T] | None = Node(chain_of(bucket, inherited))
        assert rebuilt is not None
        rebuilt.edges = _build_edges(_below(prefix, prefixes, buckets), rebuilt.chain)
        if not bucket and not rebuilt.edges:
            rebuilt = None
        return _replaced(path, rebuilt)
    if not bucket:
        return root  # not in the tree, and still nothing to match
    first = prefix[pos]
    copy: Node[T] = Node(node.chain)
    copy.edges = dict(node.edges)
    own = chain_of(bucket, node.chain)
    edge = node.edges.get(first)
    if edge is None:  # a new leaf
        copy.edges[first] = (prefix[pos:], len(prefix) - pos, Node(own))
        return _replaced(path, copy)
    label, size, child = edge
    common = 1
    while common < size and pos + common < len(prefix) and label[common] == prefix[pos + common]:
        common += 1
    if pos + common == len(prefix):  # ends inside the edge: it covers what is below
        middle: Node[T] = Node(own)
        middle.edges = _build_edges(_below(prefix, prefixes, buckets), own)
    else:  # a new branch: the subtree below the split is shared
        middle = Node(node.chain)
        rest = prefix[pos + common :]
        middle.edges = {
            label[common]: (label[common:], size - common, child),
            rest[0]: (rest, len(rest), Node(own)),
        }
    copy.edges[first] = (label[:common], common, middle)
    return _replaced(path, copy)


def _below(prefix: str, prefixes: list[str], buckets: Buckets[T]) -> dict[str, list[Candidate[T]]]:
    """The prefixes strictly longer than ``prefix`` that start with it, relative to it."""
    found: dict[str, list[Candidate[T]]] = {}
    start = bisect.bisect_right(prefixes, prefix)
    size = len(prefix)
    for key in prefixes[start:]:
        if not key.startswith(prefix):
            break
        found[key[size:]] = list(buckets[key])
    return found


def _replaced(path: list[tuple[Node[T], str]], node: Node[T] | None) -> Node[T]:
    """The root after replacing the node at the end of ``path`` (the whole tree when the path
    is empty) with ``node`` (None: the edge to it goes)."""
    if not path:
        assert node is not None
        return node
    new = node
    for parent, first in reversed(path):
        copy: Node[T] = Node(parent.chain)
        copy.edges = dict(parent.edges)
        if new is None:
            del copy.edges[first]
        else:
            label, size, _ = parent.edges[first]
            copy.edges[first] = (label, size, new)
        new = copy
    assert new is not None
    return new


def walk(root: Node[T], path: str) -> Chain[T]:
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


def chain_of(bucket: Sequence[Candidate[T]], inherited: Chain[T]) -> Chain[T]:
    """``bucket`` ordered by priority (stable, so earlier entries win ties), then ``inherited``;
    then split (stably) into the candidates with hosts and, after them, those without.

    An entry already in ``bucket`` is dropped from ``inherited``: by then it has failed its method
    or host check, and those checks do not depend on which of its URIs matched.
    """
    own = sorted(bucket, key=lambda c: -c.entry.priority)
    seen = {id(c) for c in own}
    merged = (*own, *(c for c in inherited if id(c) not in seen))
    return (*(c for c in merged if c.hosts is not None), *(c for c in merged if c.hosts is None))


def build_tree(prefixes: dict[str, list[Candidate[T]]]) -> Node[T]:
    """Compile prefix -> candidates into a compressed radix tree (iteratively: no depth limit)."""
    root: Node[T] = Node(chain_of(prefixes.get("", ()), ()))
    root.edges = _build_edges({k: v for k, v in prefixes.items() if k}, root.chain)
    return root


def _build_edges(
    prefixes: dict[str, list[Candidate[T]]], inherited: Chain[T]
) -> dict[str, tuple[str, int, Node[T]]]:
    """The edges below a node whose chain is ``inherited``, for the prefixes (relative to the
    node, none empty) and their candidates."""
    return run(edges_built(prefixes, inherited))


def edges_built(
    prefixes: dict[str, list[Candidate[T]]], inherited: Chain[T]
) -> Generator[None, None, dict[str, tuple[str, int, Node[T]]]]:
    """``_build_edges`` in steps of ``STEP`` prefixes or nodes."""
    raw_root: _RawNode[T] = _RawNode()
    for count, (prefix, bucket) in enumerate(prefixes.items(), 1):
        raw = raw_root
        for char in prefix:
            raw = raw.children.setdefault(char, _RawNode())
        raw.bucket.extend(bucket)
        if count % STEP == 0:
            yield

    top: Node[T] = Node(inherited)
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
            child: Node[T] = Node(chain_of(child_raw.bucket, node.chain))
            text = "".join(label)
            node.edges[first] = (text, len(text), child)
            stack.append((child_raw, child))
        count += 1
        if count % STEP == 0:
            yield
    return top.edges


_R = TypeVar("_R")


def run(steps: Generator[None, None, _R]) -> _R:
    """A stepwise computation run to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: _R = done.value
            return result
