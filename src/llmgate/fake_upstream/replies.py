"""Deterministic OpenAI-shaped replies: pure functions, no I/O, no clock.

The same request body always yields the same reply text, token counts and embedding; two different
prompts yield different replies. Token counts stand in for a real tokenizer: every run of word
characters and every other non-space character is one token. Streamed replies are split into
word-sized pieces whose concatenation is exactly the non-streamed text.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\S+\s*|\s+")
DEFAULT_EMBEDDING_DIMS = 8
MAX_EMBEDDING_DIMS = 4096


class InvalidRequest(ValueError):
    """The inbound body cannot be answered; the message is meant for the client, ``param``
    names the field at fault when OpenAI names it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Answer:
    """What the fake says to one completion request: one text per choice, and the token counts."""

    texts: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def count_tokens(text: str) -> int:
    """Number of words and punctuation marks in `text`."""
    return len(_TOKEN_RE.findall(text))


def split_pieces(text: str) -> list[str]:
    """Word-ish pieces (a word and its trailing spaces) that concatenate back to `text`."""
    return _PIECE_RE.findall(text)


def reply_text(prompt: str) -> str:
    """The fixed phrase plus a short fingerprint of `prompt`."""
    fingerprint = hashlib.blake2b(prompt.encode(), digest_size=4).hexdigest()
    return f"This is a fake reply from llmgate. Prompt fingerprint {fingerprint}."


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def check_stream_options(body: dict[str, Any]) -> None:
    """OpenAI refuses ``stream_options`` on a request that does not stream."""
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )


# Azure OpenAI's api-versions take ``stream_options`` from this date (2024-09-01-preview) on.
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"


def check_azure_api_version(path: str, api_version: str | None, body: dict[str, Any]) -> None:
    """Azure OpenAI (a ``/openai/deployments/`` path) refuses ``stream_options`` under an
    api-version dated before 2024-09-01-preview, as it refuses any field it does not know."""
    if "/openai/deployments/" not in path or "stream_options" not in body or not api_version:
        return
    date = api_version[:10]
    if len(date) == 10 and date[:4].isdigit() and date < AZURE_STREAM_OPTIONS_SINCE:
        raise InvalidRequest("Unrecognized request argument supplied: stream_options")


def request_model(body: dict[str, Any], default: str) -> str:
    model = body.get("model", default)
    if not isinstance(model, str):
        raise InvalidRequest("'model' must be a string.")
    return model


def include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


# --- chat completions -------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Text of a message's `content`: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def answer_chat(body: dict[str, Any]) -> Answer:
    """Answer a chat body: the reply fingerprints the last user message (or the last message)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("Missing required parameter: 'messages' (a non-empty list).")
    if not all(isinstance(message, dict) for message in messages):
        raise InvalidRequest("Each entry of 'messages' must be an object.")
    texts = [_content_text(message.get("content")) for message in messages]
    last_user = next(
        (
            text
            for message, text in zip(reversed(messages), reversed(texts), strict=True)
            if message.get("role") == "user"
        ),
        texts[-1],
    )
    reply = reply_text(last_user)
    return Answer(
        texts=(reply,),
        prompt_tokens=sum(count_tokens(text) for text in texts),
        completion_tokens=count_tokens(reply),
    )


def chat_response(answer: Answer, *, model: str, response_id: str, created: int) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for index, text in enumerate(answer.texts)
        ],
        "usage": answer.usage,
    }


def chat_chunks(
    answer: Answer, *, model: str, response_id: str, created: int, with_usage: bool
) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a streamed chat reply, in order (no `[DONE]`)."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if with_usage:
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks.extend(chunk({"content": piece}) for piece in split_pieces(answer.texts[0]))
    chunks.append(chunk({}, "stop"))
    if with_usage:
        chunks.append(_usage_chunk(answer, "chat.completion.chunk", model, response_id, created))
    return chunks


def _usage_chunk(
    answer: Answer, obj: str, model: str, response_id: str, created: int
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": answer.usage,
    }


# --- legacy completions -----------------------------------------------------------------------


def answer_completion(body: dict[str, Any]) -> Answer:
    """Answer a legacy completions body: one choice per prompt string."""
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if (
        not isinstance(prompts, list)
        or not prompts
        or not all(isinstance(item, str) for item in prompts)
    ):
        raise InvalidRequest("Missing required parameter: 'prompt' (a string or list of strings).")
    replies = tuple(reply_text(item) for item in prompts)
    return Answer(
        texts=replies,
        prompt_tokens=sum(count_tokens(item) for item in prompts),
        completion_tokens=sum(count_tokens(reply) for reply in replies),
    )


def completion_response(
    answer: Answer, *, model: str, response_id: str, created: int
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"text": text, "index": index, "logprobs": None, "finish_reason": "stop"}
            for index, text in enumerate(answer.texts)
        ],
        "usage": answer.usage,
    }


def completion_chunks(
    answer: Answer, *, model: str, response_id: str, created: int, with_usage: bool
) -> list[dict[str, Any]]:
    """The `text_completion` chunks of a streamed legacy reply, choice after choice."""

    def chunk(index: int, text: str, finish_reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": response_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if with_usage:
            out["usage"] = None
        return out

    chunks: list[dict[str, Any]] = []
    for index, text in enumerate(answer.texts):
        chunks.extend(chunk(index, piece) for piece in split_pieces(text))
        chunks.append(chunk(index, "", "stop"))
    if with_usage:
        chunks.append(_usage_chunk(answer, "text_completion", model, response_id, created))
    return chunks


# --- embeddings -------------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(text to hash, token count) per input: strings, one token array, or token arrays."""
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [(item, count_tokens(item)) for item in value]
        if all(isinstance(item, int) for item in value):
            return [(" ".join(map(str, value)), len(value))]
        if all(isinstance(item, list) and all(isinstance(t, int) for t in item) for item in value):
            return [(" ".join(map(str, item)), len(item)) for item in value]
    raise InvalidRequest(
        "Missing required parameter: 'input' (a string, a list of strings or token arrays)."
    )


def embedding_vector(text: str, dims: int = DEFAULT_EMBEDDING_DIMS) -> list[float]:
    """A unit-length vector derived from a hash of `text`."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dims)
    values = [word / 32767.5 - 1.0 for word in struct.unpack(f"<{dims}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embeddings_response(body: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The full embeddings response (`encoding_format` float or base64, optional `dimensions`)."""
    inputs = _embedding_inputs(body.get("input"))
    model = request_model(body, default_model)
    dims = body.get("dimensions", DEFAULT_EMBEDDING_DIMS)
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= MAX_EMBEDDING_DIMS:
        raise InvalidRequest(f"'dimensions' must be an integer from 1 to {MAX_EMBEDDING_DIMS}.")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.")
    data = []
    for index, (text, _) in enumerate(inputs):
        vector: list[float] | str = embedding_vector(text, dims)
        if encoding == "base64":
            vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(count for _, count in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models_response(model: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(model, created)]}


def model_object(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "llmgate"}
