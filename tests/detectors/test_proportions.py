"""Binomial bounds: small samples do not page, large clear ones do; intervals match published values."""

from __future__ import annotations

import math
from collections.abc import Callable

import otel_llm_collector.proportions
import pytest
from otel_llm_collector.proportions import (
    agresti_coull_interval,
    below,
    exceeds,
    min_failures_to_exceed,
    two_proportion_test,
    wilson_interval,
    z_for,
)


@pytest.mark.parametrize(
    ("fails", "n", "low", "pages"),
    [
        (3, 5, 0.2307, False),
        (5, 5, 0.5655, True),
        (30, 100, 0.2189, False),
        (40, 100, 0.3094, True),
        (300, 1000, 0.2724, True),
    ],
)
def test_fail_rate_pages_only_when_the_lower_bound_clears_the_threshold(
    fails: int, n: int, low: float, pages: bool
) -> None:
    assert wilson_interval(fails, n).low == pytest.approx(low, abs=1e-4)
    assert exceeds(fails, n, 0.25) is pages


def test_three_of_five_would_page_with_a_one_sided_95_percent_bound() -> None:
    # Why the default reads `confidence` as two-sided: the one-sided 95% bound is 0.2725 > 0.25.
    assert exceeds(3, 5, 0.25, confidence=0.90)
    assert not exceeds(3, 5, 0.25)


def test_wilson_interval_matches_published_values() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(20, 20).high == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("n", [5, 20, 100])
def test_wilson_coverage_is_near_nominal_where_wald_fails(p: float, n: int) -> None:
    def coverage(interval: Callable[[int, int], tuple[float, float]]) -> float:
        total = 0.0
        for k in range(n + 1):
            low, high = interval(k, n)
            if low <= p <= high:
                total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        return total

    def wald(k: int, n: int) -> tuple[float, float]:
        q = k / n
        half = 1.959964 * math.sqrt(q * (1 - q) / n)
        return q - half, q + half

    wilson = coverage(wilson_interval)
    assert wilson >= 0.83  # the known dips of Wilson near p = 1/n; never the collapse of Wald
    if n * p <= 1:
        assert coverage(wald) < 0.75


def test_success_rate_below_uses_the_upper_bound() -> None:
    assert wilson_interval(2, 6).high == pytest.approx(0.7000, abs=1e-4)
    assert not below(2, 6, 0.5)
    assert below(30, 100, 0.5)
    assert not below(0, 0, 0.5)


@pytest.mark.parametrize(
    ("n", "threshold", "needed"),
    [(5, 0.25, 4), (20, 0.25, 9), (100, 0.25, 34), (20, 0.01, 2), (3, 0.6, None)],
)
def test_min_failures_to_exceed(n: int, threshold: float, needed: int | None) -> None:
    assert min_failures_to_exceed(n, threshold) == needed
    if needed is not None:
        assert exceeds(needed, n, threshold)
        assert not exceeds(needed - 1, n, threshold)


def test_agresti_coull_contains_wilson_at_small_n() -> None:
    ac, w = agresti_coull_interval(3, 5), wilson_interval(3, 5)
    assert ac.low <= w.low
    assert ac.high >= w.high
    big_ac, big_w = agresti_coull_interval(300, 1000), wilson_interval(300, 1000)
    assert big_ac == pytest.approx(tuple(big_w), abs=2e-4)


def test_two_proportion_test_matches_newcombe_example() -> None:
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339.
    result = two_proportion_test(48, 80, 56, 70)
    assert result.difference == pytest.approx(0.2)
    assert (result.low, result.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert result.z == pytest.approx(2.650, abs=1e-3)
    assert result.p_value == pytest.approx(0.00805, abs=1e-4)
    greater = two_proportion_test(48, 80, 56, 70, alternative="greater")
    less = two_proportion_test(48, 80, 56, 70, alternative="less")
    assert greater.p_value == pytest.approx(result.p_value / 2)
    assert less.p_value == pytest.approx(1 - result.p_value / 2)


def test_two_proportion_test_with_no_evidence() -> None:
    same = two_proportion_test(10, 100, 10, 100)
    assert (same.z, same.p_value) == (0.0, 1.0)
    assert same.low < 0 < same.high
    empty = two_proportion_test(0, 0, 3, 10)
    assert empty.p_value == 1.0
    assert empty.to_dict()["n_a"] == 0


@pytest.mark.parametrize(
    ("call", "setting"),
    [
        (lambda: wilson_interval(6, 5), "count"),
        (lambda: wilson_interval(-1, 5), "count"),
        (lambda: wilson_interval(1, -5), "n"),
        (lambda: z_for(1.0), "confidence"),
        (lambda: two_proportion_test(1, 5, 1, 5, alternative="bigger"), "alternative"),  # type: ignore[arg-type]
    ],
)
def test_invalid_arguments_raise(call: Callable[[], object], setting: str) -> None:
    with pytest.raises(ValueError, match=f"^{setting}:"):
        call()


def test_public_api_is_pinned() -> None:
    assert sorted(otel_llm_collector.proportions.__all__) == [
        "DEFAULT_CONFIDENCE",
        "Interval",
        "TwoProportionResult",
        "agresti_coull_interval",
        "below",
        "exceeds",
        "min_failures_to_exceed",
        "two_proportion_test",
        "wilson_interval",
        "z_for",
    ]
    for name in otel_llm_collector.proportions.__all__:
        assert getattr(otel_llm_collector.proportions, name) is not None
