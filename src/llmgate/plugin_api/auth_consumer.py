"""Auth plugins: ``AuthPlugin``, their base, and what every one does once it knows who is
calling: attach the consumer (APISIX's ``consumer.attach_consumer`` and
``consumer.get_anonymous_consumer``).  Used by ``basic-auth`` and ``key-auth``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from multidict import CIMultiDict, istr

from llmgate.plugin_api.plugin import ConfigT, Plugin, PluginKind
from llmgate.runtime.snapshot import SNAPSHOT

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.snapshot import ConsumerEntry, CredentialEntry


class AuthPlugin(Plugin[ConfigT]):
    """An auth plugin: it identifies the consumer in ``rewrite`` from the credentials consumers
    carry for it (``ConsumerConfig``), looked up in an index the runtime builds once per
    snapshot (``build_index``) and the plugin reads as ``auth_index(ctx)``."""

    kind: ClassVar[PluginKind] = "auth"
    # What the admin API does with what consumers and credentials carry for this plugin, read
    # generically (``admin/resources.py``), so a new auth plugin needs no admin code:
    # ``stored_as``: fields kept at rest in another form, by the function making it (a
    # password's hash, a key's digest); ``unique_field``: the field no two consumers or
    # credentials may share, compared in its stored form (APISIX: a key, a username).
    stored_as: ClassVar[Mapping[str, Callable[[str], str]]] = {}
    unique_field: ClassVar[str | None] = None

    @classmethod
    def build_index(cls, credentials: list[CredentialEntry]) -> Any:
        """An index of the consumers' credentials for this plugin, built once per snapshot."""
        return None

    def auth_index(self, ctx: RequestContext) -> Any:
        """The index ``build_index`` built for the snapshot running ``ctx`` (None: none)."""
        return ctx.state[SNAPSHOT].auth_index.get(self.name)


# Headers telling the upstream who called; always set or removed, so a client cannot forge them.
# (``istr``: multidict takes them as already case-folded.)
_USERNAME = istr("X-Consumer-Username")
_CREDENTIAL = istr("X-Credential-Identifier")
_CUSTOM_ID = istr("X-Consumer-Custom-ID")
# Their ``$http_<name>`` variables, kept current as APISIX's ``core.request.set_header`` does.
_USERNAME_VAR = "http_x_consumer_username"
_CREDENTIAL_VAR = "http_x_credential_identifier"
_CUSTOM_ID_VAR = "http_x_consumer_custom_id"


def attach(ctx: RequestContext, consumer: ConsumerEntry, credential_id: str | None) -> None:
    """Make ``consumer`` the caller of this request, as APISIX does.

    The upstream gets ``X-Consumer-Username``, ``X-Credential-Identifier`` (for a credential)
    and ``X-Consumer-Custom-ID`` (the consumer's ``custom_id`` label); any copy of these the
    client sent is dropped.
    """
    ctx.consumer = consumer
    ctx.credential_id = credential_id
    headers = ctx.outbound.headers
    ctx.set_header_vars(
        (
            (_USERNAME_VAR, _identify(headers, _USERNAME, consumer.username)),
            (_CREDENTIAL_VAR, _identify(headers, _CREDENTIAL, credential_id)),
            (_CUSTOM_ID_VAR, _identify(headers, _CUSTOM_ID, consumer.labels.get("custom_id"))),
        )
    )


def _identify(headers: CIMultiDict[str], name: istr, value: object) -> str | None:
    """Set (or remove) header ``name``; what ``$http_<name>`` reads now."""
    if value:
        text = headers[name] = str(value)
        return text
    headers.popall(name, None)
    return None


def attach_anonymous(ctx: RequestContext, username: str) -> bool:
    """Attach the configured ``anonymous_consumer``; False when no such consumer exists."""
    consumer = ctx.state[SNAPSHOT].consumers.get(username)
    if consumer is None:
        return False
    attach(ctx, consumer, None)
    return True
