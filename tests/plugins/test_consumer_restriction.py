import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.consumer_restriction import ConsumerRestriction

VALID = [
    pytest.param({"whitelist": ["jack"]}, id="whitelist"),
    pytest.param({"blacklist": ["jack"], "rejected_code": 401}, id="blacklist"),
    pytest.param(
        {"allowed_by_methods": [{"user": "jack", "methods": ["POST", "GET"]}]}, id="methods"
    ),
    pytest.param({"type": "route_id", "whitelist": ["1"], "rejected_msg": "no"}, id="route-id"),
    pytest.param({"allowed_by_methods": []}, id="empty-methods-list"),
]

INVALID = [
    pytest.param({}, "one of blacklist, whitelist or allowed_by_methods", id="empty"),
    pytest.param({"rejected_code": 403}, "one of blacklist", id="no-list"),
    pytest.param({"whitelist": []}, "whitelist", id="empty-whitelist"),
    pytest.param({"blacklist": [1]}, "blacklist", id="int-item"),
    pytest.param({"type": "ip", "whitelist": ["a"]}, "type", id="bad-type"),
    pytest.param({"whitelist": ["a"], "rejected_code": 199}, "rejected_code", id="low-code"),
    pytest.param(
        {"allowed_by_methods": [{"user": "a", "methods": ["FETCH"]}]}, "methods", id="bad-method"
    ),
    pytest.param(
        {"allowed_by_methods": [{"user": "a", "methods": []}]}, "methods", id="no-methods"
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    ConsumerRestriction.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        ConsumerRestriction.Config.model_validate(conf)


def test_defaults() -> None:
    conf = ConsumerRestriction.Config.model_validate({"whitelist": ["a"]})
    assert (conf.type, conf.rejected_code) == ("consumer_name", 403)
