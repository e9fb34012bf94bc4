"""Token usage of an LLM response: from a JSON body or from the events of a stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Prompt tokens the provider served from its own prompt cache (OpenAI's
    # ``prompt_tokens_details.cached_tokens``): part of ``prompt_tokens``, priced apart.
    cached_tokens: int = 0

    def get(self, strategy: str) -> int:
        """``total_tokens`` / ``prompt_tokens`` / ``completion_tokens``."""
        return int(getattr(self, strategy))


def _count(block: Any, name: str) -> int:
    value = block.get(name) if isinstance(block, dict) else None
    return value if type(value) is int and value > 0 else 0  # not a bool, not a float


def usage_of(payload: Any) -> Usage | None:
    """The ``usage`` block of a decoded OpenAI response or stream chunk, if it has one."""
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    # _count inlined (every LLM answer comes here): a positive int, not a bool, not a float.
    get = usage.get
    prompt = get("prompt_tokens")
    if type(prompt) is not int or prompt < 0:
        prompt = 0
    completion = get("completion_tokens")
    if type(completion) is not int or completion < 0:
        completion = 0
    total = get("total_tokens")
    if type(total) is not int or total <= 0:
        total = prompt + completion
    details = get("prompt_tokens_details")
    cached = 0 if details is None else min(_count(details, "cached_tokens"), prompt)
    return Usage(prompt, completion, total, cached)


def usage_of_body(body: bytes) -> Usage | None:
    """Usage from a complete JSON response body (None when it is not JSON or has none)."""
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None
