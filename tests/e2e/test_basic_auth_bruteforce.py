"""Brute force against basic-auth costs the other clients nothing (issue 11).

Eight clients send wrong passwords for an existing user, each guess new, as fast as the gateway
answers; a bystander with valid credentials keeps its latency.  Run with ``-s`` to see the
numbers.
"""

from __future__ import annotations

import base64
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import KeptAlive, LiveGateway, RawClient, request_bytes

ATTACKERS = 8


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def setup(gateway: LiveGateway) -> None:
    for name in ("victim", "bystander", "fresh"):
        plugins = {"basic-auth": {"username": name, "password": f"{name}-password"}}
        gateway.put(f"consumers/{name}", {"username": name, "plugins": plugins})
    gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"basic-auth": {}}, "upstream": gateway.upstream()},
    )


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """No failure limit: every guess is hashed (the worst case for the CPU)."""
    env = {"LLMGATE_AUTH_FAILURES_PER_MINUTE": "0"}
    with LiveGateway(tmp_path_factory.mktemp("bruteforce"), env=env) as gateway:
        setup(gateway)
        yield gateway


def bystander_p50(port: int, requests: int = 300, seconds: float = 8.0) -> float:
    """The bystander's median latency in ms over one keep-alive connection (after a warm-up),
    from ``requests`` requests or as many as ``seconds`` allow."""
    raw = request_bytes("GET", "/anything/x", basic("bystander", "bystander-password"))
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    with KeptAlive(port) as session:
        for i in range(requests + 50):
            if time.monotonic() > deadline and latencies:
                break
            began = time.perf_counter()
            answer = session.request(raw)
            if i >= 50:
                latencies.append((time.perf_counter() - began) * 1000)
            assert answer.status == 200, answer
    return statistics.median(latencies)


class Attack:
    """``ATTACKERS`` threads, each on its own connection, guessing the victim's password."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._guess, args=(n,), daemon=True) for n in range(ATTACKERS)
        ]

    def _guess(self, attacker: int) -> None:
        with KeptAlive(self.port, timeout=30) as session:
            guess = 0
            while not self.stop.is_set():
                guess += 1
                raw = request_bytes("GET", "/anything/x", basic("victim", f"{attacker}-{guess}"))
                status = session.request(raw).status
                with self._lock:
                    self.statuses[status] += 1

    def __enter__(self) -> Attack:
        for thread in self._threads:
            thread.start()
        time.sleep(0.5)  # the flood is on
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)


def measure(port: int, rounds: int = 5) -> float:
    """The best of a few medians: one round can meet another test run's CPU burst."""
    best = bystander_p50(port)
    for _ in range(rounds - 1):
        if best < 1.0:
            break  # already well under any bound: more rounds would tell nothing
        best = min(best, bystander_p50(port))
    return best


def test_brute_force_leaves_a_bystander_fast(unlimited: LiveGateway) -> None:
    port = unlimited.proxy_port
    quiet = measure(port)
    began = time.monotonic()
    with Attack(port) as attack:
        attacked = measure(port)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - began)))  # an attack of 2 s at least
        seconds = time.monotonic() - began
    guesses = sum(attack.statuses.values())
    print(
        f"\nbystander p50: {quiet:.2f} ms quiet, {attacked:.2f} ms under {ATTACKERS} brute-force "
        f"clients ({guesses} guesses in {seconds:.1f} s, {guesses / seconds:.0f}/s, all hashed)"
    )
    assert set(attack.statuses) == {401}
    assert guesses >= 20  # the attack did run: each guess cost a pbkdf2
    assert attacked < 5.0


def test_failure_limit_refuses_without_hashing(tmp_path: Path) -> None:
    """Past the limit, further guesses from the address get 401 at once, even a right password
    not verified before; a password verified before still works."""
    env = {"LLMGATE_AUTH_FAILURES_PER_MINUTE": "5"}
    with LiveGateway(tmp_path, env=env) as gateway:
        setup(gateway)
        port = gateway.proxy_port
        with RawClient(port) as client:

            def status(user: str, password: str) -> int:
                client.send(request_bytes("GET", "/anything/x", basic(user, password)))
                return client.read_response().status

            assert status("bystander", "bystander-password") == 200
            assert [status("victim", f"guess {i}") for i in range(5)] == [401] * 5
            assert status("fresh", "fresh-password") == 401  # limited: not even hashed
            assert status("bystander", "bystander-password") == 200  # verified before
            with Attack(port) as attack:
                attacked = measure(port)
        print(f"\nbystander p50 with the failure limit: {attacked:.2f} ms")
        assert set(attack.statuses) == {401}
        assert attacked < 5.0
