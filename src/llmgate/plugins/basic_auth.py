"""basic-auth: authenticates a consumer from an ``Authorization: Basic`` header.

Password hashes are checked off the event loop, with a verification cache and a per-client
failure limit (``runtime/verified.py``): a flood of wrong guesses costs the other clients
nothing.  When too many checks are in flight, a new one is answered 503 (with
``Retry-After``) rather than queued without bound.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from llmgate.credentials import decoy_hash, hash_password
from llmgate.http.context import Reply
from llmgate.plugin_api.auth_consumer import AuthPlugin, attach, attach_anonymous
from llmgate.plugin_api.config import PluginConfig, Realm
from llmgate.runtime.verified import Verdict

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.services import Services
    from llmgate.runtime.snapshot import CredentialEntry


class BasicAuthConfig(PluginConfig):
    """On a route, plugin_config or consumer."""

    hide_credentials: bool = False
    realm: Realm = "basic"
    anonymous_consumer: Annotated[str, Field(min_length=1)] | None = None


class BasicAuthConsumer(PluginConfig):
    """What a consumer or credential carries."""

    # RFC 7617: no control characters (a NUL cannot even be stored by PostgreSQL).
    username: Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]
    # No NUL: its hash could not tell "pw\x00" from "pw" (HMAC pads its key with NULs).
    password: Annotated[str, Field(pattern=r"^[^\x00]*$")]


# The scheme (any case), then a standard base64 token; padding may be left out, as nginx allows.
# ASCII letters only: Unicode case folding would take KELVIN SIGN for "k" and LONG S for "s".
_BASIC = re.compile(r"basic[ \t]+([A-Za-z0-9+/]+)(=*)[ \t]*", re.IGNORECASE | re.ASCII)

MISSING = "Missing authorization in request"
MALFORMED = "Invalid authorization in request"
REJECTED = "Invalid user authorization"
BUSY = "too many password checks in progress, try again"

# username -> (who it authenticates, the stored password: a passlib hash or a resolved secret)
BasicAuthIndex = Mapping[str, tuple["CredentialEntry", str]]


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization`` value; None when it is malformed.

    The decoded text splits at its first colon (RFC 7617: a password may contain colons).
    """
    decoded: bytes | None = None
    # ``Basic <token>`` as clients send it (one space, the token padded exactly) is decoded
    # without the pattern's cost; any other form is read with the pattern.
    if header.startswith("Basic ") and not header.endswith(("Basic ", "===")) and header.isascii():
        try:
            decoded = binascii.a2b_base64(header[6:], strict_mode=True)
        except binascii.Error:
            decoded = None
    if decoded is None:
        match = _BASIC.fullmatch(header)
        if match is None:
            return None
        token, padding = match.groups()
        if len(token) % 4 == 1 or len(padding) > 2:
            return None
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except binascii.Error:
            return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    username, colon, password = text.partition(":")
    return (username, password) if colon else None


class BasicAuth(AuthPlugin[BasicAuthConfig]):
    name = "basic-auth"
    priority = 2520
    kind = "auth"
    Config = BasicAuthConfig
    ConsumerConfig = BasicAuthConsumer
    stored_as = {"password": hash_password}
    unique_field = "username"
    secret_fields = ("password",)

    def __init__(self, config: BasicAuthConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        challenge = {"WWW-Authenticate": f'Basic realm="{self.config.realm}"'}
        self._missing = Reply.message(401, MISSING, challenge)
        self._malformed = Reply.message(401, MALFORMED, challenge)
        self._rejected = Reply.message(401, REJECTED, challenge)
        self._busy = Reply.message(503, BUSY, {"Retry-After": "1"})

    @classmethod
    def build_index(cls, credentials: list[CredentialEntry]) -> BasicAuthIndex:
        index: dict[str, tuple[CredentialEntry, str]] = {}
        for entry in credentials:
            username, password = entry.config.get("username"), entry.config.get("password")
            # An empty password (an unset $env:// variable) must never let anyone in.
            if isinstance(username, str) and isinstance(password, str) and password:
                index.setdefault(username, (entry, password))
        return index

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        reply = await self._authenticate(ctx)
        if reply is self._busy:
            return reply  # the password is unchecked: not a reason to fall back to anonymous
        if reply is not None:
            anonymous = self.config.anonymous_consumer
            if anonymous is None:
                return reply
            if not attach_anonymous(ctx, anonymous):
                return self._rejected
        if self.config.hide_credentials:
            ctx.outbound.headers.popall("Authorization", None)
            ctx.request_headers_changed("Authorization")
        return None

    async def _authenticate(self, ctx: RequestContext) -> Reply | None:
        header = ctx.inbound.headers.get("Authorization")
        if header is None:
            return self._missing
        presented = parse_basic(header)
        if presented is None:
            return self._malformed
        username, password = presented
        index: BasicAuthIndex = self.auth_index(ctx) or {}
        found = index.get(username)
        if found is None:
            # An unknown user costs a hash too: answering it sooner would tell which names
            # exist.  The name is part of what is checked, so a guess already cached for
            # another unknown name is not answered sooner either.
            checked, stored = f"{username}\x00{password}", decoy_hash()
        else:
            checked, stored = password, found[1]
        checks = self.services.verified
        if found is None or not checks.recall(checked, stored):  # recall: the usual, no await
            verdict = await checks.check_password(checked, stored, ctx.inbound.remote)
            if verdict is Verdict.BUSY:
                return self._busy
            if found is None or verdict is not Verdict.VERIFIED:
                return self._rejected
        entry = found[0]
        attach(ctx, entry.consumer, entry.credential_id)
        return None
