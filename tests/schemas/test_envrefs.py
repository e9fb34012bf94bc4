"""``$env://`` references as the admin API accepts them, and the variables they may name."""

from __future__ import annotations

import pytest

from llmgate.errors import SettingsError
from llmgate.schemas.envrefs import EnvPolicy, names, reserved
from llmgate.settings import load_settings


def test_names_and_reserved() -> None:
    conf = {"auth": {"header": {"X": "Bearer $env://LLMGATE_ADMIN_KEY"}}, "k": ["$env://OK", 1]}
    assert names(conf) == ["LLMGATE_ADMIN_KEY", "OK"]
    assert reserved(conf) == ["LLMGATE_ADMIN_KEY"]
    assert reserved({"k": "$env://OPENAI_API_KEY", "n": None}) == []


@pytest.mark.parametrize(
    ("allow", "name", "allowed"),
    [
        (None, "OPENAI_API_KEY", True),
        (None, "LLMGATE_ADMIN_KEY", False),
        (("LLMGATE_*",), "LLMGATE_DATABASE_URL", False),  # never, whatever the list says
        (("OPENAI_API_KEY",), "OPENAI_API_KEY", True),
        (("OPENAI_API_KEY",), "AZURE_KEY", False),
        (("AZURE_*",), "AZURE_KEY", True),
    ],
)
def test_policy(allow: tuple[str, ...] | None, name: str, allowed: bool) -> None:
    assert EnvPolicy(allow).allows(name) is allowed


def test_env_allow_setting() -> None:
    assert load_settings({}, {}).env_allow is None
    settings = load_settings({}, {"LLMGATE_ENV_ALLOW": "OPENAI_API_KEY, AZURE_*"})
    assert settings.env_allow == ("OPENAI_API_KEY", "AZURE_*")
    for bad in ("LLMGATE_ADMIN_KEY", "LLMGATE_*", "*", "a-b"):
        with pytest.raises(SettingsError, match="invalid env_allow"):
            load_settings({}, {"LLMGATE_ENV_ALLOW": bad})
