"""A built-in OpenAI-compatible fake upstream for tests, demos and benchmarks.

Deterministic chat, completions and embeddings replies with a real `usage` block, SSE streaming,
per-request fault knobs (see `knobs`) and an inspection API under `/__fake/`.
"""

from llmgate.fake_upstream.app import build_app
from llmgate.fake_upstream.knobs import (
    HEADER_DROP,
    HEADER_LATENCY,
    HEADER_STATUS,
    HEADER_STREAM_DELAY,
    FakeSettings,
)
from llmgate.fake_upstream.server import run, serve

__all__ = [
    "HEADER_DROP",
    "HEADER_LATENCY",
    "HEADER_STATUS",
    "HEADER_STREAM_DELAY",
    "FakeSettings",
    "build_app",
    "run",
    "serve",
]
