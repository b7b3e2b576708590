"""Deployment correlation: the bad deployment is named with the right confidence; noise names nobody."""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from collections.abc import Callable

import otel_llm_collector.correlation
import pytest
from otel_llm_collector.correlation import (
    Confidence,
    Deployment,
    DeploymentTracker,
    MinutePoint,
    candidates,
    correlate,
)
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.spc import Direction

MINUTE = 60 * 1_000_000_000
T0 = 1_714_557_600 * 1_000_000_000  # 2024-05-01T10:00:00Z


def at(hhmm: str) -> int:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return T0 + ((hours - 10) * 60 + minutes) * MINUTE


def history(
    seed: int,
    level: Callable[[int], float],
    *,
    start: str = "07:00",
    end: str = "10:22",
    per_minute: int = 6,
    sd: float = 0.08,
) -> list[MinutePoint]:
    """Per-minute means of `per_minute` evaluation scores (1 call/s, 10% evaluated: 6 a minute)."""
    rng = random.Random(seed)
    points = []
    for t in range(at(start), at(end), MINUTE):
        scores = [rng.gauss(level(t), sd) for _ in range(per_minute)]
        points.append(MinutePoint(t, statistics.fmean(scores), per_minute))
    return points


def test_faithfulness_collapse_at_a_deployment_is_strong() -> None:
    deployment = Deployment(
        "v2", at("10:12"), {"service": "rag", "service_version": "2.0.0"}, commit="a1b2c3", author="dana"
    )
    points = history(1, lambda t: 0.88 if t < at("10:12") else 0.55)
    result = correlate([deployment], points, adverse=Direction.DOWN, at_ns=at("10:22"), metric="faithfulness")
    assert result is not None
    assert result.deployment_id == "v2"
    assert result.confidence is Confidence.STRONG
    assert result.before_mean == pytest.approx(0.88, abs=0.01)
    assert result.after_mean == pytest.approx(0.55, abs=0.02)
    assert result.step == pytest.approx(-0.33, abs=0.02)
    assert result.score > 3.0
    assert result.t_statistic > 6.0
    assert (result.before_points, result.after_points) == (60, 10)
    fell = f"faithfulness fell from {result.before_mean:.3g} to {result.after_mean:.3g}"
    for words in (fell, "'v2'", "2024-05-01T10:12:00Z", "commit a1b2c3", "strong"):
        assert words in result.explanation
    assert json.loads(json.dumps(result.to_dict()))["confidence"] == "strong"


def test_two_deployments_twenty_minutes_apart_the_second_is_named() -> None:
    first = Deployment("v2", at("09:50"), {"service_version": "2.0.0"})
    second = Deployment("v3", at("10:10"), {"service_version": "3.0.0"})
    points = history(2, lambda t: 0.88 if t < at("10:10") else 0.60)
    found = candidates([first, second], points, adverse=Direction.DOWN, at_ns=at("10:22"))
    assert [c.deployment_id for c in found] == ["v3", "v2"]
    assert found[0].confidence is Confidence.STRONG
    assert found[0].before_points == 20  # cut at the first deployment
    assert found[1].confidence is Confidence.NONE
    assert found[1].after_points == 20  # cut at the second deployment


def test_latency_regression_is_adverse_upward() -> None:
    deployment = Deployment("v2", at("10:00"))
    points = history(3, lambda t: 1.2 if t < at("10:00") else 1.8, sd=0.3)
    up = correlate([deployment], points, adverse=Direction.UP, at_ns=at("10:22"), metric="latency_p95")
    assert up is not None
    assert up.confidence is Confidence.STRONG
    assert "latency_p95 rose" in up.explanation
    down = correlate([deployment], points, adverse=Direction.DOWN, at_ns=at("10:22"))
    assert down is not None
    assert down.confidence is Confidence.NONE
    assert down.score < 0
    assert "not the adverse direction" in down.explanation


def test_small_step_is_weak_or_moderate_not_strong() -> None:
    deployment = Deployment("v2", at("09:30"))
    # A 0.04 drop against per-minute noise of ~0.033: about 1.2 sigma, over 50 minutes after.
    points = history(4, lambda t: 0.88 if t < at("09:30") else 0.84)
    result = correlate([deployment], points, adverse=Direction.DOWN, at_ns=at("10:20"))
    assert result is not None
    assert result.confidence in (Confidence.WEAK, Confidence.MODERATE)


def test_noise_names_no_deployment() -> None:
    confidences: Counter[Confidence] = Counter()
    for seed in range(120):
        rng = random.Random(1000 + seed)
        deployments = [
            Deployment(f"d{i}", at("04:30") + i * 55 * MINUTE + rng.randrange(MINUTE)) for i in range(6)
        ]
        points = history(seed, lambda t: 0.88, start="04:00", end="10:00")
        result = correlate(deployments, points, adverse=Direction.DOWN, at_ns=at("10:00"))
        assert result is not None
        confidences[result.confidence] += 1
    assert confidences[Confidence.STRONG] == confidences[Confidence.MODERATE] == 0
    assert confidences[Confidence.NONE] >= 118


def test_too_little_data_after_the_deployment_gives_no_verdict() -> None:
    deployment = Deployment("v2", at("10:20"))
    points = history(5, lambda t: 0.88 if t < at("10:20") else 0.30)
    result = correlate([deployment], points, adverse=Direction.DOWN, at_ns=at("10:21"))
    assert result is not None
    assert result.confidence is Confidence.NONE
    assert result.after_points == 1
    assert "too little data" in result.explanation


def test_only_deployments_in_the_lookback_are_candidates() -> None:
    old = Deployment("old", at("02:00"))
    points = history(6, lambda t: 0.88, start="01:00")
    assert correlate([old], points, adverse=Direction.DOWN, at_ns=at("10:22")) is None
    assert correlate([], points, adverse=Direction.DOWN, at_ns=at("10:22")) is None
    with pytest.raises(ValueError, match=r"^min_points:"):
        correlate([old], points, adverse=Direction.DOWN, at_ns=at("10:22"), min_points=1)


def test_busy_minutes_weigh_more_in_the_means() -> None:
    deployment = Deployment("v2", at("10:00"))
    points = [MinutePoint(at("09:50") + i * MINUTE, 0.9, 10) for i in range(10)]
    points += [
        MinutePoint(at("10:00") + i * MINUTE, 0.5 if i % 2 else 0.9, 1 if i % 2 else 9) for i in range(10)
    ]
    result = correlate([deployment], points, adverse=Direction.DOWN, at_ns=at("10:10"))
    assert result is not None
    assert result.after_mean == pytest.approx((0.9 * 9 + 0.5 * 1) / 10)


SERIES = SeriesKey("rag", "answer", "support", "v1", "gpt-4o")


def test_tracker_records_a_new_service_version_once() -> None:
    tracker = DeploymentTracker()
    assert tracker.observe(SERIES, "1.0.0", at("09:00")) is None  # what was already running
    assert tracker.observe(SERIES, "1.0.0", at("09:30")) is None
    deployment = tracker.observe(SERIES, "1.1.0", at("10:12"))
    assert deployment is not None
    assert deployment.time_ns == at("10:12")
    assert deployment.components == {"service": "rag", "service_version": "1.1.0"}
    assert deployment.automatic
    assert tracker.observe(SERIES, "1.1.0", at("10:13")) is None
    assert tracker.observe(SERIES, "1.0.0", at("10:14")) is None  # old pods still draining
    assert tracker.deployments() == [deployment]


def test_tracker_merges_simultaneous_changes_and_scopes_prompt_and_model() -> None:
    tracker = DeploymentTracker()
    tracker.observe(SERIES, "1.0.0", at("09:00"))
    changed = SERIES._replace(prompt_version="v2", model="gpt-4o-mini")
    deployment = tracker.observe(changed, "1.1.0", at("10:00"))
    assert deployment is not None
    assert deployment.components == {
        "service": "rag",
        "prompt_name": "support",
        "feature": "answer",
        "service_version": "1.1.0",
        "prompt_version": "v2",
        "model": "gpt-4o-mini",
    }
    assert len(tracker.deployments()) == 1
    other_feature = SeriesKey("rag", "summarise", "digest", "v1", "gpt-4o")
    assert deployment.concerns(changed)
    assert not deployment.concerns(other_feature)
    assert tracker.deployments(series=other_feature) == []
    assert tracker.deployments(series=changed, since_ns=at("09:30")) == [deployment]
    assert tracker.deployments(series=changed, until_ns=at("09:30")) == []


def test_tracker_moves_a_deployment_back_for_late_records() -> None:
    tracker = DeploymentTracker()
    tracker.observe(SERIES, "1.0.0", at("09:00"))
    tracker.observe(SERIES, "1.1.0", at("10:12"))
    tracker.observe(SERIES, "1.1.0", at("10:11"))
    (deployment,) = tracker.deployments()
    assert deployment.time_ns == at("10:11")


def test_tracker_keeps_posted_deployments_and_is_bounded() -> None:
    tracker = DeploymentTracker(max_deployments=3)
    for i in range(5):
        tracker.record(Deployment(f"d{i}", at("09:00") + i * MINUTE, {"commit_sha": f"c{i}"}, author="ci"))
    assert [d.id for d in tracker.deployments()] == ["d2", "d3", "d4"]
    assert tracker.dropped == 2


def test_tracker_round_trips_through_json() -> None:
    tracker = DeploymentTracker(max_versions_per_scope=2)
    tracker.observe(SERIES, "1.0.0", at("09:00"))
    tracker.observe(SERIES, "1.1.0", at("09:10"))
    tracker.record(Deployment("posted", at("09:20"), {"prompt_version": "v9"}, commit="ff00", author="eve"))
    restored = DeploymentTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert restored.deployments() == tracker.deployments()
    for t in (tracker, restored):
        assert t.observe(SERIES, "1.1.0", at("09:30")) is None
        third = t.observe(SERIES, "1.2.0", at("09:40"))
        assert third is not None
    # Only two versions are remembered per scope: the oldest, 1.0.0, counts as new again.
    assert restored.observe(SERIES, "1.0.0", at("09:50")) is not None


def test_public_api_is_pinned() -> None:
    assert sorted(otel_llm_collector.correlation.__all__) == [
        "Confidence",
        "Correlation",
        "Deployment",
        "DeploymentTracker",
        "MinutePoint",
        "candidates",
        "correlate",
    ]
    for name in otel_llm_collector.correlation.__all__:
        assert getattr(otel_llm_collector.correlation, name) is not None
