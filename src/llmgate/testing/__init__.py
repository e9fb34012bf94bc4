"""Testing with llmgate: a real gateway and its fake upstream, started from your own tests.

``llmgate.testing.plugin`` is a pytest plugin, loaded automatically once llmgate is installed
(entry point ``pytest11``); ``start_gateway`` works without pytest.  See ``docs/testing.md``.
"""

from llmgate.testing.gateway import (
    FAKE_UPSTREAM_VARIABLE,
    AdminClient,
    Config,
    Gateway,
    GatewayError,
    Reply,
    start_gateway,
)

__all__ = [
    "FAKE_UPSTREAM_VARIABLE",
    "AdminClient",
    "Config",
    "Gateway",
    "GatewayError",
    "Reply",
    "start_gateway",
]
