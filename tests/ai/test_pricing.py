"""The price table: parsing, lookups by provider and model, exact costs."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from llmgate.ai.call import CACHE_HIT, LlmCall
from llmgate.ai.pricing import PICO, Rate, amount, load_prices, parse_table
from llmgate.ai.usage import Usage

TABLE = {
    "prices": [
        {"provider": "openai", "model": "gpt-4o", "prompt": 2.5, "completion": 10, "cached": 1.25},
        {"model": "gpt-4o", "prompt": 3, "completion": 12},
        {"model": "gpt-4o-mini*", "prompt": 0.15, "completion": 0.6},
        {"model": "gpt-4o-mini-2024*", "prompt": 0.1, "completion": 0.4},
        {"provider": "deepseek", "model": "deepseek*", "prompt": 0.27, "completion": 1.1},
        {"model": "text-embedding-3-small", "prompt": 0.02},
        {"model": "tiny", "prompt": 0.0375},
    ]
}
PRICES = parse_table(TABLE)


def units(price_per_million: str) -> int:
    return int(Decimal(price_per_million) * 10**6)


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        pytest.param("openai", "gpt-4o", Rate(units("2.5"), units("10"), units("1.25")), id="own"),
        pytest.param("azure-openai", "gpt-4o", Rate(units("3"), units("12"), units("3")), id="any"),
        pytest.param(None, "gpt-4o", Rate(units("3"), units("12"), units("3")), id="no-provider"),
        pytest.param("openai", "gpt-4o-mini", Rate(150_000, 600_000, 150_000), id="prefix"),
        pytest.param("x", "gpt-4o-mini-2024-07-18", Rate(100_000, 400_000, 100_000), id="longest"),
        pytest.param("deepseek", "deepseek-chat", Rate(270_000, 1_100_000, 270_000), id="pfx-own"),
        pytest.param("openai", "deepseek-chat", None, id="pfx-other-provider"),
        pytest.param("openai", "gpt-4o-2024-08-06", None, id="no-implicit-prefix"),
        pytest.param("openai", "", None, id="no-model"),
        pytest.param("openai", None, None, id="none"),
    ],
)
def test_rate_lookup(provider: str | None, model: str | None, expected: Rate | None) -> None:
    assert PRICES.rate(provider, model) == expected


def test_cost_is_exact_and_prices_cached_tokens_apart() -> None:
    call = LlmCall(
        provider="openai", model="gpt-4o", usage=Usage(1000, 200, 1200, cached_tokens=400)
    )
    cost = PRICES.cost(call)
    expected = (Decimal(600) * Decimal("2.5") + 400 * Decimal("1.25") + 200 * 10) / 10**6
    assert cost is not None and Decimal(cost) / PICO == expected
    # Sub-cent prices per 1M add up without drift.
    tiny = LlmCall(provider="p", model="tiny", usage=Usage(3, 0, 3))
    assert PRICES.cost(tiny) == 3 * 37_500
    assert amount(sum(PRICES.cost(tiny) or 0 for _ in range(10**6))) == pytest.approx(0.1125)


def test_no_usage_no_price_and_cache_hits() -> None:
    assert PRICES.cost(LlmCall(provider="openai", model="gpt-4o")) is None
    assert PRICES.cost(LlmCall(provider="openai", model="unknown", usage=Usage(1, 1, 2))) is None
    hit = LlmCall(provider="openai", model="gpt-4o", usage=Usage(10, 10, 20), cache=CACHE_HIT)
    assert PRICES.cost(hit) == 0
    # The model asked for prices an answer whose own model name has no row.
    call = LlmCall(
        provider="openai", model="gpt-4o-2024-08-06", request_model="gpt-4o", usage=Usage(1, 0, 1)
    )
    assert PRICES.cost(call) == units("2.5")


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"prices": [{"model": "m", "prompt": -1}]}, "prices.0.prompt"),
        ({"prices": [{"model": "", "prompt": 1}]}, "prices.0.model"),
        ({"prices": [{"model": "m"}]}, "prices.0.prompt: Field required"),
        ({"prices": [{"model": "m", "prompt": 1, "price": 2}]}, "prices.0.price"),
        ({"prices": "all"}, "prices"),
        ([], "table"),
    ],
)
def test_bad_tables_say_where(table: object, error: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_table(table)
    assert str(raised.value).startswith(error)


def test_load_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(TABLE))
    assert load_prices(str(path)).rate("openai", "gpt-4o") == PRICES.rate("openai", "gpt-4o")
    for text, error in (("{", "is not JSON"), ('{"prices": [{"model": 1}]}', "prices.0.model")):
        path.write_text(text)
        with pytest.raises(ValueError, match=error):
            load_prices(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        load_prices(str(tmp_path / "missing.json"))
