"""The process-wide gauges (requests received, open connections, revision served), sampled
every second on the data plane's loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from llmgate.observability.metrics import Metrics

SAMPLE_INTERVAL = 1.0  # seconds between two samples of the process-wide gauges


class GaugeSampler:
    """Sets the process-wide gauges every ``interval`` seconds (and once more at ``stop``) from
    ``read() -> (requests received, open connections, revision served)``."""

    def __init__(
        self,
        metrics: Metrics,
        read: Callable[[], tuple[int, int, int | None]],
        interval: float = SAMPLE_INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.read = read
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.metrics.sample(*self.read())

    def start(self) -> None:
        self.sample()
        self._task = asyncio.create_task(self._run(), name="llmgate-metrics-sample")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()
