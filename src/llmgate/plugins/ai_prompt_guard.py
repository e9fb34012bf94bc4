"""ai-prompt-guard: rejects prompts that match a deny regex or miss every allow regex.

Access phase (as APISIX), so it sees the body ai-prompt-template and ai-prompt-decorator wrote
in rewrite, and runs before ai-proxy (1040).  The checked text is the conversation's last turn,
the user's last message (and, with ``match_all_roles``, every message after it), or every
message with ``match_all_conversation_history`` (of the user's role only unless
``match_all_roles``), joined by spaces.  With ``allow_patterns``, one must
match, else 400 ``{"message": "Request doesn't match allow patterns"}``; any ``deny_patterns``
match gives 400 ``{"message": "Request contains prohibited content"}``.  Nothing to check (no
user message) lets the request through.

A body that is not an LLM request is decided by ``fail_mode``: ``skip`` (default) and
``warn`` let it through, ``error`` rejects it with 400.  An empty body is always 400
``{"message": "Empty request body"}``.

Where llmgate differs from APISIX, so the guard cannot be walked around:

- completions' ``prompt`` and embeddings' list ``input`` are checked too;
- the body is read as leniently as Python's ``json.loads`` reads it (BOM, UTF-16/32, NaN;
  ``llmgate.http.json_body``), and a body that needed it is forwarded as the strict JSON that
  was checked; a body that cannot be read at all is refused unless ``fail_mode`` is set to
  ``skip`` or ``warn`` explicitly;
- patterns run on a bounded engine (``llmgate.http.regex``); a check that reaches the bound
  refuses the request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from llmgate.ai.body import BadPrompt, left_to_llm_plugin, request_body
from llmgate.ai.prompts import guarded_text, prompt_texts
from llmgate.http import json_body, regex
from llmgate.plugin_api.config import PluginConfig, regex_error
from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins")

NOT_ALLOWED = "Request doesn't match allow patterns"
DENIED = "Request contains prohibited content"
NOT_RECOGNIZED = "Request format not recognized by ai-prompt-guard"
OPTIONS = "jou"  # APISIX's


class AIPromptGuardConfig(PluginConfig):
    max_req_body_size: Annotated[int, Field(ge=1)] = 67108864
    # False: only user messages are checked.
    match_all_roles: bool = False
    # False: only the last message (of the checked roles) is checked.
    match_all_conversation_history: bool = False
    allow_patterns: list[str] = []
    deny_patterns: list[str] = []
    # What to do with a body that is not an LLM request: pass it, pass it and log, or reject
    # it.  Unset: "skip", except for a body that cannot be read as JSON at all, refused.
    fail_mode: Literal["skip", "warn", "error"] | None = None

    @model_validator(mode="after")
    def _patterns_compile(self) -> AIPromptGuardConfig:
        for kind, patterns in (("allow", self.allow_patterns), ("deny", self.deny_patterns)):
            for pattern in patterns:
                err = regex_error(pattern, OPTIONS)
                if err is not None:
                    raise ValueError(f"invalid {kind}_pattern: {pattern}: {err}")
        return self


class AIPromptGuard(Plugin[AIPromptGuardConfig]):
    name = "ai-prompt-guard"
    priority = 1072
    Config = AIPromptGuardConfig

    def __init__(self, config: AIPromptGuardConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.allow = tuple(self._compile(p) for p in config.allow_patterns)
        self.deny = tuple(self._compile(p) for p in config.deny_patterns)
        self.all_roles = config.match_all_roles
        self.all_history = config.match_all_conversation_history
        self.fail_mode = config.fail_mode or "skip"
        self.unreadable_mode = config.fail_mode or "error"
        self.max_size = config.max_req_body_size

    def _compile(self, pattern: str) -> regex.Regex | None:
        try:
            return regex.compile(pattern, OPTIONS, captures=False)
        except regex.RegexError as exc:
            # Refused at write time; only a value stored before that check can get here.
            log.warning(
                "%s: pattern %r refused (%s); every prompt is refused", self.owner, pattern, exc
            )
            return None

    async def access(self, ctx: RequestContext) -> Reply | None:
        if left_to_llm_plugin(ctx, ctx.state.get(CHAIN)):
            return None  # the AI plugin answers it: OpenAI's 405, or the model list
        raw = await request_body(ctx, self.max_size)
        if not raw:
            raise BadPrompt("Empty request body")
        try:
            parsed = json_body.parse(raw)
        except json_body.NotJson as exc:
            self._unsupported(
                self.unreadable_mode, f"request body is not valid JSON: {exc}", str(exc)
            )
            return None
        if parsed.body is not raw:
            # Read leniently: what goes upstream is the strict JSON that was checked.
            ctx.outbound.body = parsed.body
            ctx.outbound.headers["Content-Type"] = "application/json"
        texts = prompt_texts(parsed.value)
        if texts is None:
            reason = "request body does not match any supported AI protocol"
            self._unsupported(self.fail_mode, reason, NOT_RECOGNIZED)
            return None
        text = guarded_text(texts, all_roles=self.all_roles, all_history=self.all_history)
        if text is None:
            return None
        if self.allow and not any(self._matches(pattern, text, True) for pattern in self.allow):
            raise BadPrompt(NOT_ALLOWED)
        if any(self._matches(pattern, text, False) for pattern in self.deny):
            raise BadPrompt(DENIED)
        return None

    def _matches(self, pattern: regex.Regex | None, text: str, allow: bool) -> bool:
        """Whether ``pattern`` matches; a pattern that cannot be run, or reaches its bound,
        counts as the answer that refuses the request."""
        if pattern is None:
            return not allow
        try:
            return pattern.test(text)
        except regex.RegexLimit:
            log.warning(
                "%s: pattern %r reached its bound; request refused", self.owner, pattern.pattern
            )
            return not allow

    def _unsupported(self, mode: str, reason: str, message: str) -> None:
        """``fail_mode``: reject, or let the request through unchecked (logging it)."""
        if mode == "error":
            raise BadPrompt(message)
        level = logging.WARNING if mode == "warn" else logging.DEBUG
        log.log(level, "%s skipped: %s", self.name, reason)
