"""What an LLM call cost: a price table by provider and model, and the cost of one call.

The table is written as ``ai-proxy``'s plugin_metadata will hold it (APISIX keeps per-plugin
settings there); until plugin_metadata exists it is read from the JSON file named by
``LLMGATE_PRICES`` (``llmgate serve`` loads it at start):

    {
      "currency": "USD",
      "prices": [
        {"provider": "openai", "model": "gpt-4o", "prompt": 2.5, "completion": 10, "cached": 1.25},
        {"model": "gpt-4o-mini*", "prompt": 0.15, "completion": 0.6},
        {"model": "text-embedding-3-small", "prompt": 0.02}
      ]
    }

Prices are per 1M tokens.  ``cached`` prices the prompt tokens the provider served from its own
prompt cache (``usage.prompt_tokens_details.cached_tokens``); it defaults to ``prompt``.  An
entry without ``provider`` applies to every provider (``upstream`` is the provider of calls a
plain route relays).  ``model`` matches the model that answered, else the model asked for;
a trailing ``*`` matches any model starting with what precedes it (the longest such prefix
wins, and an exact name beats every prefix).

Costs are exact integers in ``PICO`` units (10^-12 of the currency): a price with at most six
decimals per 1M tokens is a whole number of units per token, so sums never drift.  A call
whose model has no price has no cost (None), not a cost of 0; a cache hit costs 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmgate.ai.call import CACHE_HIT, LlmCall
from llmgate.http.context import StateKey

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext

PICO = 10**12  # cost units per currency unit
_PER_TOKEN = 10**6  # prices are per 1M tokens: price * 10^6 units per token

Price = Annotated[float, Field(ge=0, le=1_000_000)]


class ModelPrice(BaseModel):
    """One row of the table: what 1M tokens of ``model`` cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)]
    prompt: Price
    completion: Price = 0.0
    cached: Price | None = None


class PriceTable(BaseModel):
    """The whole table, as the file (and, later, ``ai-proxy``'s plugin_metadata) holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Annotated[str, Field(min_length=1, max_length=16)] = "USD"
    prices: Annotated[list[ModelPrice], Field(max_length=100_000)] = []


@dataclass(frozen=True, slots=True)
class Rate:
    """Cost units per token."""

    prompt: int
    completion: int
    cached: int

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> int:
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.prompt
            + cached * self.cached
            + completion_tokens * self.completion
        )


def _units(price: float) -> int:
    """Cost units per token for a price per 1M tokens (exact to six decimals)."""
    return int((Decimal(repr(price)) * _PER_TOKEN).to_integral_value())


@dataclass(frozen=True, slots=True)
class Prices:
    """A compiled table: exact names and ``*`` prefixes per provider ("" for any)."""

    currency: str = "USD"
    exact: dict[tuple[str, str], Rate] = field(default_factory=dict)
    # Longest prefix first.
    prefixes: tuple[tuple[str, str, Rate], ...] = ()

    @classmethod
    def compile(cls, table: PriceTable) -> Prices:
        exact: dict[tuple[str, str], Rate] = {}
        prefixes: list[tuple[str, str, Rate]] = []
        for row in table.prices:
            rate = Rate(
                _units(row.prompt),
                _units(row.completion),
                _units(row.prompt if row.cached is None else row.cached),
            )
            provider = row.provider or ""
            if row.model.endswith("*"):
                prefixes.append((provider, row.model[:-1], rate))
            else:
                exact[(provider, row.model)] = rate
        prefixes.sort(key=lambda item: -len(item[1]))
        return cls(table.currency, exact, tuple(prefixes))

    def rate(self, provider: str | None, model: str | None) -> Rate | None:
        """The price of ``model`` at ``provider``: the provider's own row, else one for any."""
        if not model:
            return None
        provider = provider or ""
        for key in ((provider, model), ("", model)):
            rate = self.exact.get(key)
            if rate is not None:
                return rate
        for wanted in (provider, ""):
            for row_provider, prefix, rate in self.prefixes:
                if row_provider == wanted and model.startswith(prefix):
                    return rate
        return None

    def cost(self, call: LlmCall) -> int | None:
        """``call``'s cost in ``PICO`` units: 0 for a cache hit, None when no price applies
        or the response reported no usage."""
        if call.cache_hit:
            return 0
        usage = call.usage
        if usage is None or not (self.exact or self.prefixes):  # no usage, or no prices at all
            return None
        rate = self.rate(call.provider, call.model)
        if rate is None and call.request_model != call.model:
            rate = self.rate(call.provider, call.request_model)
        if rate is None:
            return None
        return rate.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)


NO_PRICES = Prices()


def amount(units: int) -> float:
    """A cost in units of the currency (for logs, metrics and JSON)."""
    return units / PICO


def parse_table(data: Any) -> Prices:
    """A compiled table from its JSON value; ``ValueError`` with one line saying what is wrong."""
    try:
        return Prices.compile(PriceTable.model_validate(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "table"
        raise ValueError(f"{where}: {error['msg']}") from None


def load_prices(path: str) -> Prices:
    """The table in the JSON file at ``path``; ``ValueError`` with one line on any problem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    try:
        return parse_table(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# The price table of the services a request runs with (set by the handler when there is one).
PRICES: StateKey[Prices] = StateKey("prices")


def call_cost(ctx: RequestContext, call: LlmCall) -> int | None:
    """``call``'s cost by the table of the services ``ctx`` runs with."""
    prices = ctx.state.get(PRICES)
    if prices is None:  # no table (the handler sets none): NO_PRICES.cost, without its calls
        return 0 if call.cache == CACHE_HIT else None
    return prices.cost(call)
