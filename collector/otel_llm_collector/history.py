"""Per-minute history of the metrics alerts are about, for deployment correlation.

The window engine keeps only the last quarter hour at minute resolution; correlation compares up to an hour
before and after each deployment of the last six hours. So at every rule tick the pipeline records, per
series, the completed minute's value of each tracked metric, with its sample count as weight, twice: under
the full series key and under its (service, feature, prompt name) scope merged across prompt versions and
models, because a new prompt version or model starts a new series and has no "before" of its own.

Bounded: `max_points` per (scope, metric), `max_scopes` scopes (the oldest-touched are dropped, counted).
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from otel_llm_collector.buckets import WindowStats
from otel_llm_collector.correlation import MinutePoint
from otel_llm_collector.records import SeriesKey

Scope = tuple[str, ...]

QUALITY_DOWN_IS_BAD: Final = frozenset(
    {"faithfulness", "answer_relevance", "context_utilization", "user_feedback"}
)


def metric_values(stats: WindowStats) -> list[tuple[str, float, float]]:
    """(metric, value, weight) of one minute: names as in rule conditions."""
    out: list[tuple[str, float, float]] = []
    if stats.count:
        out.append(("error_rate", stats.error_rate, float(stats.count)))
        out.append(("success_rate", stats.success_rate, float(stats.count)))
        if stats.latency_p95_s is not None:
            out.append(("latency_p95", stats.latency_p95_s, float(stats.count)))
        if stats.cost_usd_mean is not None:
            out.append(("cost_mean", stats.cost_usd_mean, float(stats.count)))
    for name, ev in stats.evaluations.items():
        if ev.samples and ev.mean is not None:
            out.append((f"eval_mean{{{name}}}", ev.mean, float(ev.samples)))
        if ev.samples and ev.fail_rate is not None:
            out.append((f"eval_fail_rate{{{name}}}", ev.fail_rate, float(ev.samples)))
    return out


def merged_scope(key: SeriesKey) -> Scope:
    return ("merged", key.service, key.feature, key.prompt_name)


def series_scope(key: SeriesKey) -> Scope:
    return ("series", *key)


class MetricHistory:
    """Minute points per (scope, metric). Not thread-safe: the pipeline's one caller owns it."""

    def __init__(self, *, max_points: int = 420, max_scopes: int = 20_000) -> None:
        self.max_points = max_points
        self.max_scopes = max_scopes
        self._points: OrderedDict[Scope, dict[str, _Ring]] = OrderedDict()
        self.dropped_scopes = 0

    def record(self, minute_ns: int, per_series: Iterable[tuple[SeriesKey, WindowStats]]) -> None:
        """Record the minute starting at `minute_ns` from each series' one-minute figures."""
        merged: dict[Scope, dict[str, list[float]]] = {}
        for key, stats in per_series:
            values = metric_values(stats)
            if not values:
                continue
            scope_values = merged.setdefault(merged_scope(key), {})
            for metric, value, weight in values:
                self._add(series_scope(key), metric, MinutePoint(minute_ns, value, weight))
                acc = scope_values.setdefault(metric, [0.0, 0.0])
                acc[0] += value * weight
                acc[1] += weight
        for scope, metrics in merged.items():
            for metric, (total, weight) in metrics.items():
                self._add(scope, metric, MinutePoint(minute_ns, total / weight, weight))

    def _add(self, scope: Scope, metric: str, point: MinutePoint) -> None:
        metrics = self._points.get(scope)
        if metrics is None:
            metrics = self._points[scope] = {}
            if len(self._points) > self.max_scopes:
                self._points.popitem(last=False)
                self.dropped_scopes += 1
        else:
            self._points.move_to_end(scope)
        ring = metrics.get(metric)
        if ring is None:
            ring = metrics[metric] = _Ring()
        ring.append(point, self.max_points)

    def points(self, scope: Scope, metric: str) -> list[MinutePoint]:
        ring = self._points.get(scope, {}).get(metric)
        return ring.points() if ring is not None else []


class _Ring:
    """The last points of one (scope, metric), oldest first, in three flat arrays: 24 bytes a point where
    a deque of `MinutePoint` tuples took about 150 (10,000 series keep millions of points)."""

    __slots__ = ("start", "times", "values", "weights")

    def __init__(self) -> None:
        self.times: array[int] = array("q")
        self.values: array[float] = array("d")
        self.weights: array[float] = array("d")
        self.start = 0
        """Where the oldest point is once the ring is full."""

    def append(self, point: MinutePoint, capacity: int) -> None:
        if len(self.times) < capacity:
            self.times.append(point.time_ns)
            self.values.append(point.value)
            self.weights.append(point.weight)
            return
        i = self.start
        self.times[i], self.values[i], self.weights[i] = point
        self.start = (i + 1) % len(self.times)

    def points(self) -> list[MinutePoint]:
        order = [*range(self.start, len(self.times)), *range(self.start)]
        return [MinutePoint(self.times[i], self.values[i], self.weights[i]) for i in order]
