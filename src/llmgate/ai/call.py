"""What one LLM call did, recorded on the request context for limits, metrics and logs.

``ai-proxy`` / ``ai-proxy-multi`` create it (``LlmCall.of(ctx)``) and fill it as the response
passes; ``ai-rate-limiting``, metrics and loggers read it in the log phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmgate.ai.usage import Usage

if TYPE_CHECKING:
    from llmgate.proxy.context import RequestContext

STATE_KEY = "llm"


@dataclass(slots=True)
class LlmCall:
    provider: str | None = None
    instance: str | None = None  # ai-proxy-multi's instance name
    model: str | None = None
    protocol: str | None = None  # "chat", "completions", "embeddings"
    stream: bool = False
    usage: Usage | None = None
    started: float | None = None  # perf_counter when the upstream was asked
    first_token: float | None = None  # perf_counter of the first response byte
    finished: float | None = None

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
