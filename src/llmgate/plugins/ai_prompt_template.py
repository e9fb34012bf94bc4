"""ai-prompt-template: builds the request body from a named template filled with ``{{var}}``s."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from llmgate.plugins.ai_prompt_decorator import Message
from llmgate.plugins.base import ConfigSection, Plugin, PluginConfig


class Template(ConfigSection):
    """The request body a template produces: ``{{var}}``s in it come from the client's body."""

    model: Annotated[str, Field(min_length=1)] | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None


class NamedTemplate(ConfigSection):
    name: Annotated[str, Field(min_length=1)]
    template: Template


class AIPromptTemplateConfig(PluginConfig):
    max_req_body_size: Annotated[int, Field(ge=1)] = 67108864
    templates: Annotated[list[NamedTemplate], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> AIPromptTemplateConfig:
        # APISIX silently uses the first of two same-named templates; refuse the ambiguity.
        names = [item.name for item in self.templates]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"duplicate template name '{name}'")
        return self


class AIPromptTemplate(Plugin):
    name = "ai-prompt-template"
    priority = 1071
    Config = AIPromptTemplateConfig
