"""A window engine holding every kind of bucket content, for the snapshot tests of windows and store."""

from __future__ import annotations

from typing import Any

from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.testing import SECOND_NS, T0_NS
from otel_llm_collector.windows import MINUTE_NS, WINDOW_NAMES, WindowEngine

KEY = SeriesKey("svc", "feat", "prompt", "v1", "model")


def varied_engine(series: int, *, minutes: int = 90, step_minutes: int = 7) -> WindowEngine:
    """`series` series with calls every `step_minutes` over `minutes` of event time: errors, time to first
    chunk, tokens, cost, context, tool calls and evaluations on some of them; the early minutes rolled up
    into the coarser tiers; one late call; a non-ASCII series name."""
    engine = WindowEngine(max_series=series + 10)
    keys = [KEY._replace(feature=f"feature-{i}") for i in range(series - 1)]
    keys.append(KEY._replace(feature="Übersetzung ✓"))
    span = 0
    for minute in range(0, minutes, step_minutes):
        calls: list[CallRecord] = []
        for i, key in enumerate(keys):
            span += 1
            t_ns = T0_NS + minute * MINUTE_NS + i * 1_000
            calls.append(
                CallRecord(
                    series=key,
                    end_time_ns=t_ns,
                    duration_s=0.05 * (1 + (i + minute) % 40),
                    trace_id="ab" * 16,
                    span_id=f"{span:016x}",
                    error_type=("timeout", "rate_limit")[i % 2] if (i + minute) % 5 == 0 else "",
                    time_to_first_chunk_s=0.2 + i % 7 / 10 if i % 3 == 0 else None,
                    input_tokens=100 + i,
                    output_tokens=20 + minute,
                    cache_read_tokens=50 if i % 2 else None,
                    reasoning_tokens=7 if i % 11 == 0 else None,
                    cost_usd=0.001 * (i % 13) if i % 2 else None,
                    context_tokens=300 if i % 4 == 1 else None,
                    tool_call_count=i % 3,
                    evaluations=(
                        EvaluationRecord("relevance", t_ns, 0.5 + i % 5 / 10, series=key),
                        EvaluationRecord("thumbs", t_ns, None, label="fail", series=key),
                    )
                    if i % 4 == 0
                    else (),
                )
            )
        engine.apply(DecodeResult(calls=tuple(calls)))
    late = CallRecord(
        series=keys[0],
        end_time_ns=T0_NS + (minutes - 30) * MINUTE_NS,
        duration_s=2.5,
        trace_id="cd" * 16,
        span_id=f"{span + 1:016x}",
    )
    engine.apply(DecodeResult(calls=(late,)))
    engine.advance_watermark(T0_NS + minutes * MINUTE_NS + 30 * SECOND_NS)
    return engine


def version_1_snapshot(engine: WindowEngine) -> dict[str, Any]:
    """What `WindowEngine.snapshot()` returned before the rows: one document with every series in it."""
    header = engine.snapshot_header()
    del header["tiers"]
    return {**header, "version": 1, "series": [entry for _, entry in engine.snapshot_items()]}


def assert_same_state(restored: WindowEngine, original: WindowEngine) -> None:
    """Every bucket of every series equal, and so every window figure and counter."""
    assert dict(restored.snapshot_items()) == dict(original.snapshot_items())
    assert restored.snapshot_header() == original.snapshot_header()
    assert restored.counters() == original.counters()
    for key in original.series()[:: max(1, len(original) // 20)]:
        assert restored.totals(key) == original.totals(key)
        for name in WINDOW_NAMES:
            assert restored.window(key, name) == original.window(key, name)
