"""ai-prompt-guard: rejects prompts that match a deny regex or miss every allow regex."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from llmgate.plugins.base import Plugin, PluginConfig, regex_error


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
