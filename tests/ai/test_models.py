"""GET …/models on an LLM route: which requests it answers, and what."""

from __future__ import annotations

import pytest

from llmgate.ai.models import models_answer, models_target, unique


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/models", (True, None)),
        ("GET", "/models", (True, None)),
        ("HEAD", "/openai/v1/models", (True, None)),
        ("GET", "/v1/models/gpt-4o", (True, "gpt-4o")),
        ("GET", "/v1/models/openai/gpt-4o", (True, "openai/gpt-4o")),
        # The list with a trailing slash: the list, not the LLM request it is not (a 400 about
        # an empty body).
        ("GET", "/v1/models/", (True, None)),
        ("HEAD", "/models/", (True, None)),
        ("GET", "/v1/models//", (False, None)),
        ("GET", "/v1/models/gpt-4o/", (False, None)),
        ("GET", "/v1/models/a//b", (False, None)),
        ("POST", "/v1/models", (False, None)),
        ("GET", "/v1/chat/completions", (False, None)),
        ("GET", "/v1/mymodels", (False, None)),
    ],
)
def test_models_target(method: str, path: str, expected: tuple[bool, str | None]) -> None:
    assert models_target(method, path) == expected


def test_answers() -> None:
    entries = unique([("a", "openai"), ("b", "deepseek"), ("a", "other")])
    assert entries == (("a", "openai"), ("b", "deepseek"))
    assert models_answer(entries, None) == (
        200,
        {
            "object": "list",
            "data": [
                {"id": "a", "object": "model", "created": 0, "owned_by": "openai"},
                {"id": "b", "object": "model", "created": 0, "owned_by": "deepseek"},
            ],
        },
    )
    assert models_answer(entries, "b")[1]["owned_by"] == "deepseek"
    status, body = models_answer(entries, "c")
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    assert models_answer((), None) == (200, {"object": "list", "data": []})
