"""OpenAI-style request protocols: reading the client's body, telling them apart, shaping them.

Three protocols are known, by the body's telling field (then by the request path's suffix):

    chat          "messages"   .../chat/completions    APISIX's openai-chat
    completions   "prompt"     .../completions         (legacy text completions)
    embeddings    "input"      .../embeddings          APISIX's openai-embeddings

Everything here is pure: bytes and dicts in, bytes and dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from llmgate.ai.stream_usage import with_usage
from llmgate.errors import HttpError
from llmgate.http import json_body

Protocol = Literal["chat", "completions", "embeddings"]

# Names in errors and in ``override.request_body`` keys, as APISIX spells them.
APISIX_NAMES: dict[Protocol, str] = {
    "chat": "openai-chat",
    "completions": "openai-completions",
    "embeddings": "openai-embeddings",
}

# The longest suffix first: "/chat/completions" also ends with "/completions".
PATH_SUFFIXES: tuple[tuple[Protocol, str], ...] = (
    ("chat", "/chat/completions"),
    ("completions", "/completions"),
    ("embeddings", "/embeddings"),
)

# OpenAI endpoints llmgate has no protocol for whose bodies look like one of the three (a
# Responses API call and a moderation have ``input``, an image generation has ``prompt``): a
# request to one of them may go only to a target whose endpoint is that same API, never to an
# embeddings or completions endpoint (``LlmTarget.apply``).
OTHER_ENDPOINTS: tuple[str, ...] = (
    "/responses",
    "/moderations",
    "/images/generations",
    "/images/edits",
    "/images/variations",
    "/audio/speech",
    "/audio/transcriptions",
    "/audio/translations",
)

# Protocols whose streams report usage only when asked to (``stream_options.include_usage``).
_USAGE_ON_REQUEST = frozenset({"chat", "completions"})


class RequestError(HttpError):
    """The client's request cannot be proxied: answered as ``{"error_msg": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__({"error_msg": message}, status)
        self.message = message


def parse_body(raw: bytes, content_type: str | None) -> tuple[dict[str, Any], bytes]:
    """The client's JSON object and the bytes to send for it, or a ``RequestError`` (400)
    saying why not.

    The body is read as leniently as ``json.loads`` reads it (``llmgate.http.json_body``: BOM,
    UTF-16/32, NaN), and then sent as strict JSON.  APISIX accepts ``application/json`` only;
    llmgate also accepts a body sent with another Content-Type (``curl -d`` sends
    ``application/x-www-form-urlencoded``) when it parses as a JSON object, and refuses it with
    APISIX's message otherwise.
    """
    declared_json = content_type is None or "json" in content_type.lower()
    if declared_json and not raw.strip():
        raise RequestError(400, "could not get body: request body is empty")
    try:
        parsed = json_body.parse(raw)
    except json_body.NotJson as exc:
        if not declared_json:
            raise _unsupported(content_type) from None
        raise RequestError(400, f"could not parse JSON request body: {exc}") from None
    if not isinstance(parsed.value, dict):
        if not declared_json:
            raise _unsupported(content_type)
        raise RequestError(400, "could not parse JSON request body: expected a JSON object")
    return parsed.value, parsed.body


def _unsupported(content_type: str | None) -> RequestError:
    return RequestError(
        400, f"unsupported content-type: {content_type}, only application/json is supported"
    )


def protocol_of_path(path: str) -> Protocol | None:
    for protocol, suffix in PATH_SUFFIXES:
        if path.endswith(suffix):
            return protocol
    return None


def other_endpoint(body: Mapping[str, Any], path: str) -> str | None:
    """The suffix of the OpenAI endpoint without a protocol (``OTHER_ENDPOINTS``) a request
    without ``messages`` is sent to (``/responses``...), else None."""
    if isinstance(body.get("messages"), list):
        return None
    return next((suffix for suffix in OTHER_ENDPOINTS if path.endswith(suffix)), None)


def detect(body: Mapping[str, Any], path: str) -> Protocol | None:
    """The protocol of a request: by its body's fields, else by its path."""
    if isinstance(body.get("messages"), list):
        return "chat"
    if "prompt" in body:
        return "completions"
    if "input" in body:
        return "embeddings"
    return protocol_of_path(path)


def path_for(endpoint_path: str, protocol: Protocol) -> str:
    """An endpoint's path adapted to ``protocol``: a path ending in another protocol's suffix
    gets this protocol's (``/v1/chat/completions`` -> ``/v1/embeddings``); any other path is
    kept as configured."""
    current = protocol_of_path(endpoint_path)
    if current is None or current == protocol:
        return endpoint_path
    suffix = dict(PATH_SUFFIXES)
    return endpoint_path[: -len(suffix[current])] + suffix[protocol]


@dataclass(frozen=True, slots=True)
class Shaping:
    """What a target forces into every body it sends (compiled once per instance)."""

    options: Mapping[str, Any]  # ``options``: flat overwrite
    max_tokens: int | None = None  # ``override.llm_options.max_tokens``: always wins
    max_tokens_field: str = "max_tokens"  # its name for chat at this provider
    request_body: Mapping[Any, Mapping[str, Any]] | None = None  # per APISIX protocol name
    force_override: bool = False
    remove_model: bool = False  # azure-openai: the deployment in the URL names the model


def shape(body: dict[str, Any], protocol: Protocol, rules: Shaping) -> tuple[dict[str, Any], bool]:
    """The body to send (a new dict; ``body`` is not modified) and whether it differs; a
    stream's usage is then asked for apart (``ask_for_usage``)."""
    out = dict(body)
    changed = False
    for name, value in rules.options.items():
        out[name] = value
        changed = True
    if rules.max_tokens is not None and protocol != "embeddings":
        field = rules.max_tokens_field if protocol == "chat" else "max_tokens"
        for other in ("max_tokens", "max_completion_tokens"):
            if other != field:
                out.pop(other, None)
        out[field] = rules.max_tokens
        changed = True
    patch = rules.request_body.get(APISIX_NAMES[protocol]) if rules.request_body else None
    if patch:
        out = deep_merge(out, patch, rules.force_override)
        changed = True
    if rules.remove_model and "model" in out:
        del out["model"]
        changed = True
    return out, changed


def ask_for_usage(body: dict[str, Any], protocol: Protocol) -> dict[str, Any] | None:
    """``body`` asking its stream for usage (``stream_options.include_usage``), for a protocol
    whose streams report it only when asked; None when it is no such stream or already asks."""
    return with_usage(body) if protocol in _USAGE_ON_REQUEST else None


def deep_merge(target: Any, patch: Any, force: bool) -> Any:
    """``patch`` merged into ``target`` without modifying either: objects recursively, arrays
    and scalars replaced; an existing value is replaced only when ``force`` is true."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return patch
    merged = dict(target)
    for name, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = deep_merge(merged[name], value, force)
        elif force or merged.get(name) is None:
            merged[name] = value
    return merged


def is_stream(body: Mapping[str, Any], protocol: Protocol) -> bool:
    return protocol != "embeddings" and body.get("stream") is True
