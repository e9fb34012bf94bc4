"""The request side shared by ai-proxy and ai-proxy-multi: read the client's LLM request once,
then send it to a target.

    wrong_method(ctx)            -> Reply | None    OpenAI's 405 for any method but POST
    read_request(ctx, max_size)  -> AiRequest      400 / 413 ``RequestError`` on bad input
    target.apply(ctx, request)                      (see ``llmgate.ai.target``)
    send(ctx)                    -> Sent            one attempt, through ``ctx.upstream``

What is sent is what ``apply`` left in ``ctx.outbound``: unlike the default forwarder, no
X-Forwarded-* / X-Real-IP headers are added, and none the client (or an auth plugin) set is
passed on: the provider learns neither the client's address (X-Forwarded-*, X-Real-IP,
Forwarded, ...) nor who the client is at the gateway (X-Consumer-*, X-Credential-Identifier),
and the client's own credentials never leave the gateway, nor its choice of the account the
gateway's key bills (OpenAI-Organization, OpenAI-Project).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from multidict import CIMultiDict

from llmgate.ai.call import LlmCall
from llmgate.ai.caps import STATE_KEY as CAPS_KEY
from llmgate.ai.caps import ResponseCaps
from llmgate.ai.openai_errors import invalid_method
from llmgate.ai.protocols import RequestError, detect, other_endpoint, parse_body
from llmgate.ai.target import AiRequest
from llmgate.errors import CLOSES_CONNECTION, HttpError
from llmgate.http.body import BodyTooLarge
from llmgate.http.context import Reply
from llmgate.http.paths import check_target
from llmgate.proxy.client_response import UpstreamError
from llmgate.proxy.upstream import BadGateway, Outgoing, no_upstream

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, Sent

# The client's credentials for the gateway (and cookies), never forwarded to a provider; the
# target's ``auth`` brings its own.  Accept-Encoding is dropped so the usage can be read.
DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "apikey",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
        "accept-encoding",
        "content-length",
        "content-encoding",
        "host",
        "expect",
        # The client's address and identity.
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "via",
        "x-credential-identifier",
        # Which account the target's key bills (the OpenAI SDKs send them when set, also from
        # OPENAI_ORG_ID / OPENAI_PROJECT_ID): the target's ``auth.header`` decides.
        "openai-organization",
        "openai-project",
    }
)
# Header name prefixes dropped likewise: X-Forwarded-For/-Proto/-Host/-Port/..., and the
# consumer headers auth plugins add (X-Consumer-Username, X-Consumer-Custom-ID, ...).
DROPPED_PREFIXES = ("x-forwarded-", "x-consumer-")


def forwardable(name: str) -> bool:
    """Whether the client's header ``name`` may be sent to an LLM provider."""
    lower = name.lower()
    return lower not in DROPPED_HEADERS and not lower.startswith(DROPPED_PREFIXES)


def wrong_method(ctx: RequestContext) -> Reply | None:
    """OpenAI's 405 (``Allow: POST``) for a request whose method no LLM endpoint takes: every
    call is a POST, so a GET / DELETE... (HEAD and OPTIONS too: a route that must answer
    browsers' preflights has cors, which answers them before) is refused before its body is
    read or a provider asked.  ``GET …/models`` is answered before this."""
    inbound = ctx.inbound
    if inbound.method == "POST":
        return None
    return Reply.json(405, invalid_method(inbound.method, inbound.path), {"Allow": "POST"})


async def read_request(ctx: RequestContext, max_size: int) -> AiRequest:
    """The client's LLM request: its JSON body (as earlier plugins left it) and protocol."""
    outbound = ctx.outbound
    try:
        raw = await ctx.current_body(max_size)
    except BodyTooLarge as exc:
        if exc.limit < max_size:
            raise  # past what the gateway holds in memory: its own 413
        raise _too_large(exc.size, max_size) from None
    body, raw = parse_body(raw, outbound.headers.get("Content-Type"))
    protocol = detect(body, ctx.target.uri)
    if protocol is None:
        raise RequestError(400, "no matching AI protocol for the request")
    headers = CIMultiDict(
        (name, value) for name, value in outbound.headers.items() if forwardable(name)
    )
    return AiRequest(
        body=body,
        raw=raw,
        protocol=protocol,
        headers=headers,
        other_endpoint=other_endpoint(body, ctx.target.uri),
    )


class _TooLarge(RequestError):
    """413: the body is over the plugin's ``max_req_body_size``.  The connection ends with the
    answer (the rest of the body is not read), as with the gateway's own 413."""

    headers: ClassVar[dict[str, str]] = CLOSES_CONNECTION


def _too_large(size: int, max_size: int) -> RequestError:
    return _TooLarge(
        413, f"request size {size} is greater than the maximum size {max_size} allowed"
    )


async def send(ctx: RequestContext) -> Sent:
    """Send ``ctx.outbound`` to ``ctx.upstream`` once (502 / 504 ``HttpError`` on failure)."""
    pool = ctx.upstream
    if pool is None:
        raise no_upstream(ctx.route.upstream_id)
    outbound = ctx.outbound
    outgoing = Outgoing(
        method=outbound.method,
        path_and_query=check_target(outbound.path, outbound.query),
        headers=outbound.headers,
        body=outbound.body,
        client_host=None,
    )
    call = LlmCall.of(ctx)
    call.started = time.perf_counter()
    call.first_token = call.finished = None
    call.aborted = None
    try:
        response, index, started = await pool.send(outgoing)
    except HttpError:
        call.finished = time.perf_counter()
        raise
    caps: ResponseCaps | None = ctx.state.get(CAPS_KEY)
    if caps is not None and response.status < 300:
        try:
            response = await caps.apply(response, call)
        except BaseException as exc:
            pool.finished(index, started)
            response.close()
            call.finished = time.perf_counter()
            if isinstance(exc, UpstreamError):  # the body broke while it was read whole
                raise BadGateway() from exc
            raise
    return response, pool, index, started
