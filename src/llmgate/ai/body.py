"""The JSON body of an LLM request, as the plugins that ran before left it.

Plugins that rewrite the prompt (ai-prompt-template, then ai-prompt-decorator) read the body
with ``request_body`` and store their result with ``set_json_body``; the next plugin, and the
upstream, see the rewritten body (APISIX: ``ngx.req.set_body_data``).

On an LLM route they leave a request of any method but POST alone (``left_to_llm_plugin``):
the route's AI plugin answers it without a body (OpenAI's 405, or ``GET …/models``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from llmgate.ai.replies import llm_plugin
from llmgate.errors import HttpError
from llmgate.http import json_body

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext


class BadPrompt(HttpError):
    """400 ``{"message": ...}``, the body APISIX's ai-prompt-* plugins answer with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__({"message": message})


def left_to_llm_plugin(ctx: RequestContext, chain: Any) -> bool:
    """Whether a prompt plugin leaves this request to the AI plugin of ``chain`` (the
    request's plugin chain, typed loosely as it sits in a layer above): a method but POST
    on an LLM route."""
    return ctx.inbound.method != "POST" and chain is not None and llm_plugin(chain) is not None


async def request_body(ctx: RequestContext, max_size: int) -> bytes:
    """The body as earlier plugins left it; 413 past ``max_size`` bytes."""
    return await ctx.current_body(max_size)


def decode(body: bytes) -> Any:
    """The decoded body, read as ``json.loads`` reads it (``llmgate.http.json_body``);
    ``BadPrompt`` when it is empty or not JSON (APISIX's messages)."""
    if not body:
        raise BadPrompt("could not get body: request body is empty")
    try:
        return json_body.parse(body).value
    except json_body.NotJson as exc:
        raise BadPrompt(f"could not parse JSON request body: {exc}") from None


def set_json_body(ctx: RequestContext, value: Any) -> None:
    """Send ``value`` upstream as the JSON body."""
    ctx.outbound.body = orjson.dumps(value)
    if "Content-Type" not in ctx.outbound.headers:
        ctx.outbound.headers["Content-Type"] = "application/json"
