"""proxy-cache: caches upstream responses in memory or on disk.

llmgate has exactly the two zones of APISIX's default configuration, one per strategy, and the
zone defaults to the strategy's own (APISIX defaults it to ``disk_cache_one`` whatever the
strategy).

Phases: ``access`` looks the request up (``before_proxy`` on disk, see below; a HIT ends it
with the stored response; PURGE removes entries), ``header_filter`` decides whether the
response may be stored, ``body_filter`` keeps a copy of each chunk without holding back what
the client sees, and ``log`` stores the copy once the response ended completely. Every
response of the route carries ``Apisix-Cache-Status``: MISS, HIT, EXPIRED, STALE
(cache_control: older than the request accepts) or BYPASS.

Where a HIT is answered follows APISIX: the memory strategy answers from its access handler
(priority 1085, so the access-phase plugins after it -- limit-count, limit-req, limit-conn,
consumer-restriction, ai-rate-limiting... -- do not run for a HIT); on disk, ``access`` only
decides the key and the bypass (and answers PURGE), and the lookup is ``before_proxy``'s, after
the whole access phase, where nginx's proxy_cache answers it: a limiter counts a disk HIT and
may refuse it.

Where llmgate differs (docs/compatibility.md): for methods with a body the key always includes
a SHA-256 of the body (so two prompts never share an answer) and a body-less PURGE clears every
body's entry; streamed responses are stored chunk by chunk and replayed as streams; on disk an
explicitly set ``cache_ttl`` is the TTL when the upstream states none (APISIX: 10 s, whatever
``cache_ttl`` says).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from multidict import CIMultiDict
from pydantic import Field, model_validator

from llmgate.http.body import MAX_BUFFERED_BODY
from llmgate.http.context import Reply, StateKey
from llmgate.http.headers import HOP_BY_HOP
from llmgate.plugin_api.config import PluginConfig, UniqueItems
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.proxy_cache.disk import DiskStore
from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.memory import MemoryStore
from llmgate.plugins.proxy_cache.policy import (
    BODYLESS,
    IDENTITY_VARS,
    STATUS_HEADER,
    CacheKey,
    Directives,
    StorePolicy,
    any_set,
    build_key,
    compile_parts,
    credentials_identity,
    lookup_status,
    parse_directives,
    refuses_request,
    render,
    vary_names,
)

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services

ZONE_OF_STRATEGY = {"disk": "disk_cache_one", "memory": "memory_cache"}

# A literal of two characters or more, or one ``$variable``.
CacheKeyPart = Annotated[str, Field(pattern=r"(^[^\$].+$|^\$[0-9a-zA-Z_]+$)")]
CacheKeyList = Annotated[list[CacheKeyPart], Field(min_length=1)]
Status = Annotated[int, Field(ge=200, le=599)]

DISK_DEFAULT_TTL = 10.0  # APISIX's proxy_cache.cache_ttl: the disk TTL when nothing else says
DEFAULT_MAX_ENTRY = 8 * 1024 * 1024  # one entry's body, unless max_resp_body_size is set
STATE: StateKey[Collecting] = StateKey("proxy-cache")
# A disk lookup left to ``before_proxy``: the key and the request's Cache-Control directives.
LOOKUP: StateKey[tuple[CacheKey, Directives]] = StateKey("proxy-cache.lookup")
# Never stored: hop-by-hop, framing, and what is computed afresh for each reply (``Age``: by
# the memory handler; nginx stores the upstream's and adds none).
NOT_STORED = HOP_BY_HOP | {"content-length", "apisix-cache-status"}
NOT_STORED_IN_MEMORY = NOT_STORED | {"age"}


class ProxyCacheConfig(PluginConfig):
    max_resp_body_size: Annotated[int, Field(ge=1)] = 67108864
    cache_strategy: Literal["disk", "memory"] = "disk"
    cache_zone: Annotated[str, Field(min_length=1, max_length=100)] = "disk_cache_one"
    cache_key: CacheKeyList = ["$host", "$request_uri"]
    cache_http_status: Annotated[list[Status], Field(min_length=1), UniqueItems()] = [200, 301, 404]
    cache_method: Annotated[
        list[Literal["GET", "POST", "HEAD"]], Field(min_length=1), UniqueItems()
    ] = ["GET", "HEAD"]
    hide_cache_headers: bool = False
    cache_control: bool = False
    cache_bypass: CacheKeyList | None = None
    no_cache: CacheKeyList | None = None
    cache_ttl: Annotated[int, Field(ge=1)] = 300
    consumer_isolation: bool = True
    cache_set_cookie: bool = False

    @model_validator(mode="before")
    @classmethod
    def _zone_follows_strategy(cls, data: Any) -> Any:
        if isinstance(data, dict) and "cache_zone" not in data:
            zone = ZONE_OF_STRATEGY.get(data.get("cache_strategy", "disk"))
            if zone is not None:
                return {**data, "cache_zone": zone}
        return data

    @model_validator(mode="after")
    def _check(self) -> ProxyCacheConfig:
        if "$request_method" in self.cache_key:
            raise ValueError("cache_key variable $request_method unsupported")
        if self.cache_zone not in ZONE_OF_STRATEGY.values():
            raise ValueError(f"cache_zone {self.cache_zone} not found")
        if self.cache_zone != ZONE_OF_STRATEGY[self.cache_strategy]:
            raise ValueError(
                f"invalid or empty cache_zone for cache_strategy: {self.cache_strategy}"
            )
        return self


Store = MemoryStore | DiskStore


def open_store(services: Services, zone: str) -> Store:
    """The zone's long-lived store, created on first use and kept in ``services.shared`` so
    entries outlive config reloads."""
    key = f"proxy-cache:{zone}"
    caps = services.cache_caps
    if zone == ZONE_OF_STRATEGY["memory"]:
        return services.shared.get_or_make(
            key, MemoryStore, lambda: MemoryStore(caps.memory_max_bytes, caps.max_entries)
        )
    return services.shared.get_or_make(key, DiskStore, lambda: DiskStore.open(zone, caps))


@dataclass(slots=True)
class Collecting:
    """A response being copied for the cache (``ctx.state[STATE]``)."""

    key: CacheKey
    accepted: bool = False  # header_filter found it storable
    complete: bool = False  # body_filter saw its end
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    ttl: float = 0.0
    event_stream: bool = False
    sized: bool = False  # had a Content-Length
    vary: tuple[tuple[str, str], ...] = ()
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class ProxyCache(Plugin[ProxyCacheConfig]):
    name = "proxy-cache"
    priority = 1085
    Config = ProxyCacheConfig

    def __init__(self, config: ProxyCacheConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        explicit = config.model_fields_set
        self._disk = disk = config.cache_strategy == "disk"
        self._key = compile_parts(config.cache_key)
        self._bypass = compile_parts(config.cache_bypass)
        self._no_cache = compile_parts(config.no_cache)
        self._methods = frozenset(config.cache_method)
        self._other_method = "BYPASS" if disk else "MISS"
        self._not_stored = NOT_STORED if disk else NOT_STORED_IN_MEMORY
        self._isolate = config.consumer_isolation and IDENTITY_VARS.isdisjoint(config.cache_key)
        self._max_entry = (
            config.max_resp_body_size if "max_resp_body_size" in explicit else DEFAULT_MAX_ENTRY
        )
        self._policy = StorePolicy(
            statuses=frozenset(config.cache_http_status),
            cache_control=config.cache_control,
            cache_set_cookie=config.cache_set_cookie,
            honour_upstream=disk or config.cache_control,
            default_ttl=float(
                config.cache_ttl if not disk or "cache_ttl" in explicit else DISK_DEFAULT_TTL
            ),
        )
        self.store = open_store(services, config.cache_zone)

    async def access(self, ctx: RequestContext) -> Reply | None:
        method = ctx.inbound.method
        if method == "PURGE":
            return await self._purge(ctx)
        # The client's Cache-Control counts only with cache_control (then: BYPASS, STALE, 504).
        request = (
            parse_directives(ctx.inbound.headers.getall("Cache-Control", ()))
            if self.config.cache_control
            else {}
        )
        if method not in self._methods:
            # APISIX: nginx's BYPASS on disk, the memory handler's MISS.
            ctx.add_response_header(STATUS_HEADER, self._other_method)
            return None
        if any_set(self._bypass, ctx.var) or (request and refuses_request(request)):
            ctx.add_response_header(STATUS_HEADER, "BYPASS")
            return None
        key = await self._key_of(ctx, method)
        if key is None:
            ctx.add_response_header(STATUS_HEADER, "BYPASS")
            return None
        if self._disk:
            ctx.state[LOOKUP] = (key, request)  # nginx looks it up after the access phase
            return None
        return await self._lookup(ctx, key, request)

    async def before_proxy(self, ctx: RequestContext) -> Reply | None:
        pending = ctx.state.pop(LOOKUP, None)
        return None if pending is None else await self._lookup(ctx, *pending)

    def runs(self, phase: str) -> bool:
        if phase == "before_proxy":
            return self._disk
        return super().runs(phase)

    async def _lookup(
        self, ctx: RequestContext, key: CacheKey, request: Directives
    ) -> Reply | None:
        """The stored answer when it is fresh (a HIT), else the request goes upstream and its
        response is collected for the cache."""
        entry = await self.store.get(key)
        if entry is not None and entry.matches_vary(ctx.inbound.headers.get):
            status = lookup_status(entry.created, entry.ttl, self.store.clock(), request)
            if status == "HIT":
                return self._replay(ctx, entry)
        else:
            status = "MISS"
            if "only-if-cached" in request:
                ctx.add_response_header(STATUS_HEADER, status)
                return Reply.error(504, "504 Gateway Time-out")
        ctx.state[STATE] = Collecting(key)
        ctx.add_response_header(STATUS_HEADER, status)
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        collecting: Collecting | None = ctx.state.get(STATE)
        if collecting is not None and not self._accept(ctx, head, collecting):
            del ctx.state[STATE]
        if self.config.hide_cache_headers:
            head.headers.popall("Cache-Control", None)
            head.headers.popall("Expires", None)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        collecting: Collecting | None = ctx.state.get(STATE)
        if collecting is None or not collecting.accepted:
            return chunk
        if chunk:
            collecting.size += len(chunk)
            if collecting.size > self._max_entry:
                del ctx.state[STATE]  # too large to keep: the client still gets all of it
                return chunk
            collecting.chunks.append(bytes(chunk))
        if eof:
            collecting.complete = True
        return chunk

    async def log(self, ctx: RequestContext) -> None:
        collecting: Collecting | None = ctx.state.pop(STATE, None)
        if (
            collecting is None
            or not collecting.complete
            or ctx.upstream_broken
            or ctx.client_aborted
        ):
            return
        await self.store.put(
            Entry(
                key=collecting.key,
                status=collecting.status,
                headers=collecting.headers,
                chunks=tuple(collecting.chunks),
                # An event stream, or a body of unknown length sent in pieces, is replayed
                # as a stream.
                stream=collecting.event_stream
                or (not collecting.sized and len(collecting.chunks) > 1),
                created=self.store.clock(),
                ttl=collecting.ttl,
                vary=collecting.vary,
            )
        )

    async def _key_of(self, ctx: RequestContext, method: str) -> CacheKey | None:
        """The request's key; None when its body is too large to hash (it then goes uncached)."""
        body: bytes | None = None
        if method not in BODYLESS:
            length = ctx.body.length
            if length is not None and length > MAX_BUFFERED_BODY:
                return None
            # What goes upstream (after rewrite-phase plugins) decides the answer.
            body = await ctx.current_body(MAX_BUFFERED_BODY)
        identity = None
        if self._isolate:
            # The verified consumer; without one, the exact credentials sent (never an
            # unverified user name).
            identity = (
                ctx.consumer.username
                if ctx.consumer is not None
                else credentials_identity(ctx.inbound.headers.get)
            )
        return build_key(render(self._key, ctx.var), identity, method, body)

    async def _purge(self, ctx: RequestContext) -> Reply:
        """PURGE: with a body, that body's entry; without, every entry under the key."""
        with_body = ctx.body.exists
        key = await self._key_of(ctx, "POST" if with_body else "GET")
        found = key is not None and await self.store.purge(
            key.primary, key.variant if with_body else None
        )
        return Reply(200) if found else Reply.error(404, "404 Not Found")

    def _replay(self, ctx: RequestContext, entry: Entry) -> Reply:
        headers: CIMultiDict[str] = CIMultiDict(entry.headers)
        if self._not_stored is NOT_STORED_IN_MEMORY:
            headers["Age"] = str(max(int(self.store.clock() - entry.created), 0))
        ctx.add_response_header(STATUS_HEADER, "HIT")
        if entry.stream:
            return Reply(entry.status, _replay_chunks(entry.chunks), headers)
        return Reply(entry.status, b"".join(entry.chunks), headers)

    def _accept(self, ctx: RequestContext, head: ResponseHead, collecting: Collecting) -> bool:
        """Whether the response may be stored; if so, note what the entry will hold."""
        headers = head.headers
        length = headers.get("Content-Length")
        if (length is not None and length.isdigit() and int(length) > self._max_entry) or (
            self._no_cache and any_set(self._no_cache, ctx.var)
        ):
            return False
        content_type = headers.get("Content-Type", "")
        ttl = self._policy.ttl(
            head.status,
            headers.getall("Cache-Control", ()),
            headers.get("Expires"),
            content_type,
            "Set-Cookie" in headers,
            headers.get("Vary"),
            self.store.clock(),
        )
        if ttl is None:
            return False
        # Headers plugins set for this request (rate-limit counts, ...) are not the response's.
        fresh = self._not_stored.union(name.lower() for name in ctx.response_headers or ())
        collecting.headers = tuple(
            (name, value)
            for name, value in headers.items()
            if (low := name.lower()) not in fresh and "ratelimit" not in low
        )
        collecting.status, collecting.ttl = head.status, ttl
        collecting.event_stream = content_type.startswith("text/event-stream")
        collecting.sized = length is not None
        inbound = ctx.inbound.headers
        collecting.vary = tuple(
            (name, inbound.get(name, "")) for name in vary_names(headers.get("Vary"))
        )
        collecting.accepted = True
        return True


async def _replay_chunks(chunks: tuple[bytes, ...]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
