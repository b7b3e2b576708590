from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext

from otel_llm import telemetry
from otel_llm.evaluation_worker import EvaluationWorker
from otel_llm.evaluators import EvaluationInput, EvaluationOutcome, groundedness, refusal


@dataclass
class Captured:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    metrics: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    def log_records(self) -> list[ReadableLogRecord]:
        return list(self.logs.get_finished_logs())

    def metric(self, name: str) -> int:
        data = self.metrics.get_metrics_data()
        if data is None:
            return 0
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        return sum(int(getattr(point, "value", 0)) for point in metric.data.data_points)
        return 0


@pytest.fixture
def otel() -> Iterator[Captured]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.install(
        telemetry.build(
            tracer_provider=tracer_provider, logger_provider=logger_provider, meter_provider=meter_provider
        )
    )
    yield Captured(tracer_provider, meter_provider, reader, logs)
    telemetry.install(None)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()


def _call(
    response_id: str, answer: str = "Pro costs $49 per month.", error_type: str | None = None
) -> EvaluationInput:
    return EvaluationInput(
        request_messages=[{"role": "user", "content": "How much is Pro?"}],
        response_text=answer,
        context=["Pro costs $39 per month."],
        response_id=response_id,
        error_type=error_type,
    )


def _ended_span_context(otel: Captured) -> SpanContext:
    with otel.tracer_provider.get_tracer("test").start_as_current_span("chat gpt-4o") as span:
        pass
    return span.get_span_context()


def test_outcomes_become_log_records_with_the_call_span_context(otel: Captured) -> None:
    worker = EvaluationWorker([groundedness, refusal], sample_rate=1.0, meter_provider=otel.meter_provider)
    span_context = _ended_span_context(otel)
    assert worker.submit(_call("chatcmpl-1"), span_context) is True
    assert worker.shutdown(timeout_seconds=10) is True

    records = otel.log_records()
    by_name = {dict(r.log_record.attributes or {})["gen_ai.evaluation.name"]: r for r in records}
    assert set(by_name) == {"faithfulness", "refusal"}
    faithfulness = by_name["faithfulness"].log_record
    assert faithfulness.event_name == "gen_ai.evaluation.result"
    assert (faithfulness.trace_id, faithfulness.span_id) == (span_context.trace_id, span_context.span_id)
    attributes = dict(faithfulness.attributes or {})
    assert attributes["gen_ai.evaluation.score.value"] == 0.0
    assert attributes["gen_ai.evaluation.score.label"] == "fail"
    assert attributes["gen_ai.response.id"] == "chatcmpl-1"
    assert attributes["otel_llm.evaluation.source"] == "local"
    assert (worker.submitted, worker.evaluated, worker.failed, worker.dropped) == (1, 2, 0, 0)


def test_shutdown_drains_everything_queued(otel: Captured) -> None:
    worker = EvaluationWorker([refusal], sample_rate=1.0, workers=3, meter_provider=otel.meter_provider)
    for index in range(50):
        assert worker.submit(_call(f"r{index}", answer="I can't help with that."))
    assert worker.shutdown(timeout_seconds=10)
    assert len(otel.log_records()) == 50
    assert worker.evaluated == 50
    assert otel.metric("otel_llm.evaluation.evaluated") == 50
    assert otel.metric("otel_llm.evaluation.submitted") == 50


def test_sampling_is_reproducible_with_a_seed(otel: Captured) -> None:
    def run() -> list[bool]:
        worker = EvaluationWorker([], sample_rate=0.3, seed=42, meter_provider=otel.meter_provider)
        chosen = [worker.submit(_call(f"r{index}")) for index in range(200)]
        worker.shutdown(timeout_seconds=10)
        return chosen

    first, second = run(), run()
    assert first == second
    assert 40 <= sum(first) <= 80  # about 30% of 200


def test_sampling_by_response_id_is_a_function_of_the_id(otel: Captured) -> None:
    one = EvaluationWorker(
        [], sample_rate=0.5, sample_by_response_id=True, meter_provider=otel.meter_provider
    )
    other = EvaluationWorker(
        [], sample_rate=0.5, sample_by_response_id=True, meter_provider=otel.meter_provider
    )
    ids = [f"chatcmpl-{index}" for index in range(100)]
    assert [one.submit(_call(i)) for i in ids] == [other.submit(_call(i)) for i in ids]
    assert one.sampled_out == other.sampled_out
    assert 0 < one.sampled_out < 100
    one.shutdown(timeout_seconds=10)
    other.shutdown(timeout_seconds=10)


def test_failed_calls_are_always_evaluated(otel: Captured) -> None:
    worker = EvaluationWorker([], sample_rate=0.0, meter_provider=otel.meter_provider)
    assert worker.submit(_call("ok")) is False
    assert worker.submit(_call("bad", error_type="timeout")) is True
    worker.shutdown(timeout_seconds=10)
    assert (worker.submitted, worker.sampled_out) == (2, 1)
    assert otel.metric("otel_llm.evaluation.sampled_out") == 1

    strict = EvaluationWorker([], sample_rate=0.0, always_on_error=False, meter_provider=otel.meter_provider)
    assert strict.submit(_call("bad", error_type="timeout")) is False
    strict.shutdown(timeout_seconds=10)


def test_full_queue_drops_and_counts_without_blocking(
    otel: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(data: EvaluationInput) -> EvaluationOutcome:
        started.set()
        release.wait(10)
        return EvaluationOutcome("slow", 1.0)

    worker = EvaluationWorker([slow], sample_rate=1.0, max_queue=2, meter_provider=otel.meter_provider)
    assert worker.submit(_call("first"))
    assert started.wait(10)  # the worker holds "first"; the queue is empty again
    results = [worker.submit(_call(f"r{index}")) for index in range(5)]
    assert results == [True, True, False, False, False]
    assert worker.dropped == 3
    assert otel.metric("otel_llm.evaluation.queue.dropped") == 3
    assert len([r for r in caplog.records if "dropping" in r.getMessage()]) == 1  # logged once
    release.set()
    assert worker.shutdown(timeout_seconds=10)
    assert worker.evaluated == 3
    assert len(otel.log_records()) == 3


def test_evaluator_errors_are_counted_and_do_not_stop_the_others(otel: Captured) -> None:
    def broken(data: EvaluationInput) -> EvaluationOutcome:
        raise RuntimeError("bug in evaluator")

    def invalid(data: EvaluationInput) -> EvaluationOutcome:
        return EvaluationOutcome("nan", float("nan"))

    worker = EvaluationWorker([broken, invalid, refusal], sample_rate=1.0, meter_provider=otel.meter_provider)
    worker.submit(_call("r1"), None)
    worker.shutdown(timeout_seconds=10)
    assert (worker.failed, worker.evaluated) == (2, 1)
    assert otel.metric("otel_llm.evaluation.failed") == 2
    (record,) = otel.log_records()
    assert dict(record.log_record.attributes or {})["gen_ai.evaluation.name"] == "refusal"


def test_none_outcome_records_nothing(otel: Captured) -> None:
    worker = EvaluationWorker([groundedness], sample_rate=1.0, meter_provider=otel.meter_provider)
    worker.submit(EvaluationInput(response_text="Pro costs $39.", response_id="r1"))  # no context: abstains
    worker.shutdown(timeout_seconds=10)
    assert worker.evaluated == 1
    assert otel.log_records() == []


def test_submit_after_shutdown_is_dropped(otel: Captured) -> None:
    worker = EvaluationWorker([refusal], sample_rate=1.0, meter_provider=otel.meter_provider)
    assert worker.shutdown(timeout_seconds=10)
    assert worker.submit(_call("late")) is False
    assert worker.dropped == 1
    assert worker.shutdown(timeout_seconds=1)  # idempotent


def test_submit_never_raises_into_the_app(otel: Captured) -> None:
    worker = EvaluationWorker([refusal], sample_rate=0.5, sample_by_response_id=True)
    bogus = EvaluationInput(response_text="x", response_id=object())  # type: ignore[arg-type]
    assert worker.submit(bogus) is False
    worker.shutdown(timeout_seconds=10)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [({"sample_rate": 1.5}, "sample_rate"), ({"max_queue": 0}, "max_queue"), ({"workers": 0}, "workers")],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, float], setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        EvaluationWorker([], **kwargs)  # type: ignore[arg-type]
