"""One LLM endpoint as ai-proxy and ai-proxy-multi call it, compiled once per config snapshot.

``compile_target`` turns a ``ProviderTarget`` (provider, auth, options, override) and the call
options (timeout, keepalive, TLS) into an ``LlmTarget``: a keep-alive upstream pool for the
endpoint's host, the query string to send, the auth headers and the body shaping rules.
``LlmTarget.apply`` then points one request's ``ctx.outbound`` at it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from multidict import CIMultiDict
from yarl import URL

from llmgate.ai import providers, tracking
from llmgate.ai.call import LlmCall
from llmgate.ai.caps import STATE_KEY as CAPS_KEY
from llmgate.ai.caps import ResponseCaps
from llmgate.ai.protocols import (
    APISIX_NAMES,
    Protocol,
    RequestError,
    Shaping,
    ask_for_usage,
    path_for,
    shape,
)
from llmgate.schemas.checks import Checks
from llmgate.schemas.common import Timeout
from llmgate.schemas.upstream import KeepalivePool, Tls, UpstreamSpec

if TYPE_CHECKING:
    from llmgate.ai.target_config import CallOptions, ProviderTarget
    from llmgate.http.context import RequestContext
    from llmgate.proxy.upstream import PoolRegistry, UpstreamPool


@dataclass(frozen=True, slots=True)
class AiRequest:
    """The client's LLM request, read once and shared by every attempt."""

    body: dict[str, Any]
    raw: bytes  # the bytes it was parsed from, sent as they are when nothing changes them
    protocol: Protocol
    headers: CIMultiDict[str]  # the client's headers fit to forward (no credentials)
    # Sent to an OpenAI API without a protocol here (``/responses``...): only a target whose
    # endpoint is that API may take it (``protocols.OTHER_ENDPOINTS``).
    other_endpoint: str | None = None


NO_CAPS = ResponseCaps()


@dataclass(frozen=True, slots=True)
class LlmTarget:
    name: str  # the ai-proxy-multi instance name; "ai-proxy-<provider>" for ai-proxy
    provider: str
    pool: UpstreamPool | None  # None when ``refusal`` says why it cannot be called
    endpoint_path: str | None  # override.endpoint's path; None: the provider's default
    query: str
    auth_headers: tuple[tuple[str, str], ...]
    shaping: Shaping
    project_id: str | None = None
    region: str | None = None
    close_connection: bool = False
    refusal: str | None = None
    caps: ResponseCaps = NO_CAPS
    # Whether a stream is asked for its usage (``stream_options``), which the endpoint's
    # api-version may refuse (``providers.takes_stream_options``); if not, it is charged as a
    # stream that ended before its usage (``estimate.relayed_estimate``).
    asks_stream_usage: bool = True
    summaries: bool = False  # ``logging.summaries``: the loggers' entries get ``llm_summary``

    def serves(self, protocol: Protocol) -> bool:
        return protocol in providers.PROVIDERS[self.provider].paths

    def unsupported(self, protocol: Protocol) -> RequestError:
        """The 400 for a protocol this provider does not speak (APISIX's message)."""
        return RequestError(
            400,
            f"provider {self.provider} does not support {APISIX_NAMES[protocol]} protocol"
            f" (supported: {', '.join(providers.supported_names(self.provider))})",
        )

    def path(self, protocol: Protocol) -> str:
        """The upstream path for ``protocol`` (a 400 ``RequestError`` when unsupported)."""
        if not self.serves(protocol):
            raise self.unsupported(protocol)
        if self.endpoint_path:
            return path_for(self.endpoint_path, protocol)
        path = providers.default_path(self.provider, protocol, self.project_id, self.region)
        if path is None:
            raise RequestError(400, "could not resolve upstream path: configure override.endpoint")
        return path

    def hides_usage(self, body: dict[str, Any], protocol: Protocol) -> bool:
        """Whether ``apply`` would ask the stream of ``body`` for a usage nobody asked for."""
        if not self.asks_stream_usage:
            return False
        return ask_for_usage(shape(body, protocol, self.shaping)[0], protocol) is not None

    def apply(self, ctx: RequestContext, request: AiRequest) -> None:
        """Point ``ctx.outbound`` (and ``ctx.upstream``) at this target; record it on the call.

        A request to another OpenAI API (``request.other_endpoint``) goes only to an endpoint
        of that API, as it is: read by its body it would become an embedding or a text
        completion (400 ``RequestError``)."""
        protocol = request.protocol
        other = request.other_endpoint
        if other is not None and not (self.endpoint_path or "").endswith(other):
            raise RequestError(
                400,
                f"no matching AI protocol for the request: {other} is not supported"
                f" (supported: {', '.join(APISIX_NAMES.values())})",
            )
        path = self.path(protocol)
        body, changed = shape(request.body, protocol, self.shaping)
        # A stream's usage is asked for the accounting; a client that did not ask (nor the
        # target's options for it) is not shown it (``tracking.hide_usage``).
        asked = ask_for_usage(body, protocol) if self.asks_stream_usage else None
        if asked is not None:
            body, changed = asked, True
        tracking.hide_usage(ctx, asked is not None)
        headers = CIMultiDict(request.headers)
        headers["Content-Type"] = "application/json"
        for name, value in self.auth_headers:
            headers[name] = value
        if self.close_connection:
            headers["Connection"] = "close"
        outbound = ctx.outbound
        outbound.method = "POST"
        outbound.path = path
        outbound.query = self.query
        outbound.headers = headers
        outbound.body = orjson.dumps(body) if changed else request.raw
        outbound.host = None
        ctx.upstream = self.pool
        if self.caps.any:
            ctx.state[CAPS_KEY] = self.caps
        else:
            ctx.state.pop(CAPS_KEY, None)
        call = LlmCall.of(ctx)
        call.provider = self.provider
        call.instance = self.name
        call.summaries = self.summaries
        call.protocol = protocol
        call.stream = protocol != "embeddings" and body.get("stream") is True
        asked = request.body.get("model")
        call.client_model = asked if isinstance(asked, str) else ""
        model = self.shaping.options.get("model") or asked
        call.model = call.request_model = model if isinstance(model, str) else None


def compile_target(
    name: str,
    target: ProviderTarget,
    call: CallOptions,
    pools: PoolRegistry,
    label: str,
    checks: Checks | None = None,
    timeout: int | None = None,
) -> LlmTarget:
    """The target; ``checks`` (ai-proxy-multi's) probe the endpoint with the target's auth
    headers and query added, as APISIX's ai-proxy-multi does; ``timeout`` (ms) is this
    target's own, in place of ``call.timeout``."""
    provider = target.provider
    defaults = providers.PROVIDERS[provider]
    override = target.override
    conf = target.provider_conf
    project_id = conf.project_id if conf else None
    region = conf.region if conf else None
    auth = target.auth
    refusal = providers.unsupported(provider, auth.gcp is not None, auth.aws is not None)

    endpoint = URL(override.endpoint) if override and override.endpoint else None
    if endpoint is not None:
        scheme, host, port = endpoint.scheme, endpoint.host, endpoint.explicit_port
        endpoint_path = endpoint.raw_path if endpoint.raw_path not in ("", "/") else None
        query_pairs = list(endpoint.query.items())
    else:
        scheme, host, port = "https", providers.default_host(provider, region), None
        endpoint_path, query_pairs = None, []
    query_pairs += list((auth.query or {}).items())
    api_version = next((value for name, value in query_pairs if name == "api-version"), None)
    if host is None:
        refusal = refusal or f"provider {provider} needs override.endpoint"

    pool = None
    if refusal is None:
        assert host is not None
        port = port or (443 if scheme == "https" else 80)
        if checks is not None:
            checks = _with_auth(checks, auth.header or {}, auth.query or {})
        pool = _pool(scheme, host, port, call, timeout or call.timeout, pools, label, checks)

    llm = override.llm_options if override else None
    options = target.options.model_dump(exclude_unset=True) if target.options else {}
    return LlmTarget(
        name=name,
        provider=provider,
        pool=pool,
        endpoint_path=endpoint_path,
        query=urlencode(query_pairs),
        auth_headers=tuple((auth.header or {}).items()),
        shaping=Shaping(
            options=options,
            max_tokens=llm.max_tokens if llm else None,
            max_tokens_field=defaults.max_tokens_field,
            request_body=override.request_body if override else None,
            force_override=override.request_body_force_override if override else False,
            remove_model=defaults.remove_model,
        ),
        project_id=project_id,
        region=region,
        close_connection=not call.keepalive,
        refusal=refusal,
        caps=ResponseCaps(call.max_stream_duration_ms, call.max_response_bytes),
        asks_stream_usage=providers.takes_stream_options(provider, api_version),
        summaries=call.logging is not None and call.logging.summaries,
    )


def _with_auth(checks: Checks, header: dict[str, str], query: dict[str, str]) -> Checks:
    active = checks.active
    lines = list(active.req_headers or ())
    for name, value in header.items():
        if f"{name}: {value}" not in lines:
            lines.append(f"{name}: {value}")
    path = active.http_path
    if query:
        path += ("&" if "?" in path else "?") + urlencode(query)
    active = active.model_copy(update={"req_headers": lines or None, "http_path": path})
    return checks.model_copy(update={"active": active})


def _pool(
    scheme: str,
    host: str,
    port: int,
    call: CallOptions,
    timeout: int,
    pools: PoolRegistry,
    label: str,
    checks: Checks | None = None,
) -> UpstreamPool:
    seconds = timeout / 1000
    spec = UpstreamSpec(
        nodes={f"{host}:{port}": 1},
        scheme="https" if scheme == "https" else "http",
        retries=0,
        timeout=Timeout(connect=seconds, send=seconds, read=seconds),
        keepalive_pool=KeepalivePool(
            size=call.keepalive_pool, idle_timeout=call.keepalive_timeout / 1000
        ),
        pass_host="node",
        tls=Tls(verify=call.ssl_verify),
        checks=checks,
    )
    key = "ai:" + hashlib.sha1(spec.model_dump_json().encode()).hexdigest()[:16]
    return pools.get(spec, key, label)
