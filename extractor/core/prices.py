"""What LLM calls cost: prices per model, and the cost of the usage an API reports.

Prices are US dollars per million tokens. The defaults are the providers'
published list prices for a few common models (override or extend them with
the ``prices`` setting); the embedded model costs nothing. A model with no
known price has no cost (None), never a guessed one.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field


class ModelPrice(BaseModel):
    model_config = ConfigDict(strict=True)  # a price is a number: true, false or "0.5" in the settings are refused

    input: float = Field(ge=0, description="per million prompt tokens")
    output: float = Field(ge=0, description="per million completion tokens")
    cached_input: float | None = Field(default=None, ge=0, description="per million cached prompt tokens")


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4.1": ModelPrice(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": ModelPrice(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": ModelPrice(input=0.10, output=0.40, cached_input=0.025),
    "o4-mini": ModelPrice(input=1.10, output=4.40, cached_input=0.275),
    "gpt-5": ModelPrice(input=1.25, output=10.00, cached_input=0.125),
    "gpt-5-mini": ModelPrice(input=0.25, output=2.00, cached_input=0.025),
    "gpt-5-nano": ModelPrice(input=0.05, output=0.40, cached_input=0.005),
}
FREE = ModelPrice(input=0, output=0, cached_input=0)


def price_for(model: str, prices: dict[str, ModelPrice], embedded: bool = False) -> ModelPrice | None:
    """The settings' price for ``model``, else the default one; a dated snapshot takes its family's price."""
    if embedded:
        return FREE
    for table in (prices, DEFAULT_PRICES):
        if model in table:
            return table[model]
    family = known_family(model, DEFAULT_PRICES)
    return DEFAULT_PRICES[family] if family else None


def known_family(model: str, known: Iterable[str]) -> str | None:
    """``model`` itself when known, else the family a dated snapshot (``gpt-4o-2024-08-06``) belongs to."""
    names = set(known)
    if model in names:
        return model
    return max((name for name in names if model.startswith(f"{name}-20")), key=len, default=None)


def usage_cost(
    price: ModelPrice | None, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, factor: float = 1.0
) -> float | None:
    """Dollars for one call's usage; cached prompt tokens at the cached price where the model has one."""
    if price is None:
        return None
    cached = min(cached_tokens, prompt_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    dollars = (prompt_tokens - cached) * price.input + cached * cached_rate + completion_tokens * price.output
    return dollars * factor / 1_000_000
