"""key-auth: authenticates a consumer from an API key in a header or the query string."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote_plus

from pydantic import Field

from llmgate.credentials import KEY_DIGEST_PREFIX, is_key_digest, key_digest, store_key
from llmgate.http.context import Reply
from llmgate.plugin_api.auth_consumer import AuthPlugin, attach, attach_anonymous
from llmgate.plugin_api.config import PluginConfig, Realm

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.services import Services
    from llmgate.runtime.snapshot import CredentialEntry


class KeyAuthConfig(PluginConfig):
    """On a route, plugin_config or consumer."""

    header: str = "apikey"
    query: str = "apikey"
    realm: Realm = "key"
    hide_credentials: bool = False
    anonymous_consumer: Annotated[str, Field(min_length=1)] | None = None


class KeyAuthConsumer(PluginConfig):
    """What a consumer or credential carries."""

    key: str


MISSING = "Missing API key in request"
REJECTED = "Invalid API key in request"
NO_ANONYMOUS = "Invalid user authorization"

_BEARER = re.compile(r"bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)

# sha256$<hex digest of the key> -> who it authenticates
KeyAuthIndex = Mapping[str, "CredentialEntry"]


def presented_digest(key: str) -> str:
    """``key_digest`` of a key as the client sent it (any bytes, never raising)."""
    raw = key.encode("utf-8", "surrogateescape")  # aiohttp keeps undecodable bytes this way
    return KEY_DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()


def drop_query_arg(raw_query: str, name: str) -> str:
    """``raw_query`` without the ``name`` arguments; the others keep their exact encoding."""
    kept = [
        part
        for part in raw_query.split("&")
        if part and unquote_plus(part.partition("=")[0]) != name
    ]
    return "&".join(kept)


class KeyAuth(AuthPlugin[KeyAuthConfig]):
    name = "key-auth"
    priority = 2500
    kind = "auth"
    Config = KeyAuthConfig
    ConsumerConfig = KeyAuthConsumer
    stored_as = {"key": store_key}
    unique_field = "key"
    secret_fields = ("key",)

    def __init__(self, config: KeyAuthConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        challenge = {"WWW-Authenticate": f'apikey realm="{config.realm}"'}
        self._missing = Reply.message(401, MISSING, challenge)
        self._rejected = Reply.message(401, REJECTED, challenge)
        self._no_anonymous = Reply.message(401, NO_ANONYMOUS, challenge)
        self._bearer = config.header.lower() == "authorization"

    @classmethod
    def build_index(cls, credentials: list[CredentialEntry]) -> KeyAuthIndex:
        index: dict[str, CredentialEntry] = {}
        for entry in credentials:
            key = entry.config.get("key")
            # An empty key (an unset $env:// variable) must never let anyone in.
            if not isinstance(key, str) or not key:
                continue
            # Stored keys are digests; a $env:// key arrives resolved, in plaintext.
            digest = key if is_key_digest(key) else key_digest(key)
            index.setdefault(digest, entry)
        return index

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        config = self.config
        key = ctx.inbound.headers.get(config.header)
        from_header = key is not None
        if key is None:
            key = ctx.inbound.query.get(config.query)
        if key is None:
            reply: Reply | None = self._missing
        else:
            reply = self._authenticate(ctx, key)
        if reply is None:
            if config.hide_credentials:
                self._hide(ctx, header=from_header, query=not from_header)
            return None
        if config.anonymous_consumer is None:
            return reply
        if config.hide_credentials:  # never forward a rejected key, wherever it was
            self._hide(ctx, header=True, query=True)
        if not attach_anonymous(ctx, config.anonymous_consumer):
            return self._no_anonymous
        return None

    def _authenticate(self, ctx: RequestContext, key: str) -> Reply | None:
        index: KeyAuthIndex = self.auth_index(ctx) or {}
        entry = None
        if self._bearer and (bearer := _BEARER.fullmatch(key)) is not None:
            entry = index.get(presented_digest(bearer.group(1)))
        if entry is None:
            entry = index.get(presented_digest(key))
        if entry is None:
            return self._rejected
        attach(ctx, entry.consumer, entry.credential_id)
        return None

    def _hide(self, ctx: RequestContext, *, header: bool, query: bool) -> None:
        outbound = ctx.outbound
        if header:
            outbound.headers.popall(self.config.header, None)
            ctx.request_headers_changed(self.config.header)
        if query and outbound.query:
            ctx.set_args(drop_query_arg(outbound.query, self.config.query))
