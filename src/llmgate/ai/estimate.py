"""Token estimates for budgets: what a call may consume before it is sent, and what a stream
that ended early consumed.

Before the call (``request_estimate``): the prompt at one token per ``BYTES_PER_TOKEN`` bytes
of the request body as it goes to the provider (JSON syntax included, so rather more than
less), and the completion at the request's own cap (``max_completion_tokens``, ``max_tokens``
or ``max_output_tokens``), else the configured default; embeddings have no completion.

After a stream that brought no usage (client abort, upstream drop, a cap cut it): the prompt
estimate (the provider read the prompt) plus the generated text relayed so far, at the same
rate, and never less than one token.

Pure: bytes and numbers in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

BYTES_PER_TOKEN = 4
_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def tokens_of(size: int) -> int:
    """Tokens in ``size`` bytes (or characters) of text, rounded up."""
    return math.ceil(size / BYTES_PER_TOKEN) if size > 0 else 0


def request_estimate(body: bytes | None, default_completion: int, protocol: str | None) -> Estimate:
    """What a call of this request body may consume at most, as far as the gateway can tell."""
    prompt = tokens_of(len(body)) if body else 0
    if protocol == "embeddings":
        return Estimate(prompt, 0)
    completion = default_completion
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        for name in _CAPS:
            value = payload.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                # n choices each up to the cap
                choices = payload.get("n")
                many = choices if isinstance(choices, int) and 1 < choices <= 128 else 1
                completion = value * many
                break
    return Estimate(prompt, completion)


def relayed_estimate(reserved: Estimate, relayed_chars: int) -> Estimate:
    """What a call whose answer stopped early consumed: its prompt, and what was relayed."""
    return Estimate(max(reserved.prompt, 1), tokens_of(relayed_chars))
