"""One cached response, and its file format on disk.

An entry holds what a client needs to replay the response: status, headers (without hop-by-hop
headers and Content-Length), the body chunks as the upstream sent them, and whether it was a
stream. On disk it is one file:

    MAGIC | 4-byte big-endian length of the JSON metadata | metadata | the chunks, concatenated
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from llmgate.plugins.proxy_cache.policy import CacheKey

MAGIC = b"LLMGATE-CACHE/1\n"
_LENGTH = struct.Struct(">I")
# What an entry costs beyond its bytes, for the memory store's accounting.
OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class Entry:
    key: CacheKey
    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[bytes, ...]
    stream: bool
    created: float  # Unix time, so another process or a restart can judge it
    ttl: float
    vary: tuple[tuple[str, str], ...] = ()  # (request header, its value when stored)

    @property
    def size(self) -> int:
        headers = sum(len(name) + len(value) for name, value in self.headers)
        key = len(self.key.primary) + len(self.key.variant)
        return sum(map(len, self.chunks)) + headers + key + OVERHEAD

    def encode(self) -> bytes:
        meta = orjson.dumps(
            {
                "primary": self.key.primary,
                "variant": self.key.variant,
                "status": self.status,
                "headers": self.headers,
                "chunks": [len(chunk) for chunk in self.chunks],
                "stream": self.stream,
                "created": self.created,
                "ttl": self.ttl,
                "vary": self.vary,
            }
        )
        return b"".join((MAGIC, _LENGTH.pack(len(meta)), meta, *self.chunks))

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """The entry ``encode`` wrote; ValueError for anything else (a foreign or torn file)."""
        if not data.startswith(MAGIC):
            raise ValueError("not a cache entry")
        start = len(MAGIC) + _LENGTH.size
        if len(data) < start:
            raise ValueError("truncated cache entry")
        (length,) = _LENGTH.unpack_from(data, len(MAGIC))
        try:
            meta = orjson.loads(data[start : start + length])
            position = start + length
            chunks = []
            for size in meta["chunks"]:
                chunks.append(data[position : position + size])
                position += size
            if position != len(data):
                raise ValueError("cache entry length mismatch")
            return cls(
                key=CacheKey(meta["primary"], meta["variant"]),
                status=int(meta["status"]),
                headers=tuple((str(name), str(value)) for name, value in meta["headers"]),
                chunks=tuple(chunks),
                stream=bool(meta["stream"]),
                created=float(meta["created"]),
                ttl=float(meta["ttl"]),
                vary=tuple((str(name), str(value)) for name, value in meta["vary"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed cache entry: {exc}") from exc

    def matches_vary(self, header: Callable[[str], str | None]) -> bool:
        """Whether a request (``header(name)``: its value or None) selects this variant."""
        return all((header(name) or "") == value for name, value in self.vary)
