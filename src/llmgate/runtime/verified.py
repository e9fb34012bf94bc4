"""Password checks that no client can turn into a CPU weapon.

A passlib hash costs milliseconds of CPU (pbkdf2_sha256, 29,000 rounds: about 7 ms), so:

- **Off the event loop.**  Hashes run in a small thread pool (hashlib's pbkdf2 releases the
  GIL, so the loop keeps serving meanwhile), at most ``concurrency`` at a time; past
  ``max_in_flight`` checks in flight a request is answered ``BUSY`` without hashing.
- **A verification cache attackers cannot flush.**  Successful checks are kept (keyed by the
  stored hash and a digest of the presented password, so a password change simply stops
  matching); only the right password can add one.  Failed checks are kept apart, by digest,
  in a bounded LRU: a repeated wrong guess costs no hash, and a flood of new guesses evicts
  only other guesses.  Concurrent checks of the same pair share one hash.  The password last
  verified for each stored hash is also kept as presented: the same password again (nearly
  every request) is told by one constant-time comparison, no digest (``recall``).
- **A per-client failure limit.**  Past ``failures_per_minute`` failed hashes from one source
  address (IPv6: its /64) in a minute, further uncached guesses are refused without hashing
  until the minute is over.  The limit holds per data-plane process.  A password already
  verified is still accepted, so a user sharing an address with an attacker keeps working.

Plaintext secrets (resolved ``$env://`` references) are compared in constant time on the loop:
they cost nothing to check.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import ipaddress
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from llmgate import credentials

MAX_SUCCESSES = 10_000
MAX_FAILURES = 10_000
MAX_CLIENTS = 65_536  # source addresses whose failures are counted at once
DEFAULT_FAILURES_PER_MINUTE = 20
WINDOW = 60.0


class Verdict(enum.Enum):
    VERIFIED = "verified"
    REJECTED = "rejected"  # a wrong password, or a client over its failure limit
    BUSY = "busy"  # too many checks queued: try again later


def client_key(address: str | None) -> str:
    """Whose failures a request counts toward: its IPv4 address, or its IPv6 /64."""
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class FailureLimit:
    """Failed checks per client in fixed one-minute windows; the oldest clients are forgotten
    past ``MAX_CLIENTS`` (an attacker with many addresses evicts only other counts)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def exceeded(self, client: str, now: float) -> bool:
        if self.per_minute <= 0:
            return False
        window = self._windows.get(client)
        return window is not None and now < window[0] and window[1] >= self.per_minute

    def failed(self, client: str, now: float) -> None:
        if self.per_minute <= 0:
            return
        end, count = self._windows.pop(client, (0.0, 0))
        if now >= end:
            end, count = now + WINDOW, 0
        self._windows[client] = (end, count + 1)
        while len(self._windows) > MAX_CLIENTS:
            self._windows.popitem(last=False)


class VerifiedCredentials:
    """The data plane's password checks (one per process, kept across config reloads)."""

    def __init__(
        self,
        failures_per_minute: int = DEFAULT_FAILURES_PER_MINUTE,
        concurrency: int | None = None,
        max_in_flight: int = 256,
    ) -> None:
        self.concurrency = concurrency or max(1, (os.cpu_count() or 2) // 2)
        self.max_in_flight = max_in_flight
        self.limit = FailureLimit(failures_per_minute)
        self._successes: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._failures: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        # stored hash -> the password last verified for it, encoded (at most MAX_SUCCESSES).
        self._last: dict[str, bytes] = {}
        self._running: dict[tuple[str, bytes], asyncio.Future[bool]] = {}
        self._in_flight = 0  # hashes queued or running
        self._pool: ThreadPoolExecutor | None = None

    def recall(self, presented: str, stored: str) -> bool:
        """Whether ``presented`` is the password last verified for ``stored`` (no hash, no
        digest, no coroutine); False says nothing: ask ``check_password``."""
        last = self._last.get(stored)
        # Constant time in the presented password's length (compare_digest's second argument):
        # neither the password nor its length is told by how long this takes.
        return last is not None and hmac.compare_digest(
            last, presented.encode("utf-8", "surrogatepass")
        )

    async def check_password(self, presented: str, stored: str, client: str | None) -> Verdict:
        """Whether ``presented`` matches ``stored`` for a request from address ``client``."""
        if self.recall(presented, stored):
            return Verdict.VERIFIED
        if not credentials.is_password_hash(stored):
            matched = credentials.verify_password(presented, stored)  # constant time, no hash
            return Verdict.VERIFIED if matched else Verdict.REJECTED
        key = (stored, hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest())
        if key in self._successes:
            self._successes.move_to_end(key)
            self._remember(stored, presented)
            return Verdict.VERIFIED
        if key in self._failures:
            self._failures.move_to_end(key)
            return Verdict.REJECTED
        running = self._running.get(key)
        if running is None:
            who = client_key(client)
            if self.limit.exceeded(who, time.monotonic()):
                return Verdict.REJECTED
            if self._in_flight >= self.max_in_flight:
                return Verdict.BUSY
            self._in_flight += 1
            running = asyncio.ensure_future(self._verify(key, presented, stored, who))
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # shield: a client that leaves does not cancel a hash others may be waiting for.
        return Verdict.VERIFIED if await asyncio.shield(running) else Verdict.REJECTED

    async def _verify(self, key: tuple[str, bytes], presented: str, stored: str, who: str) -> bool:
        """One hash in the pool (its ``concurrency`` threads run at most that many at once)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="llmgate-auth")
        try:
            matched = await asyncio.get_running_loop().run_in_executor(
                self._pool, credentials.verify_password, presented, stored
            )
        finally:
            self._in_flight -= 1
        remembered = self._successes if matched else self._failures
        remembered[key] = None
        if len(remembered) > (MAX_SUCCESSES if matched else MAX_FAILURES):
            remembered.popitem(last=False)
        if matched:
            self._remember(stored, presented)
        else:
            self.limit.failed(who, time.monotonic())
        return matched

    def _remember(self, stored: str, presented: str) -> None:
        last = self._last
        last.pop(stored, None)
        last[stored] = presented.encode("utf-8", "surrogatepass")
        if len(last) > MAX_SUCCESSES:
            del last[next(iter(last))]  # the stored hash whose password was verified longest ago

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
