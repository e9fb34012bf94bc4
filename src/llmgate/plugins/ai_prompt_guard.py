"""ai-prompt-guard: rejects prompts that match a deny regex or miss every allow regex.

Access phase (as APISIX), so it sees the body ai-prompt-template and ai-prompt-decorator wrote
in rewrite, and runs before ai-proxy (1040).  The checked text is the last message of the
conversation (every message with ``match_all_conversation_history``), of the user's role only
(every role with ``match_all_roles``), joined by spaces.  With ``allow_patterns``, one must
match, else 400 ``{"message": "Request doesn't match allow patterns"}``; any ``deny_patterns``
match gives 400 ``{"message": "Request contains prohibited content"}``.  Nothing to check (no
user message) lets the request through.

A body that is not JSON or not an LLM request is decided by ``fail_mode``: ``skip`` (default)
and ``warn`` let it through, ``error`` rejects it with 400.  An empty body is always 400
``{"message": "Empty request body"}``.

Where llmgate differs from APISIX: completions' ``prompt`` and embeddings' list ``input`` are
checked too, so switching endpoints cannot get around the guard.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Literal

import orjson
from pydantic import Field, model_validator

from llmgate.ai.body import BadPrompt, request_body
from llmgate.ai.prompts import guarded_text, prompt_texts
from llmgate.plugins.base import Plugin, PluginConfig, regex_error
from llmgate.plugins.ngx_regex import compile_pattern

if TYPE_CHECKING:
    from llmgate.proxy.context import Reply, RequestContext
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins")

NOT_ALLOWED = "Request doesn't match allow patterns"
DENIED = "Request contains prohibited content"
NOT_RECOGNIZED = "Request format not recognized by ai-prompt-guard"


class AIPromptGuardConfig(PluginConfig):
    max_req_body_size: Annotated[int, Field(ge=1)] = 67108864
    # False: only user messages are checked.
    match_all_roles: bool = False
    # False: only the last message is checked.
    match_all_conversation_history: bool = False
    allow_patterns: list[str] = []
    deny_patterns: list[str] = []
    # What to do with a body that is not a chat request: pass it, pass it and log, or reject it.
    fail_mode: Literal["skip", "warn", "error"] = "skip"

    @model_validator(mode="after")
    def _patterns_compile(self) -> AIPromptGuardConfig:
        for kind, patterns in (("allow", self.allow_patterns), ("deny", self.deny_patterns)):
            for pattern in patterns:
                if regex_error(pattern) is not None:
                    raise ValueError(f"invalid {kind}_pattern: {pattern}")
        return self


class AIPromptGuard(Plugin):
    name = "ai-prompt-guard"
    priority = 1072
    Config = AIPromptGuardConfig

    def __init__(self, config: AIPromptGuardConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.allow = tuple(compile_pattern(p, "jou") for p in config.allow_patterns)
        self.deny = tuple(compile_pattern(p, "jou") for p in config.deny_patterns)
        self.all_roles = config.match_all_roles
        self.all_history = config.match_all_conversation_history
        self.fail_mode = config.fail_mode
        self.max_size = config.max_req_body_size

    async def access(self, ctx: RequestContext) -> Reply | None:
        raw = await request_body(ctx, self.max_size)
        if not raw:
            raise BadPrompt("Empty request body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._unsupported(f"request body is not valid JSON: {exc}", str(exc))
            return None
        texts = prompt_texts(body)
        if texts is None:
            reason = "request body does not match any supported AI protocol"
            self._unsupported(reason, NOT_RECOGNIZED)
            return None
        text = guarded_text(texts, all_roles=self.all_roles, all_history=self.all_history)
        if text is None:
            return None
        if self.allow and not any(pattern.search(text) for pattern in self.allow):
            raise BadPrompt(NOT_ALLOWED)
        if any(pattern.search(text) for pattern in self.deny):
            raise BadPrompt(DENIED)
        return None

    def _unsupported(self, reason: str, message: str) -> None:
        """``fail_mode``: reject, or let the request through unchecked (logging it)."""
        if self.fail_mode == "error":
            raise BadPrompt(message)
        level = logging.WARNING if self.fail_mode == "warn" else logging.DEBUG
        log.log(level, "%s skipped: %s", self.name, reason)
