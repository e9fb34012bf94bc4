"""What one LLM call did, recorded on the request context for limits, metrics and logs.

``ai-proxy`` / ``ai-proxy-multi`` create it (``LlmCall.of(ctx)``) and fill it as the response
passes; so do the passive tracker (an OpenAI answer relayed by a plain route) and the cache
(an answer proxy-cache replays: ``cache == "hit"``, no provider was asked).  ai-rate-limiting,
metrics, loggers and the usage records read it in the log phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmgate.ai.usage import Usage
from llmgate.http.context import StateKey

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext

STATE_KEY: StateKey[LlmCall] = StateKey("llm")

# ``provider`` of a call a plain route (no AI plugin sends it) makes to an OpenAI-style upstream.
PASSIVE_PROVIDER = "upstream"

# ``cache`` of a call answered from proxy-cache: its tokens were served, not consumed.
CACHE_HIT = "hit"


@dataclass(slots=True)
class LlmCall:
    provider: str | None = None
    instance: str | None = None  # ai-proxy-multi's instance name
    model: str | None = None  # the model that answered (the response's), else the one asked
    request_model: str | None = None  # the model the gateway asked for
    # The model the client's body named (after ai-prompt-template), APISIX's
    # ``$request_llm_model``: "" when it named none; None for a call no AI plugin sent.
    client_model: str | None = None
    protocol: str | None = None  # "chat", "completions", "embeddings"
    stream: bool = False
    usage: Usage | None = None
    cache: str | None = None  # CACHE_HIT: replayed by proxy-cache, no provider asked
    # Why the gateway cut the response short ("max_stream_duration_ms", "max_response_bytes").
    aborted: str | None = None
    answered: bool = False  # the provider began a successful (2xx) answer
    # The client left while the gateway waited for the provider's answer (the call cancelled):
    # the provider was sent the prompt, so the call is charged its estimate as ``answered``.
    left_waiting: bool = False
    # Characters of generated text (choices' content) seen until ``usage`` came, if it did:
    # what a budget charges for a stream cut short before its usage.
    relayed_chars: int = 0
    # ``usage`` is the gateway's estimate (``tracking.settle_usage``): the provider answered
    # but no usage came (a stream left or cut before it, an api-version that never sends it).
    estimated: bool = False
    summaries: bool = False  # the target's ``logging.summaries``: loggers add ``llm_summary``
    started: float | None = None  # perf_counter when the upstream was asked
    first_token: float | None = None  # perf_counter of the first response byte
    finished: float | None = None

    @property
    def cache_hit(self) -> bool:
        return self.cache == CACHE_HIT

    @property
    def request_type(self) -> str:
        """APISIX's ``$request_type``: ``ai_stream``, ``ai_chat``, and llmgate's
        ``ai_embeddings`` (APISIX says ``ai_chat`` for every call that is not a stream)."""
        if self.protocol == "embeddings":
            return "ai_embeddings"
        return "ai_stream" if self.stream else "ai_chat"

    @property
    def asked_model(self) -> str | None:
        """APISIX's ``request_llm_model``: the client's model; for a call no AI plugin sent
        (a plain route's), the model that answered."""
        return self.client_model if self.client_model is not None else self.model

    @property
    def consumed(self) -> Usage | None:
        """The tokens a provider processed for this call: none for a cache hit."""
        return None if self.cache_hit else self.usage

    @classmethod
    def of(cls, ctx: RequestContext) -> LlmCall:
        """The call recorded on ``ctx``, created on first use."""
        call = ctx.state.get(STATE_KEY)
        if call is None:
            call = ctx.state[STATE_KEY] = cls()
        return call

    @classmethod
    def find(cls, ctx: RequestContext) -> LlmCall | None:
        return ctx.state.get(STATE_KEY)
