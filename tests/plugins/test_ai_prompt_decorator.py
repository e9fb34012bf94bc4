import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.ai_prompt_decorator import AIPromptDecorator

SYSTEM = {"role": "system", "content": "Answer in Spanish."}

VALID = [
    pytest.param({"prepend": [SYSTEM]}, id="prepend"),
    pytest.param({"append": [{"role": "user", "content": "Be brief."}]}, id="append"),
    pytest.param(
        {"prepend": [SYSTEM], "append": [{"role": "assistant", "content": "ok"}]}, id="both"
    ),
    pytest.param({"prepend": []}, id="empty-list"),
]

INVALID = [
    pytest.param({}, "one of prepend or append is required", id="empty"),
    pytest.param({"max_req_body_size": 10}, "one of prepend or append", id="no-messages"),
    pytest.param({"prepend": [{"role": "tool", "content": "x"}]}, "role", id="bad-role"),
    pytest.param({"prepend": [{"role": "user", "content": ""}]}, "content", id="empty-content"),
    pytest.param({"append": [{"role": "user"}]}, "content", id="no-content"),
    pytest.param({"append": [{"content": "x"}]}, "role", id="no-role"),
    pytest.param({"prepend": SYSTEM}, "prepend", id="object-not-list"),
    pytest.param({"prepend": [SYSTEM], "max_req_body_size": 0}, "max_req_body_size", id="size"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    AIPromptDecorator.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        AIPromptDecorator.Config.model_validate(conf)
