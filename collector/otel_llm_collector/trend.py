"""Sustained trends: a slow slide that no threshold and no shift chart notices until it is far along.

Faithfulness losing 0.02 an hour is invisible window to window (the noise is larger) and a shift chart
learns it as the new normal. Over six hours it is 0.12. `TrendDetector` keeps the last `window_seconds`
(6 hours) of window means and fires while both hold:

1. the trend is real: Mann-Kendall's S (count of later-higher minus later-lower pairs) is significant in
   the adverse direction, one-sided p < `alpha` (0.01), normal approximation with the tie correction;
2. the trend matters: the change the data support with confidence 1 - `alpha` is at least `min_change`
   (0.05 by default, for scores in [0, 1]; set it per metric). That change is Sen's (1968) confidence
   bound of the Theil-Sen slope (the median of all pairwise slopes, robust to outliers), the bound nearest
   to "no change", times the hours the points span;

and at least `min_points` (24, two hours of 5-minute means) are in the window. Neither alone is enough:
with hundreds of points a negligible slope is significant, and a large fitted change on a few noisy
points is not evidence. Using the bound rather than the slope itself is what keeps a detector that is
re-tested every period from firing on the runs any noise contains.

Figures, 5-minute means with noise sd 0.03 (simulated; `tests/detectors/test_trend.py` checks them on a
few seeds): a drift of -0.02 per hour is caught after 3.25 to 4.75 hours of drift (median 3.7, when the
metric has lost ~0.07; a fixed 0.75 threshold from 0.88 needs 6.5 hours); without drift no signal in 60
simulated weeks.

Caveats. Mann-Kendall assumes independent points; strongly autocorrelated means (a slow daily cycle) look
like a trend over part of the day. The effect guard and the 6-hour window keep a cycle with an amplitude
under ~0.03 quiet; a larger one needs a larger `min_change` or a seasonal baseline. The pairwise work is
O(n^2) in the points held, so at most `max_points` (200) are kept, the oldest dropped first: about 2 ms
per update at 72 points.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final

from otel_llm_collector.spc import Direction

__all__ = ["TrendDetector", "TrendResult", "mann_kendall", "theil_sen_slope", "trend"]

NS_PER_HOUR: Final = 3_600_000_000_000
DEFAULT_WINDOW_SECONDS: Final = 6 * 3600
DEFAULT_MIN_CHANGE: Final = 0.05
DEFAULT_ALPHA: Final = 0.01
DEFAULT_MIN_POINTS: Final = 24
DEFAULT_MAX_POINTS: Final = 200
_NORMAL: Final = NormalDist()


@dataclass(frozen=True, slots=True)
class TrendResult:
    """The trend of the points in the window."""

    slope_per_hour: float
    """Theil-Sen slope, metric units per hour."""
    change: float
    """slope_per_hour times the hours the points span: the fitted change across the window."""
    assured_change: float
    """The adverse change the data support with confidence 1 - alpha (Sen's bound of the slope times the
    span), positive when adverse; compared with `min_change`."""
    s: int
    """Mann-Kendall S."""
    z: float
    p_value: float
    """One-sided, in the adverse direction."""
    points: int
    span_seconds: float
    direction: Direction
    """The adverse direction this was judged in."""
    signal: bool
    """Significant, and the confidence bound of the change at least `min_change` in the adverse direction."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "slope_per_hour": self.slope_per_hour,
            "change": self.change,
            "assured_change": self.assured_change,
            "s": self.s,
            "z": self.z,
            "p_value": self.p_value,
            "points": self.points,
            "span_seconds": self.span_seconds,
            "direction": self.direction.value,
            "signal": self.signal,
        }


def _mk_z(s: int, values: Sequence[float]) -> float:
    n = len(values)
    ties: dict[float, int] = {}
    for v in values:
        ties[v] = ties.get(v, 0) + 1
    variance = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18.0
    if variance <= 0.0 or s == 0:
        return 0.0
    return (s - 1 if s > 0 else s + 1) / math.sqrt(variance)


def mann_kendall(values: Sequence[float]) -> tuple[int, float]:
    """Mann-Kendall S and its standard normal score Z (continuity and tie corrected); Z > 0: upward."""
    s = 0
    for i in range(len(values) - 1):
        vi = values[i]
        for vj in values[i + 1 :]:
            s += (vj > vi) - (vj < vi)
    return s, _mk_z(s, values)


def _pair_slopes(times: Sequence[float], values: Sequence[float]) -> list[float]:
    return sorted(
        (values[j] - values[i]) / (times[j] - times[i])
        for i in range(len(times) - 1)
        for j in range(i + 1, len(times))
        if times[j] != times[i]
    )


def theil_sen_slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Median of the slopes between every pair of points with distinct times; 0 with none."""
    slopes = _pair_slopes(times, values)
    return statistics.median(slopes) if slopes else 0.0


def _slope_bounds(slopes: Sequence[float], n: int, z: float) -> tuple[float, float]:
    """Sen's (1968) distribution-free confidence bounds of the slope, one-sided at the normal quantile z:
    the order statistics (N -+ z * sqrt(var S)) / 2 of the N pairwise slopes."""
    big_n = len(slopes)
    half_width = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    low = max(0, min(big_n - 1, math.floor((big_n - half_width) / 2)))
    high = max(0, min(big_n - 1, math.ceil((big_n + half_width) / 2)))
    return slopes[low], slopes[high]


def trend(
    points: Iterable[tuple[int, float]],
    *,
    adverse: Direction = Direction.DOWN,
    alpha: float = DEFAULT_ALPHA,
    min_change: float = DEFAULT_MIN_CHANGE,
    min_points: int = DEFAULT_MIN_POINTS,
) -> TrendResult | None:
    """The trend of (time_ns, value) points; None with fewer than `min_points` finite values."""
    ordered = sorted((t, v) for t, v in points if math.isfinite(v))
    if len(ordered) < max(min_points, 3):
        return None
    hours = [(t - ordered[0][0]) / NS_PER_HOUR for t, _ in ordered]
    values = [v for _, v in ordered]
    # One pass over the pairs serves both Mann-Kendall's S and the Theil-Sen slopes.
    s = 0
    slopes: list[float] = []
    for i in range(len(values) - 1):
        ti, vi = hours[i], values[i]
        for j in range(i + 1, len(values)):
            dv = values[j] - vi
            s += (dv > 0) - (dv < 0)
            dt = hours[j] - ti
            if dt:
                slopes.append(dv / dt)
    slopes.sort()
    z = _mk_z(s, values)
    slope = statistics.median(slopes) if slopes else 0.0
    span_hours = hours[-1]
    change = slope * span_hours
    p_value = _NORMAL.cdf(z) if adverse is Direction.DOWN else 1.0 - _NORMAL.cdf(z)
    assured = 0.0
    if slopes:
        low, high = _slope_bounds(slopes, len(values), _NORMAL.inv_cdf(1.0 - alpha))
        # The bound nearest to "no change", in the adverse direction.
        assured = (-high if adverse is Direction.DOWN else low) * span_hours
    signal = p_value < alpha and assured >= min_change
    return TrendResult(
        slope, change, assured, s, z, p_value, len(values), span_hours * 3600.0, adverse, signal
    )


class TrendDetector:
    """Feeds window means into `trend` over a sliding event-time window; `update` returns the result while
    the trend signals (every update, until it stops), else None. Not thread-safe."""

    def __init__(
        self,
        *,
        adverse: Direction = Direction.DOWN,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        min_change: float = DEFAULT_MIN_CHANGE,
        alpha: float = DEFAULT_ALPHA,
        min_points: int = DEFAULT_MIN_POINTS,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds: must be positive, got {window_seconds}")
        if min_change < 0:
            raise ValueError(f"min_change: must be non-negative, got {min_change}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
        if min_points < 3:
            raise ValueError(f"min_points: need at least 3, got {min_points}")
        if max_points < min_points:
            raise ValueError(f"max_points: must be at least min_points={min_points}, got {max_points}")
        self.adverse = Direction(adverse)
        self.window_seconds = window_seconds
        self.min_change = min_change
        self.alpha = alpha
        self.min_points = min_points
        self.max_points = max_points
        self._points: deque[tuple[int, float]] = deque(maxlen=max_points)
        self.last: TrendResult | None = None
        """The latest evaluation, signalling or not."""

    def update(self, time_ns: int, value: float) -> TrendResult | None:
        """Add one window mean at its event time; the trend result when it signals."""
        if math.isfinite(value):
            self._points.append((time_ns, value))
        newest = max(t for t, _ in self._points) if self._points else time_ns
        horizon = newest - int(self.window_seconds * 1e9)
        while self._points and self._points[0][0] < horizon:
            self._points.popleft()
        self.last = trend(
            self._points,
            adverse=self.adverse,
            alpha=self.alpha,
            min_change=self.min_change,
            min_points=self.min_points,
        )
        return self.last if self.last is not None and self.last.signal else None

    def reset(self) -> None:
        """Forget the window (e.g. after a fix shipped): the next signal needs a fresh trend."""
        self._points.clear()
        self.last = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": {
                "adverse": self.adverse.value,
                "window_seconds": self.window_seconds,
                "min_change": self.min_change,
                "alpha": self.alpha,
                "min_points": self.min_points,
                "max_points": self.max_points,
            },
            "points": [[t, v] for t, v in self._points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrendDetector:
        settings = dict(data["settings"])
        settings["adverse"] = Direction(settings["adverse"])
        detector = cls(**settings)
        detector._points.extend((int(t), float(v)) for t, v in data["points"])
        return detector
