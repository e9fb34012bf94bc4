"""``GET …/models`` and ``GET …/models/{id}`` on an LLM route, answered from configuration.

OpenAI clients list models at start-up (``client.models.list()``).  An LLM route answers with
the models its AI plugin serves, in OpenAI's list shape:

    {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 0,
                                 "owned_by": "openai"}, ...]}

ai-proxy serves its ``options.model`` (none when the client chooses the model);
ai-proxy-multi each instance's ``options.model``, else the instance's name; openai-compatible
its ``models``.  What a consumer may use is what the plugins in effect for it serve: a
consumer's own ai-proxy / ai-proxy-multi replaces the route's, as on every request, and a
consumer the route refuses (consumer-restriction, auth) gets that refusal, not a list.

Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmgate.ai.openai_errors import error_body

ModelEntry = tuple[str, str]  # (model id, owned_by: the provider)
_SEGMENT = "/models"


def models_target(method: str, path: str) -> tuple[bool, str | None]:
    """Whether ``method path`` asks for the model list (True, None) or one model (True, id);
    (False, None) for any other request."""
    if method not in ("GET", "HEAD"):
        return False, None
    if path.endswith((_SEGMENT, _SEGMENT + "/")):  # the list, also with a trailing slash
        return True, None
    index = path.rfind(_SEGMENT + "/")
    if index < 0:
        return False, None
    model = path[index + len(_SEGMENT) + 1 :]
    # A model id may hold slashes ("openai/gpt-4o"), never an empty segment.
    if not model or "//" in model or model.endswith("/"):
        return False, None
    return True, model


def unique(entries: Iterable[ModelEntry]) -> tuple[ModelEntry, ...]:
    """``entries`` without repeated ids, in order."""
    seen: set[str] = set()
    out = []
    for model, owner in entries:
        if model not in seen:
            seen.add(model)
            out.append((model, owner))
    return tuple(out)


def model_object(model: str, owner: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


def models_answer(entries: tuple[ModelEntry, ...], model: str | None) -> tuple[int, Any]:
    """Status and body: the list, one model, or OpenAI's 404 for a model not served."""
    if model is None:
        return 200, {"object": "list", "data": [model_object(m, o) for m, o in entries]}
    for known, owner in entries:
        if known == model:
            return 200, model_object(known, owner)
    return 404, error_body(
        404, f"The model '{model}' does not exist", code="model_not_found", param="model"
    )
