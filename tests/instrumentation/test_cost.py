from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_llm import cost
from otel_llm.cost import PRICES_FILE_ENV, configure, cost_usd, load_prices, prices


@pytest.fixture(autouse=True)
def _fresh_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(PRICES_FILE_ENV, raising=False)
    configure(prices_file=None)
    yield
    configure(prices_file=None)


def test_shipped_table_has_date_sources_and_both_providers() -> None:
    raw = json.loads(Path(cost.__file__).with_name("data").joinpath("prices.json").read_text())
    assert raw["as_of"] == prices().as_of
    assert raw["providers"]["openai"]["source"].startswith("https://")
    assert raw["providers"]["anthropic"]["source"].startswith("https://")
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "o4-mini", "gpt-5", "text-embedding-3-small"):
        assert prices().lookup(name, "openai") is not None, name
    for name in (
        "claude-3-haiku",
        "claude-3-5-sonnet",
        "claude-3-7-sonnet",
        "claude-sonnet-4-5",
        "claude-opus-4",
    ):
        assert prices().lookup(name, "anthropic") is not None, name


@pytest.mark.parametrize(
    ("model", "provider", "expected_input_price"),
    [
        ("gpt-4o", "openai", 2.5),
        ("gpt-4o-2024-08-06", "openai", 2.5),  # dated snapshot
        ("gpt-4o-2024-05-13", "openai", 5.0),  # a listed snapshot with its own price wins
        ("gpt-4o-mini-2024-07-18", "openai", 0.15),
        ("gpt-5-mini-2025-08-07", "openai", 0.25),  # not mistaken for gpt-5
        ("GPT-4.1-nano", "openai", 0.10),
        ("claude-3-5-sonnet-20241022", "anthropic", 3.0),
        ("claude-3-7-sonnet-latest", "anthropic", 3.0),
        ("claude-sonnet-4-0", "anthropic", 3.0),  # alias
        ("claude-haiku-4-5-20251001", "anthropic", 1.0),
        ("claude-opus-4-1-20250805", "anthropic", 15.0),
        ("claude-opus-4-5-20251101", "anthropic", 5.0),
        ("claude-3-5-sonnet-20241022", None, 3.0),  # no provider: search all
    ],
)
def test_lookup_matches_exact_alias_or_dated_snapshot(
    model: str, provider: str | None, expected_input_price: float
) -> None:
    price = prices().lookup(model, provider)
    assert price is not None
    assert price.input == expected_input_price


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-custom", "openai"),  # a suffix that is not a date
        ("gpt-4", "openai"),  # not in the table: no guess from gpt-4o
        ("gpt-4o-2024", "openai"),
        ("claude-3-5-sonnet", "openai"),  # wrong provider
        ("gpt-4o", "azure.ai.openai"),  # provider not in the table
        ("llama-3.1-70b-instruct", "openai"),
        ("ft:gpt-4o-mini:acme::abc123", "openai"),
        ("", "openai"),
        (None, "openai"),
    ],
)
def test_unknown_models_get_no_cost(model: str | None, provider: str | None) -> None:
    assert cost_usd(model, provider, 1000, 1000) is None


def test_plain_openai_cost() -> None:
    # 1,000 input at $2.50/M + 500 output at $10/M
    assert cost_usd("gpt-4o", "openai", 1000, 500) == pytest.approx(0.0025 + 0.005)


def test_openai_cached_tokens_are_part_of_input_and_billed_at_cache_price() -> None:
    # 10,000 input of which 8,000 cached: 2,000 x $2.50 + 8,000 x $1.25, 100 output x $10
    expected = (2000 * 2.5 + 8000 * 1.25 + 100 * 10.0) / 1e6
    assert cost_usd("gpt-4o-2024-11-20", "openai", 10_000, 100, cache_read_tokens=8000) == pytest.approx(
        expected
    )


def test_anthropic_cache_read_and_write() -> None:
    # claude-3-5-sonnet: input $3, cache write $3.75, cache read $0.30, output $15.
    # The instrumentation reports input = uncached 100 + cache read 5,000 + cache creation 2,000.
    expected = (100 * 3.0 + 5000 * 0.30 + 2000 * 3.75 + 300 * 15.0) / 1e6
    got = cost_usd("claude-3-5-sonnet-20241022", "anthropic", 7100, 300, 5000, 2000)
    assert got == pytest.approx(expected)


def test_missing_cache_price_bills_cached_tokens_as_input() -> None:
    assert cost_usd("gpt-4o-2024-05-13", "openai", 1000, 0, cache_read_tokens=1000) == pytest.approx(0.005)


def test_long_context_prices_apply_to_every_token_above_threshold() -> None:
    below = cost_usd("claude-sonnet-4-5", "anthropic", 200_000, 1000)
    above = cost_usd("claude-sonnet-4-5", "anthropic", 200_001, 1000)
    assert below == pytest.approx((200_000 * 3.0 + 1000 * 15.0) / 1e6)
    assert above == pytest.approx((200_001 * 6.0 + 1000 * 22.5) / 1e6)


def test_embeddings_cost_input_only() -> None:
    assert cost_usd("text-embedding-3-small", "openai", 1_000_000, 0) == pytest.approx(0.02)


def test_inconsistent_counts_never_go_negative() -> None:
    # Cache counts above the input total (a caller that forgot to sum) clamp the uncached part at zero.
    result = cost_usd("claude-3-5-sonnet", "anthropic", 10, 0, cache_read_tokens=100)
    assert result == pytest.approx(100 * 0.30 / 1e6)


def _write(tmp_path: Path, document: object, name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


OVERRIDE = {
    "as_of": "2030-01-01",
    "providers": {
        "openai": {"models": {"gpt-4o": {"input": 1.0, "output": 2.0}}},
        "azure.ai.openai": {
            "models": {"my-deployment": {"input": 2.5, "cache_read": 1.25, "output": 10}},
            "aliases": {"prod-chat": "my-deployment"},
        },
    },
}


def test_override_file_from_env_is_merged_over_shipped_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRICES_FILE_ENV, str(_write(tmp_path, OVERRIDE)))
    configure(prices_file=None)
    assert cost_usd("gpt-4o", "openai", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert cost_usd("gpt-4o-mini", "openai", 1_000_000, 0) == pytest.approx(0.15)  # shipped entry kept
    assert cost_usd("prod-chat", "azure.ai.openai", 1_000_000, 0) == pytest.approx(2.5)
    assert prices().as_of == "2030-01-01"


def test_argument_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = _write(
        tmp_path, {"providers": {"openai": {"models": {"gpt-4o": {"input": 7, "output": 7}}}}}, "e.json"
    )
    monkeypatch.setenv(PRICES_FILE_ENV, str(env_file))
    configure(prices_file=_write(tmp_path, OVERRIDE))
    assert prices().lookup("gpt-4o", "openai") is not None
    assert cost_usd("gpt-4o", "openai", 1_000_000, 0) == pytest.approx(1.0)


def test_table_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prices()
    monkeypatch.setenv(PRICES_FILE_ENV, str(_write(tmp_path, OVERRIDE)))
    assert prices() is first  # the env is read on first use only
    configure(prices_file=None)
    assert prices() is not first


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '["a list"]',
        json.dumps({"providers": {"openai": {"models": {"gpt-4o": {"input": -1, "output": 2}}}}}),
        json.dumps({"providers": {"openai": {"models": {"gpt-4o": {"input": "cheap", "output": 2}}}}}),
        json.dumps({"providers": {"openai": {"models": {"gpt-4o": {"output": 2}}}}}),
        json.dumps(
            {"providers": {"openai": {"models": {"x": {"input": 1, "output": 1, "long_context": {}}}}}}
        ),
        json.dumps({"providers": []}),
    ],
)
def test_bad_override_file_is_logged_and_ignored(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, content)
    with caplog.at_level(logging.WARNING, logger="otel_llm.cost"):
        table = load_prices(path)
    assert table.cost_usd("gpt-4o", "openai", 1_000_000, 0) == pytest.approx(2.5)  # shipped price
    assert len([r for r in caplog.records if str(path) in r.getMessage()]) == 1


def test_missing_override_file_is_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configure(prices_file=tmp_path / "absent.json")
    with caplog.at_level(logging.WARNING, logger="otel_llm.cost"):
        assert cost_usd("gpt-4o", "openai", 1_000_000, 0) == pytest.approx(2.5)
        assert cost_usd("gpt-4o", "openai", 1_000_000, 0) == pytest.approx(2.5)
    assert len(caplog.records) == 1
