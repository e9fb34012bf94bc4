"""Watching an LLM response go by: usage, model and timing, without holding anything back.

A ``ResponseTracker`` is attached to the request once the upstream answered (header filter)
and sees every chunk (body filter):

- an SSE stream is scanned event by event (``SseScanner``); the chunk goes on unchanged, and
  the usage block of the final chunk (``stream_options.include_usage``) is kept;
- a JSON body is copied aside (up to ``MAX_JSON_COPY``) while it passes, and parsed at the end.

Both fill the request's ``LlmCall``: ``first_token`` at the first byte, ``usage`` / ``model``
as found, ``finished`` at the end.

A call the provider answered whose usage never came (the client left a stream, the upstream
cut it, an Azure api-version without ``stream_options``), or whose client left while the
provider was working on it (``LlmCall.left_waiting``), is given the estimate a budget
charges for it (``settle_usage``, before the log phase): metrics, usage records, loggers and
ai-rate-limiting all read that one usage, marked ``estimated``.

A stream whose usage the gateway asked for, not the client (``hide_usage``), is then passed
through a ``UsageChunkFilter``: the tracker sees the usage, the client a stream as OpenAI would
have sent it.  So is a stream proxy-cache replays to such a client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from llmgate.ai.call import CACHE_HIT, PASSIVE_PROVIDER, LlmCall
from llmgate.ai.call import STATE_KEY as CALL_KEY
from llmgate.ai.estimate import relayed_estimate, request_estimate
from llmgate.ai.protocols import Protocol
from llmgate.ai.sse import SseScanner
from llmgate.ai.stream_usage import UsageChunkFilter
from llmgate.ai.usage import Usage, usage_of
from llmgate.http import json_body
from llmgate.http.context import StateKey

if TYPE_CHECKING:
    from multidict import CIMultiDict

    from llmgate.http.context import RequestContext, ResponseHead

MAX_JSON_COPY = 8 * 1024 * 1024
STATE_KEY: StateKey[ResponseTracker] = StateKey("llm_tracker")
USAGE_FILTER_KEY: StateKey[UsageChunkFilter] = StateKey("llm_usage_filter")
# Whether the gateway asks the stream of a request (body, protocol) for a usage it then hides.
UsageRule = Callable[[dict[str, Any], Protocol], bool]
_STREAMED: dict[str, Protocol] = {"chat": "chat", "completions": "completions"}
# The AI proxy plugin that sends this request to an LLM (``claim``).
CLAIM_KEY: StateKey[object] = StateKey("llm_plugin")
# The call of a plain route's LLM request, made before it is sent (``expect_passive_call``).
PASSIVE_CALL_KEY: StateKey[LlmCall] = StateKey("llm_passive_call")


class ResponseTracker:
    __slots__ = ("_copied", "_copy", "_scanner", "call")

    def __init__(
        self, call: LlmCall, status: int, headers: CIMultiDict[str], content_type: str | None = None
    ) -> None:
        """``content_type``: the response's Content-Type, lowercased, if the caller has it."""
        self.call = call
        call.answered = status < 300
        if content_type is None:
            content_type = headers.get("Content-Type", "").lower()
        readable = status < 300 and "Content-Encoding" not in headers
        self._scanner = SseScanner() if readable and "text/event-stream" in content_type else None
        self._copy: list[bytes] | None = (
            [] if readable and self._scanner is None and "json" in content_type else None
        )
        self._copied = 0

    def feed(self, chunk: bytes, eof: bool) -> None:
        """Observe ``chunk`` (never modified); ``eof`` marks the end of the response."""
        call = self.call
        if chunk and call.first_token is None:
            call.first_token = time.perf_counter()
        if self._scanner is not None:
            events = self._scanner.feed(chunk) if chunk else []
            if eof:
                events += self._scanner.close()
            for data in events:
                self._event(data)
        elif self._copy is not None and chunk:
            self._copied += len(chunk)
            if self._copied > MAX_JSON_COPY:
                self._copy = None
            else:
                self._copy.append(chunk)
        if eof:
            if self._copy:
                self._payload(b"".join(self._copy))
                self._copy = None
            call.finished = time.perf_counter()

    def feed_whole(self, body: bytes) -> None:
        """``feed(body, True)`` for a response that came whole: no copy of a JSON body."""
        if self._scanner is not None or not body or len(body) > MAX_JSON_COPY:
            self.feed(body, True)
            return
        call = self.call
        now = time.perf_counter()
        if call.first_token is None:
            call.first_token = now
        if self._copy is not None:
            self._copy = None
            self._payload(body)
            now = time.perf_counter()
        call.finished = now

    def _event(self, data: bytes) -> None:
        if data == b"[DONE]" or not data.startswith(b"{"):
            return
        self._payload(data)

    def _payload(self, data: bytes) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        call = self.call
        usage = usage_of(payload)
        if usage is not None:
            call.usage = usage
        elif call.usage is None:  # what a budget charges without usage: not needed once it came
            call.relayed_chars += text_size(payload)
        if isinstance(payload, dict):  # the model that answered (read here: every answer)
            model = payload.get("model")
            if isinstance(model, str):
                call.model = model


def text_size(payload: object) -> int:
    """Characters of generated text in a response or stream chunk: each choice's ``text``, or
    its ``delta`` / ``message`` (content, refusal, reasoning, tool calls' names and arguments);
    what a budget charges when no usage arrives."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list):
        return 0
    size = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        block = choice.get("delta", choice.get("message"))
        if isinstance(block, dict):
            size += _message_size(block)
        elif isinstance(text := choice.get("text"), str):
            size += len(text)
    return size


_TEXT_FIELDS = ("content", "refusal", "reasoning_content")


def _message_size(message: dict[str, Any]) -> int:
    size = sum(len(v) for name in _TEXT_FIELDS if isinstance(v := message.get(name), str))
    calls = message.get("tool_calls")
    functions = (
        [c.get("function") for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    )
    functions.append(message.get("function_call"))
    for function in functions:
        if isinstance(function, dict):
            size += sum(
                len(v) for name in ("name", "arguments") if isinstance(v := function.get(name), str)
            )
    return size


def settle_usage(ctx: RequestContext) -> LlmCall | None:
    """The request's LLM call, its ``usage`` now set when the provider answered (2xx), or was
    left working on it by a client that went away (``left_waiting``), and no usage came: then
    the estimate (``estimate.relayed_estimate``) of the prompt as sent and the text relayed,
    marked ``estimated``.  Idempotent; a cache hit or a call the provider refused or never
    got keeps no usage."""
    call = ctx.state.get(CALL_KEY)  # (LlmCall.find, without the call)
    if call is None or call.usage is not None or call.cache == CACHE_HIT:
        return call
    if not (call.answered or call.left_waiting):
        return call
    body = ctx.outbound.body if ctx.outbound.body is not None else ctx.body.buffered
    guess = relayed_estimate(request_estimate(body, 0, call.protocol), call.relayed_chars)
    call.usage = Usage(guess.prompt, guess.completion, guess.total)
    call.estimated = True
    return call


def left_waiting(ctx: RequestContext) -> None:
    """The client left while the gateway waited for the provider's answer to the request's
    LLM call (the call is cancelled with the request): it is charged the prompt it sent."""
    call = LlmCall.find(ctx)
    if call is not None and not call.answered and not call.cache_hit:
        call.left_waiting = True


def claim(ctx: RequestContext, plugin: object) -> bool:
    """Make ``plugin`` the one that sends this request to an LLM and watches the answer (False
    when another AI proxy plugin of the route already did)."""
    if CLAIM_KEY in ctx.state:
        return False
    ctx.state[CLAIM_KEY] = plugin
    return True


def hide_usage(ctx: RequestContext, hidden: bool) -> None:
    """Whether the usage of the stream about to be asked for is hidden from the client (the
    gateway asked for it, the client did not)."""
    if hidden:
        ctx.state[USAGE_FILTER_KEY] = UsageChunkFilter()
    else:
        ctx.state.pop(USAGE_FILTER_KEY, None)


def track_head(
    ctx: RequestContext, plugin: object, head: ResponseHead, hides_usage: UsageRule
) -> None:
    """Start watching the upstream's answer to the LLM call ``plugin`` made; for a stream
    proxy-cache replays in its place, hide the usage as ``plugin`` would have
    (``hides_usage(body, protocol)``)."""
    claimed = ctx.state.get(CLAIM_KEY)
    if claimed is None:
        _replayed(ctx, plugin, head, hides_usage)
    elif claimed is plugin:
        call = LlmCall.find(ctx)
        if head.from_upstream and call is not None:
            ctx.state[STATE_KEY] = ResponseTracker(call, head.status, head.headers)
        if not (head.from_upstream and readable_stream(head)):
            ctx.state.pop(USAGE_FILTER_KEY, None)


def track_chunk(ctx: RequestContext, plugin: object, chunk: bytes, eof: bool) -> bytes:
    """The body filter: ``chunk`` observed, and returned as it is unless its usage is hidden."""
    if ctx.state.get(CLAIM_KEY) is not plugin:
        return chunk
    tracker: ResponseTracker | None = ctx.state.get(STATE_KEY)
    if tracker is not None:
        tracker.feed(chunk, eof)
    usage_filter: UsageChunkFilter | None = ctx.state.get(USAGE_FILTER_KEY)
    return chunk if usage_filter is None else usage_filter.feed(chunk, eof)


def readable_stream(head: ResponseHead) -> bool:
    """Whether a response is a successful SSE stream whose events can be read as they pass (a
    compressed one cannot: its bytes go on as they come)."""
    headers = head.headers
    return (
        head.status < 300
        and "text/event-stream" in headers.get("Content-Type", "").lower()
        and "Content-Encoding" not in headers
    )


def _replayed(ctx: RequestContext, plugin: object, head: ResponseHead, hides: UsageRule) -> None:
    replayed = replayed_stream(ctx, head)
    if replayed is not None and hides(*replayed) and claim(ctx, plugin):
        hide_usage(ctx, True)


def replayed_stream(
    ctx: RequestContext, head: ResponseHead
) -> tuple[dict[str, Any], Protocol] | None:
    """The request body and protocol of a chat / completions stream proxy-cache replays (as it
    was stored: with the usage the gateway asked for); None for any other response."""
    call = LlmCall.find(ctx)
    if call is None or not call.cache_hit or not readable_stream(head):
        return None
    protocol = _STREAMED.get(call.protocol or "")
    raw = ctx.outbound.body if ctx.outbound.body is not None else ctx.body.buffered
    if protocol is None or not raw:
        return None
    try:
        body = json_body.parse(raw).value
    except json_body.NotJson:
        return None
    return (body, protocol) if isinstance(body, dict) else None


# Paths of OpenAI-style endpoints whose answers carry token usage.
_PASSIVE = (
    ("/chat/completions", "chat"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
)


def passive_tracker(
    ctx: RequestContext, status: int, headers: CIMultiDict[str]
) -> ResponseTracker | None:
    """A tracker for an LLM answer proxied without an AI plugin (a plain route to an OpenAI-style
    API, as in the seed blog), so its token usage is accounted too; None for other requests."""
    if ctx.outbound.method != "POST":
        return None
    state = ctx.state
    expected = state.get(PASSIVE_CALL_KEY)
    if state.get(CALL_KEY) is not expected:  # (LlmCall.find, without the call)
        return None  # an AI plugin's call, or an answer from the cache
    call = expected or expect_passive_call(ctx)
    if call is None:
        return None
    content_type = headers.get("Content-Type", "")
    call.stream = "text/event-stream" in content_type
    call.started = ctx.started
    return ResponseTracker(call, status, headers, content_type.lower())


def expect_passive_call(ctx: RequestContext) -> LlmCall | None:
    """The ``LlmCall`` of a POST a plain route sends to an OpenAI-style endpoint, made before
    it is sent (ai-rate-limiting's access phase) so that token budgets can reserve for it;
    ``passive_tracker`` fills it from the answer.  None for other requests."""
    outbound = ctx.outbound
    state = ctx.state
    if outbound.method != "POST" or CLAIM_KEY in state or state.get(CALL_KEY) is not None:
        return None
    path, protocol = outbound.path, None
    for suffix, name in _PASSIVE:
        if path.endswith(suffix):
            protocol = name
            break
    if protocol is None:
        return None
    call = state[CALL_KEY] = LlmCall()  # there is none yet (above): LlmCall.of's work
    call.provider, call.protocol = PASSIVE_PROVIDER, protocol
    state[PASSIVE_CALL_KEY] = call
    return call
