"""ai-prompt-decorator: adds fixed messages before and after the client's chat messages.

Rewrite phase (as APISIX), after ai-prompt-template (1071) and before ai-prompt-guard's and
ai-proxy's access phases: ``prepend`` goes before the request's ``messages``, ``append`` after
them.  A body that is JSON but has no ``messages`` list (an embeddings or completions request)
is sent unchanged; an empty or non-JSON body gets APISIX's 400 ``{"message": ...}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from llmgate.ai.body import decode, left_to_llm_plugin, request_body, set_json_body
from llmgate.ai.prompts import decorate
from llmgate.plugin_api.config import ConfigSection, PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services


class Message(ConfigSection):
    """One chat message; shared with ai-prompt-template."""

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(min_length=1)]


class AIPromptDecoratorConfig(PluginConfig):
    max_req_body_size: Annotated[int, Field(ge=1)] = 67108864
    prepend: list[Message] | None = None
    append: list[Message] | None = None

    @model_validator(mode="after")
    def _needs_messages(self) -> AIPromptDecoratorConfig:
        if self.prepend is None and self.append is None:
            raise ValueError("one of prepend or append is required")
        return self


class AIPromptDecorator(Plugin[AIPromptDecoratorConfig]):
    name = "ai-prompt-decorator"
    priority = 1070
    Config = AIPromptDecoratorConfig

    def __init__(
        self, config: AIPromptDecoratorConfig, services: Services, owner: str = ""
    ) -> None:
        super().__init__(config, services, owner)
        self.prepend = tuple(message.model_dump() for message in config.prepend or ())
        self.append = tuple(message.model_dump() for message in config.append or ())
        self.max_size = config.max_req_body_size

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        if left_to_llm_plugin(ctx, ctx.state.get(CHAIN)):
            return None  # the AI plugin answers it: OpenAI's 405, or the model list
        body = decode(await request_body(ctx, self.max_size))
        if isinstance(body, dict):
            decorated = decorate(body, self.prepend, self.append)
            if decorated is not None:
                set_json_body(ctx, decorated)
        return None
