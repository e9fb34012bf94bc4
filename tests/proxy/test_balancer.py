"""Node choice (proxy/balancer.py): tables of cases for each algorithm, no network."""

from __future__ import annotations

from collections import Counter

import pytest

from llmgate.proxy.balancer import (
    BALANCERS,
    Balancer,
    ConsistentHash,
    Ewma,
    LeastConn,
    Node,
    RoundRobin,
)


def nodes(*weights: int, priorities: tuple[int, ...] = ()) -> list[Node]:
    """Nodes 10.0.0.1:80, 10.0.0.2:80... with these weights (and priorities)."""
    return [
        Node(f"10.0.0.{i + 1}", 80, weight, priorities[i] if priorities else 0)
        for i, weight in enumerate(weights)
    ]


def picks(balancer: Balancer, count: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    return [balancer.pick(None, exclude) for _ in range(count)]


@pytest.mark.parametrize(
    ("host", "port", "address"),
    [
        ("127.0.0.1", 1980, "127.0.0.1:1980"),
        ("example.com", 443, "example.com:443"),
        ("::1", 80, "[::1]:80"),
        ("[::1]", 80, "[::1]:80"),
        ("fe80::1:2", 8080, "[fe80::1:2]:8080"),
    ],
)
def test_node_address(host: str, port: int, address: str) -> None:
    assert Node(host, port, 1).address == address


def test_algorithm_names_are_apisix_upstream_types() -> None:
    assert {
        "roundrobin": RoundRobin,
        "chash": ConsistentHash,
        "least_conn": LeastConn,
        "ewma": Ewma,
    } == BALANCERS


# --- weighted round-robin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "sequence"),
    [
        pytest.param((1,), [0, 0, 0], id="one-node"),
        pytest.param((1, 1, 1), [0, 1, 2, 0, 1, 2], id="equal"),
        # nginx's smooth weighted round-robin: {5, 1, 1} gives a a b a c a a, then repeats.
        pytest.param((5, 1, 1), [0, 0, 1, 0, 2, 0, 0] * 2, id="nginx-smooth-5-1-1"),
        pytest.param((2, 1), [0, 1, 0] * 3, id="2-1"),
        pytest.param((0, 1, 0), [1, 1, 1], id="zero-weights-skipped"),
        pytest.param((0, 0), [0, 1, 0, 1], id="all-zero-still-served"),
    ],
)
def test_round_robin_sequence(weights: tuple[int, ...], sequence: list[int]) -> None:
    assert picks(RoundRobin(nodes(*weights)), len(sequence)) == sequence


@pytest.mark.parametrize("weights", [(3, 1), (1, 2, 3), (10, 1, 5, 0)])
def test_round_robin_shares_follow_the_weights_exactly(weights: tuple[int, ...]) -> None:
    rounds = 20
    counts = Counter(picks(RoundRobin(nodes(*weights)), rounds * sum(weights)))
    assert [counts[i] for i in range(len(weights))] == [rounds * w for w in weights]


@pytest.mark.parametrize(
    ("weights", "priorities", "exclude", "expected"),
    [
        pytest.param((1, 1), (0, 1), frozenset(), {1}, id="higher-priority-only"),
        pytest.param((1, 1), (0, 1), frozenset({1}), {0}, id="lower-priority-when-excluded"),
        pytest.param((1, 1, 1), (0, 0, 0), frozenset({0}), {1, 2}, id="exclude-one"),
        pytest.param((1, 1), (0, 0), frozenset({0, 1}), {0, 1}, id="all-excluded-still-served"),
        pytest.param((1, 0), (0, 5), frozenset(), {0}, id="zero-weight-loses-priority"),
        pytest.param((1, 0), (0, 5), frozenset({0}), {1}, id="zero-weight-as-last-resort"),
    ],
)
@pytest.mark.parametrize("algorithm", ["roundrobin", "least_conn", "ewma"])
def test_candidates(
    algorithm: str,
    weights: tuple[int, ...],
    priorities: tuple[int, ...],
    exclude: frozenset[int],
    expected: set[int],
) -> None:
    balancer = BALANCERS[algorithm](nodes(*weights, priorities=priorities))
    chosen = set()
    for _ in range(30):  # requests that stay open: least_conn and ewma spread them too
        index = balancer.pick(None, exclude)
        balancer.started(index)
        chosen.add(index)
    assert chosen == expected


# --- consistent hash -----------------------------------------------------------------------------

KEYS = [f"user-{i}" for i in range(2000)]


def test_chash_same_key_same_node() -> None:
    balancer = ConsistentHash(nodes(1, 1, 1))
    first = {key: balancer.pick(key) for key in KEYS}
    again = ConsistentHash(nodes(1, 1, 1))  # a new snapshot builds the same ring
    assert all(balancer.pick(key) == first[key] == again.pick(key) for key in KEYS)
    assert set(first.values()) == {0, 1, 2}


def test_chash_removing_a_node_moves_only_its_keys() -> None:
    before = ConsistentHash(nodes(1, 1, 1))
    after = ConsistentHash(nodes(1, 1))  # 10.0.0.3 removed
    moved = [key for key in KEYS if before.pick(key) != 2 and after.pick(key) != before.pick(key)]
    assert moved == []


@pytest.mark.parametrize(
    ("weights", "low", "high"),
    [
        # Loose: with 16 ring points per unit of weight, equal nodes split 2000 keys 66/34.
        pytest.param((1, 1), 0.30, 0.70, id="even"),
        pytest.param((1, 3), 0.60, 0.90, id="one-to-three"),
    ],
)
def test_chash_share_follows_weight(weights: tuple[int, ...], low: float, high: float) -> None:
    balancer = ConsistentHash(nodes(*weights))
    share = sum(balancer.pick(key) == 1 for key in KEYS) / len(KEYS)
    assert low < share < high


def test_chash_exclusion_moves_the_key_to_the_next_node_and_stays() -> None:
    balancer = ConsistentHash(nodes(1, 1, 1))
    for key in KEYS[:200]:
        owner = balancer.pick(key)
        retry = balancer.pick(key, frozenset({owner}))
        assert retry != owner
        assert balancer.pick(key, frozenset({owner})) == retry
        assert balancer.pick(key, frozenset({0, 1, 2})) in {0, 1, 2}


@pytest.mark.parametrize(
    ("node_list", "key", "expected"),
    [
        pytest.param([], "k", 0, id="no-nodes"),
        pytest.param(nodes(1), None, 0, id="no-key"),
        pytest.param(nodes(1), "", 0, id="empty-key"),
    ],
)
def test_chash_edges(node_list: list[Node], key: str | None, expected: int) -> None:
    assert ConsistentHash(node_list).pick(key) == expected


def test_chash_ring_size_is_bounded_by_weight() -> None:
    """An admin-supplied weight of 10**9 must not build a ring of 10**9 points."""
    size = {w: len(ConsistentHash([Node("a", 1, w)]).points) for w in (0, 1, 2, 100, 10**9)}
    assert size[0] == size[1] > 0
    assert size[2] == 2 * size[1]
    assert size[10**9] == size[100] == 100 * size[1]


# --- least connections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "active", "expected"),
    [
        pytest.param((1, 1), (0, 0), 0, id="tie-lowest-index"),
        pytest.param((1, 1), (1, 0), 1, id="fewer-active"),
        pytest.param((1, 1), (3, 2), 1, id="fewer-active-again"),
        pytest.param((4, 1), (2, 0), 0, id="weight-scales-capacity"),  # 3/4 < 1/1
        pytest.param((4, 1), (4, 0), 1, id="weight-capacity-used"),  # 5/4 > 1/1
        pytest.param((0, 1), (0, 5), 1, id="zero-weight-skipped"),
    ],
)
def test_least_conn(weights: tuple[int, ...], active: tuple[int, ...], expected: int) -> None:
    balancer = LeastConn(nodes(*weights))
    balancer.active = list(active)
    assert balancer.pick(None) == expected


def test_started_and_done_count_active_requests() -> None:
    balancer = LeastConn(nodes(1, 1))
    for _ in range(3):
        balancer.started(balancer.pick(None))
    assert sorted(balancer.active) == [1, 2]
    busiest = balancer.active.index(2)
    balancer.done(busiest, 0.01)
    balancer.done(busiest, 0.01)
    assert balancer.active[busiest] == 0
    assert balancer.pick(None) == busiest


# --- EWMA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param([0.5], 0.5, id="first-sample"),
        pytest.param([0.1, 0.9], 0.9, id="a-slower-sample-is-taken-at-once"),
        pytest.param([1.0, 0.0], 0.9, id="a-faster-one-decays-by-a-tenth"),
        pytest.param([1.0, 0.0, 0.0], 0.81, id="and-again"),
        pytest.param([0.2, 0.2], 0.2, id="steady"),
    ],
)
def test_ewma_score(samples: list[float], expected: float) -> None:
    balancer = Ewma(nodes(1))
    for seconds in samples:
        balancer.started(0)
        balancer.done(0, seconds)
    assert balancer.ewma[0] == pytest.approx(expected)
    assert balancer.active == [0]


@pytest.mark.parametrize(
    ("ewma", "active", "expected"),
    [
        pytest.param((0.1, 0.5), (0, 0), 0, id="faster"),
        pytest.param((0.5, 0.1), (0, 0), 1, id="faster-second"),
        pytest.param((0.1, 0.15), (2, 0), 1, id="load-counts"),  # 0.3 > 0.15
        pytest.param((0.2, 0.2), (0, 0), {0, 1}, id="tie-either"),
    ],
)
def test_ewma_picks_the_better_of_two(
    ewma: tuple[float, ...], active: tuple[int, ...], expected: int | set[int]
) -> None:
    balancer = Ewma(nodes(1, 1))
    balancer.ewma, balancer.active = list(ewma), list(active)
    wanted = expected if isinstance(expected, set) else {expected}
    assert set(picks(balancer, 50)) == wanted


def test_ewma_never_picks_a_slow_node_while_faster_ones_are_idle() -> None:
    balancer = Ewma(nodes(1, 1, 1, 1))
    balancer.ewma = [0.01, 0.01, 5.0, 0.01]
    assert set(picks(balancer, 200)) == {0, 1, 3}
