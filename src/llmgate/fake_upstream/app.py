"""The fake upstream's aiohttp application: routes, the knob middleware and the wire writers.

Routes (POST routes also answer under any prefix, e.g. Azure's `/openai/deployments/x/...`):

    POST  /v1/chat/completions      chat reply, SSE with "stream": true
    POST  /v1/completions           legacy text completion, SSE with "stream": true
    POST  /v1/embeddings            deterministic vectors
    GET   /v1/models[/{model}]      the configured model
    GET   /__fake/health            {"status": "ok"}                (not recorded, no knobs)
    GET   /__fake/requests          recorded inbound requests      (not recorded, no knobs)
    DELETE /__fake/requests         forget them
    PUT   /__fake/knobs             change the process-wide knobs at run time, e.g.
                                    {"status": 503}, {"drop": "before"}, {"latency_ms": 2000}
                                    (fields left out keep their start-up value)
    DELETE /__fake/knobs            back to the start-up knobs
    *     anything else             echo of the inbound request as JSON
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from llmgate.fake_upstream import replies
from llmgate.fake_upstream.knobs import (
    DROP_BEFORE,
    DROP_MID_STREAM,
    FakeSettings,
    KnobError,
    Knobs,
    default_knobs,
    parse_knobs,
    status_error_body,
)

_INSPECTION_PATHS = frozenset({"/__fake/requests", "/__fake/health", "/__fake/knobs"})
_MAX_BODY = 64 * 1024 * 1024
_NOT_JSON = object()
_DONE_EVENT = b"data: [DONE]\n\n"
# On any other path: answer this many bytes instead of the echo (at most MAX_BODY_BYTES).
HEADER_BODY_BYTES = "X-Fake-Body-Bytes"
MAX_BODY_BYTES = 256 * 1024 * 1024
_MID_STREAM_EVENTS = 2
_BAD_JSON = "We could not parse the JSON body of your request. Expected a JSON object."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class _State:
    settings: FakeSettings
    knobs: Knobs
    requests: deque[dict[str, Any]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Inbound:
    """One inbound request.

    `record` is what inspection and the echo return: method, path (decoded), query (the raw query
    string), headers (lower-case names) and body (the parsed JSON, else the text, else None).
    `json` is the parsed body or `_NOT_JSON`.
    """

    record: dict[str, Any]
    json: Any
    knobs: Knobs


STATE = web.AppKey("llmgate.fake_upstream.state", _State)
INBOUND = web.RequestKey("llmgate.fake_upstream.inbound", _Inbound)


def build_app(settings: FakeSettings) -> web.Application:
    """The fake upstream as an aiohttp application (not yet started)."""
    app = web.Application(middlewares=[_knobs_middleware], client_max_size=_MAX_BODY)
    app[STATE] = _State(
        settings=settings,
        knobs=default_knobs(settings),
        requests=deque(maxlen=max(settings.record, 0)),
    )
    router = app.router
    router.add_get("/__fake/health", _health)
    router.add_get("/__fake/requests", _list_requests)
    router.add_delete("/__fake/requests", _clear_requests)
    router.add_put("/__fake/knobs", _set_knobs)
    router.add_delete("/__fake/knobs", _reset_knobs)
    router.add_post("/{prefix:(?:.*/)?}chat/completions", _chat)
    router.add_post("/{prefix:(?:.*/)?}completions", _completions)
    router.add_post("/{prefix:(?:.*/)?}embeddings", _embeddings)
    router.add_get("/v1/models", _models)
    router.add_get("/v1/models/{model}", _model)
    router.add_route("*", "/{tail:.*}", _echo)
    return app


# --- middleware: record, then apply the knobs ---------------------------------------------------


@web.middleware
async def _knobs_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _INSPECTION_PATHS:
        return await handler(request)
    state = request.app[STATE]
    raw = await request.read()
    parsed = _parse_json(raw)
    record = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": _header_dict(request),
        "body": _record_body(raw, parsed),
        # What arrived, exactly: tests compare it with what the client sent.
        "raw_path": request.raw_path,
        "body_length": len(raw),
        "body_sha256": hashlib.sha256(raw).hexdigest(),
        # Which connection it came on ("host:port" of the client): keep-alive tests count them.
        "peer": _peer(request),
    }
    state.requests.append(record)
    try:
        knobs = parse_knobs(request.headers, request.query, state.knobs)
    except KnobError as exc:
        return _json(replies.error_body(str(exc), "invalid_request_error"), status=400)
    request[INBOUND] = _Inbound(record=record, json=parsed, knobs=knobs)
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if knobs.drop == DROP_BEFORE:
        return _drop_connection(request)
    if knobs.status is not None:
        return _json(status_error_body(knobs.status), status=knobs.status)
    return await handler(request)


def _peer(request: web.Request) -> str | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None


def _header_dict(request: web.Request) -> dict[str, str]:
    """Inbound headers with lower-case names; repeated headers are joined with ", "."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _record_body(raw: bytes, parsed: Any) -> Any:
    if parsed is not _NOT_JSON:
        return parsed
    return raw.decode(errors="replace") if raw else None


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return _NOT_JSON
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


# --- OpenAI endpoints ---------------------------------------------------------------------------


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _answer(
        request,
        id_prefix="chatcmpl",
        answer=replies.answer_chat,
        response=replies.chat_response,
        chunks=replies.chat_chunks,
    )


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _answer(
        request,
        id_prefix="cmpl",
        answer=replies.answer_completion,
        response=replies.completion_response,
        chunks=replies.completion_chunks,
    )


async def _answer(
    request: web.Request,
    *,
    id_prefix: str,
    answer: Callable[[dict[str, Any]], replies.Answer],
    response: Callable[..., dict[str, Any]],
    chunks: Callable[..., list[dict[str, Any]]],
) -> web.StreamResponse:
    """Validate the body, then send the whole reply as JSON, or as SSE when `stream` is true."""
    inbound = request[INBOUND]
    body = inbound.json
    if not isinstance(body, dict):
        return _bad_request(_BAD_JSON)
    try:
        replies.check_stream_options(body)
        replies.check_azure_api_version(request.path, request.query.get("api-version"), body)
        reply = answer(body)
        model = replies.request_model(body, request.app[STATE].settings.model)
    except replies.InvalidRequest as exc:
        return _bad_request(str(exc), exc.param)
    meta = {
        "model": model,
        "response_id": f"{id_prefix}-{secrets.token_hex(12)}",
        "created": int(time.time()),
    }
    if body.get("stream") is True:
        events = chunks(reply, with_usage=replies.include_usage(body), **meta)
        return await _send_sse(request, inbound.knobs, events)
    return await _send_json(request, inbound.knobs, response(reply, **meta))


async def _embeddings(request: web.Request) -> web.StreamResponse:
    inbound = request[INBOUND]
    if not isinstance(inbound.json, dict):
        return _bad_request(_BAD_JSON)
    try:
        payload = replies.embeddings_response(inbound.json, request.app[STATE].settings.model)
    except replies.InvalidRequest as exc:
        return _bad_request(str(exc))
    return await _send_json(request, inbound.knobs, payload)


async def _models(request: web.Request) -> web.StreamResponse:
    model = request.app[STATE].settings.model
    payload = replies.models_response(model, int(time.time()))
    return await _send_json(request, request[INBOUND].knobs, payload)


async def _model(request: web.Request) -> web.StreamResponse:
    payload = replies.model_object(request.match_info["model"], int(time.time()))
    return await _send_json(request, request[INBOUND].knobs, payload)


async def _echo(request: web.Request) -> web.StreamResponse:
    inbound = request[INBOUND]
    size = request.headers.get(HEADER_BODY_BYTES, "")
    if size.isdigit() and int(size) <= MAX_BODY_BYTES:
        # A big answer from a small request (tests of clients that read slowly or not at all).
        return web.Response(body=b"x" * int(size), content_type="application/octet-stream")
    return await _send_json(request, inbound.knobs, inbound.record)


# --- inspection ---------------------------------------------------------------------------------


async def _health(request: web.Request) -> web.StreamResponse:
    return _json({"status": "ok"})


async def _list_requests(request: web.Request) -> web.StreamResponse:
    return _json({"requests": list(request.app[STATE].requests)})


async def _clear_requests(request: web.Request) -> web.StreamResponse:
    recorded = request.app[STATE].requests
    cleared = len(recorded)
    recorded.clear()
    return _json({"cleared": cleared})


async def _set_knobs(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        wanted = orjson.loads(await request.read())
        if not isinstance(wanted, dict):
            raise KnobError("the body must be a JSON object")
        query = {f"fake_{k}": str(v) for k, v in wanted.items() if v is not None}
        unknown = set(wanted) - {"latency_ms", "stream_delay_ms", "status", "drop"}
        if unknown:
            raise KnobError(f"unknown knobs: {sorted(unknown)}")
        state.knobs = parse_knobs({}, query, default_knobs(state.settings))
    except (KnobError, orjson.JSONDecodeError) as exc:
        return _bad_request(str(exc))
    return _json({"knobs": _knob_dict(state.knobs)})


async def _reset_knobs(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.knobs = default_knobs(state.settings)
    return _json({"knobs": _knob_dict(state.knobs)})


def _knob_dict(knobs: Knobs) -> dict[str, Any]:
    return {
        "latency_ms": knobs.latency_ms,
        "stream_delay_ms": knobs.stream_delay_ms,
        "status": knobs.status,
        "drop": knobs.drop,
    }


# --- writing to the client ----------------------------------------------------------------------


def _json(payload: Any, status: int = 200) -> web.Response:
    try:
        body = orjson.dumps(payload)
    except TypeError:  # undecodable bytes a client sent (surrogate escapes): still echo them
        body = json.dumps(payload).encode()
    return web.Response(body=body, status=status, content_type="application/json")


def _bad_request(message: str, param: str | None = None) -> web.Response:
    return _json(replies.error_body(message, "invalid_request_error", param=param), status=400)


def _drop_connection(
    request: web.Request, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the connection after what was written so far is flushed.

    aiohttp then fails to finish the returned response, which it treats as a client disconnect.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response() if response is None else response


async def _send_json(request: web.Request, knobs: Knobs, payload: Any) -> web.StreamResponse:
    """Send `payload`; with a mid-stream drop, announce its full length, send half, then close."""
    if knobs.drop != DROP_MID_STREAM:
        return _json(payload)
    data = orjson.dumps(payload)
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.content_length = len(data)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
    return _drop_connection(request, response)


async def _send_sse(
    request: web.Request, knobs: Knobs, chunks: list[dict[str, Any]]
) -> web.StreamResponse:
    """Write one `data:` event per chunk, each flushed on its own, then `[DONE]`.

    A client that goes away ends the stream quietly; a mid-stream drop closes the connection
    after the first events.
    """
    end = knobs.sse_newline * 2
    events = [b"data: " + orjson.dumps(chunk) + end for chunk in chunks]
    events.append(_DONE_EVENT.replace(b"\n\n", end))
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    delay = knobs.stream_delay_ms / 1000
    try:
        await response.prepare(request)
        for sent, event in enumerate(events):
            if knobs.drop == DROP_MID_STREAM and sent == _MID_STREAM_EVENTS:
                return _drop_connection(request, response)
            if sent and delay:
                await asyncio.sleep(delay)
            await response.write(event)
        await response.write_eof()
    except ConnectionError:
        pass
    return response
