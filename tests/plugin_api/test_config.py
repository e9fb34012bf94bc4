"""The helpers plugin configs share: env references, patterns, unique items, strict types."""

from typing import Annotated

import pytest
from pydantic import ValidationError

from llmgate.plugin_api.config import (
    EnvOrPattern,
    PluginConfig,
    UniqueItems,
    is_env_ref,
    regex_error,
)


class Sample(PluginConfig):
    path: Annotated[str, EnvOrPattern(r"^/")] | None = None
    tags: Annotated[list[str], UniqueItems()] = []
    count: int = 0
    flag: bool = False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$env://KEY", True),
        ("Bearer $env://KEY", True),
        ("$ENV://KEY", False),
        ("env://KEY", False),
        ("plain", False),
        (5, False),
    ],
)
def test_is_env_ref(value: object, expected: bool) -> None:
    assert is_env_ref(value) is expected


def test_regex_error() -> None:
    assert regex_error(r"^/v1/(.*)") is None
    assert regex_error("(") is not None


@pytest.mark.parametrize("conf", [{"path": "/a"}, {"path": "$env://P"}, {"tags": ["a", "b"]}])
def test_valid(conf: dict) -> None:
    Sample.model_validate(conf)


@pytest.mark.parametrize(
    ("conf", "error"),
    [
        ({"path": "a"}, "path"),
        ({"tags": ["a", "a"]}, "unique"),
        ({"count": "1"}, "count"),
        ({"count": True}, "count"),
        ({"flag": 1}, "flag"),
        ({"flag": "true"}, "flag"),
    ],
)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Sample.model_validate(conf)


def test_meta_alias_and_frozen() -> None:
    conf = Sample.model_validate({"_meta": {"disable": True}})
    assert conf.meta is not None
    assert conf.meta.disable is True
    with pytest.raises(ValidationError):
        conf.count = 1  # type: ignore[misc]


def test_json_schema_shows_constraints() -> None:
    props = Sample.model_json_schema(by_alias=True)["properties"]
    assert props["path"]["anyOf"][0]["pattern"] == "^/"
    assert props["tags"]["uniqueItems"] is True
