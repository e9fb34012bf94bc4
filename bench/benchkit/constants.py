"""Paths, credentials and the request and response bodies every target is measured with."""

from __future__ import annotations

import base64
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
DOCS = ROOT / "docs" / "benchmarks.md"
WRK_SCRIPT = BENCH / "wrk" / "chat.lua"

ADMIN_KEY = "bench-admin-key-0123456789"
BASIC_USER, BASIC_PASSWORD = "bench", "bench-password"
API_KEY = "bench-api-key"
BASIC_HEADER = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()

CHAT_PATH = "/v1/chat/completions"
SSE_PATH = "/sse/v1/chat/completions"  # the fake upstream answers chat under any path prefix
FAKE_PATH = "/fake/v1/chat/completions"
REQUEST_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    },
    separators=(",", ":"),
)
SSE_BODY = REQUEST_BODY[:-1] + ',"stream":true}'
REPLY_TEXT = (
    "Hello! This is a fixed reply served by the benchmark upstream: an nginx worker that answers "
    "every request with the same chat completion, so the upstream never becomes the bottleneck "
    "of what is measured. It is about as long as a short real answer."
)
# ~600 bytes, like a short real chat completion; no ' or $ (it goes into nginx's `return '...'`).
CHAT_RESPONSE = json.dumps(
    {
        "id": "chatcmpl-bench000000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 52, "total_tokens": 66},
        "system_fingerprint": "fp_bench0000",
    },
    separators=(",", ":"),
)

SOAK_SET = "basic-auth + limit-count + prometheus"
