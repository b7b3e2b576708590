"""Trend detector: a slow drift is caught in hours, noise and negligible slopes are not."""

from __future__ import annotations

import json
import random

import otel_llm_collector.trend
import pytest
from otel_llm_collector.spc import Direction
from otel_llm_collector.trend import TrendDetector, mann_kendall, theil_sen_slope, trend

FIVE_MINUTES = 5 * 60 * 1_000_000_000
HOUR_POINTS = 12


def hours_to_signal(
    detector: TrendDetector, seed: int, slope_per_hour: float, *, hours: float
) -> float | None:
    """Feed 5-minute means of 0.88 + noise (sd 0.03); drift starts after 6 quiet hours. Hours of drift
    until the first signal, or None (a negative value would be a false alarm before the drift)."""
    rng = random.Random(seed)
    quiet = 6 * HOUR_POINTS
    for i in range(quiet + int(hours * HOUR_POINTS)):
        drift = slope_per_hour * max(0, i - quiet) / HOUR_POINTS
        if detector.update(i * FIVE_MINUTES, 0.88 + drift + rng.gauss(0.0, 0.03)) is not None:
            return (i - quiet) / HOUR_POINTS
    return None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_slow_faithfulness_drift_is_caught_within_five_hours(seed: int) -> None:
    delay = hours_to_signal(TrendDetector(), seed, -0.02, hours=8)
    assert delay is not None
    assert 2.0 <= delay <= 5.0  # documented: 3.25 to 4.75 hours; a 0.75 threshold needs 6.5


@pytest.mark.parametrize("seed", [4, 5])
def test_noise_alone_never_signals_in_two_days(seed: int) -> None:
    assert hours_to_signal(TrendDetector(), seed, 0.0, hours=42) is None


def test_upward_drift_is_ignored_for_quality_and_caught_for_latency() -> None:
    assert hours_to_signal(TrendDetector(), 6, +0.02, hours=8) is None
    delay = hours_to_signal(TrendDetector(adverse=Direction.UP), 6, +0.02, hours=8)
    assert delay is not None
    assert delay > 0


def test_a_significant_but_negligible_slope_does_not_signal() -> None:
    rng = random.Random(8)
    # 0.001 per hour with tiny noise: overwhelmingly significant, 0.006 over six hours.
    points = [(i * FIVE_MINUTES, 0.9 - 0.001 * i / 12 + rng.gauss(0, 0.0005)) for i in range(72)]
    result = trend(points)
    assert result is not None
    assert result.p_value < 1e-6
    assert result.change == pytest.approx(-0.006, abs=0.001)
    assert not result.signal
    lenient = trend(points, min_change=0.005)
    assert lenient is not None
    assert lenient.signal


def test_too_few_points_is_no_verdict() -> None:
    points = [(i * FIVE_MINUTES, 1.0 - 0.1 * i) for i in range(23)]
    assert trend(points) is None
    detector = TrendDetector()
    assert all(detector.update(t, v) is None for t, v in points)
    assert detector.last is None


def test_mann_kendall_and_theil_sen_known_values() -> None:
    s, z = mann_kendall([float(v) for v in range(10)])
    assert s == 45
    assert z == pytest.approx(44 / 125**0.5)
    assert mann_kendall([1.0, 1.0, 1.0]) == (0, 0.0)
    times = [float(t) for t in range(11)]
    values = [2.0 * t for t in times]
    values[5] = 100.0  # one wild outlier moves least squares, not the median of slopes
    assert theil_sen_slope(times, values) == pytest.approx(2.0)


def test_window_slides_and_round_trips() -> None:
    detector = TrendDetector(window_seconds=3600, min_points=5, max_points=50)
    for i in range(30):
        detector.update(i * FIVE_MINUTES, 0.9)
    state = detector.to_dict()
    assert len(state["points"]) == 13  # one hour back from the newest point, both ends included
    restored = TrendDetector.from_dict(json.loads(json.dumps(state)))
    for i in range(30, 60):
        value = 0.9 - 0.05 * (i - 30)
        assert restored.update(i * FIVE_MINUTES, value) == detector.update(i * FIVE_MINUTES, value)
    assert detector.last is not None
    assert detector.last.signal
    detector.reset()
    assert detector.to_dict()["points"] == []


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"window_seconds": 0}, "window_seconds"),
        ({"min_change": -1.0}, "min_change"),
        ({"alpha": 1.0}, "alpha"),
        ({"min_points": 2}, "min_points"),
        ({"min_points": 30, "max_points": 20}, "max_points"),
    ],
)
def test_invalid_settings_name_the_setting(settings: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:"):
        TrendDetector(**settings)  # type: ignore[arg-type]


def test_public_api_is_pinned() -> None:
    assert sorted(otel_llm_collector.trend.__all__) == [
        "TrendDetector",
        "TrendResult",
        "mann_kendall",
        "theil_sen_slope",
        "trend",
    ]
    for name in otel_llm_collector.trend.__all__:
        assert getattr(otel_llm_collector.trend, name) is not None
