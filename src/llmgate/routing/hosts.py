"""Host matching: normalising a Host header and testing it against a route's host patterns.

A pattern is either exact (``api.example.com``) or a wildcard whose leading ``*`` stands for one
or more characters (``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``, never
``example.com`` itself), as APISIX's radixtree matches hosts.  Comparison is case-insensitive and
ignores the port of the Host header.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EXACT", "HostSet", "normalize_host"]

# What :meth:`HostSet.rank` gives an exact name: more than any wildcard suffix's length.
EXACT = sys.maxsize


def normalize_host(raw: str) -> str:
    """Return ``raw`` (a Host header or a route's host pattern) lower-cased, without its port.

    ``Example.COM:9080`` -> ``example.com``; ``[::1]:9080`` and ``[::1]`` -> ``::1``; a bare IPv6
    address (more than one ``:``) is kept whole.  Never raises: malformed input such as ``[::1``
    or ``:80`` just yields a string no sane pattern equals.
    """
    host = raw.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host[1:]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


@dataclass(frozen=True, slots=True)
class HostSet:
    """A route's host patterns compiled for matching: exact names in a set, wildcard suffixes."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]  # "*.example.com" is kept as ".example.com"; longest first

    @classmethod
    def compile(cls, patterns: Iterable[str]) -> HostSet:
        exact: set[str] = set()
        suffixes: list[str] = []
        for pattern in patterns:
            host = normalize_host(pattern)
            if host.startswith("*"):
                if host[1:] not in suffixes:
                    suffixes.append(host[1:])
            else:
                exact.add(host)
        suffixes.sort(key=len, reverse=True)  # stable: equal lengths keep their order
        return cls(frozenset(exact), tuple(suffixes))

    def matches(self, host: str) -> bool:
        """Whether ``host``, already passed through :func:`normalize_host`, matches a pattern."""
        # Checking the suffix from index 1 makes the "*" stand for at least one character, so
        # "*.example.com" does not match "example.com" (nor ".example.com").
        return host in self.exact or host.endswith(self.suffixes, 1)

    def rank(self, host: str) -> int:
        """How specifically ``host`` (normalised) matches, as APISIX's host router orders hosts:
        :data:`EXACT` for an exact name, else the length of the longest matching wildcard
        suffix (``*`` alone: 0), or -1 when nothing matches."""
        if host in self.exact:
            return EXACT
        for suffix in self.suffixes:
            if host.endswith(suffix, 1):
                return len(suffix)
        return -1
