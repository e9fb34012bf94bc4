"""Password checks: off the loop, cached so attackers cannot flush them, limited per client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from llmgate import credentials
from llmgate.runtime import verified
from llmgate.runtime.verified import Verdict, VerifiedCredentials, client_key

STORED = credentials.hash_password("right password")
ALICE, MALLORY = "10.0.0.1", "10.0.0.66"
WRONG = ("right password!", "")


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords actually hashed (each costs a pbkdf2)."""
    seen: list[str] = []
    real: Callable[[str, str], bool] = credentials.verify_password

    def counting(password: str, stored: str) -> bool:
        seen.append(password)
        return real(password, stored)

    monkeypatch.setattr(credentials, "verify_password", counting)
    return seen


async def test_a_verified_password_is_hashed_once(hashes: list[str]) -> None:
    checks = VerifiedCredentials()
    for _ in range(3):
        assert await checks.check_password("right password", STORED, ALICE) is Verdict.VERIFIED
    assert await checks.check_password("wrong", STORED, ALICE) is Verdict.REJECTED
    assert await checks.check_password("wrong", STORED, ALICE) is Verdict.REJECTED
    assert hashes == ["right password", "wrong"]
    checks.close()


async def test_a_flood_of_guesses_never_evicts_verified_passwords(
    hashes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verified, "MAX_FAILURES", 5)
    checks = VerifiedCredentials(failures_per_minute=0)
    assert await checks.check_password("right password", STORED, ALICE) is Verdict.VERIFIED
    guesses = [f"guess {i}" for i in range(20)]
    for guess in guesses:
        assert await checks.check_password(guess, STORED, MALLORY) is Verdict.REJECTED
    hashes.clear()
    assert await checks.check_password("right password", STORED, ALICE) is Verdict.VERIFIED
    # The last guesses are remembered (no hash), the older ones were evicted by newer ones.
    assert await checks.check_password(guesses[-1], STORED, MALLORY) is Verdict.REJECTED
    assert await checks.check_password(guesses[0], STORED, MALLORY) is Verdict.REJECTED
    assert hashes == [guesses[0]]
    checks.close()


async def test_a_client_over_its_failure_limit_gets_no_more_hashes(hashes: list[str]) -> None:
    checks = VerifiedCredentials(failures_per_minute=3)
    assert await checks.check_password("right password", STORED, ALICE) is Verdict.VERIFIED
    for i in range(10):
        assert await checks.check_password(f"guess {i}", STORED, MALLORY) is Verdict.REJECTED
    assert hashes == ["right password", "guess 0", "guess 1", "guess 2"]
    # Over the limit even the right password is refused unhashed, unless already verified.
    other_stored = credentials.hash_password("another")
    assert await checks.check_password("another", other_stored, MALLORY) is Verdict.REJECTED
    assert await checks.check_password("right password", STORED, MALLORY) is Verdict.VERIFIED
    # Another client is not limited by Mallory's failures.
    assert await checks.check_password("another", other_stored, ALICE) is Verdict.VERIFIED
    assert len(hashes) == 5
    checks.close()


async def test_the_limit_lasts_a_minute(hashes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(verified.time, "monotonic", lambda: now[0])
    checks = VerifiedCredentials(failures_per_minute=1)
    await checks.check_password("guess 0", STORED, MALLORY)
    await checks.check_password("guess 1", STORED, MALLORY)
    assert hashes == ["guess 0"]
    now[0] += 61
    await checks.check_password("guess 2", STORED, MALLORY)
    assert hashes == ["guess 0", "guess 2"]
    checks.close()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # one /64: one client
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, ""),
        ("unix-socket", "unix-socket"),
    ],
)
def test_client_key(address: str | None, key: str) -> None:
    assert client_key(address) == key


async def test_concurrent_checks_of_one_password_share_a_hash(hashes: list[str]) -> None:
    checks = VerifiedCredentials()
    verdicts = await asyncio.gather(
        *(checks.check_password("right password", STORED, ALICE) for _ in range(20))
    )
    assert set(verdicts) == {Verdict.VERIFIED}
    assert hashes == ["right password"]
    checks.close()


async def test_too_many_checks_in_flight_are_refused_unhashed(hashes: list[str]) -> None:
    checks = VerifiedCredentials(failures_per_minute=0, concurrency=1, max_in_flight=4)
    verdicts = await asyncio.gather(
        *(checks.check_password(f"guess {i}", STORED, MALLORY) for i in range(10))
    )
    assert verdicts.count(Verdict.BUSY) == 6
    assert verdicts.count(Verdict.REJECTED) == 4 and len(hashes) == 4
    checks.close()


async def test_hashing_leaves_the_event_loop_free() -> None:
    """While 16 hashes run (about 100 ms of CPU), a 1 ms timer on the loop stays punctual: a
    hash on the loop would hold it for about 7 ms each time."""
    checks = VerifiedCredentials(failures_per_minute=0, concurrency=1)
    flood = asyncio.gather(
        *(checks.check_password(f"guess {i}", STORED, MALLORY) for i in range(16))
    )
    lateness = []
    while not flood.done():
        began = time.perf_counter()
        await asyncio.sleep(0.001)
        lateness.append(time.perf_counter() - began - 0.001)
    await flood
    lateness.sort()
    assert len(lateness) > 20
    assert lateness[len(lateness) // 2] < 0.005  # bound far above normal: only a frozen loop
    checks.close()


async def test_plain_secrets_are_compared_without_hashing(hashes: list[str]) -> None:
    checks = VerifiedCredentials()
    assert await checks.check_password("s3cret", "s3cret", ALICE) is Verdict.VERIFIED
    assert await checks.check_password("nope", "s3cret", ALICE) is Verdict.REJECTED
    assert len(hashes) == 2  # compared on the loop: constant time, no pbkdf2
    assert checks._pool is None
    checks.close()


async def test_the_password_last_verified_is_recalled_without_a_digest(
    hashes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = VerifiedCredentials()
    assert not checks.recall("right password", STORED)
    assert await checks.check_password("right password", STORED, ALICE) is Verdict.VERIFIED
    assert checks.recall("right password", STORED)
    for wrong in ("wrong", "right passwor", "right password\x00", *WRONG):
        assert not checks.recall(wrong, STORED)
        assert await checks.check_password(wrong, STORED, ALICE) is Verdict.REJECTED
    assert not checks.recall("right password", credentials.hash_password("right password"))
    monkeypatch.setattr(verified.hashlib, "sha256", None)  # a recalled password needs no digest
    assert await checks.check_password("right password", STORED, ALICE) is Verdict.VERIFIED
    assert hashes == ["right password", "wrong", "right passwor", "right password\x00", *WRONG]
    checks.close()


async def test_recalled_passwords_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verified, "MAX_SUCCESSES", 2)
    monkeypatch.setattr(credentials, "verify_password", lambda password, stored: True)
    checks = VerifiedCredentials()
    stored = [credentials.hash_password(f"p{i}") for i in range(3)]
    for i, one in enumerate(stored):
        assert await checks.check_password(f"p{i}", one, ALICE) is Verdict.VERIFIED
    assert [checks.recall(f"p{i}", one) for i, one in enumerate(stored)] == [False, True, True]
    checks.close()
