"""Windows: event-time buckets, watermark and lateness, series limit, evaluations, snapshot/restore."""

from __future__ import annotations

import gc
import json
import zlib
from array import array
from dataclasses import replace

import otel_llm_collector.buckets as buckets_module
import otel_llm_collector.windows as windows_module
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.trace import NonRecordingSpan, set_span_in_context
from otel_llm_collector.buckets import Bucket
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_logs, decode_traces
from otel_llm_collector.join import JoinIndex
from otel_llm_collector.records import OVERFLOW_SERIES, CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.testing import SECOND_NS, T0_NS, SpanRecorder
from otel_llm_collector.windows import MINUTE_NS, SNAPSHOT_SERIES, WINDOW_NAMES, WindowEngine
from window_support import assert_same_state, varied_engine, version_1_snapshot

from otel_llm import attributes as A

KEY = SeriesKey("svc", "feat", "prompt", "v1", "model")


def _call(
    t_ns: int,
    *,
    key: SeriesKey = KEY,
    duration_s: float = 1.0,
    error: str = "",
    span: int = 1,
    response_id: str = "",
    **fields: object,
) -> CallRecord:
    return CallRecord(
        series=key,
        end_time_ns=t_ns,
        duration_s=duration_s,
        trace_id="ab" * 16,
        span_id=f"{span:016x}",
        error_type=error,
        response_id=response_id,
        **fields,  # type: ignore[arg-type]
    )


def _apply(engine: WindowEngine, *calls: CallRecord, evaluations: tuple[EvaluationRecord, ...] = ()) -> None:
    engine.apply(DecodeResult(calls=calls, evaluations=evaluations))


def test_windows_count_calls_by_event_time() -> None:
    engine = WindowEngine()
    # One call per minute for 20 minutes; the clock ends in minute 19.
    _apply(engine, *(_call(T0_NS + m * MINUTE_NS + SECOND_NS, span=m + 1) for m in range(20)))
    counts = {name: engine.window(KEY, name).count for name in WINDOW_NAMES}  # type: ignore[union-attr]
    assert counts == {"1m": 1, "5m": 5, "15m": 15, "1h": 20, "24h": 20, "7d": 20}


def test_window_figures_are_derived_from_the_calls() -> None:
    engine = WindowEngine()
    calls = [
        _call(T0_NS + i * SECOND_NS, span=i + 1, duration_s=0.1 * (i + 1), input_tokens=100, output_tokens=10)
        for i in range(10)
    ]
    calls[0] = replace(calls[0], error_type="timeout")
    calls[1] = replace(calls[1], error_type="timeout", cost_usd=0.5, time_to_first_chunk_s=0.2)
    _apply(engine, *calls)
    stats = engine.window(KEY, "1m")
    assert stats is not None
    assert stats.count == 10
    assert stats.errors == 2
    assert stats.error_rate == 0.2
    assert stats.success_rate == 0.8
    assert stats.errors_by_type == {"timeout": 2}
    assert stats.latency_p50_s == pytest.approx(0.5, rel=0.011)
    assert stats.latency_p99_s == pytest.approx(0.9, rel=0.011)  # rank 0.99 * (10 - 1) -> the 9th value
    assert stats.tokens_total == {"input": 1000, "output": 100}
    assert stats.tokens_mean == {"input": 100.0, "output": 10.0}
    assert stats.cost_usd_total == 0.5
    assert stats.cost_usd_mean == 0.5
    assert stats.ttfc_p50_s == pytest.approx(0.2, rel=0.011)
    # The clock sits 9 s into the minute: the rate is over the event time covered so far.
    assert stats.rate_per_s == pytest.approx(10 / 9, rel=1e-6)


def test_unknown_series_and_unknown_window() -> None:
    engine = WindowEngine()
    assert engine.window(KEY, "5m") is None
    _apply(engine, _call(T0_NS))
    with pytest.raises(ValueError, match="unknown window"):
        engine.window(KEY, "2m")


def test_late_call_within_retention_is_applied_and_counted() -> None:
    engine = WindowEngine(allowed_lateness_seconds=60)
    _apply(engine, _call(T0_NS + 10 * MINUTE_NS))
    _apply(engine, _call(T0_NS + 10 * MINUTE_NS - 30 * SECOND_NS, span=2))  # within lateness: on time
    assert engine.late == 0
    _apply(engine, _call(T0_NS + 2 * MINUTE_NS, span=3))  # behind the watermark, still retained
    assert engine.late == 1
    assert engine.window(KEY, "15m").count == 3  # type: ignore[union-attr]
    assert engine.window(KEY, "24h").count == 3  # type: ignore[union-attr]


def test_call_older_than_every_bucket_is_dropped() -> None:
    engine = WindowEngine()
    _apply(engine, _call(T0_NS + 8 * 24 * 3600 * SECOND_NS))
    _apply(engine, _call(T0_NS, span=2))
    assert engine.dropped_too_old == 1
    assert engine.window(KEY, "7d").count == 1  # type: ignore[union-attr]


def test_calls_far_ahead_of_the_wall_clock_are_dropped() -> None:
    engine = WindowEngine(max_future_seconds=300)
    engine.advance_watermark(T0_NS)
    _apply(engine, _call(T0_NS + 3600 * SECOND_NS))
    assert engine.dropped_future == 1
    assert engine.series() == []


def test_idle_watermark_slides_windows_and_evicts_old_series() -> None:
    engine = WindowEngine()
    _apply(engine, _call(T0_NS))
    engine.advance_watermark(T0_NS + 10 * MINUTE_NS)
    assert engine.window(KEY, "5m").count == 0  # type: ignore[union-attr]
    assert engine.window(KEY, "1h").count == 1  # type: ignore[union-attr]
    engine.advance_watermark(T0_NS + 8 * 24 * 3600 * SECOND_NS)
    assert engine.series() == []


def test_hour_windows_include_rolled_up_and_open_minutes_once() -> None:
    engine = WindowEngine()
    _apply(engine, *(_call(T0_NS + m * MINUTE_NS, span=m + 1) for m in range(0, 180, 3)))
    assert engine.window(KEY, "24h").count == 60  # type: ignore[union-attr]
    assert engine.window(KEY, "1h").count == 20  # type: ignore[union-attr]


def test_series_beyond_the_limit_go_to_overflow() -> None:
    engine = WindowEngine(max_series=2)
    keys = [KEY._replace(feature=f"f{i}") for i in range(5)]
    _apply(engine, *(_call(T0_NS, key=k, span=i + 1) for i, k in enumerate(keys)))
    assert set(engine.series()) == {keys[0], keys[1], OVERFLOW_SERIES}
    assert engine.overflow_calls == 3
    assert engine.window(OVERFLOW_SERIES, "1m").count == 3  # type: ignore[union-attr]


def test_evaluations_are_joined_to_their_call_series() -> None:
    engine = WindowEngine(join=JoinIndex())
    other = KEY._replace(feature="other")
    _apply(engine, _call(T0_NS, span=1, response_id="r-1"), _call(T0_NS, key=other, span=2))
    by_span = EvaluationRecord(
        "relevance", T0_NS + 5 * SECOND_NS, 0.25, trace_id="ab" * 16, span_id=f"{1:016x}"
    )
    by_response = EvaluationRecord("relevance", T0_NS + 6 * SECOND_NS, 0.75, label="fail", response_id="r-1")
    stray = EvaluationRecord("relevance", T0_NS, 1.0, span_id="ff" * 8, trace_id="ab" * 16)
    _apply(engine, evaluations=(by_span, by_response, stray))
    stats = engine.window(KEY, "1m")
    assert stats is not None
    assert stats.evaluations["relevance"].samples == 2
    assert stats.evaluations["relevance"].mean == pytest.approx(0.5)
    assert stats.evaluations["relevance"].fail_rate == 0.5
    assert engine.window(other, "1m").evaluations == {}  # type: ignore[union-attr]
    assert engine.join.pending == 1
    engine.advance_watermark(T0_NS + 30 * MINUTE_NS)
    assert engine.evaluations_unmatched == 1


def test_feedback_before_its_call_waits_and_is_applied_when_the_call_arrives() -> None:
    engine = WindowEngine()
    early = EvaluationRecord("thumbs", T0_NS, 1.0, response_id="r-9")
    _apply(engine, evaluations=(early,))
    assert engine.join.pending == 1
    _apply(engine, _call(T0_NS + SECOND_NS, response_id="r-9"))
    assert engine.window(KEY, "1m").evaluations["thumbs"].samples == 1  # type: ignore[union-attr]
    assert engine.join.pending == 0
    assert engine.evaluations_unmatched == 0


def test_evaluations_carried_on_the_call_need_no_join() -> None:
    engine = WindowEngine()
    evaluation = EvaluationRecord("grounded", T0_NS, 0.9, series=KEY)
    _apply(engine, _call(T0_NS, evaluations=(evaluation,)))
    assert engine.window(KEY, "5m").evaluations["grounded"].mean == pytest.approx(0.9)  # type: ignore[union-attr]
    assert engine.evaluations_total == 1


def test_snapshot_round_trips_through_json() -> None:
    engine = WindowEngine()
    _apply(
        engine,
        *(_call(T0_NS + i * 7 * SECOND_NS, span=i + 1, error="x" if i % 4 == 0 else "") for i in range(200)),
    )
    _apply(engine, evaluations=(EvaluationRecord("e", T0_NS + SECOND_NS, 0.3, series=KEY),))
    data = engine.snapshot()
    rows = data.pop(SNAPSHOT_SERIES)
    restored = WindowEngine.restore(json.loads(json.dumps(data)), rows=rows)
    for name in WINDOW_NAMES:
        assert restored.window(KEY, name) == engine.window(KEY, name)
    assert restored.counters() == engine.counters()
    assert restored.totals(KEY) == engine.totals(KEY) == (200, 1)


@pytest.mark.parametrize(("row_bytes", "rows"), [(1, 60), (1 << 20, 1)], ids=["row per series", "one row"])
def test_snapshot_rows_restore_every_bucket_exactly(
    row_bytes: int, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(windows_module, "_ROW_BYTES", row_bytes)
    engine = varied_engine(60)
    data = engine.snapshot()
    assert len(data[SNAPSHOT_SERIES]) == rows
    assert all(isinstance(row, bytes) for row in data[SNAPSHOT_SERIES])
    assert_same_state(WindowEngine.restore(data), engine)
    assert_same_state(WindowEngine.restore(data, rows=iter(data[SNAPSHOT_SERIES])), engine)


def test_the_version_1_snapshot_document_still_restores() -> None:
    """A state store written before the rows holds one JSON document with every series in it."""
    engine = varied_engine(20)
    legacy = json.loads(json.dumps(version_1_snapshot(engine)))
    assert_same_state(WindowEngine.restore(legacy), engine)


def test_closed_buckets_keep_tokens_unboxed_and_still_take_late_calls() -> None:
    engine = WindowEngine(allowed_lateness_seconds=0)
    _apply(engine, _call(T0_NS, input_tokens=100), _call(T0_NS + SECOND_NS, span=2, input_tokens=10**30))
    _apply(engine, _call(T0_NS + 30 * SECOND_NS, key=KEY._replace(feature="other"), span=3, input_tokens=7))
    engine.advance_watermark(T0_NS + 2 * MINUTE_NS)  # minute 0 closes and is rolled up
    minute = T0_NS // MINUTE_NS
    closed = engine._series[KEY._replace(feature="other")].minutes[minute]
    assert isinstance(closed.tokens, array)
    assert isinstance(engine._series[KEY].minutes[minute].tokens, list)  # beyond 64 bits: stays a list
    _apply(engine, _call(T0_NS + 40 * SECOND_NS, key=KEY._replace(feature="other"), span=4, input_tokens=5))
    assert engine.late == 1
    for name in ("5m", "1h", "24h"):
        other = engine.window(KEY._replace(feature="other"), name)
        assert other is not None
        assert (other.count, other.tokens_total["input"]) == (2, 12)
        stats = engine.window(KEY, name)
        assert stats is not None
        assert stats.tokens_total["input"] == 10**30 + 100


def test_figures_beyond_64_bits_survive_the_snapshot_exactly() -> None:
    engine = WindowEngine()
    _apply(engine, _call(T0_NS, input_tokens=10**30), _call(T0_NS + SECOND_NS, span=2, input_tokens=5))
    restored = WindowEngine.restore(engine.snapshot())
    stats = restored.window(KEY, "1m")
    assert stats is not None
    assert stats.tokens_total["input"] == 10**30 + 5
    assert_same_state(restored, engine)


def test_restore_rejects_unknown_snapshot_version() -> None:
    with pytest.raises(ValueError, match="version"):
        WindowEngine.restore({"version": 99})


def test_restore_rejects_a_damaged_row_or_another_tier_layout() -> None:
    engine = varied_engine(3)
    data = engine.snapshot()
    row = zlib.decompress(data[SNAPSHOT_SERIES][0])
    for damaged in (row + b"x", row[:-3], row[:40]):
        with pytest.raises(ValueError, match="row"):
            WindowEngine.restore(data, rows=[zlib.compress(damaged)])
    with pytest.raises(ValueError, match="damaged"):
        WindowEngine.restore(data, rows=[b"not zlib"])
    with pytest.raises(ValueError, match="tier layout"):
        WindowEngine.restore({**data, "tiers": [[MINUTE_NS, 60]]})


def test_memory_is_flat_as_event_time_advances() -> None:
    engine = WindowEngine()
    keys = [KEY._replace(feature=f"f{i}") for i in range(3)]

    def one_hour(hour: int) -> None:
        base = T0_NS + hour * 3600 * SECOND_NS
        _apply(
            engine, *(_call(base + m * MINUTE_NS, key=k, span=m + 1) for m in range(0, 60, 6) for k in keys)
        )

    def tracked_objects() -> int:
        gc.collect()
        return len(gc.get_objects())

    for hour in range(200):
        one_hour(hour)
    after_a_week = tracked_objects()
    for hour in range(200, 260):
        one_hour(hour)
    assert tracked_objects() - after_a_week < 50
    for series in engine._series.values():
        # Minutes 42, 48 and 54 of the last hour; every retained bucket of the coarser tiers.
        assert [len(buckets) for buckets in series.tiers] == [3, 10, 25, 8]


def test_feedback_log_from_the_sdk_is_attributed_to_its_call_minutes_later() -> None:
    """End to end with the real SDK: a chat span, then a `gen_ai.evaluation.result` log record emitted in
    the span's context four minutes later, both encoded as OTLP and decoded."""
    recorder = SpanRecorder(service="checkout")
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + SECOND_NS, feature="support", response_id="r-1")
    (span,) = recorder.exporter.get_finished_spans()
    traces = recorder.request()

    logs_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs_exporter))
    span_context = span.get_span_context()
    assert span_context is not None
    context = set_span_in_context(NonRecordingSpan(span_context))
    provider.get_logger("feedback").emit(
        timestamp=T0_NS + 4 * MINUTE_NS,
        context=context,
        event_name=A.GEN_AI_EVALUATION_RESULT_EVENT,
        attributes={A.GEN_AI_EVALUATION_NAME: "user_feedback", A.GEN_AI_EVALUATION_SCORE_LABEL: "fail"},
    )
    logs = encode_logs(logs_exporter.get_finished_logs())

    engine = WindowEngine()
    engine.apply(decode_traces(traces))
    engine.apply(decode_logs(logs))
    (key,) = engine.series()
    assert key.feature == "support"
    stats = engine.window(key, "5m")
    assert stats is not None
    assert stats.count == 1
    assert stats.evaluations["user_feedback"].samples == 1
    assert stats.evaluations["user_feedback"].fail_rate == 1.0
    assert engine.evaluations_unmatched == 0


def test_public_api_is_pinned() -> None:
    assert sorted(windows_module.__all__) == [
        "SNAPSHOT_SERIES",
        "TIERS",
        "WINDOWS",
        "WINDOW_NAMES",
        "WindowEngine",
        "WindowStats",
    ]
    assert sorted(buckets_module.__all__) == [
        "Bucket",
        "EvaluationStats",
        "TOKEN_KINDS",
        "WindowStats",
        "derive",
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 1e-12, 0.25, 3.5, 1e6, float("inf"), float("nan")]),
            st.sampled_from(["", "", "TimeoutError"]),
            st.sampled_from([None, 0.3]),
            st.sampled_from([None, 0, 7]),
            st.sampled_from([None, 0.001]),
            st.integers(0, 3),
        ),
        max_size=80,
    ),
    st.booleans(),
)
def test_add_calls_is_add_call_one_by_one_to_the_bit(
    rows: list[tuple[float, str, float | None, int | None, float | None, int]], compacted: bool
) -> None:
    """The windows' batched add must leave exactly the figures the one-by-one add leaves."""
    calls = [
        CallRecord(
            series=SeriesKey("s", "f", "p", "v", "m"),
            end_time_ns=T0_NS + i,
            duration_s=duration,
            trace_id="t",
            span_id="s",
            error_type=error,
            time_to_first_chunk_s=ttfc,
            input_tokens=tokens,
            output_tokens=tokens,
            cache_read_tokens=tokens,
            cost_usd=cost,
            context_tokens=tokens,
            tool_call_count=tools,
        )
        for i, (duration, error, ttfc, tokens, cost, tools) in enumerate(rows)
    ]
    one_by_one, batched = Bucket(), Bucket()
    for bucket in (one_by_one, batched):
        if calls:
            bucket.add_call(calls[0])
        if compacted:  # a closed bucket keeps its token figures in an array
            bucket.compact()
    for call in calls[1:]:
        one_by_one.add_call(call)
    batched.add_calls(calls[1:])
    assert batched.to_dict() == one_by_one.to_dict()
    if compacted:  # late calls into a closed bucket leave it compact
        assert isinstance(batched.tokens, array)
        assert isinstance(one_by_one.tokens, array)
