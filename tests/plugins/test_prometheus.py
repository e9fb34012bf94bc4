import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.prometheus import Prometheus

VALID = [
    pytest.param({}, id="empty"),
    pytest.param({"prefer_name": True}, id="prefer-name"),
]

INVALID = [
    pytest.param({"prefer_name": "true"}, "prefer_name", id="bool-as-string"),
    pytest.param({"prefer_name": 1}, "prefer_name", id="bool-as-int"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    Prometheus.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        Prometheus.Config.model_validate(conf)


def test_defaults() -> None:
    assert Prometheus.Config.model_validate({}).prefer_name is False
