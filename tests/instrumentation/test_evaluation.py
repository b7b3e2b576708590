from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

from otel_llm import attributes as attr
from otel_llm import telemetry
from otel_llm.evaluation import Recorded, record_evaluation, record_feedback


@dataclass
class Captured:
    tracer: trace.Tracer
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter

    def log_records(self) -> list[ReadableLogRecord]:
        return list(self.logs.get_finished_logs())


@pytest.fixture
def otel() -> Iterator[Captured]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    telemetry.install(telemetry.build(tracer_provider=tracer_provider, logger_provider=logger_provider))
    yield Captured(tracer_provider.get_tracer("test"), spans, logs)
    telemetry.install(None)
    tracer_provider.shutdown()
    logger_provider.shutdown()


def _event_attributes(otel: Captured) -> dict[str, Any]:
    (span,) = otel.spans.get_finished_spans()
    (event,) = span.events
    assert event.name == "gen_ai.evaluation.result"
    return dict(event.attributes or {})


def test_span_event_on_the_span_given(otel: Captured) -> None:
    with otel.tracer.start_as_current_span("chat gpt-4o") as span:
        result = record_evaluation(
            "faithfulness",
            score=0.25,
            label="fail",
            explanation="1 of 4 sentences supported",
            span=span,
            response_id="chatcmpl-1",
            source="local",
        )
    assert result is Recorded.SPAN_EVENT
    assert _event_attributes(otel) == {
        "gen_ai.evaluation.name": "faithfulness",
        "gen_ai.evaluation.score.value": 0.25,
        "gen_ai.evaluation.score.label": "fail",
        "gen_ai.evaluation.explanation": "1 of 4 sentences supported",
        "gen_ai.response.id": "chatcmpl-1",
        attr.EVALUATION_SOURCE: "local",
    }
    assert otel.log_records() == []


def test_current_span_is_used_when_nothing_else_is_given(otel: Captured) -> None:
    with otel.tracer.start_as_current_span("chat gpt-4o"):
        assert record_evaluation("answer_relevance", score=1) is Recorded.SPAN_EVENT
    attributes = _event_attributes(otel)
    assert attributes["gen_ai.evaluation.score.value"] == 1.0
    assert isinstance(attributes["gen_ai.evaluation.score.value"], float)
    assert "gen_ai.evaluation.score.label" not in attributes


def test_ended_span_gets_a_log_record_with_its_context(otel: Captured) -> None:
    with otel.tracer.start_as_current_span("chat gpt-4o") as span:
        pass
    assert record_evaluation("toxicity", score=0.0, label="pass", span=span) is Recorded.LOG_RECORD
    (record,) = otel.log_records()
    assert record.log_record.trace_id == span.get_span_context().trace_id
    assert record.log_record.span_id == span.get_span_context().span_id
    assert record.log_record.event_name == "gen_ai.evaluation.result"
    assert dict(record.log_record.attributes or {})["gen_ai.evaluation.name"] == "toxicity"


def test_feedback_minutes_later_is_a_log_record_parented_by_span_context(otel: Captured) -> None:
    with otel.tracer.start_as_current_span("chat gpt-4o") as call_span:
        call_context = call_span.get_span_context()
    # Later, inside the app's own request span for the feedback endpoint:
    with otel.tracer.start_as_current_span("POST /feedback") as request_span:
        result = record_feedback(True, span_context=call_context, response_id="chatcmpl-9", comment="great")
    assert result is Recorded.LOG_RECORD
    (record,) = otel.log_records()
    log = record.log_record
    assert (log.trace_id, log.span_id) == (call_context.trace_id, call_context.span_id)
    assert log.trace_id != request_span.get_span_context().trace_id
    assert log.trace_flags == call_context.trace_flags
    assert log.event_name == "gen_ai.evaluation.result"
    assert dict(log.attributes or {}) == {
        "gen_ai.evaluation.name": "user_feedback",
        "gen_ai.evaluation.score.value": 1.0,
        "gen_ai.evaluation.score.label": "pass",
        "gen_ai.evaluation.explanation": "great",
        "gen_ai.response.id": "chatcmpl-9",
        attr.EVALUATION_SOURCE: "user",
    }
    # The request span got no event: the feedback is about the earlier call.
    assert all(not s.events for s in otel.spans.get_finished_spans())


def test_thumbs_down_is_zero_and_fail(otel: Captured) -> None:
    context = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    record_feedback(False, span_context=context)
    (record,) = otel.log_records()
    attributes = dict(record.log_record.attributes or {})
    assert attributes["gen_ai.evaluation.score.value"] == 0.0
    assert attributes["gen_ai.evaluation.score.label"] == "fail"
    assert (record.log_record.trace_id, record.log_record.span_id) == (0xABC, 0xDEF)


def test_response_id_only_does_not_attach_the_current_span(otel: Captured) -> None:
    with otel.tracer.start_as_current_span("POST /feedback"):
        assert record_feedback(True, response_id="resp_123") is Recorded.LOG_RECORD
    (record,) = otel.log_records()
    assert record.log_record.trace_id == 0
    assert record.log_record.span_id == 0
    assert dict(record.log_record.attributes or {})["gen_ai.response.id"] == "resp_123"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("", {"score": 1.0}),
        ("   ", {"score": 1.0}),
        ("faithfulness", {"score": math.nan}),
        ("faithfulness", {"score": math.inf}),
        ("faithfulness", {"score": "0.5"}),
        ("faithfulness", {"score": True}),
        ("faithfulness", {}),
        ("faithfulness", {"score": 0.5, "label": 3}),
    ],
)
def test_programmer_errors_raise_value_error(otel: Captured, name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="evaluation"):
        record_evaluation(name, **kwargs)
    assert otel.log_records() == []


def test_label_alone_is_enough(otel: Captured) -> None:
    assert record_evaluation("hallucination", label="pass", response_id="r1") is Recorded.LOG_RECORD
    (record,) = otel.log_records()
    assert "gen_ai.evaluation.score.value" not in dict(record.log_record.attributes or {})


class _BrokenLogger:
    def emit(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter exploded")


def test_opentelemetry_failure_never_reaches_the_app(otel: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = telemetry.current()
    monkeypatch.setattr(telemetry, "_current", type(broken)(**{**_fields(broken), "logger": _BrokenLogger()}))
    assert record_feedback(True, response_id="r1") is Recorded.FAILED


def _fields(value: telemetry.Telemetry) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}
