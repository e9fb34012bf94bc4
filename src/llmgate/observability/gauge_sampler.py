"""The process-wide gauges (requests received, open connections, revision served), sampled
every second on the data plane's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llmgate.observability.metrics import Metrics
from llmgate.tasks import cancel_and_wait

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
            await cancel_and_wait(self._task)
            self._task = None
        self.sample()
