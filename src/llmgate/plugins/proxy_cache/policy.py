"""proxy-cache's decisions as pure functions: keys, Cache-Control directives, TTLs, storability.

Nothing here touches a request or a store; the plugin feeds in what it read, so every rule can
be tested with a table of cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

STATUS_HEADER = "Apisix-Cache-Status"

# Cache-key entries that already carry the caller's verified identity (or whole credentials):
# with one of them in ``cache_key`` consumer isolation adds nothing.  APISIX's list also has
# ``$remote_user``, the unverified user name of a Basic header: not here, since ``alice:wrong``
# would then share alice's entries.
IDENTITY_VARS = frozenset({"$consumer_name", "$consumer_group_id", "$http_authorization"})

# Request headers that carry credentials an upstream may check itself (on a route without
# gateway auth): entries are kept apart per exact value, so a guess never shares an entry.
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "apikey", "api-key", "x-api-key")

# One rendered piece of a ``cache_key``/``cache_bypass``/``no_cache`` list: a variable name
# (without ``$``) or a literal.
Parts = tuple[tuple[bool, str], ...]
Lookup = Callable[[str], "str | None"]
Directives = Mapping[str, "str | bool"]

# RFC 9111 1.2.2: a delta-seconds past what a cache can hold counts as 2**31.  Every TTL is held
# to it too: a larger one overflows a float (max-age of 400 digits) or a file's mtime.
MAX_DELTA_SECONDS = 2**31

# Methods whose request has no body worth hashing; every other method's key hashes the body.
BODYLESS = frozenset({"GET", "HEAD"})


def compile_parts(items: Sequence[str] | None) -> Parts:
    """``["$host", "-x"]`` -> ``((True, "host"), (False, "-x"))``, once per snapshot."""
    return tuple(
        (True, item[1:]) if item.startswith("$") else (False, item) for item in items or ()
    )


def _values(parts: Parts, var: Lookup) -> Iterable[str]:
    return ((var(text) or "") if is_var else text for is_var, text in parts)


def render(parts: Parts, var: Lookup) -> str:
    """The parts joined, an unset variable rendering as "" (APISIX's generate_complex_value)."""
    return "".join(_values(parts, var))


def any_set(parts: Parts, var: Lookup) -> bool:
    """Whether one of the values is neither empty nor "0" (nginx's proxy_cache_bypass and
    proxy_no_cache rule, which APISIX's documentation states)."""
    return any(value not in ("", "0") for value in _values(parts, var))


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where an entry lives: ``primary`` is APISIX's cache key (identity-prefixed when consumers
    are isolated); ``variant`` tells apart the requests sharing it: the method, and for methods
    with a body a SHA-256 of that body. PURGE without a body clears every variant."""

    primary: str
    variant: str


def build_key(rendered: str, identity: str | None, method: str, body: bytes | None) -> CacheKey:
    """The key of a request. ``\\x01`` cannot occur in a username, so the prefix is unambiguous."""
    primary = f"{identity}\x01{rendered}" if identity else rendered
    if method in BODYLESS:
        return CacheKey(primary, method)
    return CacheKey(primary, f"{method}-{hashlib.sha256(body or b'').hexdigest()}")


def credentials_identity(header: Callable[[str], str | None]) -> str | None:
    """The identity of a request no gateway auth verified: a digest of the credential headers it
    sends (``header(name)``: a request header's value or None), None when it sends none.

    Nothing unverified (such as the user name of a Basic header) picks an entry: only the exact
    credentials do, so ``alice:wrong`` never reaches ``alice:right``'s entries.  The ``:`` keeps
    these apart from consumer names, which cannot hold one.
    """
    found = [(name, value) for name in CREDENTIAL_HEADERS if (value := header(name)) is not None]
    if not found:
        return None
    digest = hashlib.sha256()
    for name, value in found:
        digest.update(f"{name}\x00{value}\x00".encode("utf-8", "surrogateescape"))
    return "credentials:" + digest.hexdigest()


def parse_directives(values: Iterable[str]) -> dict[str, str | bool]:
    """``Cache-Control`` header values -> ``{"max-age": "60", "no-cache": True, ...}``."""
    directives: dict[str, str | bool] = {}
    for value in values:
        for item in value.split(","):
            name, equals, argument = item.strip().partition("=")
            if name:
                directives[name.strip().lower()] = argument.strip().strip('"') if equals else True
    return directives


def seconds(value: str | bool | None) -> int | None:
    """A delta-seconds directive argument, at most ``MAX_DELTA_SECONDS``; None when absent or
    not a number."""
    if not isinstance(value, str):
        return None
    try:
        number = int(value)
    except ValueError:
        # int() refuses more than 4300 digits: a number still, a huge one.
        return MAX_DELTA_SECONDS if value.isascii() and value.isdigit() else None
    return min(number, MAX_DELTA_SECONDS)


def freshness(directives: Directives, expires: str | None, now: float) -> float | None:
    """An upstream response's lifetime from ``s-maxage``/``max-age``, else ``Expires``; None
    when it states neither (a malformed ``Expires`` means already expired, as RFC 9111 says)."""
    for name in ("s-maxage", "max-age"):
        value = seconds(directives.get(name))
        if value is not None:
            return float(max(value, 0))
    if expires is None:
        return None
    try:
        moment = parsedate_to_datetime(expires).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0.0
    return max(moment - now, 0.0)


def refuses_request(directives: Directives) -> bool:
    """With ``cache_control``: a request asking not to be served from or stored in a cache."""
    return "no-store" in directives or "no-cache" in directives


def lookup_status(created: float, ttl: float, now: float, request: Directives) -> str:
    """HIT, EXPIRED (past its TTL) or STALE (fresh, but older or closer to its end than the
    request's ``max-age``/``min-fresh`` accept; ``request`` is empty without cache_control)."""
    age = now - created
    if age >= ttl:
        return "EXPIRED"
    max_age = seconds(request.get("max-age"))
    if max_age is not None and age > max_age:
        return "STALE"
    min_fresh = seconds(request.get("min-fresh"))
    if min_fresh is not None and ttl - age < min_fresh:
        return "STALE"
    return "HIT"


@dataclass(frozen=True, slots=True)
class StorePolicy:
    """What makes a response storable, and for how long; compiled once per plugin instance.

    ``honour_upstream``: the upstream's max-age/Expires sets the TTL (disk always, as nginx;
    memory with ``cache_control``); ``default_ttl`` applies when it states none.
    """

    statuses: frozenset[int]
    cache_control: bool
    cache_set_cookie: bool
    honour_upstream: bool
    default_ttl: float

    def ttl(
        self,
        status: int,
        cache_control: Sequence[str],
        expires: str | None,
        content_type: str,
        set_cookie: bool,
        vary: str | None,
        now: float,
    ) -> float | None:
        """The TTL to store a response with, or None when it must not be stored.

        ``private``, ``no-store`` and ``no-cache`` from the upstream always prevent storing
        (APISIX), except ``no-cache`` on an event stream without ``cache_control``: SSE servers
        send it by convention, to stop proxies buffering, not to mark the content.
        """
        if status not in self.statuses:
            return None
        directives = parse_directives(cache_control)
        if "private" in directives or "no-store" in directives:
            return None
        if "no-cache" in directives and (
            self.cache_control or not content_type.startswith("text/event-stream")
        ):
            return None
        if set_cookie and not self.cache_set_cookie:
            return None
        if vary is not None and any(item.strip() == "*" for item in vary.split(",")):
            return None
        lifetime = freshness(directives, expires, now) if self.honour_upstream else None
        ttl = self.default_ttl if lifetime is None else lifetime
        return min(ttl, MAX_DELTA_SECONDS) if ttl > 0 else None


def vary_names(vary: str | None) -> tuple[str, ...]:
    """The request headers a ``Vary`` response header names, lower-case and sorted."""
    if not vary:
        return ()
    return tuple(sorted({item.strip().lower() for item in vary.split(",") if item.strip()}))
