"""What every auth plugin does once it knows who is calling: attach the consumer.

Shared by ``basic-auth`` and ``key-auth`` (APISIX's ``consumer.attach_consumer`` and
``consumer.get_anonymous_consumer``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmgate.proxy.context import RequestContext
    from llmgate.runtime.snapshot import ConsumerEntry

# Headers telling the upstream who called; always set or removed, so a client cannot forge them.
_IDENTITY_HEADERS = ("X-Consumer-Username", "X-Credential-Identifier", "X-Consumer-Custom-ID")


def attach(ctx: RequestContext, consumer: ConsumerEntry, credential_id: str | None) -> None:
    """Make ``consumer`` the caller of this request, as APISIX does.

    The upstream gets ``X-Consumer-Username``, ``X-Credential-Identifier`` (for a credential)
    and ``X-Consumer-Custom-ID`` (the consumer's ``custom_id`` label); any copy of these the
    client sent is dropped.
    """
    ctx.consumer = consumer
    ctx.credential_id = credential_id
    headers = ctx.outbound.headers
    values = (consumer.username, credential_id, consumer.labels.get("custom_id"))
    for name, value in zip(_IDENTITY_HEADERS, values, strict=True):
        if value:
            headers[name] = str(value)
        else:
            headers.popall(name, None)


def attach_anonymous(ctx: RequestContext, username: str) -> bool:
    """Attach the configured ``anonymous_consumer``; False when no such consumer exists."""
    consumer = ctx.snapshot.consumers.get(username)
    if consumer is None:
        return False
    attach(ctx, consumer, None)
    return True
