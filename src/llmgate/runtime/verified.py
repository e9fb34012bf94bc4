"""Credentials already verified with passlib, so the hot path never hashes twice.

An entry is keyed by the stored hash and a digest of the presented secret: when a consumer's
password changes, its stored hash changes and the old entries simply stop matching.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from llmgate import credentials

_MAX_ENTRIES = 10_000


class VerifiedCredentials:
    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self._results: OrderedDict[tuple[str, bytes], bool] = OrderedDict()
        self._max = max_entries

    def check_password(self, presented: str, stored: str) -> bool:
        """``credentials.verify_password`` once per (stored, presented) pair, then from memory."""
        key = (stored, hashlib.sha256(presented.encode()).digest())
        result = self._results.get(key)
        if result is None:
            result = credentials.verify_password(presented, stored)
            self._results[key] = result
            if len(self._results) > self._max:
                self._results.popitem(last=False)
        return result
