"""Learned baselines per (series, metric): what `baseline` means in a rule condition.

Method. Once per baseline period of event time (`period_seconds`, 5 minutes by default) the rule evaluator
reads each baselined metric over the `window` of the same length and feeds the value here. The baseline is
an exponentially weighted moving average of those per-period values:

    alpha_n  = max(alpha, 1 / n)            n = points seen so far (a plain mean while n < 1 / alpha)
    mean_n   = mean_(n-1) + alpha_n * (x_n - mean_(n-1))
    var_n    = (1 - alpha_n) * (var_(n-1) + alpha_n * (x_n - mean_(n-1)) ** 2)

`alpha = 2 / (span + 1)` with a span of 72 periods (six hours of 5-minute values): long enough that one bad
period barely moves it, short enough to follow a deliberate change within a working day.

Guards, so that `baseline` never means something made up:

- Warm-up: no baseline until `warmup_points` values (an hour by default). Until then a condition that uses
  `baseline` is "insufficient data".
- Sparse periods are skipped: a value resting on fewer than `min_samples` samples is not learned from.
- Freezing: while a rule on the metric is pending or firing, the evaluator passes `frozen=True` and the
  value is not learned, so a regression does not become the new normal while it is being reported.

The store is plain data (`to_dict`/`from_dict`) so the app can persist it beside the window snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from otel_llm_collector.conditions import MetricRef
from otel_llm_collector.records import SeriesKey

__all__ = ["DEFAULT_SPAN_POINTS", "Baseline", "BaselineStore"]

DEFAULT_SPAN_POINTS: Final = 72
SNAPSHOT_VERSION: Final = 1


@dataclass(slots=True)
class Baseline:
    """The learned state of one (series, metric)."""

    mean: float = 0.0
    variance: float = 0.0
    points: int = 0
    last_ns: int = 0
    """Event time of the last value learned."""

    @property
    def stddev(self) -> float:
        return math.sqrt(max(self.variance, 0.0))


class BaselineStore:
    """Baselines of every (series, metric) the rules compare against. Not thread-safe (one evaluator)."""

    def __init__(
        self,
        *,
        period_seconds: float = 300.0,
        window: str = "5m",
        span_points: int = DEFAULT_SPAN_POINTS,
        warmup_points: int = 12,
        min_samples: int = 10,
        max_entries: int = 100_000,
    ) -> None:
        if period_seconds <= 0:
            raise ValueError("period_seconds must be positive")
        if span_points < 1 or warmup_points < 1:
            raise ValueError("span_points and warmup_points must be at least 1")
        self.period_ns = int(period_seconds * 1e9)
        self.window = window
        self.alpha = 2.0 / (span_points + 1)
        self.warmup_points = warmup_points
        self.min_samples = min_samples
        self.max_entries = max_entries
        self.dropped = 0
        """Values not learned because `max_entries` was reached (bounded memory; counted, not silent)."""
        self._entries: dict[tuple[SeriesKey, MetricRef], Baseline] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def period(self, at_ns: int) -> int:
        """The index of the baseline period holding `at_ns`."""
        return at_ns // self.period_ns

    def observe(
        self,
        series: SeriesKey,
        metric: MetricRef,
        value: float | None,
        samples: int,
        at_ns: int,
        *,
        frozen: bool = False,
    ) -> bool:
        """Learn one period's value; return whether it was learned (not frozen, sparse, or not finite)."""
        if frozen or value is None or not math.isfinite(value) or samples < self.min_samples:
            return False
        key = (series, metric)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_entries:
                self.dropped += 1
                return False
            entry = self._entries[key] = Baseline()
        if at_ns <= entry.last_ns:
            return False  # the same period twice (a replayed evaluation): learn it once
        entry.points += 1
        alpha = max(self.alpha, 1.0 / entry.points)
        diff = value - entry.mean
        entry.mean += alpha * diff
        entry.variance = (1.0 - alpha) * (entry.variance + alpha * diff * diff)
        entry.last_ns = at_ns
        return True

    def get(self, series: SeriesKey, metric: MetricRef) -> Baseline | None:
        """The learned state, warm or not (for the API and the detectors)."""
        return self._entries.get((series, metric))

    def value(self, series: SeriesKey, metric: MetricRef) -> float | None:
        """The baseline, or None while it is still warming up."""
        entry = self._entries.get((series, metric))
        if entry is None or entry.points < self.warmup_points:
            return None
        return entry.mean

    def lookup(self, series: SeriesKey) -> Callable[[MetricRef], float | None]:
        """The `baselines` callable of `Condition.evaluate` for one series."""
        return lambda metric: self.value(series, metric)

    def retain(self, series: Iterable[SeriesKey]) -> None:
        """Forget the baselines of every series not in `series` (the windows forgot them too)."""
        keep = set(series)
        for key in [k for k in self._entries if k[0] not in keep]:
            del self._entries[key]

    # --- persistence ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "entries": [
                {
                    "series": list(series),
                    "metric": [metric.name, metric.argument],
                    "mean": entry.mean,
                    "variance": entry.variance,
                    "points": entry.points,
                    "last_ns": entry.last_ns,
                }
                for (series, metric), entry in self._entries.items()
            ],
        }

    def load(self, data: dict[str, Any]) -> None:
        """Replace this store's baselines with those of a `to_dict()` (settings stay this store's)."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported baseline snapshot version {data.get('version')!r}")
        entries: dict[tuple[SeriesKey, MetricRef], Baseline] = {}
        for item in data["entries"]:
            key = (SeriesKey(*item["series"]), MetricRef(*item["metric"]))
            entries[key] = Baseline(
                mean=float(item["mean"]),
                variance=float(item["variance"]),
                points=int(item["points"]),
                last_ns=int(item["last_ns"]),
            )
        self._entries = entries

    @classmethod
    def from_dict(cls, data: dict[str, Any], **options: Any) -> BaselineStore:
        """A store holding a `to_dict()`'s baselines; `options` are the constructor's keyword arguments."""
        store = cls(**options)
        store.load(data)
        return store
