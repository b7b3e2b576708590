"""Canary analysis on generated traffic with known differences (seeded), and the rank test's arithmetic."""

from __future__ import annotations

import random

import pytest
from otel_llm_collector.canary import (
    CanaryCollector,
    MetricVerdict,
    _Reservoir,
    compare_proportions,
    compare_samples,
    mann_whitney_u,
    overall_verdict,
)
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey

T0 = 1_800_000_000 * 1_000_000_000


def _traffic(
    canary: CanaryCollector,
    version: str,
    n: int,
    *,
    rng: random.Random,
    faithfulness: float = 0.85,
    error_rate: float = 0.02,
    latency_s: float = 1.0,
) -> None:
    series = SeriesKey("support-bot", "answer", "answer", version, "gpt-4o-mini")
    for i in range(n):
        score = min(1.0, max(0.0, rng.gauss(faithfulness, 0.1)))
        evaluation = EvaluationRecord(
            "faithfulness", T0 + i, round(score, 2), label="fail" if score < 0.5 else "pass"
        )
        canary.observe_call(
            CallRecord(
                series,
                T0 + i,
                rng.lognormvariate(0.0, 0.3) * latency_s,
                "t",
                f"s{i}",
                error_type="Timeout" if rng.random() < error_rate else "",
                evaluations=(evaluation,),
            )
        )


def test_same_distribution_passes() -> None:
    rng = random.Random(1)
    canary = CanaryCollector()
    _traffic(canary, "v1", 600, rng=rng)
    _traffic(canary, "v2", 600, rng=rng)
    report = canary.compare("answer", baseline="v1", candidate="v2")
    assert report is not None
    assert [m.name for m in report.metrics] == [
        "latency_seconds",
        "error_rate",
        "score:faithfulness",
        "fail_rate:faithfulness",
    ]
    assert [m.verdict for m in report.metrics] == ["pass"] * 4
    assert (report.verdict, report.score) == ("pass", 100.0)


def test_quality_drop_fails() -> None:
    # Faithfulness 0.85 -> 0.65 (sd 0.1): the scores shift and the share under 0.5 (labelled fail) goes
    # from 0.1% to 6.7%. Latency and errors are unchanged: 2 of 4 metrics pass, score 50.
    rng = random.Random(11)
    canary = CanaryCollector()
    _traffic(canary, "v1", 600, rng=rng)
    _traffic(canary, "v2", 600, rng=rng, faithfulness=0.65)
    report = canary.compare("answer", baseline="v1", candidate="v2")
    assert report is not None
    verdicts = {m.name: m.verdict for m in report.metrics}
    assert verdicts["score:faithfulness"] == "fail"
    assert verdicts["latency_seconds"] == "pass"
    assert verdicts["fail_rate:faithfulness"] == "fail"
    assert (report.verdict, report.score) == ("fail", 50.0)


def test_no_difference_fails_a_metric_about_two_percent_of_the_time() -> None:
    # At 98% confidence a metric without a real difference fails with probability about 0.02 (the rank
    # test two-sided at alpha 0.02 fails only on its bad side: about 0.01). 40 seeded canaries x 4
    # metrics: expect 1-4 failures; 8 would mean the tests are miscalibrated.
    failures = conclusive = 0
    for seed in range(40):
        rng = random.Random(seed)
        canary = CanaryCollector()
        _traffic(canary, "v1", 300, rng=rng, error_rate=0.05)
        _traffic(canary, "v2", 300, rng=rng, error_rate=0.05)
        report = canary.compare("answer", baseline="v1", candidate="v2")
        assert report is not None
        conclusive += sum(m.verdict != "inconclusive" for m in report.metrics)
        failures += sum(m.verdict == "fail" for m in report.metrics)
    assert conclusive == 160
    assert failures <= 8


def test_latency_regression_alone_is_marginal_with_four_metrics() -> None:
    rng = random.Random(3)
    canary = CanaryCollector()
    _traffic(canary, "v1", 600, rng=rng, faithfulness=0.95)
    _traffic(canary, "v2", 600, rng=rng, faithfulness=0.95, latency_s=1.5)
    report = canary.compare("answer", baseline="v1", candidate="v2")
    assert report is not None
    assert {m.name: m.verdict for m in report.metrics}["latency_seconds"] == "fail"
    assert (report.verdict, report.score) == ("marginal", 75.0)


def test_tiny_samples_are_inconclusive_never_pass() -> None:
    rng = random.Random(5)
    canary = CanaryCollector()
    _traffic(canary, "v1", 600, rng=rng)
    _traffic(canary, "v2", 12, rng=rng)
    report = canary.compare("answer", baseline="v1", candidate="v2")
    assert report is not None
    assert {m.verdict for m in report.metrics} == {"inconclusive"}
    assert (report.verdict, report.score) == ("inconclusive", None)


def test_unknown_versions_and_groups_give_none() -> None:
    canary = CanaryCollector()
    _traffic(canary, "v1", 5, rng=random.Random(1))
    assert canary.compare("answer", baseline="v1", candidate="v9") is None
    assert canary.compare("other", baseline="v1", candidate="v1") is None
    assert canary.versions("answer") == ["v1"]


def test_error_rate_increase_fails_on_the_interval() -> None:
    worse = compare_proportions("error_rate", (10, 1000), (40, 1000), better="lower")
    assert worse.verdict == "fail"
    assert worse.low is not None
    assert worse.low > 0.0
    better = compare_proportions("error_rate", (40, 1000), (10, 1000), better="lower")
    assert better.verdict == "pass"


def test_rank_test_matches_hand_computed_values() -> None:
    # a = 1..5, b = 6..10: every b is larger, U_b = 25; mean 12.5, sigma^2 = 25 * 11 / 12.
    # z = (25 - 12.5 - 0.5) / sqrt(22.9167) = 2.5067, p = 0.01219.
    result = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert result.u == 25.0
    assert result.z == pytest.approx(2.5067, abs=1e-4)
    assert result.p_value == pytest.approx(0.01219, abs=1e-4)
    assert result.effect == 1.0
    # Ties: a = [1, 2, 2], b = [2, 3, 3]: ranks 1, 3, 3, 3, 5.5, 5.5; U_b = 14 - 6 = 8; tie term
    # (27 - 3) + (8 - 2) = 30; sigma^2 = 9 / 12 * (7 - 30 / 30) = 4.5; z = (8 - 4.5 - 0.5) / 2.1213.
    tied = mann_whitney_u([1, 2, 2], [2, 3, 3])
    assert tied.u == 8.0
    assert tied.z == pytest.approx(3.0 / 4.5**0.5)
    assert mann_whitney_u([1, 1], [1, 1]).p_value == 1.0
    assert mann_whitney_u([], [1.0]).p_value == 1.0


def test_significantly_better_candidate_passes() -> None:
    rng = random.Random(9)
    baseline = [rng.gauss(0.7, 0.1) for _ in range(200)]
    candidate = [rng.gauss(0.8, 0.1) for _ in range(200)]
    assert compare_samples("score:x", baseline, candidate, better="higher").verdict == "pass"
    assert compare_samples("latency", baseline, candidate, better="lower").verdict == "fail"


def _verdict(v: str) -> MetricVerdict:
    return MetricVerdict("m", v, "mann_whitney", "higher", 50, 50, 0.0, 0.0, 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["pass"] * 19 + ["fail"], ("pass", 95.0)),
        (["pass"] * 3 + ["fail"], ("marginal", 75.0)),
        (["pass"] * 2 + ["fail"], ("fail", pytest.approx(66.667, abs=1e-3))),
        (["pass", "inconclusive", "inconclusive"], ("inconclusive", None)),
        (["pass", "pass", "inconclusive", "inconclusive"], ("pass", 100.0)),
        ([], ("inconclusive", None)),
    ],
)
def test_overall_score_bands(verdicts: list[str], expected: tuple[str, object]) -> None:
    assert overall_verdict([_verdict(v) for v in verdicts]) == expected


def test_model_dimension_and_bounded_keys() -> None:
    canary = CanaryCollector(dimension="model", max_keys=1)
    series = SeriesKey("s", "f", "answer", "v1", "model-a")
    canary.observe_call(CallRecord(series, T0, 1.0, "t", "s"))
    canary.observe_call(CallRecord(series._replace(model="model-b"), T0, 1.0, "t", "s"))
    assert canary.versions("answer") == ["model-a"]
    assert canary.dropped == 1


def test_a_reservoir_fed_in_a_batch_keeps_the_same_sample() -> None:
    values = [float(i) for i in range(500)]
    one_by_one, batched = _Reservoir(50, random.Random(7)), _Reservoir(50, random.Random(7))
    for value in values:
        one_by_one.add(value)
    batched.add_many(values[:30])  # still filling
    batched.add_many(values[30:])
    assert batched.values == one_by_one.values
    assert batched.seen == one_by_one.seen == 500
    assert len(set(batched.values)) == 50
    assert max(batched.values) > 100  # later values do replace early ones
