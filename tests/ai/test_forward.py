"""What of the client's request an AI proxy plugin may pass on to the provider."""

from __future__ import annotations

import pytest

from llmgate.ai.forward import forwardable


@pytest.mark.parametrize(
    "name",
    [
        "Authorization", "apikey", "X-Api-Key", "Cookie",  # credentials
        "X-Forwarded-For", "x-forwarded-proto", "X-Forwarded-Host", "X-Forwarded-Port",
        "X-Real-IP", "Forwarded", "True-Client-IP", "CF-Connecting-IP", "Via",  # address
        "X-Consumer-Username", "X-Consumer-Custom-ID", "X-Credential-Identifier",  # identity
        "Content-Length", "Host", "Accept-Encoding",  # set by the gateway
        "OpenAI-Organization", "OpenAI-Project",  # which account the gateway's key bills
    ],
)  # fmt: skip
def test_dropped(name: str) -> None:
    assert not forwardable(name)


@pytest.mark.parametrize(
    "name", ["Content-Type", "Accept", "User-Agent", "OpenAI-Beta", "X-Request-Id", "X-Custom"]
)
def test_kept(name: str) -> None:
    assert forwardable(name)
