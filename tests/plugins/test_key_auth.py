import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.key_auth import KeyAuth

VALID = [
    pytest.param({}, id="empty"),
    pytest.param({"header": "Authorization", "query": "key"}, id="custom-names"),
    pytest.param({"hide_credentials": True, "realm": "llm"}, id="options"),
]

INVALID = [
    pytest.param({"header": 5}, "header", id="int-header"),
    pytest.param({"header": ["apikey"]}, "header", id="list-header"),
    pytest.param({"query": None}, "query", id="null-query"),
    pytest.param({"realm": "a\\b"}, "realm", id="backslash-realm"),
    pytest.param({"hide_credentials": "true"}, "hide_credentials", id="bool-as-string"),
]

CONSUMER_VALID = [
    pytest.param({"key": "auth-one"}, id="plain"),
    pytest.param({"key": "$env://KEY"}, id="env-ref"),
]

CONSUMER_INVALID = [
    pytest.param({}, "key", id="missing"),
    pytest.param({"key": 123}, "key", id="int-key"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    KeyAuth.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        KeyAuth.Config.model_validate(conf)


@pytest.mark.parametrize("conf", CONSUMER_VALID)
def test_consumer_valid(conf: dict) -> None:
    assert KeyAuth.ConsumerConfig is not None
    KeyAuth.ConsumerConfig.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), CONSUMER_INVALID)
def test_consumer_invalid(conf: dict, error: str) -> None:
    assert KeyAuth.ConsumerConfig is not None
    with pytest.raises(ValidationError, match=re.escape(error)):
        KeyAuth.ConsumerConfig.model_validate(conf)


def test_declaration_and_defaults() -> None:
    assert (KeyAuth.name, KeyAuth.priority, KeyAuth.kind) == ("key-auth", 2500, "auth")
    conf = KeyAuth.Config.model_validate({})
    assert (conf.header, conf.query, conf.realm) == ("apikey", "apikey", "key")
