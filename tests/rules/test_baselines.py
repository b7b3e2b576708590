"""Baselines: warm-up, the EWMA arithmetic, guards (sparse, frozen, repeated), bounds and persistence."""

from __future__ import annotations

import json

import pytest
from otel_llm_collector.baselines import BaselineStore
from otel_llm_collector.conditions import MetricRef
from rules_support import KEY, MINUTE_NS, OTHER, T0_NS

P95 = MetricRef("latency_p95")
PERIOD = 5 * MINUTE_NS


def _feed(store: BaselineStore, values: list[float], *, start: int = 1, samples: int = 50) -> None:
    for i, value in enumerate(values, start=start):
        store.observe(KEY, P95, value, samples, T0_NS + i * PERIOD)


def test_no_baseline_until_warm() -> None:
    store = BaselineStore(warmup_points=3)
    _feed(store, [1.0, 1.0])
    assert store.value(KEY, P95) is None
    _feed(store, [1.0], start=3)
    assert store.value(KEY, P95) == pytest.approx(1.0)


def test_plain_mean_while_young_then_ewma() -> None:
    store = BaselineStore(span_points=3, warmup_points=1)  # alpha = 0.5
    _feed(store, [1.0, 3.0])
    assert store.value(KEY, P95) == pytest.approx(2.0)  # n=2: alpha_n = max(0.5, 1/2)
    _feed(store, [6.0], start=3)
    assert store.value(KEY, P95) == pytest.approx(4.0)  # n=3: alpha 0.5, not 1/3
    entry = store.get(KEY, P95)
    assert entry is not None
    assert entry.points == 3
    assert entry.stddev > 0


def test_one_outlier_barely_moves_a_long_baseline() -> None:
    store = BaselineStore()
    _feed(store, [1.0] * 100)
    _feed(store, [10.0], start=101)
    value = store.value(KEY, P95)
    assert value is not None
    assert 1.0 < value < 1.3


@pytest.mark.parametrize(
    ("value", "samples", "frozen"),
    [
        (5.0, 3, False),
        (5.0, 50, True),
        (float("nan"), 50, False),
        (float("inf"), 50, False),
        (None, 50, False),
    ],
)
def test_sparse_frozen_and_bad_values_are_not_learned(
    value: float | None, samples: int, frozen: bool
) -> None:
    store = BaselineStore(warmup_points=1, min_samples=10)
    _feed(store, [1.0])
    learned = store.observe(KEY, P95, value, samples, T0_NS + 10 * PERIOD, frozen=frozen)
    assert learned is False
    assert store.value(KEY, P95) == pytest.approx(1.0)


def test_the_same_period_is_learned_once() -> None:
    store = BaselineStore(warmup_points=1)
    assert store.observe(KEY, P95, 1.0, 50, T0_NS)
    assert not store.observe(KEY, P95, 9.0, 50, T0_NS)
    assert store.value(KEY, P95) == 1.0


def test_entries_are_bounded_and_drops_counted() -> None:
    store = BaselineStore(max_entries=1, warmup_points=1)
    assert store.observe(KEY, P95, 1.0, 50, T0_NS)
    assert not store.observe(OTHER, P95, 1.0, 50, T0_NS)
    assert store.dropped == 1
    assert len(store) == 1


def test_retain_forgets_series_the_windows_forgot() -> None:
    store = BaselineStore(warmup_points=1)
    store.observe(KEY, P95, 1.0, 50, T0_NS)
    store.observe(OTHER, P95, 2.0, 50, T0_NS)
    store.retain([OTHER])
    assert store.value(KEY, P95) is None
    assert store.value(OTHER, P95) == 2.0


def test_round_trip_through_json() -> None:
    store = BaselineStore(warmup_points=2)
    _feed(store, [1.0, 2.0, 4.0])
    restored = BaselineStore.from_dict(json.loads(json.dumps(store.to_dict())), warmup_points=2)
    assert restored.value(KEY, P95) == store.value(KEY, P95)
    assert restored.get(KEY, P95) == store.get(KEY, P95)
    with pytest.raises(ValueError, match="version"):
        BaselineStore.from_dict({"version": 99, "entries": []})


def test_period_index() -> None:
    store = BaselineStore(period_seconds=300)
    assert store.period(T0_NS + PERIOD - 1) == store.period(T0_NS)
    assert store.period(T0_NS + PERIOD) == store.period(T0_NS) + 1
