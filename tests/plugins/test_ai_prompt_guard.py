import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.ai_prompt_guard import AIPromptGuard

VALID = [
    pytest.param({}, id="empty"),
    pytest.param({"deny_patterns": [r"\b(password|ssn)\b"]}, id="deny"),
    pytest.param({"allow_patterns": ["(?i)pok[eé]mon"], "match_all_roles": True}, id="allow"),
    pytest.param({"match_all_conversation_history": True, "fail_mode": "error"}, id="options"),
]

INVALID = [
    pytest.param({"allow_patterns": ["("]}, "invalid allow_pattern: (", id="bad-allow"),
    pytest.param({"deny_patterns": ["ok", "[a-"]}, "invalid deny_pattern: [a-", id="bad-deny"),
    pytest.param({"deny_patterns": "password"}, "deny_patterns", id="string-not-list"),
    pytest.param({"allow_patterns": [1]}, "allow_patterns", id="int-pattern"),
    pytest.param({"match_all_roles": "yes"}, "match_all_roles", id="bool-as-string"),
    pytest.param({"fail_mode": "block"}, "fail_mode", id="fail-mode"),
    # Patterns no engine can run within a bound are refused when written.
    pytest.param({"deny_patterns": ["(?R)"]}, "invalid deny_pattern: (?R): ", id="recursion"),
    pytest.param({"deny_patterns": ["a{1001}"]}, "repetition", id="huge-repetition"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    AIPromptGuard.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        AIPromptGuard.Config.model_validate(conf)


def test_defaults() -> None:
    conf = AIPromptGuard.Config.model_validate({})
    assert conf.fail_mode is None  # unreadable bodies refused, other JSON passes
    assert (conf.allow_patterns, conf.deny_patterns) == ([], [])
    assert (conf.match_all_roles, conf.match_all_conversation_history) == (False, False)
