"""Per-minute history of the metrics alerts are about, for deployment correlation.

The window engine keeps only the last quarter hour at minute resolution; correlation compares up to an hour
before and after each deployment of the last six hours. So at every rule tick the pipeline records, per
(service, feature, prompt name) scope, the completed minute's value of each tracked metric with its sample
count as weight, merged across prompt versions and models: a new prompt version or model starts a new
series and has no "before" of its own, while the scope spans the change.

Bounded: `max_points` per (scope, metric), `max_scopes` scopes (the oldest-touched are dropped, counted).
A point takes 12 bytes (seconds as uint32 from the first point, value and weight as float32): at 10,000
scopes, 4 metrics and 420 minutes that is about 200 MB, where a full series key and 8-byte fields each
took four times as much.
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
SECOND_NS: Final = 1_000_000_000
_MAX_OFFSET_S: Final = 2**32 - 1

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
                acc = scope_values.setdefault(metric, [0.0, 0.0])
                acc[0] += value * weight
                acc[1] += weight
        for scope, metrics in merged.items():
            for metric, (total, weight) in metrics.items():
                self._add(scope, metric, minute_ns, total / weight, weight)

    def _add(self, scope: Scope, metric: str, time_ns: int, value: float, weight: float) -> None:
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
            ring = metrics[metric] = _Ring(time_ns)
        ring.append(time_ns, value, weight, self.max_points)

    def points(self, scope: Scope, metric: str) -> list[MinutePoint]:
        ring = self._points.get(scope, {}).get(metric)
        return ring.points() if ring is not None else []


class _Ring:
    """The last points of one (scope, metric), oldest first, in flat arrays: 12 bytes a point. Times are
    whole seconds after the ring's first point (minute starts are whole seconds); values and weights are
    float32, ample for per-minute rates, latencies and sample counts."""

    __slots__ = ("base_s", "figures", "seconds", "start")

    def __init__(self, first_ns: int) -> None:
        self.base_s = first_ns // SECOND_NS
        self.seconds: array[int] = array("I")
        self.figures: array[float] = array("f")
        """value, weight, value, weight, ..."""
        self.start = 0
        """Where the oldest point is once the ring is full."""

    def append(self, time_ns: int, value: float, weight: float, capacity: int) -> None:
        offset = min(max(time_ns // SECOND_NS - self.base_s, 0), _MAX_OFFSET_S)
        if len(self.seconds) < capacity:
            self.seconds.append(offset)
            self.figures.append(value)
            self.figures.append(weight)
            return
        i = self.start
        self.seconds[i] = offset
        self.figures[2 * i] = value
        self.figures[2 * i + 1] = weight
        self.start = (i + 1) % len(self.seconds)

    def points(self) -> list[MinutePoint]:
        order = [*range(self.start, len(self.seconds)), *range(self.start)]
        base, seconds, figures = self.base_s, self.seconds, self.figures
        return [
            MinutePoint((base + seconds[i]) * SECOND_NS, figures[2 * i], figures[2 * i + 1]) for i in order
        ]
