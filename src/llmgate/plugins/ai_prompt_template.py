"""ai-prompt-template: builds the request body from a named template filled with ``{{var}}``s.

Rewrite phase (as APISIX), before ai-prompt-decorator (1070): the request body
``{"template_name": "...", <fields>}`` selects a template, and the template (``model``,
``messages`` and any other field it sets) becomes the body sent on, each ``{{field}}`` in its
strings replaced by the request's field of that name (``{{a.b}}`` for a nested one): strings as
they are, numbers, booleans, arrays and objects as their JSON text, a missing field as nothing.
Only the template's fields are sent: the client fills in the blanks, it cannot add or replace
fields (as APISIX).

Errors are APISIX's 400 ``{"message": ...}``: an empty or non-JSON body, ``template name is
missing in request.``, ``template: <name> not configured.``.

Where llmgate differs from APISIX: with exactly one template configured, a request without
``template_name`` uses it (so seed 000's ``{"prompt": ...}`` body works); values are inserted
into the decoded template, never HTML-escaped and never breaking its JSON; fields the template
model does not know (``temperature``, ``max_tokens``...) are kept, as APISIX keeps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import ConfigDict, Field, model_validator

from llmgate.ai.body import BadPrompt, decode, left_to_llm_plugin, request_body, set_json_body
from llmgate.ai.prompts import PromptTemplate
from llmgate.plugin_api.config import ConfigSection, PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.ai_prompt_decorator import Message
from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services


class Template(ConfigSection):
    """The request body a template produces: ``{{var}}``s in it come from the client's body."""

    # Any other body field (temperature, max_tokens, stream...) is part of the template too.
    model_config = ConfigDict(extra="allow")

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


class AIPromptTemplate(Plugin[AIPromptTemplateConfig]):
    name = "ai-prompt-template"
    priority = 1071
    Config = AIPromptTemplateConfig

    def __init__(self, config: AIPromptTemplateConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.templates = {
            item.name: PromptTemplate.compile(item.template.model_dump(exclude_unset=True))
            for item in config.templates
        }
        # The llmgate extension: a lone template needs no template_name.
        self.only = next(iter(self.templates.values())) if len(self.templates) == 1 else None
        self.max_size = config.max_req_body_size

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        if left_to_llm_plugin(ctx, ctx.state.get(CHAIN)):
            return None  # the AI plugin answers it: OpenAI's 405, or the model list
        body = decode(await request_body(ctx, self.max_size))
        if not isinstance(body, dict):
            raise BadPrompt("could not parse JSON request body: expected a JSON object")
        name = body.get("template_name")
        if name is None:
            if self.only is None:
                raise BadPrompt("template name is missing in request.")
            template = self.only
        else:
            found = self.templates.get(name) if isinstance(name, str) else None
            if found is None:
                shown = name if isinstance(name, str) else str(name)
                raise BadPrompt(f"template: {shown} not configured.")
            template = found
        set_json_body(ctx, template.render(body))
        return None
