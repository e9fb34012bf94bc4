"""Prompt transforms of the ai-prompt-* plugins: pure functions on decoded request bodies.

- ``PromptTemplate``: a JSON value whose strings hold ``{{var}}`` placeholders, compiled once per
  snapshot and rendered with the fields of a request body (ai-prompt-template);
- ``decorate``: a chat body with fixed messages before and after its own (ai-prompt-decorator);
- ``prompt_texts`` / ``guarded_text``: the text ai-prompt-guard matches its patterns against.

Templates are rendered on the decoded value, never on JSON text: a filled-in value can hold
quotes, backslashes or newlines and the result is still the JSON the template describes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# ``{{name}}``, ``{{ name }}`` or ``{{ a.b }}`` (a field of an object field).
_PLACEHOLDER = re.compile(r"\{\{\s*([^\W\d]\w*(?:\.[^\W\d]\w*)*)\s*\}\}")

Path = tuple[str, ...]


def value_text(value: Any) -> str:
    """How a request field reads inside a prompt: strings as they are, a missing field or
    ``null`` as nothing, anything else as its JSON text (``42``, ``true``, ``["a","b"]``)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def lookup(variables: Mapping[str, Any], path: Path) -> Any:
    """The field at ``path`` in ``variables``, or None when any step is missing."""
    value: Any = variables
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


@dataclass(frozen=True, slots=True)
class _Text:
    """A string with placeholders: literal pieces and variable paths, in order."""

    parts: tuple[str | Path, ...]

    def render(self, variables: Mapping[str, Any]) -> str:
        return "".join(
            part if isinstance(part, str) else value_text(lookup(variables, part))
            for part in self.parts
        )


def _split(text: str) -> str | _Text:
    parts: list[str | Path] = []
    start = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > start:
            parts.append(text[start : match.start()])
        parts.append(tuple(match.group(1).split(".")))
        start = match.end()
    if not parts:
        return text
    if start < len(text):
        parts.append(text[start:])
    return _Text(tuple(parts))


def _compile(value: Any) -> Any:
    if isinstance(value, str):
        return _split(value) if "{{" in value else value
    if isinstance(value, Mapping):
        return {key: _compile(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_compile(item) for item in value]
    return value


def _render(node: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, _Text):
        return node.render(variables)
    if isinstance(node, dict):
        return {key: _render(item, variables) for key, item in node.items()}
    if isinstance(node, list):
        return [_render(item, variables) for item in node]
    return node


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A JSON value with ``{{var}}`` placeholders in its strings (object keys are literal)."""

    tree: Any

    @classmethod
    def compile(cls, value: Any) -> PromptTemplate:
        return cls(_compile(value))

    def render(self, variables: Mapping[str, Any]) -> Any:
        """A new value with every placeholder replaced by ``value_text`` of its field."""
        return _render(self.tree, variables)


def decorate(
    body: Mapping[str, Any], prepend: Sequence[Any], append: Sequence[Any]
) -> dict[str, Any] | None:
    """``body`` with ``prepend`` before its ``messages`` and ``append`` after them; None when
    the body has no ``messages`` list (not a chat request: nothing to decorate)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    return {**body, "messages": [*prepend, *messages, *append]}


def _content_text(content: Any) -> str | None:
    """A message's text: a string, or the ``text`` parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in ("text", "input_text")
            and isinstance(part.get("text"), str)
        ]
        return " ".join(texts) if texts else None
    return None


Message = tuple[Any, str]  # (role, text)


@dataclass(frozen=True, slots=True)
class PromptTexts:
    """The texts of a request, as (role, text) pairs.  ``conversation``: they are a chat
    history (only the last one is the new turn); otherwise they are all the current input."""

    messages: tuple[Message, ...]
    conversation: bool


def prompt_texts(body: Any) -> PromptTexts | None:
    """What a decoded LLM request asks, or None when ``body`` is not an LLM request.

    Chat (``messages``), embeddings and responses (``input``: a string, strings, or messages)
    and legacy completions (``prompt``).  Messages without text (tool calls, images) are left
    out.
    """
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list):
        return PromptTexts(_messages(messages), conversation=True)
    for field in ("input", "prompt"):
        value = body.get(field)
        if isinstance(value, str):
            return PromptTexts((("user", value),), conversation=False)
        if isinstance(value, list):
            found: list[Message] = [("user", item) for item in value if isinstance(item, str)]
            found += _messages(item for item in value if isinstance(item, dict))
            return PromptTexts(tuple(found), conversation=False)
    return None


def _messages(items: Any) -> tuple[Message, ...]:
    out: list[Message] = []
    for item in items:
        if isinstance(item, dict):
            text = _content_text(item.get("content"))
            if text is not None:
                out.append((item.get("role"), text))
    return tuple(out)


def guarded_text(texts: PromptTexts, *, all_roles: bool, all_history: bool) -> str | None:
    """The text ai-prompt-guard checks, or None when there is nothing to check.

    Only the user's messages unless ``all_roles``; of a conversation, only its last turn
    unless ``all_history``: the user's last message, and with ``all_roles`` whatever follows
    it (the last message when no user spoke); joined by spaces.

    APISIX takes the conversation's last message, then drops it unless it is the user's (or
    ``all_roles``), so a conversation ending with an assistant or system message leaves
    nothing to check, and APISIX answers an empty 200.  llmgate passes such a request on, so
    it must not let a trailing message hide the user's prompt from the guard.
    """
    messages = texts.messages
    if not all_roles:
        messages = tuple(message for message in messages if message[0] == "user")
    if texts.conversation and not all_history:
        users = [i for i, (role, _) in enumerate(messages) if role == "user"]
        messages = messages[users[-1] :] if users else messages[-1:]
    if not messages:
        return None
    return " ".join(text for _, text in messages)
