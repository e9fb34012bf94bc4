"""``$env://`` references: resolved from the environment, never from the gateway's own
variables, and only from the allowed names when ``env_allow`` is set."""

from __future__ import annotations

import pytest

from llmgate.runtime.envrefs import missing, resolve
from llmgate.schemas.envrefs import EnvPolicy

ENVIRON = {
    "OPENAI_API_KEY": "sk-1",
    "AZURE_KEY": "az",
    "LLMGATE_ADMIN_KEY": "the-admin-key",
    "LLMGATE_DATABASE_URL": "postgresql://u:p@db/x",
}


@pytest.mark.parametrize(
    ("value", "policy", "expected"),
    [
        ("Bearer $env://OPENAI_API_KEY", EnvPolicy(), "Bearer sk-1"),
        ("$env://UNSET", EnvPolicy(), ""),
        # The gateway's own settings are never readable, whatever the policy.
        ("$env://LLMGATE_ADMIN_KEY", EnvPolicy(), ""),
        ("x$env://LLMGATE_DATABASE_URL", EnvPolicy(("LLMGATE_*",)), "x"),
        ("$env://OPENAI_API_KEY", EnvPolicy(("OPENAI_API_KEY",)), "sk-1"),
        ("$env://AZURE_KEY", EnvPolicy(("OPENAI_API_KEY",)), ""),
        ("$env://AZURE_KEY", EnvPolicy(("AZURE_*",)), "az"),
        ({"a": ["$env://AZURE_KEY", 1]}, EnvPolicy(), {"a": ["az", 1]}),
    ],
)
def test_resolve(value: object, policy: EnvPolicy, expected: object) -> None:
    assert resolve(value, ENVIRON, policy) == expected


def test_missing_names_unset_and_refused_variables() -> None:
    conf = {"a": "$env://OPENAI_API_KEY", "b": "$env://UNSET $env://LLMGATE_ADMIN_KEY"}
    assert missing(conf, ENVIRON) == ["UNSET", "LLMGATE_ADMIN_KEY"]
    assert missing(conf, ENVIRON, EnvPolicy(("AZURE_KEY",))) == [
        "OPENAI_API_KEY",
        "UNSET",
        "LLMGATE_ADMIN_KEY",
    ]


def test_unchanged_values_stay_shared() -> None:
    conf = {"a": ["x"], "b": "y"}
    assert resolve(conf, ENVIRON) is conf


async def test_env_allow_limits_what_the_data_plane_resolves(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_ENVREF_ALLOWED", "yes")
    monkeypatch.setenv("TEST_ENVREF_OTHER", "leaked")
    gateway.services.env_policy = EnvPolicy(("TEST_ENVREF_ALLOWED",))
    headers = {"X-A": "$env://TEST_ENVREF_ALLOWED", "X-B": "$env://TEST_ENVREF_OTHER"}
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything",
            "plugins": {"proxy-rewrite": {"headers": {"set": headers}}},
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/anything")
    assert resp.status == 200
    seen = (await resp.json())["headers"]
    assert seen["x-a"] == "yes"
    assert seen.get("x-b", "") == ""
