import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.ai_prompt_template import AIPromptTemplate

# The /chat service of seed 000, as configuration.
POKEMON = {
    "name": "pokemon",
    "template": {
        "model": "gpt-3.5-turbo",
        "messages": [
            {"role": "system", "content": "Eres un experto en Pokémons."},
            {"role": "user", "content": "{{prompt}}"},
        ],
    },
}

VALID = [
    pytest.param({"templates": [POKEMON]}, id="seed-000"),
    pytest.param({"templates": [POKEMON, {**POKEMON, "name": "other"}]}, id="two"),
    pytest.param({"templates": [{"name": "t", "template": {}}]}, id="empty-template"),
]

INVALID = [
    pytest.param({}, "templates", id="no-templates"),
    pytest.param({"templates": []}, "templates", id="empty-templates"),
    pytest.param({"templates": [{"name": "t"}]}, "template", id="no-template"),
    pytest.param({"templates": [{"template": {}}]}, "name", id="no-name"),
    pytest.param({"templates": [{**POKEMON, "name": ""}]}, "name", id="empty-name"),
    pytest.param(
        {"templates": [{"name": "t", "template": {"model": ""}}]}, "model", id="empty-model"
    ),
    pytest.param(
        {"templates": [{"name": "t", "template": {"messages": []}}]}, "messages", id="no-messages"
    ),
    pytest.param(
        {"templates": [{"name": "t", "template": {"messages": [{"role": "x", "content": "c"}]}}]},
        "role",
        id="bad-role",
    ),
    pytest.param(
        {"templates": [POKEMON, POKEMON]}, "duplicate template name 'pokemon'", id="duplicate"
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    AIPromptTemplate.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        AIPromptTemplate.Config.model_validate(conf)
