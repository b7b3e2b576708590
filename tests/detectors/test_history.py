"""The correlation history keeps the last `max_points` minutes per (scope, metric), oldest first, merged
over the prompt versions and models of a (service, feature, prompt name)."""

from __future__ import annotations

from otel_llm_collector.correlation import MinutePoint
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.history import MetricHistory, merged_scope
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.testing import T0_NS, genai_request
from otel_llm_collector.windows import MINUTE_NS, WindowEngine


def test_points_come_back_oldest_first_after_the_ring_wraps() -> None:
    history = MetricHistory(max_points=4)
    key = SeriesKey("svc", "feat", "p", "v1", "m")
    for minute in range(11):
        engine = WindowEngine()
        engine.apply(decode_traces(genai_request(spans=3, start_ns=T0_NS + minute * MINUTE_NS)))
        (only,) = engine.series()
        stats = engine.window(only, "1m")
        assert stats is not None
        history.record(T0_NS + minute * MINUTE_NS, [(key, stats)])
    points = history.points(merged_scope(key), "error_rate")
    assert [p.time_ns for p in points] == [T0_NS + m * MINUTE_NS for m in range(7, 11)]
    assert all(p == MinutePoint(p.time_ns, 0.0, 3.0) for p in points)
    assert history.points(merged_scope(key), "no_such_metric") == []


def test_a_scope_merges_its_series_by_weight() -> None:
    history = MetricHistory()
    v1 = SeriesKey("svc", "feat", "p", "v1", "m")
    v2 = SeriesKey("svc", "feat", "p", "v2", "m")
    engine = WindowEngine()
    engine.apply(decode_traces(genai_request(spans=4, start_ns=T0_NS)))
    (only,) = engine.series()
    stats = engine.window(only, "1m")
    assert stats is not None
    assert stats.latency_p95_s is not None
    history.record(T0_NS, [(v1, stats), (v2, stats)])
    (point,) = history.points(merged_scope(v1), "latency_p95")
    assert point.time_ns == T0_NS
    assert point.weight == 8.0
    assert abs(point.value - stats.latency_p95_s) < 1e-6 * stats.latency_p95_s  # stored as float32
    assert history.points(merged_scope(SeriesKey("svc", "other", "p", "v1", "m")), "latency_p95") == []
