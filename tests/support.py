"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import os

ADMIN_KEY = "edd1c9f034335f136f87ad84b625c8f1"  # the seed blog's key
VIEWER_KEY = "viewer-key-0123456789"
POSTGRES_URL = os.environ.get(
    "LLMGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
