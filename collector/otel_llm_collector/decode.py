"""Decode: OTLP export requests (protobuf) -> plain `CallRecord` / `EvaluationRecord` values.

This is the hot path of the collector, so it is written for speed rather than elegance:

- each span's attributes are walked once, and each key costs one dict lookup in `mapping.ATTRIBUTE_TABLE`;
  only the handful of values the records need are read (reading a protobuf value costs more than a lookup);
- spans that are not GenAI model calls are skipped after that walk, without building anything;
- service name and version are read once per `ResourceSpans`;
- at most `max_attributes_per_span` attributes are looked at per span (an "attribute bomb" of 10,000
  attributes costs no more than a normal span); how many spans were cut short is counted in `DecodeStats`.

Per-item defects (trace id not 16 bytes or all zero, span id not 8 bytes or all zero, end before start; for
log records an id of the wrong length) reject that item only: it is counted in `DecodeResult.rejected` with
its reason in `reject_reasons`, and the rest of the request is kept, as OTLP partial success expects.

`gen_ai.evaluation.result` span events on a GenAI span ride on the call (`CallRecord.evaluations`, series
known); on any other span they become standalone `EvaluationRecord`s carrying that span's ids. Log records
whose event name (the `event_name` field, or the `event.name` attribute) is `gen_ai.evaluation.result`
become `EvaluationRecord`s carrying the log record's trace/span id and the response id, for the join index.

`capture` (both decoders) is the hook of evaluation in the collector (`content_eval`): when given, it is
called with each GenAI call span and its record, or with each log record that is not an evaluation, to copy
the captured content of sampled calls. Without it (content evaluation off) decode reads no content.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.semconv._incubating.attributes.event_attributes import EVENT_NAME
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME, SERVICE_VERSION

from otel_llm import attributes as A
from otel_llm_collector import mapping as M
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey

DEFAULT_MAX_ATTRIBUTES_PER_SPAN: Final = 128
"""Well above the ~15-40 attributes real GenAI spans carry; bounds the cost of pathological spans."""
MAX_SEGMENTS_PER_SPAN: Final = 8
MAX_ATTRIBUTE_STRING_CHARS: Final = 256
"""Series labels and ids longer than this are cut: they end up as Prometheus label values."""

REJECT_TRACE_ID: Final = "invalid_trace_id"
REJECT_SPAN_ID: Final = "invalid_span_id"
REJECT_END_BEFORE_START: Final = "end_before_start"

_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
_STATUS_CODE_ERROR: Final = 2
_UNKNOWN_SERVICE_PREFIX: Final = "unknown_service"
_ERROR_TYPE_OTHER: Final = "_OTHER"
"""What the semantic conventions prescribe when an error has no better type."""

_TABLE: Final = M.ATTRIBUTE_TABLE
_EVALUATION_EVENT: Final = A.GEN_AI_EVALUATION_RESULT_EVENT
_SEGMENT_PREFIX: Final = A.SEGMENT_PREFIX
_TENANT: Final = A.TENANT
_OTEL_LLM_PREFIX: Final = M.OTEL_LLM_PREFIX
_MARK_OTEL_LLM: Final = M.MARK_OTEL_LLM
_STR: Final = M.STR
_INT: Final = M.INT
_FLOAT: Final = M.FLOAT
_MAX_CHARS: Final = MAX_ATTRIBUTE_STRING_CHARS
# Slots as module globals: a global lookup is cheaper than `M.NAME` on the hot path.
_OI_MODEL: Final = M.OI_MODEL
_REQUEST_MODEL: Final = M.REQUEST_MODEL
_RESPONSE_MODEL: Final = M.RESPONSE_MODEL
_APPLICATION_NAME: Final = M.APPLICATION_NAME
_ENVIRONMENT: Final = M.ENVIRONMENT
_ERROR_TYPE: Final = M.ERROR_TYPE
_INPUT_TOKENS: Final = M.INPUT_TOKENS
_OUTPUT_TOKENS: Final = M.OUTPUT_TOKENS
_TOTAL_TOKENS: Final = M.TOTAL_TOKENS
_TOOL_CALL_NAMES: Final = M.TOOL_CALL_NAMES
_TOOL_CALL_COUNT: Final = M.TOOL_CALL_COUNT
_RESPONSE_ID: Final = M.RESPONSE_ID
_FEATURE: Final = M.FEATURE
_PROMPT_NAME: Final = M.PROMPT_NAME
_PROMPT_VERSION: Final = M.PROMPT_VERSION
_PROVIDER: Final = M.PROVIDER
_TTFC: Final = M.TTFC
_CACHE_READ: Final = M.CACHE_READ
_CACHE_CREATION: Final = M.CACHE_CREATION
_REASONING: Final = M.REASONING
_COST: Final = M.COST
_CONTEXT_DOCUMENTS: Final = M.CONTEXT_DOCUMENTS
_CONTEXT_TOKENS: Final = M.CONTEXT_TOKENS
_FINISH_REASONS: Final = M.FINISH_REASONS
_INPUT_HASH: Final = M.INPUT_HASH
_OUTPUT_HASH: Final = M.OUTPUT_HASH

SpanCapture = Callable[[Any, CallRecord], None]
"""Called on the decoding thread with a GenAI call span (protobuf) and its record; must not raise."""
LogCapture = Callable[[Any], None]
"""Called on the decoding thread with a log record (protobuf) that is not an evaluation; must not raise."""


class DecodeStats:
    """Counters that do not belong in one request's `DecodeResult`; the app exposes them as self-metrics.

    Plain integer increments: share one instance per decoding thread, or accept that concurrent decoders
    may lose an occasional increment.
    """

    __slots__ = ("attributes_truncated_spans",)

    def __init__(self) -> None:
        self.attributes_truncated_spans = 0


# --- AnyValue readers: the fast field first, the oneof switch only when that field is empty -------------
def _any_str(value: Any) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        s: str = value.string_value
        return s[:MAX_ATTRIBUTE_STRING_CHARS]
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    return ""


def _any_int(value: Any) -> int | None:
    which = value.WhichOneof("value")
    if which == "int_value":
        return int(value.int_value)
    if which == "double_value":
        number = value.double_value
        return int(number) if math.isfinite(number) else None
    if which == "string_value":
        try:
            return int(value.string_value)
        except ValueError:
            return None
    return None


def _any_float(value: Any) -> float | None:
    """A finite number, or None: NaN and infinities would poison every sum and sketch downstream."""
    which = value.WhichOneof("value")
    if which == "double_value":
        number = float(value.double_value)
    elif which == "int_value":
        number = float(value.int_value)
    elif which == "string_value":
        try:
            number = float(value.string_value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _any_strs(value: Any) -> tuple[str, ...]:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_any_str(v) for v in value.array_value.values[:64])
    if which == "string_value":
        return (value.string_value[:MAX_ATTRIBUTE_STRING_CHARS],)
    return ()


def _resource_info(resource: Any) -> tuple[str, str]:
    service = ""
    version = ""
    for kv in resource.attributes:
        key = kv.key
        if key == SERVICE_NAME:
            service = _any_str(kv.value)
        elif key == SERVICE_VERSION:
            version = _any_str(kv.value)
    return service, version


def _evaluation(attributes: Any, time_ns: int, trace_id: str, span_id: str) -> EvaluationRecord | None:
    name = ""
    score: float | None = None
    label = ""
    explanation = ""
    response_id = ""
    for kv in attributes[:DEFAULT_MAX_ATTRIBUTES_PER_SPAN]:
        key = kv.key
        if key == A.GEN_AI_EVALUATION_NAME:
            name = _any_str(kv.value)
        elif key == A.GEN_AI_EVALUATION_SCORE_VALUE:
            score = _any_float(kv.value)
        elif key == A.GEN_AI_EVALUATION_SCORE_LABEL:
            label = _any_str(kv.value)
        elif key == A.GEN_AI_EVALUATION_EXPLANATION:
            explanation = _any_str(kv.value)
        elif key == A.GEN_AI_RESPONSE_ID:
            response_id = _any_str(kv.value)
    if not name:
        return None
    return EvaluationRecord(
        name=name,
        time_ns=time_ns,
        score=score,
        label=label,
        explanation=explanation,
        trace_id=trace_id,
        span_id=span_id,
        response_id=response_id,
    )


def _span_evaluations(
    events: Any, default_time_ns: int, trace_id: str, span_id: str
) -> list[EvaluationRecord]:
    out: list[EvaluationRecord] = []
    for event in events:
        if event.name != _EVALUATION_EVENT:
            continue
        record = _evaluation(event.attributes, event.time_unix_nano or default_time_ns, trace_id, span_id)
        if record is not None:
            out.append(record)
    return out


_SERIES_CACHE_LIMIT: Final = 100_000
_series_cache: dict[tuple[str, str, str, str, str], SeriesKey] = {}
_new_tuple = tuple.__new__


def _series_key(service: str, feature: str, prompt_name: str, prompt_version: str, model: str) -> SeriesKey:
    """One shared `SeriesKey` per distinct series: cheaper than building one per call, and the windows and
    the join index then hold references to one object instead of copies."""
    parts = (service, feature, prompt_name, prompt_version, model)
    key = _series_cache.get(parts)
    if key is None:
        if len(_series_cache) >= _SERIES_CACHE_LIMIT:
            _series_cache.clear()
        key = _series_cache[parts] = _new_tuple(SeriesKey, parts)
    return key


_instrumentation_cache: dict[tuple[int, str], str] = {}


def _instrumentation(markers: int, scope_name: str) -> str:
    key = (markers, scope_name)
    name = _instrumentation_cache.get(key)
    if name is None:
        if len(_instrumentation_cache) >= 1024:  # scope names come from clients: keep the cache bounded
            _instrumentation_cache.clear()
        name = _instrumentation_cache[key] = M.instrumentation_of(markers, scope_name)
    return name


def _call(
    found: dict[int, Any],
    operation: str,
    markers: int,
    scope_name: str,
    service: str,
    service_version: str,
    span: Any,
    start: int,
    end: int,
    trace_id: bytes,
    span_id: bytes,
    segments: list[tuple[str, str]] | None,
) -> CallRecord:
    get = found.get
    oi_model = get(_OI_MODEL, "")
    request_model = get(_REQUEST_MODEL, "") or oi_model
    response_model = get(_RESPONSE_MODEL, "") or oi_model
    if not service or service.startswith(_UNKNOWN_SERVICE_PREFIX):
        service = get(_APPLICATION_NAME, "") or service
    environment = get(_ENVIRONMENT)
    if environment:
        segments = [*(segments or ()), ("environment", environment)]
    error_type = get(_ERROR_TYPE, "")
    if error_type.startswith("<class '"):
        # Some instrumentations set the exception class itself, stored as its repr.
        error_type = error_type[8:].rstrip("'>")
    if not error_type and span.status.code == _STATUS_CODE_ERROR:
        error_type = _ERROR_TYPE_OTHER
    input_tokens = get(_INPUT_TOKENS)
    output_tokens = get(_OUTPUT_TOKENS)
    if output_tokens is None and input_tokens is not None:
        total = get(_TOTAL_TOKENS)
        if total is not None and total >= input_tokens:
            output_tokens = total - input_tokens
    tool_names = get(_TOOL_CALL_NAMES, ())
    tool_count = get(_TOOL_CALL_COUNT)
    trace_hex = trace_id.hex()
    span_hex = span_id.hex()
    response_id = get(_RESPONSE_ID, "")
    series = _series_key(
        service,
        get(_FEATURE, ""),
        get(_PROMPT_NAME, ""),
        get(_PROMPT_VERSION, ""),
        response_model or request_model,
    )
    evaluations: tuple[EvaluationRecord, ...] = ()
    if span.events:
        evaluations = tuple(
            EvaluationRecord(
                name=e.name,
                time_ns=e.time_ns,
                score=e.score,
                label=e.label,
                explanation=e.explanation,
                trace_id=trace_hex,
                span_id=span_hex,
                response_id=e.response_id or response_id,
                series=series,
            )
            for e in _span_evaluations(span.events, end, trace_hex, span_hex)
        )
    return CallRecord(
        series=series,
        end_time_ns=end,
        duration_s=(end - start) / 1e9,
        trace_id=trace_hex,
        span_id=span_hex,
        service_version=service_version,
        provider=get(_PROVIDER, ""),
        operation=operation,
        request_model=request_model,
        response_model=response_model,
        response_id=response_id,
        error_type=error_type,
        time_to_first_chunk_s=get(_TTFC),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=get(_CACHE_READ),
        cache_creation_tokens=get(_CACHE_CREATION),
        reasoning_tokens=get(_REASONING),
        cost_usd=get(_COST),
        context_documents=get(_CONTEXT_DOCUMENTS),
        context_tokens=get(_CONTEXT_TOKENS),
        tool_call_count=tool_count if tool_count is not None else len(tool_names),
        tool_call_names=tool_names,
        finish_reasons=get(_FINISH_REASONS, ()),
        input_hash=get(_INPUT_HASH, ""),
        output_hash=get(_OUTPUT_HASH, ""),
        instrumentation=_instrumentation(markers, scope_name),
        segments=tuple(segments) if segments else (),
        evaluations=evaluations,
    )


def _summary(reasons: dict[str, int]) -> str:
    return "; ".join(f"{count} rejected: {reason}" for reason, count in sorted(reasons.items()))


def decode_traces(
    request: ExportTraceServiceRequest,
    *,
    max_attributes_per_span: int = DEFAULT_MAX_ATTRIBUTES_PER_SPAN,
    stats: DecodeStats | None = None,
    capture: SpanCapture | None = None,
) -> DecodeResult:
    """Validate every span and turn the GenAI ones into records. Never raises on bad data."""
    calls: list[CallRecord] = []
    evaluations: list[EvaluationRecord] = []
    reasons: dict[str, int] = {}
    seen = 0
    skipped = 0
    truncated = 0
    table_get = _TABLE.get
    for resource_spans in request.resource_spans:
        service, service_version = _resource_info(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            scope_name: str = scope_spans.scope.name
            for span in scope_spans.spans:
                seen += 1
                trace_id: bytes = span.trace_id
                span_id: bytes = span.span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
                    reasons[REJECT_TRACE_ID] = reasons.get(REJECT_TRACE_ID, 0) + 1
                    continue
                if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
                    reasons[REJECT_SPAN_ID] = reasons.get(REJECT_SPAN_ID, 0) + 1
                    continue
                start: int = span.start_time_unix_nano
                end: int = span.end_time_unix_nano
                if end < start:
                    reasons[REJECT_END_BEFORE_START] = reasons.get(REJECT_END_BEFORE_START, 0) + 1
                    continue
                attributes: Sequence[Any] = span.attributes
                if len(attributes) > max_attributes_per_span:
                    truncated += 1
                    attributes = attributes[:max_attributes_per_span]
                found: dict[int, Any] = {}
                alternates: dict[int, int] | None = None
                markers = 0
                segments: list[tuple[str, str]] | None = None
                for kv in attributes:
                    key: str = kv.key
                    entry = table_get(key)
                    if entry is None:
                        if key.startswith(_OTEL_LLM_PREFIX):
                            markers |= _MARK_OTEL_LLM
                            if key.startswith(_SEGMENT_PREFIX) or key == _TENANT:
                                # The tenant is a segment named `tenant` (budgets, segment disparity).
                                if segments is None:
                                    segments = []
                                if len(segments) < MAX_SEGMENTS_PER_SPAN:
                                    name = "tenant" if key == _TENANT else key[len(_SEGMENT_PREFIX) :]
                                    segments.append((name, _any_str(kv.value)))
                        continue
                    slot, priority, kind, marker = entry
                    if priority:
                        # An alternative name: it must not override the primary or a better alternative.
                        if alternates is None:
                            alternates = {}
                        if slot in found and alternates.get(slot, 0) <= priority:
                            continue
                        alternates[slot] = priority
                    elif alternates:
                        alternates.pop(slot, None)
                    markers |= marker
                    value = kv.value
                    if kind == _STR:
                        text = value.string_value
                        found[slot] = (
                            (text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS])
                            if text
                            else _any_str(value)
                        )
                    elif kind == _INT:
                        found[slot] = value.int_value or _any_int(value)
                    elif kind == _FLOAT:
                        found[slot] = _any_float(value)
                    else:
                        found[slot] = _any_strs(value)
                operation = M.operation_of(found)
                if not operation:
                    skipped += 1
                    if span.events:
                        evaluations.extend(_span_evaluations(span.events, end, trace_id.hex(), span_id.hex()))
                    continue
                calls.append(
                    _call(
                        found,
                        operation,
                        markers,
                        scope_name,
                        service,
                        service_version,
                        span,
                        start,
                        end,
                        trace_id,
                        span_id,
                        segments,
                    )
                )
                if capture is not None:
                    capture(span, calls[-1])
    if stats is not None and truncated:
        stats.attributes_truncated_spans += truncated
    rejected = sum(reasons.values())
    return DecodeResult(
        calls=tuple(calls),
        evaluations=tuple(evaluations),
        spans_seen=seen,
        rejected=rejected,
        error_message=_summary(reasons) if rejected else "",
        skipped=skipped,
        reject_reasons=reasons,
    )


def _log_event_name(record: Any) -> str:
    name: str = record.event_name
    if name:
        return name
    for kv in record.attributes[:DEFAULT_MAX_ATTRIBUTES_PER_SPAN]:
        if kv.key == EVENT_NAME:
            return _any_str(kv.value)
    return ""


def decode_logs(request: ExportLogsServiceRequest, *, capture: LogCapture | None = None) -> DecodeResult:
    """Turn `gen_ai.evaluation.result` log records into evaluation records; skip all other logs.

    Ids are optional on log records (all-zero or empty means "no span context"); an id of the wrong length
    rejects that record.
    """
    evaluations: list[EvaluationRecord] = []
    reasons: dict[str, int] = {}
    seen = 0
    skipped = 0
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                seen += 1
                trace_id: bytes = record.trace_id
                span_id: bytes = record.span_id
                if len(trace_id) not in (0, 16):
                    reasons[REJECT_TRACE_ID] = reasons.get(REJECT_TRACE_ID, 0) + 1
                    continue
                if len(span_id) not in (0, 8):
                    reasons[REJECT_SPAN_ID] = reasons.get(REJECT_SPAN_ID, 0) + 1
                    continue
                if _log_event_name(record) != _EVALUATION_EVENT:
                    if capture is not None:
                        capture(record)
                    skipped += 1
                    continue
                evaluation = _evaluation(
                    record.attributes,
                    record.time_unix_nano or record.observed_time_unix_nano,
                    "" if trace_id in (b"", _ZERO_TRACE_ID) else trace_id.hex(),
                    "" if span_id in (b"", _ZERO_SPAN_ID) else span_id.hex(),
                )
                if evaluation is None:
                    skipped += 1
                    continue
                evaluations.append(evaluation)
    rejected = sum(reasons.values())
    return DecodeResult(
        evaluations=tuple(evaluations),
        spans_seen=seen,
        rejected=rejected,
        error_message=_summary(reasons) if rejected else "",
        skipped=skipped,
        reject_reasons=reasons,
    )


__all__ = [
    "DEFAULT_MAX_ATTRIBUTES_PER_SPAN",
    "REJECT_END_BEFORE_START",
    "REJECT_SPAN_ID",
    "REJECT_TRACE_ID",
    "DecodeStats",
    "decode_logs",
    "decode_traces",
]
