"""Estimated cost of a GenAI call from a price table shipped in the package.

The table (`otel_llm/data/prices.json`, USD per 1M tokens, with its `as_of` date and sources) covers the
current OpenAI and Anthropic models. It is read lazily, once, from the package: no download at start-up and
no network ever. A model is priced when its name is listed, is an alias in the table, or is a dated snapshot
of a listed name (`gpt-4o-2024-08-06` -> `gpt-4o`, `claude-3-5-sonnet-20241022` -> `claude-3-5-sonnet`,
`claude-3-7-sonnet-latest`); any other model gets no cost (`None`), never a guess from a similar name.

Cache-aware, following the GenAI conventions: `input_tokens` includes cached tokens (for Anthropic the
instrumentation sums input, cache read and cache creation), so

    cost = (input - cache_read - cache_creation) x input price + cache_read x cache_read price
           + cache_creation x cache_write price + output x output price

A missing cache price means the provider bills those tokens as ordinary input. Anthropic cache writes are
priced at the 5-minute rate (1-hour writes cost more and are underestimated); batch, flex and priority tiers
are not modelled.

Overrides: a JSON file of the same shape, given to `configure(prices_file=...)` or named by the environment
variable `OTEL_LLM_PRICES_FILE` (the argument wins), is merged over the shipped table model by model, for
example to price an Azure deployment or a fine-tuned model:

    {"providers": {"azure.ai.openai": {"models": {"my-gpt4o-deployment": {"input": 2.5, "output": 10}}}}}

A file that cannot be read or does not validate is logged once as a warning and ignored; the shipped table
stays in use and the app keeps running.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "PRICES_FILE_ENV",
    "ModelPrice",
    "PriceFileError",
    "PriceTable",
    "configure",
    "cost_usd",
    "load_prices",
    "prices",
]

_logger = logging.getLogger(__name__)

PRICES_FILE_ENV: Final = "OTEL_LLM_PRICES_FILE"
_SHIPPED_FILE: Final = Path(__file__).with_name("data") / "prices.json"
_PER_TOKEN: Final = 1e-6
# Dated snapshots: OpenAI `-2024-08-06`, Anthropic `-20241022`, and the moving `-latest` aliases.
_SNAPSHOT_SUFFIX: Final = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens; `cache_read`/`cache_write` of `None` mean "billed at the input price"."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    long_context_above_input_tokens: int | None = None
    long_context: ModelPrice | None = None

    def cost_usd(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
    ) -> float:
        """Cost of one call; `input_tokens` includes the cached ones."""
        if (
            self.long_context is not None
            and self.long_context_above_input_tokens is not None
            and input_tokens > self.long_context_above_input_tokens
        ):
            return self.long_context.cost_usd(
                input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens
            )
        cache_read_tokens = max(cache_read_tokens, 0)
        cache_creation_tokens = max(cache_creation_tokens, 0)
        uncached = max(input_tokens - cache_read_tokens - cache_creation_tokens, 0)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        total = (
            uncached * self.input
            + cache_read_tokens * read_price
            + cache_creation_tokens * write_price
            + max(output_tokens, 0) * self.output
        )
        return total * _PER_TOKEN


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per provider (`gen_ai.provider.name`) and model, with aliases; immutable once loaded."""

    as_of: str
    models: Mapping[str, Mapping[str, ModelPrice]]
    aliases: Mapping[str, Mapping[str, str]]

    def lookup(self, model: str | None, provider: str | None = None) -> ModelPrice | None:
        """The price of `model` (exact, alias or dated snapshot); any provider's when `provider` is None."""
        if not model:
            return None
        name = model.lower()
        providers = (provider,) if provider is not None else tuple(self.models)
        for candidate in (name, _SNAPSHOT_SUFFIX.sub("", name)):
            for provider_name in providers:
                found = self._find(provider_name, candidate)
                if found is not None:
                    return found
        return None

    def _find(self, provider: str, name: str) -> ModelPrice | None:
        models = self.models.get(provider)
        if models is None:
            return None
        price = models.get(name)
        if price is None:
            target = self.aliases.get(provider, {}).get(name)
            price = models.get(target) if target is not None else None
        return price

    def cost_usd(
        self,
        model: str | None,
        provider: str | None,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
    ) -> float | None:
        price = self.lookup(model, provider)
        if price is None:
            return None
        return price.cost_usd(input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens)


class PriceFileError(ValueError):
    """A price file that does not have the table's shape; the message names the offending entry."""


def _price(raw: object, where: str, *, nested: bool = True) -> ModelPrice:
    if not isinstance(raw, Mapping):
        raise PriceFileError(f"{where}: expected an object")

    def number(key: str, *, required: bool) -> float | None:
        value = raw.get(key)
        if value is None and not required:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise PriceFileError(f"{where}.{key}: expected a non-negative number, got {value!r}")
        return float(value)

    long_raw = raw.get("long_context") if nested else None
    long_context: ModelPrice | None = None
    threshold: int | None = None
    if long_raw is not None:
        long_context = _price(long_raw, f"{where}.long_context", nested=False)
        above = long_raw.get("above_input_tokens") if isinstance(long_raw, Mapping) else None
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise PriceFileError(f"{where}.long_context.above_input_tokens: expected a non-negative integer")
        threshold = above
    return ModelPrice(
        input=number("input", required=True) or 0.0,
        output=number("output", required=True) or 0.0,
        cache_read=number("cache_read", required=False),
        cache_write=number("cache_write", required=False),
        long_context_above_input_tokens=threshold,
        long_context=long_context,
    )


def _parse(
    document: object, origin: str
) -> tuple[str | None, dict[str, dict[str, ModelPrice]], dict[str, dict[str, str]]]:
    if not isinstance(document, Mapping):
        raise PriceFileError(f"{origin}: expected a JSON object")
    as_of = document.get("as_of")
    providers = document.get("providers", {})
    if not isinstance(providers, Mapping):
        raise PriceFileError(f"{origin}: `providers` must be an object")
    models: dict[str, dict[str, ModelPrice]] = {}
    aliases: dict[str, dict[str, str]] = {}
    for provider, section in providers.items():
        if not isinstance(section, Mapping):
            raise PriceFileError(f"{origin}: providers.{provider} must be an object")
        raw_models = section.get("models", {})
        raw_aliases = section.get("aliases", {})
        if not isinstance(raw_models, Mapping) or not isinstance(raw_aliases, Mapping):
            raise PriceFileError(f"{origin}: providers.{provider}.models/aliases must be objects")
        models[str(provider)] = {
            str(name).lower(): _price(raw, f"providers.{provider}.models.{name}")
            for name, raw in raw_models.items()
        }
        aliases[str(provider)] = {
            str(alias).lower(): str(target).lower() for alias, target in raw_aliases.items()
        }
    return (str(as_of) if as_of is not None else None), models, aliases


def _shipped() -> Any:
    # Next to this module rather than through `importlib.resources`: that also works when an editable install
    # has registered `otel_llm` as a namespace package.
    return json.loads(_SHIPPED_FILE.read_text(encoding="utf-8"))


def load_prices(prices_file: str | os.PathLike[str] | None = None) -> PriceTable:
    """The shipped table with `prices_file` (if given and valid) merged over it, model by model.

    A file that cannot be read or parsed is logged as a warning and ignored; this function does not raise
    for it. The shipped table itself is part of the package and is trusted.
    """
    as_of, models, aliases = _parse(_shipped(), "prices.json")
    if prices_file is not None:
        try:
            with open(prices_file, encoding="utf-8") as handle:
                document = json.load(handle)
            user_as_of, user_models, user_aliases = _parse(document, str(prices_file))
        except (OSError, ValueError) as error:
            _logger.warning(
                "otel_llm: ignoring price file %s (%s); using the shipped prices", prices_file, error
            )
        else:
            for provider, entries in user_models.items():
                models.setdefault(provider, {}).update(entries)
            for provider, names in user_aliases.items():
                aliases.setdefault(provider, {}).update(names)
            as_of = user_as_of or as_of
    return PriceTable(as_of=as_of or "unknown", models=models, aliases=aliases)


_lock = threading.Lock()
_table: PriceTable | None = None
_configured_file: str | os.PathLike[str] | None = None


def configure(*, prices_file: str | os.PathLike[str] | None = None) -> None:
    """Use `prices_file` (over `OTEL_LLM_PRICES_FILE`) from the next lookup on; `None`: the env again."""
    global _table, _configured_file
    with _lock:
        _configured_file = prices_file
        _table = None


def prices() -> PriceTable:
    """The active table, loaded on first use: shipped prices + the configured or environment override."""
    global _table
    table = _table
    if table is not None:
        return table
    with _lock:
        if _table is None:
            chosen = (
                _configured_file if _configured_file is not None else os.environ.get(PRICES_FILE_ENV) or None
            )
            _table = load_prices(chosen)
        return _table


def cost_usd(
    model: str | None,
    provider: str | None,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_creation_tokens: int = 0,
    *,
    table: PriceTable | None = None,
) -> float | None:
    """Estimated USD cost of one call, or `None` when the model is not in the table.

    `input_tokens` includes `cache_read_tokens` and `cache_creation_tokens` (the GenAI convention).
    `provider` is `gen_ai.provider.name` (`openai`, `anthropic`, or a provider added by an override file);
    `None` searches every provider. Never raises for an unknown model.
    """
    active = table if table is not None else prices()
    return active.cost_usd(
        model, provider, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens
    )
