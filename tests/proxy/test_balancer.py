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


@pytest.mark.parametrize("weights", [(1, 1), (1, 1, 1), (1, 3), (1, 2, 3), (5, 5, 5, 5)])
def test_chash_share_follows_weight(weights: tuple[int, ...]) -> None:
    """160 points per unit of weight (nginx's ketama ring): each node's share of 10,000 keys is
    within 5 points of its weight's share (16 points per unit gave 66/34 for equal nodes)."""
    balancer = ConsistentHash(nodes(*weights))
    keys = [f"user-{i}" for i in range(10_000)]
    counts = Counter(balancer.pick(key) for key in keys)
    for i, weight in enumerate(weights):
        assert abs(counts[i] / len(keys) - weight / sum(weights)) < 0.05, (i, counts)


def test_chash_ring_is_nginx_ketama() -> None:
    """Point j of a node is crc32(host NUL port prev_point_le32), 160 per unit of weight, and a
    key goes to the first point at or after crc32(key): nginx's ngx_http_upstream_update_chash."""
    import zlib

    balancer = ConsistentHash([Node("10.0.0.1", 80, 2)])
    first = zlib.crc32(b"10.0.0.1\x0080" + bytes(4))
    second = zlib.crc32(b"10.0.0.1\x0080" + first.to_bytes(4, "little"))
    assert len(balancer.points) == 320
    assert {first, second} <= set(balancer.points)
    two = ConsistentHash(nodes(1, 1))
    for key in KEYS[:100]:
        value = zlib.crc32(key.encode())
        owner = next(
            (two.rings[0][1][j] for j, p in enumerate(two.rings[0][0]) if p >= value),
            two.rings[0][1][0],
        )
        assert two.pick(key) == owner


def test_chash_priorities_and_zero_weights() -> None:
    """Lower-priority nodes get keys only when every node above is excluded; weight 0 none."""
    balancer = ConsistentHash(nodes(1, 1, 1, 0, priorities=(1, 1, 0, 1)))
    assert {balancer.pick(key) for key in KEYS} == {0, 1}
    assert {balancer.pick(key, frozenset({0, 1})) for key in KEYS} == {2}


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
    """An admin-supplied weight of 10**9 must not build a ring of 10**11 points."""
    size = {w: len(ConsistentHash([Node("a", 1, w)]).points) for w in (0, 1, 2, 100, 10**9)}
    assert size[0] == size[1] == 160  # a lone weight-0 node is still served
    assert size[2] == 320
    assert size[100] == 16_000
    assert size[10**9] == ConsistentHash.MAX_POINTS
    lopsided = ConsistentHash([Node("a", 1, 10**9), Node("b", 1, 1)])
    assert len(lopsided.points) <= ConsistentHash.MAX_POINTS + 1
    assert {lopsided.pick(key, frozenset({0})) for key in KEYS[:10]} == {1}
