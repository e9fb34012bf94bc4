import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.basic_auth import BasicAuth

VALID = [
    pytest.param({}, id="empty-on-route"),
    pytest.param({"hide_credentials": True, "realm": "my api"}, id="options"),
    pytest.param({"anonymous_consumer": "guest"}, id="anonymous"),
    pytest.param({"_meta": {"disable": True}}, id="meta"),
]

INVALID = [
    pytest.param({"hide_credentials": "yes"}, "hide_credentials", id="bool-as-string"),
    pytest.param({"hide_credentials": 1}, "hide_credentials", id="bool-as-int"),
    pytest.param({"realm": ""}, "realm", id="empty-realm"),
    pytest.param({"realm": 'a"b'}, "realm", id="quote-in-realm"),
    pytest.param({"realm": "x" * 129}, "realm", id="long-realm"),
    pytest.param({"anonymous_consumer": ""}, "anonymous_consumer", id="empty-anonymous"),
]

CONSUMER_VALID = [
    pytest.param({"username": "username1", "password": "password1"}, id="plain"),
    pytest.param({"username": "u", "password": "$env://PASSWORD"}, id="env-ref"),
]

CONSUMER_INVALID = [
    pytest.param({}, "username", id="empty"),
    pytest.param({"username": "u"}, "password", id="no-password"),
    pytest.param({"password": "p"}, "username", id="no-username"),
    pytest.param({"username": 1, "password": "p"}, "username", id="int-username"),
    # A hash cannot tell "p\x00" from "p" (HMAC pads its key with NULs).
    pytest.param({"username": "u", "password": "p\x00"}, "password", id="nul-in-password"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    BasicAuth.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        BasicAuth.Config.model_validate(conf)


@pytest.mark.parametrize("conf", CONSUMER_VALID)
def test_consumer_valid(conf: dict) -> None:
    assert BasicAuth.ConsumerConfig is not None
    BasicAuth.ConsumerConfig.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), CONSUMER_INVALID)
def test_consumer_invalid(conf: dict, error: str) -> None:
    assert BasicAuth.ConsumerConfig is not None
    with pytest.raises(ValidationError, match=re.escape(error)):
        BasicAuth.ConsumerConfig.model_validate(conf)


def test_declaration_and_defaults() -> None:
    assert (BasicAuth.name, BasicAuth.priority, BasicAuth.kind) == ("basic-auth", 2520, "auth")
    conf = BasicAuth.Config.model_validate({})
    assert conf.realm == "basic"
    assert conf.hide_credentials is False
