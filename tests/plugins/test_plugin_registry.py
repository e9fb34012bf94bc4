"""Every plugin in the registry declares what the admin API and the runtime rely on."""

import pytest

from llmgate.plugin_api.config import PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins import REGISTRY

# APISIX's priorities: the order plugins run in depends on them.
PRIORITIES = {
    "request-id": 12015,
    "cors": 4000,
    "basic-auth": 2520,
    "key-auth": 2500,
    "consumer-restriction": 2400,
    "proxy-cache": 1085,
    "ai-prompt-guard": 1072,
    "ai-prompt-template": 1071,
    "ai-prompt-decorator": 1070,
    "ai-proxy-multi": 1041,
    "ai-proxy": 1040,
    "openai-compatible": 1039,  # llmgate's
    "ai-rate-limiting": 1030,
    "proxy-rewrite": 1008,
    "limit-conn": 1003,
    "limit-count": 1002,
    "limit-req": 1001,
    "response-rewrite": 899,
    "prometheus": 500,
    "http-logger": 410,
    "file-logger": 399,
}

AUTH = {"basic-auth", "key-auth"}


def test_registry_holds_exactly_the_spec_plugins() -> None:
    assert set(REGISTRY) == set(PRIORITIES)


@pytest.mark.parametrize("name", sorted(PRIORITIES))
def test_declaration(name: str) -> None:
    plugin = REGISTRY[name]
    assert issubclass(plugin, Plugin)
    assert plugin.name == name
    assert plugin.priority == PRIORITIES[name]
    assert issubclass(plugin.Config, PluginConfig)
    assert plugin.Config.model_config.get("frozen") is True
    if name in AUTH:
        assert plugin.kind == "auth"
        assert plugin.ConsumerConfig is not None
        assert issubclass(plugin.ConsumerConfig, PluginConfig)
    else:
        assert plugin.kind == "other"
        assert plugin.ConsumerConfig is None


@pytest.mark.parametrize("name", sorted(PRIORITIES))
def test_json_schema(name: str) -> None:
    plugin = REGISTRY[name]
    schema = plugin.json_schema()
    assert isinstance(schema, dict)
    assert schema["type"] == "object"
    assert "_meta" in schema["properties"]
    consumer_schema = plugin.json_schema(consumer=True)
    if name in AUTH:
        assert isinstance(consumer_schema, dict)
        assert consumer_schema["required"]
    else:
        assert consumer_schema is None
