"""Fixtures of the upstream client's tests (``test_client.py``, ``test_client_connection.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from llmgate.proxy.client import NodePool


@pytest.fixture
async def pool_for() -> AsyncIterator[Callable[[int], NodePool]]:
    pools: list[NodePool] = []

    def make(port: int) -> NodePool:
        pool = NodePool("127.0.0.1", port, None, None)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()
