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
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    total = _count(usage, "total_tokens") or prompt + completion
    cached = min(_count(usage.get("prompt_tokens_details"), "cached_tokens"), prompt)
    return Usage(prompt, completion, total, cached)


def usage_of_body(body: bytes) -> Usage | None:
    """Usage from a complete JSON response body (None when it is not JSON or has none)."""
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def model_of(payload: Any) -> str | None:
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) else None
