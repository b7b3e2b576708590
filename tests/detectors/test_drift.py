"""Drift: PSI levels on shifted and unchanged data, test p-values against known values, bounded samples."""

from __future__ import annotations

import json
import random
from collections import Counter

import otel_llm_collector.drift
import pytest
from otel_llm_collector.drift import (
    DriftLevel,
    DriftMethod,
    Reservoir,
    categorical_drift,
    categorical_psi,
    chi_square_sf,
    chi_square_test,
    kolmogorov_sf,
    ks_test,
    numeric_drift,
    psi,
    psi_level,
    quantile_edges,
)


def normal(seed: int, n: int, mean: float = 0.0, sd: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (0.0, DriftLevel.NONE),
        (0.099, DriftLevel.NONE),
        (0.1, DriftLevel.MODERATE),
        (0.25, DriftLevel.MODERATE),
    ],
)
def test_psi_conventions(value: float, level: DriftLevel) -> None:
    assert psi_level(value) is level
    assert psi_level(0.2501) is DriftLevel.SIGNIFICANT


@pytest.mark.parametrize(
    ("mean", "sd", "level"),
    [
        (0.0, 1.0, DriftLevel.NONE),
        (0.4, 1.0, DriftLevel.MODERATE),
        (1.0, 1.0, DriftLevel.SIGNIFICANT),
        (0.0, 2.0, DriftLevel.SIGNIFICANT),
    ],
)
def test_psi_level_follows_the_size_of_the_shift(mean: float, sd: float, level: DriftLevel) -> None:
    reference = normal(1, 5000)
    result = psi(reference, normal(2, 5000, mean, sd))
    assert result.level is level
    assert result.method is DriftMethod.PSI
    assert (result.reference_size, result.current_size) == (5000, 5000)


def test_psi_of_a_mean_shift_is_about_its_square() -> None:
    # For normal distributions PSI (the symmetric Kullback-Leibler divergence) of a mean shift d is d^2.
    result = psi(normal(1, 20000), normal(2, 20000, 0.5))
    assert result.statistic == pytest.approx(0.25, rel=0.15)


def test_quantile_edges_collapse_ties() -> None:
    # Token counts with a spike at one value: duplicate edges would make empty bins.
    reference = [100.0] * 80 + [float(v) for v in range(200, 220)]
    edges = quantile_edges(reference, 10)
    assert edges == sorted(set(edges))
    assert len(edges) < 9
    assert psi(reference, reference).statistic == pytest.approx(0.0)


def test_categorical_psi_on_model_mix() -> None:
    reference = {"gpt-4o": 900, "gpt-4o-mini": 100}
    same_mix = categorical_psi(reference, {"gpt-4o": 450, "gpt-4o-mini": 50})
    assert same_mix.statistic == pytest.approx(0.0, abs=1e-4)  # only the smoothing differs
    assert same_mix.level is DriftLevel.NONE
    flipped = categorical_psi(reference, {"gpt-4o": 500, "gpt-4o-mini": 500})
    assert flipped.level is DriftLevel.SIGNIFICANT
    new_model = categorical_psi(reference, {"gpt-4o": 700, "gpt-4o-mini": 100, "claude-haiku": 200})
    assert new_model.level is DriftLevel.SIGNIFICANT
    assert new_model.statistic is not None
    assert new_model.statistic < float("inf")
    assert categorical_psi(reference, {}).level is DriftLevel.INSUFFICIENT_DATA


@pytest.mark.parametrize(
    ("x", "expected"), [(0.5, 0.9639), (1.0, 0.2700), (1.224, 0.1000), (1.358, 0.0500), (1.628, 0.0100)]
)
def test_kolmogorov_distribution_matches_tables(x: float, expected: float) -> None:
    assert kolmogorov_sf(x) == pytest.approx(expected, abs=2e-4)


def test_ks_statistic_and_p_value_on_known_samples() -> None:
    d, p = ks_test([1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0])
    assert d == pytest.approx(0.4)
    # n_e = 2.5: lambda = (1.5811 + 0.12 + 0.0696) * 0.4 = 0.7083, Q(0.7083) = 0.697.
    assert p == pytest.approx(0.697, abs=1e-3)
    identical = ks_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert identical == (0.0, 1.0)
    disjoint_d, disjoint_p = ks_test([float(v) for v in range(50)], [float(v) for v in range(100, 150)])
    assert disjoint_d == 1.0
    assert disjoint_p < 1e-15


def test_ks_p_values_are_calibrated_under_no_change() -> None:
    rng = random.Random(5)
    p_values = [
        ks_test([rng.gauss(0, 1) for _ in range(80)], [rng.gauss(0, 1) for _ in range(120)])[1]
        for _ in range(300)
    ]
    rejected = sum(p < 0.05 for p in p_values) / len(p_values)
    assert 0.02 <= rejected <= 0.09
    shifted = ks_test(normal(1, 1000), normal(2, 1000, 0.3))
    assert shifted[1] < 1e-4


@pytest.mark.parametrize(
    ("statistic", "df", "p"),
    [(3.841459, 1, 0.05), (5.991465, 2, 0.05), (11.070498, 5, 0.05), (23.209251, 10, 0.01), (0.0, 3, 1.0)],
)
def test_chi_square_survival_matches_critical_values(statistic: float, df: int, p: float) -> None:
    assert chi_square_sf(statistic, df) == pytest.approx(p, abs=1e-6)


def test_chi_square_test_on_a_known_table() -> None:
    # 2 x 2 table [[30, 70], [50, 50]]: chi-square 8.333 on 1 degree of freedom, p = 0.00389.
    statistic, df, p = chi_square_test({"stop": 30, "length": 70}, {"stop": 50, "length": 50})
    assert statistic == pytest.approx(8.3333, abs=1e-4)
    assert df == 1
    assert p == pytest.approx(0.00389, abs=1e-5)


def test_chi_square_pools_rare_categories() -> None:
    reference = {"a": 500, "b": 480, "rare1": 1, "rare2": 2}
    current = {"a": 510, "b": 470, "rare3": 3}
    statistic, df, p = chi_square_test(reference, current)
    assert df == 2  # a, b and the pooled rare ones
    assert p > 0.05
    assert statistic >= 0


def test_numeric_drift_needs_enough_samples() -> None:
    result = numeric_drift(normal(1, 29), normal(2, 500, 3.0))
    assert result.level is DriftLevel.INSUFFICIENT_DATA
    assert result.statistic is None


def test_numeric_drift_does_not_call_sampling_noise_drift() -> None:
    reference, current = normal(1, 60), normal(2, 60)
    # PSI alone on 60 + 60 values is biased upward past the "moderate" line ...
    assert psi(reference, current).level is not DriftLevel.NONE
    # ... the KS test says there is no evidence, so no drift is reported.
    result = numeric_drift(reference, current)
    assert result.method is DriftMethod.KS
    assert result.p_value is not None
    assert result.p_value > 0.01
    assert result.level is DriftLevel.NONE


def test_numeric_drift_reports_a_real_shift_with_its_size() -> None:
    result = numeric_drift(normal(1, 300, 1000.0, 200.0), normal(2, 300, 1400.0, 200.0))
    assert result.method is DriftMethod.KS
    assert result.p_value is not None
    assert result.p_value < 1e-10
    assert result.level is DriftLevel.SIGNIFICANT
    assert result.psi is not None
    assert result.psi > 0.25
    assert json.loads(json.dumps(result.to_dict()))["method"] == "ks"


def test_few_distinct_values_are_tested_as_categories() -> None:
    rng = random.Random(9)
    reference = [float(rng.choice([0, 1, 1, 2])) for _ in range(400)]
    current = [float(rng.choice([0, 2, 2, 2])) for _ in range(400)]
    result = numeric_drift(reference, current)
    assert result.method is DriftMethod.CHI_SQUARE
    assert result.level is DriftLevel.SIGNIFICANT


def test_categorical_drift_on_tool_call_mix() -> None:
    rng = random.Random(4)
    tools = ["search", "calculator", "none"]
    reference = Counter(rng.choices(tools, weights=[5, 2, 3], k=600))
    same = Counter(rng.choices(tools, weights=[5, 2, 3], k=600))
    changed = Counter(rng.choices(tools, weights=[1, 2, 7], k=600))
    quiet = categorical_drift(reference, same)
    assert quiet.method is DriftMethod.CHI_SQUARE
    assert quiet.level is DriftLevel.NONE
    loud = categorical_drift(reference, changed)
    assert loud.level is DriftLevel.SIGNIFICANT
    assert loud.p_value is not None
    assert loud.p_value < 1e-10
    assert categorical_drift(reference, {"search": 10}).level is DriftLevel.INSUFFICIENT_DATA


def test_reservoir_is_bounded_uniform_and_seeded() -> None:
    hits = Counter[int]()
    for seed in range(400):
        reservoir = Reservoir[int](10, seed=seed)
        reservoir.extend(range(100))
        assert len(reservoir) == 10
        assert reservoir.seen == 100
        hits.update(reservoir.values())
    # Each item is kept with probability 10/100: 40 of 400 times (sd 6).
    assert min(hits[i] for i in range(100)) >= 18
    assert max(hits[i] for i in range(100)) <= 62
    assert hits[0] + hits[1] + hits[2] == pytest.approx(hits[97] + hits[98] + hits[99], abs=45)
    a, b = Reservoir[int](5, seed=1), Reservoir[int](5, seed=1)
    a.extend(range(1000))
    b.extend(range(1000))
    assert a.values() == b.values()


def test_reservoir_round_trips_through_json() -> None:
    original = Reservoir[float](8, seed=3)
    original.extend(normal(1, 50))
    restored = Reservoir.from_dict(json.loads(json.dumps(original.to_dict())))
    more = normal(2, 50)
    original.extend(more)
    restored.extend(more)
    assert restored.values() == original.values()
    assert restored.seen == 100
    original.clear()
    assert (len(original), original.seen) == (0, 0)
    with pytest.raises(ValueError, match=r"^capacity:"):
        Reservoir[int](0)


def test_public_api_is_pinned() -> None:
    assert sorted(otel_llm_collector.drift.__all__) == [
        "DriftLevel",
        "DriftMethod",
        "DriftResult",
        "Reservoir",
        "categorical_drift",
        "categorical_psi",
        "chi_square_sf",
        "chi_square_test",
        "kolmogorov_sf",
        "ks_test",
        "numeric_drift",
        "psi",
        "psi_level",
        "quantile_edges",
    ]
    for name in otel_llm_collector.drift.__all__:
        assert getattr(otel_llm_collector.drift, name) is not None
