"""Compilations run in steps: a generator yields about every ``STEP_SECONDS`` of work (a loader
serving requests lets them run there) and returns its result."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TypeVar

R = TypeVar("R")  # what a step generator returns

STEP_SECONDS = 0.002


class Ticker:
    """Says when a stepwise compilation has worked ``STEP_SECONDS`` since it last yielded."""

    def __init__(self) -> None:
        self.since = time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.since > STEP_SECONDS

    def reset(self) -> None:
        self.since = time.perf_counter()


def to_the_end(steps: Generator[None, None, R]) -> R:
    """What a step generator returns, its steps run in one go."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: R = done.value
            return result
