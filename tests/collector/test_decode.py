"""Decode: real SDK spans and hand-built defective protobufs -> records, rejections and counts."""

from __future__ import annotations

import otel_llm_collector.decode as decode_module
import otel_llm_collector.testing as testing_module
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.util.types import AttributeValue
from otel_llm_collector.decode import (
    REJECT_END_BEFORE_START,
    REJECT_SPAN_ID,
    REJECT_TRACE_ID,
    DecodeStats,
    decode_logs,
    decode_traces,
)
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.testing import SECOND_NS, T0_NS, SpanRecorder, genai_request

from otel_llm import attributes as A

TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _chat_span(**overrides: object) -> Span:
    span = Span(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        name="chat m",
        start_time_unix_nano=T0_NS,
        end_time_unix_nano=T0_NS + SECOND_NS,
    )
    for key, value in overrides.items():
        setattr(span, key, value)
    span.attributes.extend([_kv(A.GEN_AI_OPERATION_NAME, "chat"), _kv(A.GEN_AI_REQUEST_MODEL, "m")])
    return span


def _request(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.spans.extend(spans)
    return request


def test_sdk_span_from_our_instrumentation_becomes_a_full_call_record() -> None:
    recorder = SpanRecorder(service="checkout", service_version="2.0.0")
    recorder.genai_span(
        start_ns=T0_NS,
        end_ns=T0_NS + 2 * SECOND_NS,
        model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        feature="support",
        prompt_name="answer",
        prompt_version="v7",
        ttfc_s=0.25,
        response_id="chatcmpl-9",
    )
    result = decode_traces(recorder.request())

    assert (result.spans_seen, result.rejected, result.skipped) == (1, 0, 0)
    (call,) = result.calls
    assert call.series == SeriesKey("checkout", "support", "answer", "v7", "gpt-4o-mini-2024-07-18")
    assert call.service_version == "2.0.0"
    assert call.request_model == "gpt-4o-mini"
    assert call.provider == "openai"
    assert call.operation == "chat"
    assert call.duration_s == 2.0
    assert call.end_time_ns == T0_NS + 2 * SECOND_NS
    assert call.time_to_first_chunk_s == 0.25
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens) == (1200, 180, 1000)
    assert call.cost_usd == 0.00042
    assert call.finish_reasons == ("stop",)
    assert call.response_id == "chatcmpl-9"
    assert call.instrumentation == "otel_llm"
    assert call.ok
    assert len(call.trace_id) == 32
    assert len(call.span_id) == 16


def test_model_falls_back_to_request_model_without_a_response_model() -> None:
    result = decode_traces(_request(_chat_span()))
    assert result.calls[0].series.model == "m"
    assert result.calls[0].instrumentation == "semconv"


def test_non_genai_spans_are_skipped_and_counted() -> None:
    recorder = SpanRecorder()
    recorder.span("GET /", {"http.request.method": "GET"}, start_ns=T0_NS, end_ns=T0_NS + 1)
    recorder.span(
        "execute_tool search", {A.GEN_AI_OPERATION_NAME: "execute_tool"}, start_ns=T0_NS, end_ns=T0_NS
    )
    result = decode_traces(recorder.request())
    assert (result.spans_seen, result.skipped, len(result.calls), result.rejected) == (2, 2, 0, 0)


def test_error_status_without_error_type_counts_as_other_error() -> None:
    recorder = SpanRecorder()
    recorder.span("chat m", {A.GEN_AI_OPERATION_NAME: "chat"}, start_ns=T0_NS, end_ns=T0_NS + 1, error=True)
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 1, error_type="RateLimitError")
    calls = decode_traces(recorder.request()).calls
    assert sorted(c.error_type for c in calls) == ["RateLimitError", "_OTHER"]


def test_defective_spans_are_rejected_and_the_rest_is_kept() -> None:
    request = _request(
        _chat_span(trace_id=b"\x01\x02\x03"),
        _chat_span(trace_id=bytes(16)),
        _chat_span(span_id=bytes(8)),
        _chat_span(span_id=b"\x01" * 7),
        _chat_span(start_time_unix_nano=T0_NS + 5, end_time_unix_nano=T0_NS),
        _chat_span(),
    )
    result = decode_traces(request)
    assert result.spans_seen == 6
    assert result.rejected == 5
    assert result.reject_reasons == {REJECT_TRACE_ID: 2, REJECT_SPAN_ID: 2, REJECT_END_BEFORE_START: 1}
    assert len(result.calls) == 1
    assert "end_before_start" in result.error_message
    assert "invalid_trace_id" in result.error_message


def test_empty_request_is_an_empty_result() -> None:
    result = decode_traces(ExportTraceServiceRequest())
    assert (result.spans_seen, result.rejected, result.calls, result.error_message) == (0, 0, (), "")


def test_attribute_bomb_is_cut_at_the_scan_limit_and_counted() -> None:
    span = _chat_span()
    span.attributes.extend(_kv(f"junk.{i}", i) for i in range(10_000))
    late_model = _kv(A.GEN_AI_RESPONSE_MODEL, "beyond-the-limit")
    span.attributes.append(late_model)
    stats = DecodeStats()
    result = decode_traces(_request(span), max_attributes_per_span=64, stats=stats)
    assert stats.attributes_truncated_spans == 1
    (call,) = result.calls
    assert call.response_model == ""  # the 10,002nd attribute was never looked at


def test_resource_service_is_read_per_resource() -> None:
    request = ExportTraceServiceRequest()
    for service in ("a", "b"):
        recorder = SpanRecorder(service=service)
        recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 1)
        request.resource_spans.extend(recorder.request().resource_spans)
    assert sorted(c.series.service for c in decode_traces(request).calls) == ["a", "b"]


def test_evaluation_event_on_a_genai_span_rides_on_the_call() -> None:
    recorder = SpanRecorder()
    scores: dict[str, AttributeValue] = {
        A.GEN_AI_EVALUATION_NAME: "relevance",
        A.GEN_AI_EVALUATION_SCORE_VALUE: 0.75,
    }
    event = (A.GEN_AI_EVALUATION_RESULT_EVENT, scores, T0_NS + 3 * SECOND_NS)
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + SECOND_NS, events=[event], response_id="r-1")
    result = decode_traces(recorder.request())
    assert result.evaluations == ()
    (evaluation,) = result.calls[0].evaluations
    assert evaluation.name == "relevance"
    assert evaluation.score == 0.75
    assert evaluation.time_ns == T0_NS + 3 * SECOND_NS
    assert evaluation.series == result.calls[0].series
    assert evaluation.response_id == "r-1"


def test_evaluation_event_on_another_span_is_standalone_with_that_span_ids() -> None:
    recorder = SpanRecorder()
    event = (
        A.GEN_AI_EVALUATION_RESULT_EVENT,
        {A.GEN_AI_EVALUATION_NAME: "toxicity", A.GEN_AI_EVALUATION_SCORE_LABEL: "fail"},
        T0_NS,
    )
    recorder.span("evaluate", {}, start_ns=T0_NS, end_ns=T0_NS + 1, events=[event])
    result = decode_traces(recorder.request())
    (evaluation,) = result.evaluations
    assert evaluation.series is None
    assert evaluation.failed
    assert evaluation.score is None
    assert len(evaluation.span_id) == 16


def _log_request(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request


def test_evaluation_log_records_carry_span_context_and_response_id() -> None:
    by_field = LogRecord(
        time_unix_nano=T0_NS, trace_id=TRACE_ID, span_id=SPAN_ID, event_name="gen_ai.evaluation.result"
    )
    by_field.attributes.extend(
        [_kv(A.GEN_AI_EVALUATION_NAME, "thumbs"), _kv(A.GEN_AI_EVALUATION_SCORE_LABEL, "pass")]
    )
    by_attribute = LogRecord(observed_time_unix_nano=T0_NS + 7)
    by_attribute.attributes.extend(
        [
            _kv("event.name", A.GEN_AI_EVALUATION_RESULT_EVENT),
            _kv(A.GEN_AI_EVALUATION_NAME, "relevance"),
            KeyValue(key=A.GEN_AI_EVALUATION_SCORE_VALUE, value=AnyValue(double_value=0.5)),
            _kv(A.GEN_AI_RESPONSE_ID, "resp-7"),
        ]
    )
    other = LogRecord(time_unix_nano=T0_NS, event_name="app.log")
    bad = LogRecord(time_unix_nano=T0_NS, trace_id=b"\x01" * 3, event_name=A.GEN_AI_EVALUATION_RESULT_EVENT)
    result = decode_logs(_log_request(by_field, by_attribute, other, bad))

    assert (result.spans_seen, result.skipped, result.rejected) == (4, 1, 1)
    first, second = result.evaluations
    assert (first.name, first.label, first.trace_id, first.span_id) == (
        "thumbs",
        "pass",
        TRACE_ID.hex(),
        SPAN_ID.hex(),
    )
    assert (second.name, second.score, second.response_id, second.time_ns) == (
        "relevance",
        0.5,
        "resp-7",
        T0_NS + 7,
    )
    assert second.trace_id == ""
    assert second.span_id == ""


def test_builder_request_decodes_every_span_into_its_series() -> None:
    result = decode_traces(genai_request(spans=100, series=7))
    assert len(result.calls) == 100
    assert len({c.series for c in result.calls}) == 7


def test_non_finite_numbers_are_dropped_not_propagated() -> None:
    span = _chat_span()
    span.attributes.extend(
        [
            KeyValue(key=A.COST_USD, value=AnyValue(double_value=float("nan"))),
            KeyValue(key=A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, value=AnyValue(double_value=float("inf"))),
            KeyValue(key=A.GEN_AI_USAGE_INPUT_TOKENS, value=AnyValue(double_value=float("inf"))),
            _kv(A.GEN_AI_USAGE_OUTPUT_TOKENS, "many"),
        ]
    )
    (call,) = decode_traces(_request(span)).calls
    assert (call.cost_usd, call.time_to_first_chunk_s, call.input_tokens, call.output_tokens) == (None,) * 4


def test_public_api_is_pinned() -> None:
    assert sorted(decode_module.__all__) == [
        "DEFAULT_MAX_ATTRIBUTES_PER_SPAN",
        "DecodeStats",
        "REJECT_END_BEFORE_START",
        "REJECT_SPAN_ID",
        "REJECT_TRACE_ID",
        "decode_logs",
        "decode_traces",
    ]
    assert sorted(testing_module.__all__) == [
        "SECOND_NS",
        "SpanRecorder",
        "T0_NS",
        "genai_attributes",
        "genai_request",
    ]
