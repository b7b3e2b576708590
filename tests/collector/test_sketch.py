"""The quantile sketch: the stated relative error holds against exact quantiles, merges are exact."""

from __future__ import annotations

import json
import math
import random

import otel_llm_collector.sketch as sketch_module
import pytest
from otel_llm_collector.sketch import QuantileSketch

QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def _exact(sorted_values: list[float], q: float) -> float:
    """The same rank convention as the sketch: the value at index floor(q * (n - 1))."""
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


def _assert_within(sketch: QuantileSketch, values: list[float], accuracy: float) -> None:
    ordered = sorted(values)
    for q in QUANTILES:
        estimate = sketch.quantile(q)
        exact = _exact(ordered, q)
        assert estimate is not None
        assert abs(estimate - exact) <= accuracy * exact + 1e-12, (q, estimate, exact)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: rng.lognormvariate(0.0, 1.5),
        lambda rng: rng.expovariate(3.0),
        lambda rng: rng.uniform(0.001, 120.0),
        lambda rng: rng.paretovariate(1.2) / 1000,
    ],
    ids=["lognormal", "exponential", "uniform", "pareto"],
)
def test_quantiles_are_within_the_relative_accuracy(draw: object) -> None:
    rng = random.Random(7)
    values = [draw(rng) for _ in range(20_000)]  # type: ignore[operator]
    sketch = QuantileSketch(0.01)
    for value in values:
        sketch.add(value)
    _assert_within(sketch, values, 0.01)
    assert sketch.count == len(values)
    assert sketch.mean == pytest.approx(sum(values) / len(values))


def test_a_coarser_sketch_is_coarser_but_still_within_its_bound() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(0, 1) for _ in range(5_000)]
    sketch = QuantileSketch(0.05)
    for value in values:
        sketch.add(value)
    _assert_within(sketch, values, 0.05)


def test_merge_equals_adding_everything_to_one_sketch() -> None:
    rng = random.Random(11)
    parts = [[rng.lognormvariate(k, 0.5) for _ in range(2_000)] for k in range(-2, 3)]
    merged = QuantileSketch()
    whole = QuantileSketch()
    for part in parts:
        piece = QuantileSketch()
        for value in part:
            piece.add(value)
            whole.add(value)
        merged.merge(piece)
    for q in QUANTILES:
        assert merged.quantile(q) == whole.quantile(q)
    _assert_within(merged, [v for part in parts for v in part], 0.01)


def test_merge_rejects_a_different_accuracy() -> None:
    with pytest.raises(ValueError, match="relative accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


def test_zero_and_negative_values_count_in_the_zero_bucket() -> None:
    sketch = QuantileSketch()
    for value in (0.0, -1.0, 0.0, 5.0):
        sketch.add(value)
    assert sketch.quantile(0.0) == 0.0
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(5.0, rel=0.01)


def test_nan_and_infinity_are_ignored() -> None:
    sketch = QuantileSketch()
    for value in (float("nan"), float("inf"), 2.0):
        sketch.add(value)
    assert sketch.count == 1
    assert sketch.quantile(0.5) == 2.0


def test_empty_sketch_has_no_quantiles() -> None:
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) is None
    assert sketch.mean is None
    sketch.add(1.0)
    with pytest.raises(ValueError, match="quantile"):
        sketch.quantile(1.5)


def test_dict_round_trip_through_json_answers_identically() -> None:
    rng = random.Random(5)
    sketch = QuantileSketch()
    for _ in range(1_000):
        sketch.add(rng.expovariate(1.0))
    restored = QuantileSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert [restored.quantile(q) for q in QUANTILES] == [sketch.quantile(q) for q in QUANTILES]
    assert (restored.count, restored.sum, restored.min, restored.max) == (
        sketch.count,
        sketch.sum,
        sketch.min,
        sketch.max,
    )


def test_binary_round_trip_answers_identically() -> None:
    rng = random.Random(6)
    full = QuantileSketch()
    for _ in range(1_000):
        full.add(rng.lognormvariate(0.0, 2.0))
    full.add(0.0)
    out = bytearray(b"prefix")
    for sketch in (full, QuantileSketch(), QuantileSketch(0.05)):
        sketch.pack_into(out)
    offset = len(b"prefix")
    restored = []
    for _ in range(3):
        sketch, offset = QuantileSketch.unpack_from(bytes(out), offset)
        restored.append(sketch)
    assert offset == len(out)
    for original, copy in zip((full, QuantileSketch(), QuantileSketch(0.05)), restored, strict=True):
        assert copy.to_dict() == original.to_dict()
        assert [copy.quantile(q) for q in QUANTILES] == [original.quantile(q) for q in QUANTILES]
    with pytest.raises(ValueError, match="truncated"):
        QuantileSketch.unpack_from(bytes(out[: len(b"prefix") + 70]), len(b"prefix"))


def test_extreme_range_collapses_the_lowest_buckets_only() -> None:
    sketch = QuantileSketch()
    for exponent in range(-9, 10):
        for _ in range(10):
            sketch.add(10.0**exponent * 1.5)
    high = sketch.quantile(0.99)
    assert high == pytest.approx(1.5e9, rel=0.01)
    assert len(sketch.to_dict()["b"]) <= 2048


def test_invalid_accuracy_is_refused() -> None:
    with pytest.raises(ValueError, match="relative_accuracy"):
        QuantileSketch(0.0)


def test_public_api_is_pinned() -> None:
    assert sorted(sketch_module.__all__) == ["DEFAULT_RELATIVE_ACCURACY", "QuantileSketch"]


@pytest.mark.parametrize("batched", [False, True])
def test_a_new_lowest_value_past_the_bucket_limit_lands_in_the_lowest_bin(batched: bool) -> None:
    """Growing downwards past the bucket limit collapses the lowest buckets: the new value belongs to
    the lowest bin, not to a bin counted from the top end."""
    sketch = QuantileSketch()
    sketch.add(1e12)
    sketch.add(1.0)  # about 1,380 bins apart at 1% accuracy
    low = 1e-8  # another ~920 bins below: past the 2,048 limit
    if batched:
        sketch.add_many([low])
    else:
        sketch.add(low)
    data = sketch.to_dict()
    assert len(data["b"]) <= 2048
    assert sum(data["b"]) + data["z"] == 3
    assert data["b"][0] >= 1  # the collapsed bottom holds the new lowest value
    assert data["b"][-1] == 1  # the top bin holds 1e12 alone
    assert sketch.quantile(1.0) == pytest.approx(1e12, rel=0.01)
