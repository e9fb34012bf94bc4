"""ai-prompt-decorator: adds fixed messages before and after the client's chat messages."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from llmgate.plugins.base import ConfigSection, Plugin, PluginConfig


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


class AIPromptDecorator(Plugin):
    name = "ai-prompt-decorator"
    priority = 1070
    Config = AIPromptDecoratorConfig
