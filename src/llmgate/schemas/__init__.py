"""Pydantic models of the admin resources: the REST contract."""

from llmgate.schemas.consumer import Consumer, Credential
from llmgate.schemas.messages import describe
from llmgate.schemas.plugin_config import PluginConfig
from llmgate.schemas.route import Route
from llmgate.schemas.service import ConsumerGroup, GlobalRule, PluginMetadata, Service
from llmgate.schemas.ssl import Ssl
from llmgate.schemas.upstream import Upstream, UpstreamSpec

__all__ = [
    "Consumer",
    "ConsumerGroup",
    "Credential",
    "GlobalRule",
    "PluginConfig",
    "PluginMetadata",
    "Route",
    "Service",
    "Ssl",
    "Upstream",
    "UpstreamSpec",
    "describe",
]
