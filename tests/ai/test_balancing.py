"""Picking ai-proxy-multi instances: priorities, weights, standbys, cool-downs, exclusions."""

from __future__ import annotations

from collections import Counter

import pytest

from llmgate.ai import balancing
from llmgate.ai.balancing import Cooldowns, InstancePicker, Weighted


def picker(*instances: tuple[str, int, int], algorithm: str = "roundrobin") -> InstancePicker:
    return InstancePicker([Weighted(*i) for i in instances], algorithm, Cooldowns())


def names(p: InstancePicker, n: int, exclude: frozenset[int] = frozenset()) -> list[str]:
    picks = [p.pick(None, exclude) for _ in range(n)]
    return [p.instances[i].name for i in picks if i is not None]


def test_weighted_round_robin_within_the_top_priority() -> None:
    p = picker(("a", 2, 1), ("b", 1, 1), ("low", 10, 0))
    assert Counter(names(p, 9)) == {"a": 6, "b": 3}


def test_excluded_instances_move_down_the_priorities() -> None:
    p = picker(("a", 1, 2), ("b", 1, 1), ("c", 1, 0))
    assert names(p, 1, frozenset({0})) == ["b"]
    assert names(p, 1, frozenset({0, 1})) == ["c"]
    assert p.pick(None, frozenset({0, 1, 2})) is None


def test_weight_zero_is_a_standby_whatever_its_priority() -> None:
    p = picker(("standby", 0, 9), ("main", 1, 0))
    assert names(p, 3) == ["main"] * 3
    assert names(p, 1, frozenset({1})) == ["standby"]


def test_cooling_instances_are_skipped_until_the_cool_down_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(balancing.time, "monotonic", lambda: now[0])
    p = picker(("a", 1, 1), ("b", 1, 0))
    p.cooldowns.failed("a")
    assert names(p, 2) == ["b", "b"]
    now[0] += balancing.COOLDOWN_SECONDS + 0.1
    assert names(p, 2) == ["a", "a"]


def test_when_everything_is_cooling_the_cool_down_is_ignored() -> None:
    p = picker(("a", 1, 1), ("b", 1, 0))
    p.cooldowns.failed("a")
    p.cooldowns.failed("b")
    assert names(p, 1) == ["a"]
    assert names(p, 1, frozenset({0})) == ["b"]


def test_success_ends_a_cool_down() -> None:
    cooldowns = Cooldowns()
    cooldowns.failed("a")
    assert cooldowns.cooling("a")
    cooldowns.succeeded("a")
    assert not cooldowns.cooling("a")


def test_chash_is_stable_per_key_and_respects_exclusions() -> None:
    p = picker(("a", 1, 0), ("b", 1, 0), ("c", 1, 0), algorithm="chash")
    first = {key: p.pick(key, frozenset()) for key in (f"u{i}" for i in range(20))}
    assert len(set(first.values())) > 1
    for key, index in first.items():
        assert p.pick(key, frozenset()) == index
        assert index is not None
        assert p.pick(key, frozenset({index})) != index
