"""Evaluation in the collector: real SDK calls with content capture, decoded and evaluated by the collector,
the records joined to their calls' series in a real pipeline."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from otel_llm_collector.content_capture import (
    SAMPLE_SPACE,
    CapturedCall,
    SamplePlan,
    capture_span,
    evaluation_input,
    sample_point,
)
from otel_llm_collector.content_eval import ContentEvaluationSettings, ContentEvaluator, JudgeSettings
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.ingest import IngestQueue
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.receiver import Outcome, Receiver, Signal, Verdict
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.testing import genai_request
from otel_llm_collector.windows import WindowEngine
from pydantic import ValidationError

import otel_llm
from otel_llm import attributes as A
from otel_llm.testing.llm_server import ErrorReply, LLMRequest, LLMServer, Reply
from tests.conftest import Telemetry, make_telemetry

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
DOCS = "Plans: Pro costs $39 per month and includes priority support. Team costs $99 per month."
QUESTION = "What does the Pro plan cost?"
GROUNDED = "The Pro plan costs $39 per month. It includes priority support."
UNGROUNDED = "The Pro plan costs $49 per month. It includes a dedicated account manager."
JUDGE_MODEL = "judge-model"
VERDICT = '{"score": 0.25, "explanation": "The price is not in the documents."}'


class Answers:
    """The LLM server's responder: answers by feature marker in the system prompt; verdicts for the judge."""

    def __init__(self) -> None:
        self.judge_requests: list[LLMRequest] = []
        self.judge_arrived = threading.Event()
        self.release_judge = threading.Event()
        self.release_judge.set()

    def __call__(self, request: LLMRequest) -> Reply:
        if request.model == JUDGE_MODEL:
            self.judge_requests.append(request)
            self.judge_arrived.set()
            self.release_judge.wait(30)
            return Reply(text=VERDICT)
        if "[fail]" in request.last_user_text:
            return Reply(error=ErrorReply(500, "upstream failed"))
        if "[refuse]" in request.last_user_text:
            return Reply(text="I'm sorry, but I can't help with that request.")
        return Reply(text=UNGROUNDED if "[stale]" in request.system else GROUNDED)


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def server(answers: Answers) -> Iterator[LLMServer]:
    with LLMServer(answers) as running:
        yield running
    answers.release_judge.set()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """An instrumented app with content capture on its spans."""
    monkeypatch.setenv(CAPTURE, "true")
    yield from _instrumented()


def _instrumented() -> Iterator[Telemetry]:
    t = make_telemetry()
    otel_llm.instrument(
        tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, logger_provider=t.logger_provider
    )
    try:
        yield t
    finally:
        otel_llm.uninstrument()
        t.tracer_provider.shutdown()
        t.logger_provider.shutdown()
        t.meter_provider.shutdown()


def ask(server: LLMServer, feature: str, *, question: str = QUESTION, stale: bool = False) -> None:
    system = f"Answer from these documents only{' [stale]' if stale else ''}:\n{DOCS}"
    with (
        otel_llm.llm_context(feature=feature),
        openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client,
    ):
        with contextlib.suppress(openai.InternalServerError):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            )


def spans_request(t: Telemetry) -> ExportTraceServiceRequest:
    spans = t.finished()
    t.spans.clear()
    return encode_spans(spans)


def logs_request(t: Telemetry) -> ExportLogsServiceRequest:
    logs = t.logs.get_finished_logs()
    t.logs.clear()
    return encode_logs(logs)


class Collector:
    """The collector's receive -> decode -> ingest -> pipeline path with content evaluation wired in."""

    def __init__(
        self, settings: ContentEvaluationSettings, *, max_batches: int = 64, sink: Any = None
    ) -> None:
        self.counters = Counters()
        self.engine = WindowEngine()
        self.pipeline = Pipeline(self.engine, None)
        self.ingest = IngestQueue(
            sink if sink is not None else self.pipeline, max_batches=max_batches, counters=self.counters
        )
        self.offered: list[DecodeResult] = []
        self.evaluator = ContentEvaluator(settings, offer=self._offer, counters=self.counters, env={})
        self.receiver = Receiver(
            offer=self.evaluator.offer,
            counters=self.counters,
            decode_traces=self.evaluator.decode_traces,
            decode_logs=self.evaluator.decode_logs,
        )
        self.stopped = False

    def _offer(self, result: DecodeResult, signal: int = 0, payload: bytes | None = None) -> bool:
        if not signal:
            self.offered.append(result)  # what the evaluators offered
        return self.ingest.offer(result, signal, payload)

    def records(self) -> list[Any]:
        return [record for result in self.offered for record in result.evaluations]

    def start(self) -> Collector:
        self.ingest.start()
        self.evaluator.start()
        return self

    def stop(self, timeout_seconds: float = 10.0) -> None:
        if not self.stopped:
            self.stopped = True
            self.evaluator.stop(timeout_seconds)
            self.ingest.stop()

    def traces(self, request: ExportTraceServiceRequest) -> Outcome:
        return self.receiver.export(Signal.TRACES, request)

    def logs(self, request: ExportLogsServiceRequest) -> Outcome:
        return self.receiver.export(Signal.LOGS, request)

    def count(self, name: str) -> float:
        return self.counters.get(f"content_evaluation_{name}_total")

    def series(self, feature: str) -> SeriesKey:
        (key,) = [key for key in self.engine.series() if key.feature == feature]
        return key

    def evaluation(self, feature: str, name: str) -> tuple[int, float | None]:
        """(samples, mean score) of evaluation `name` in the feature's series over the last 5 minutes."""
        stats = self.engine.window(self.series(feature), "5m")
        assert stats is not None
        found = stats.evaluations.get(name)
        return (found.samples, found.mean) if found is not None else (0, None)


def settings(**overrides: Any) -> ContentEvaluationSettings:
    return ContentEvaluationSettings.model_validate({"enabled": True, "sample_rate": 1.0, **overrides})


@pytest.fixture
def collector_factory() -> Iterator[Any]:
    made: list[Collector] = []

    def make(config: ContentEvaluationSettings, **options: Any) -> Collector:
        collector = Collector(config, **options).start()
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.stop()


# --- evaluation end to end ------------------------------------------------------------------------------


def test_faithfulness_is_low_for_ungrounded_and_high_for_grounded_answers(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    for _ in range(3):
        ask(server, "grounded")
        ask(server, "stale", stale=True)
    collector = collector_factory(settings())
    assert collector.traces(spans_request(app)).verdict is Verdict.ACCEPTED
    collector.stop()

    assert collector.evaluation("grounded", "faithfulness") == (3, 1.0)
    samples, mean = collector.evaluation("stale", "faithfulness")
    assert samples == 3
    assert mean is not None
    assert mean < 0.5
    assert collector.evaluation("grounded", "refusal") == (3, 0.0)
    assert collector.engine.join.unmatched == 0
    assert (collector.count("sampled"), collector.count("evaluated"), collector.count("records")) == (
        6,
        6,
        12,
    )
    assert collector.count("errors") == 0


def test_records_carry_the_calls_ids_and_are_joined_like_app_evaluations(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    ask(server, "grounded")
    (span,) = app.genai_spans()
    collector = collector_factory(settings(evaluators=["refusal"]))
    collector.traces(spans_request(app))
    collector.stop()

    (record,) = collector.records()
    assert record.name == "refusal"
    assert record.score == 0.0
    assert record.label == "pass"
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.span_id == format(span.context.span_id, "016x")
    assert record.response_id == (span.attributes or {})[A.GEN_AI_RESPONSE_ID]
    assert record.series is None  # attributed by the join index, as evaluations from apps are
    assert record.time_ns == span.end_time
    assert collector.engine.join.matched == 1


def test_refusals_are_counted_on_their_series(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    ask(server, "support", question="[refuse] Tell me the admin password.")
    ask(server, "support")
    collector = collector_factory(settings(evaluators=["refusal"]))
    collector.traces(spans_request(app))
    collector.stop()
    assert collector.evaluation("support", "refusal") == (2, 0.5)


# --- sampling -------------------------------------------------------------------------------------------


def test_sample_rate_zero_evaluates_nothing_but_failed_calls(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    for _ in range(4):
        ask(server, "support")
    ask(server, "support", question="[fail] anything")
    collector = collector_factory(settings(sample_rate=0.0))
    collector.traces(spans_request(app))
    collector.stop()
    # Only the failed call was taken; its evaluators have nothing to judge (no answer), so no record.
    assert (collector.count("sampled"), collector.count("evaluated"), collector.count("records")) == (1, 1, 0)
    assert collector.evaluation("support", "refusal") == (0, None)


def test_failed_calls_are_not_taken_without_always_on_error(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    ask(server, "support", question="[fail] anything")
    collector = collector_factory(settings(sample_rate=0.0, always_on_error=False))
    collector.traces(spans_request(app))
    collector.stop()
    assert collector.count("sampled") == 0


def _with_content(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    for span in request.resource_spans[0].scope_spans[0].spans:
        for key, value in (
            (A.GEN_AI_INPUT_MESSAGES, json.dumps([{"role": "user", "content": QUESTION}])),
            (A.GEN_AI_OUTPUT_MESSAGES, json.dumps([{"role": "assistant", "content": GROUNDED}])),
        ):
            span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return request


def test_sampling_is_decided_by_the_span_id_the_same_way_in_every_collector(collector_factory: Any) -> None:
    request = _with_content(genai_request(spans=512, seed=3))
    span_ids = [span.span_id for span in request.resource_spans[0].scope_spans[0].spans]
    expected = {sid.hex() for sid in span_ids if sample_point(sid) < 0.1 * SAMPLE_SPACE}
    taken: list[set[str]] = []
    for _ in range(2):
        collector = collector_factory(settings(sample_rate=0.1, evaluators=["refusal"]))
        collector.traces(request)
        collector.stop()
        taken.append({record.span_id for record in collector.records()})
    assert taken[0] == taken[1] == expected
    assert 25 <= len(expected) <= 80  # about 10% of 512 sequential span ids


# --- what is read, and when -----------------------------------------------------------------------------


def test_decode_output_is_unchanged_by_content_evaluation(app: Telemetry, server: LLMServer) -> None:
    ask(server, "grounded")
    ask(server, "support", question="[fail] anything")
    request = spans_request(app)
    evaluator = ContentEvaluator(
        settings(), offer=lambda result, signal=0, payload=None: True, counters=Counters()
    )
    assert evaluator.decode_traces(request) == decode_traces(request)


class CountingSpan:
    """A protobuf span that counts how often its attributes are read."""

    def __init__(self, span: Any) -> None:
        self._span = span
        self.attribute_reads = 0

    @property
    def span_id(self) -> bytes:
        return bytes(self._span.span_id)

    @property
    def attributes(self) -> Any:
        self.attribute_reads += 1
        return self._span.attributes


def test_no_content_is_read_from_calls_that_are_not_sampled(app: Telemetry, server: LLMServer) -> None:
    ask(server, "grounded")
    request = spans_request(app)
    (call,) = decode_traces(request).calls
    (pb_span,) = [
        s
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
        if s.span_id.hex() == call.span_id
    ]
    skipped = CountingSpan(pb_span)
    plan = SamplePlan(local=0, judge=0, every_call=False, always_on_error=True, max_content_chars=10_000)
    assert capture_span(plan, skipped, call) is None
    assert skipped.attribute_reads == 0

    taken = CountingSpan(pb_span)
    plan = SamplePlan(
        local=SAMPLE_SPACE, judge=0, every_call=False, always_on_error=True, max_content_chars=10_000
    )
    captured = capture_span(plan, taken, call)
    assert captured is not None
    assert captured.has_content
    assert taken.attribute_reads == 1


def test_calls_without_captured_content_are_skipped_and_counted(
    monkeypatch: pytest.MonkeyPatch, server: LLMServer, collector_factory: Any
) -> None:
    monkeypatch.delenv(CAPTURE, raising=False)
    app = _instrumented()
    t = next(app)
    try:
        ask(server, "support")
        ask(server, "support")
        request = spans_request(t)
    finally:
        app.close()
    collector = collector_factory(settings())
    collector.traces(request)
    collector.stop()
    assert (collector.count("sampled"), collector.count("skipped_no_content")) == (2, 2)
    assert collector.count("evaluated") == 0
    assert collector.evaluation("support", "refusal") == (0, None)


def test_content_over_the_limit_is_skipped_and_counted(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    ask(server, "support", question="What does it cost? " + "Please be precise. " * 200)
    collector = collector_factory(settings(max_content_chars=1000))
    collector.traces(spans_request(app))
    collector.stop()
    assert (collector.count("sampled"), collector.count("skipped_too_large")) == (1, 1)
    assert collector.count("evaluated") == 0


# --- events ---------------------------------------------------------------------------------------------


def test_content_captured_as_events_is_evaluated_and_joined(
    monkeypatch: pytest.MonkeyPatch, server: LLMServer, collector_factory: Any
) -> None:
    monkeypatch.setenv(CAPTURE, "EVENT_ONLY")
    app = _instrumented()
    t = next(app)
    try:
        ask(server, "stale", stale=True)
        traces, logs = spans_request(t), logs_request(t)
    finally:
        app.close()
    collector = collector_factory(settings())
    assert collector.traces(traces).verdict is Verdict.ACCEPTED
    # The span carries no content in this mode: sampled, and skipped; then its event is evaluated.
    assert (collector.count("sampled"), collector.count("skipped_no_content")) == (1, 1)
    assert collector.logs(logs).verdict is Verdict.ACCEPTED
    collector.stop()
    samples, mean = collector.evaluation("stale", "faithfulness")
    assert samples == 1
    assert mean is not None
    assert mean < 0.5
    assert (collector.count("sampled"), collector.count("evaluated")) == (2, 1)


def test_a_call_on_both_its_span_and_its_event_is_evaluated_once(
    monkeypatch: pytest.MonkeyPatch, server: LLMServer, collector_factory: Any
) -> None:
    monkeypatch.setenv(CAPTURE, "SPAN_AND_EVENT")
    app = _instrumented()
    t = next(app)
    try:
        ask(server, "grounded")
        traces, logs = spans_request(t), logs_request(t)
    finally:
        app.close()
    collector = collector_factory(settings(evaluators=["groundedness"]))
    collector.logs(logs)  # the event first: the span's copy is the duplicate
    collector.traces(traces)
    collector.stop()
    assert (collector.count("sampled"), collector.count("duplicates")) == (1, 1)
    assert collector.evaluation("grounded", "faithfulness") == (1, 1.0)


def test_structured_semconv_event_content_is_read(collector_factory: Any) -> None:
    """The shape the GenAI utilities emit: parts, structured attribute values, system instructions."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    context = set_span_in_context(
        NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(1)))
    )
    provider.get_logger("genai").emit(
        timestamp=1_767_225_600 * 10**9,
        context=context,
        event_name=A.GEN_AI_INFERENCE_DETAILS_EVENT,
        attributes={
            A.GEN_AI_SYSTEM_INSTRUCTIONS: [{"type": "text", "content": DOCS}],
            A.GEN_AI_INPUT_MESSAGES: [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}],
            A.GEN_AI_OUTPUT_MESSAGES: [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": UNGROUNDED}],
                    "finish_reason": "stop",
                }
            ],
            A.GEN_AI_RESPONSE_ID: "chatcmpl-7",
        },
    )
    request = encode_logs(exporter.get_finished_logs())
    provider.shutdown()
    collector = collector_factory(settings(evaluators=["groundedness"]))
    assert collector.logs(request).verdict is Verdict.ACCEPTED
    collector.stop()
    (record,) = collector.records()
    assert (record.trace_id, record.span_id) == (format(0x1234, "032x"), format(0x5678, "016x"))
    assert record.response_id == "chatcmpl-7"
    assert record.name == "faithfulness"
    assert record.score is not None
    assert record.score < 0.5
    assert record.time_ns == 1_767_225_600 * 10**9
    assert collector.engine.join.pending == 1  # waiting for its call, as an app's evaluation would


# --- backpressure and lifecycle -------------------------------------------------------------------------


def _judge(server: LLMServer, **overrides: Any) -> dict[str, Any]:
    return {
        "model": JUDGE_MODEL,
        "base_url": server.openai_base_url,
        "criteria": ["faithfulness"],
        "sample_rate": 1.0,
        "calls_per_minute": 0,
        **overrides,
    }


def test_a_full_queue_drops_new_calls_and_counts_them(
    app: Telemetry, server: LLMServer, answers: Answers, collector_factory: Any
) -> None:
    answers.release_judge.clear()  # the judge holds the single worker
    collector = collector_factory(settings(evaluators=[], judge=_judge(server), workers=1, queue_max_calls=1))
    ask(server, "support")
    collector.traces(spans_request(app))
    assert answers.judge_arrived.wait(10)  # the worker is busy; the queue is empty
    for _ in range(3):
        ask(server, "support")
    collector.traces(spans_request(app))
    assert (collector.count("sampled"), collector.count("dropped_queue_full")) == (4, 2)
    answers.release_judge.set()
    collector.stop()
    assert collector.count("evaluated") == 2
    assert collector.evaluation("support", "faithfulness") == (2, 0.25)


def test_stop_drains_the_queue(
    app: Telemetry, server: LLMServer, answers: Answers, collector_factory: Any
) -> None:
    answers.release_judge.clear()
    collector = collector_factory(settings(evaluators=["refusal"], judge=_judge(server), workers=1))
    for _ in range(4):
        ask(server, "support")
    collector.traces(spans_request(app))
    assert answers.judge_arrived.wait(10)
    threading.Timer(0.2, answers.release_judge.set).start()
    collector.stop(timeout_seconds=30)
    assert (collector.count("evaluated"), collector.count("dropped_on_stop")) == (4, 0)
    assert collector.evaluation("support", "refusal") == (4, 0.0)
    assert collector.evaluation("support", "faithfulness") == (4, 0.25)


def test_stop_gives_up_after_its_timeout_and_counts_what_was_left(
    app: Telemetry, server: LLMServer, answers: Answers, collector_factory: Any
) -> None:
    answers.release_judge.clear()
    collector = collector_factory(settings(evaluators=[], judge=_judge(server, timeout_seconds=5), workers=1))
    for _ in range(3):
        ask(server, "support")
    collector.traces(spans_request(app))
    assert answers.judge_arrived.wait(10)
    collector.evaluator.stop(timeout_seconds=0.2)
    assert collector.count("dropped_on_stop") == 2
    answers.release_judge.set()


class BlockingSink:
    """A window sink whose `apply` waits until released: the ingest worker falls behind."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner = inner
        self.applying = threading.Event()
        self.release = threading.Event()

    def apply(self, result: DecodeResult) -> None:
        self.applying.set()
        self.release.wait(30)
        self.inner.apply(result)

    def advance_watermark(self, now_ns: int) -> None:
        self.inner.advance_watermark(now_ns)

    def snapshot(self) -> dict[str, Any]:
        return {}


def test_records_the_full_ingest_queue_refuses_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch, server: LLMServer
) -> None:
    monkeypatch.setenv(CAPTURE, "EVENT_ONLY")  # the content arrives as logs, which take no queue slot
    app = _instrumented()
    t = next(app)
    try:
        ask(server, "support")
        ask(server, "support")
        first, events = spans_request(t), logs_request(t)
        ask(server, "support")
        second = spans_request(t)
    finally:
        app.close()
    engine = WindowEngine()
    sink = BlockingSink(Pipeline(engine, None))
    collector = Collector(settings(evaluators=["refusal"]), max_batches=1, sink=sink).start()
    try:
        assert collector.traces(first).verdict is Verdict.ACCEPTED
        assert sink.applying.wait(10)  # the windows worker is stuck on the first request
        assert collector.traces(second).verdict is Verdict.ACCEPTED  # and the queue is full
        assert collector.logs(events).verdict is Verdict.ACCEPTED
        for _ in range(200):
            if collector.count("dropped_ingest") == 2:
                break
            threading.Event().wait(0.05)
        assert (collector.count("evaluated"), collector.count("records")) == (2, 2)
        assert collector.count("dropped_ingest") == 2  # refused at once: the evaluators did not wait
    finally:
        sink.release.set()
        collector.stop()
    assert engine.calls_total == 3
    assert engine.evaluations_total == 0


# --- the judge ------------------------------------------------------------------------------------------


def test_a_judge_against_the_local_server_produces_judge_records(
    app: Telemetry, server: LLMServer, answers: Answers, collector_factory: Any
) -> None:
    ask(server, "stale", stale=True)
    collector = collector_factory(settings(evaluators=[], judge=_judge(server)))
    collector.traces(spans_request(app))
    collector.stop()
    assert collector.evaluation("stale", "faithfulness") == (1, 0.25)
    (judged,) = answers.judge_requests
    prompt = json.dumps(judged.params)
    assert "$39" in prompt
    assert "$49" in prompt
    assert QUESTION in prompt
    assert collector.counters.get("content_evaluation_judge_calls_total") == 1
    assert collector.evaluator.judge is not None
    assert collector.evaluator.judge.stats.ok == 1


def test_the_judge_sample_rate_applies_on_its_own(
    app: Telemetry, server: LLMServer, answers: Answers, collector_factory: Any
) -> None:
    ask(server, "support")
    collector = collector_factory(settings(evaluators=["refusal"], judge=_judge(server, sample_rate=0.0)))
    collector.traces(spans_request(app))
    collector.stop()
    assert collector.evaluation("support", "refusal") == (1, 0.0)
    assert answers.judge_requests == []


# --- settings -------------------------------------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    defaults = ContentEvaluationSettings()
    assert (defaults.enabled, defaults.sample_rate, defaults.always_on_error) == (False, 0.1, True)
    assert defaults.evaluators == ("groundedness", "refusal")
    assert (defaults.queue_max_calls, defaults.workers, defaults.judge) == (1000, 2, None)
    with pytest.raises(ValidationError, match="unknown evaluators"):
        ContentEvaluationSettings(evaluators=("groundedness", "grammar"))
    with pytest.raises(ValidationError, match="unknown criteria"):
        JudgeSettings(model="m", criteria=("taste",))
    with pytest.raises(ValidationError, match="sample_rate"):
        ContentEvaluationSettings(sample_rate=1.5)


def test_a_judge_that_does_not_validate_stops_the_start() -> None:
    config = settings(judge={"model": "no-such-model", "daily_budget_usd": 5.0})
    with pytest.raises(ValueError, match="daily_budget_usd"):
        ContentEvaluator(config, offer=lambda result, signal=0, payload=None: True, counters=Counters())


def test_leak_scans_every_call_whatever_the_sample_rate(
    app: Telemetry, server: LLMServer, collector_factory: Any
) -> None:
    for _ in range(3):
        ask(server, "support")
    collector = collector_factory(settings(sample_rate=0.0, evaluators=["refusal", "leak"]))
    collector.traces(spans_request(app))
    collector.stop()
    assert collector.evaluation("support", "leak") == (3, 0.0)
    assert collector.evaluation("support", "refusal") == (0, None)


def test_counters_are_exposed_from_the_start() -> None:
    counters = Counters()
    ContentEvaluator(settings(), offer=lambda result, signal=0, payload=None: True, counters=counters)
    snapshot = counters.snapshot()
    for name in (
        "sampled",
        "evaluated",
        "dropped_queue_full",
        "errors",
        "skipped_no_content",
        "dropped_ingest",
    ):
        assert snapshot[f"content_evaluation_{name}_total"] == 0
    assert snapshot["content_evaluation_queue_calls"] == 0
    assert "content_evaluation_judge_calls_total" not in snapshot  # no judge configured


def test_public_api_is_pinned() -> None:
    import otel_llm_collector.content_capture as capture_module
    import otel_llm_collector.content_eval as eval_module

    assert sorted(eval_module.__all__) == ["ContentEvaluationSettings", "ContentEvaluator", "JudgeSettings"]
    assert sorted(capture_module.__all__) == [
        "CapturedCall",
        "ContentTooLarge",
        "SamplePlan",
        "capture_log_record",
        "capture_span",
        "evaluation_input",
        "sample_point",
    ]


EXTRACTION_CASES = [
    pytest.param(
        {
            "input_messages": json.dumps(
                [{"role": "system", "content": DOCS}, {"role": "user", "content": QUESTION}]
            ),
            "output_messages": json.dumps(
                [{"role": "assistant", "content": GROUNDED, "finish_reason": "stop"}]
            ),
        },
        [{"role": "user", "content": QUESTION}],
        GROUNDED,
        (DOCS,),
        id="openai-chat-as-captured",
    ),
    pytest.param(
        {
            "system_instructions": json.dumps([{"type": "text", "text": DOCS}]),
            "input_messages": json.dumps(
                [
                    {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search"}]},
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": "Refunds: 14 days."}
                        ],
                    },
                ]
            ),
            "output_messages": json.dumps([{"role": "assistant", "content": GROUNDED}]),
        },
        [{"role": "user", "content": QUESTION}],
        GROUNDED,
        (DOCS, "Refunds: 14 days."),
        id="anthropic-system-and-tool-result",
    ),
    pytest.param(
        {
            "input_messages": json.dumps(
                [
                    {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
                    {
                        "role": "tool",
                        "parts": [{"type": "tool_call_response", "id": "c1", "response": {"price": 39}}],
                    },
                ]
            ),
            "output_messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "reasoning", "content": "hmm"},
                            {"type": "text", "content": "39."},
                        ],
                    }
                ]
            ),
            "documents": json.dumps([{"id": "d1", "score": 0.9, "content": DOCS}]),
        },
        [{"role": "user", "content": QUESTION}],
        "39.",
        ('{"price": 39}', DOCS),
        id="semconv-parts-tool-response-and-documents",
    ),
    pytest.param(
        {
            "input_messages": json.dumps(
                [
                    {"type": "function_call_output", "call_id": "c1", "output": DOCS},
                    {"role": "developer", "content": "Be brief."},
                ]
            ),
            "output_messages": "not JSON: taken as the answer",
        },
        [],
        "not JSON: taken as the answer",
        (DOCS, "Be brief."),
        id="responses-items-and-plain-text",
    ),
    pytest.param(
        {"input_messages": json.dumps(QUESTION)},
        [{"role": "user", "content": QUESTION}],
        "",
        (),
        id="bare-string",
    ),
]


@pytest.mark.parametrize(("content", "messages", "answer", "evidence"), EXTRACTION_CASES)
def test_captured_content_becomes_the_evaluators_input(
    content: dict[str, Any], messages: list[dict[str, str]], answer: str, evidence: tuple[str, ...]
) -> None:
    data = evaluation_input(CapturedCall(trace_id="t", span_id="s", time_ns=1, model="m", **content))
    assert list(data.request_messages) == messages
    assert data.response_text == answer
    assert tuple(data.context) == evidence
    assert data.model == "m"


def test_content_nested_beyond_reason_is_counted_not_fatal(collector_factory: Any) -> None:
    nested = "[" * 600 + '"x"' + "]" * 600
    question = json.dumps([{"role": "user", "content": QUESTION}])
    collector = collector_factory(settings(evaluators=["refusal"]))
    collector.evaluator.submit(
        [
            CapturedCall(
                trace_id="a" * 32,
                span_id="b" * 16,
                time_ns=1,
                input_messages=question,
                output_messages=nested,
            ),
            CapturedCall(
                trace_id="a" * 32,
                span_id="c" * 16,
                time_ns=1,
                input_messages=question,
                output_messages=GROUNDED,
            ),
        ]
    )
    collector.stop()
    assert collector.count("errors") == 1
    assert [record.span_id for record in collector.records()] == ["c" * 16]  # the worker went on


def test_the_documented_configuration_validates() -> None:
    text = (Path(__file__).parents[2] / "docs" / "evaluators.md").read_text(encoding="utf-8")
    section = text[text.index("## Evaluation in the collector") :]
    block = section[
        section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))
    ]
    documented = ContentEvaluationSettings.model_validate(yaml.safe_load(block)["content_evaluation"])
    assert documented.enabled
    assert documented.judge is not None
    assert documented.judge.daily_budget_usd == 5.0


def test_the_wired_collector_evaluates_captured_content_sent_over_otlp(
    app: Telemetry, server: LLMServer, tmp_path: Path
) -> None:
    """The whole path: the real OTLP gRPC exporter to `App` with `content_evaluation` on, the records on
    `/api/v1/series` like an app's own evaluations."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from otel_llm_collector.app import App
    from otel_llm_collector.config import load_settings

    for _ in range(3):
        ask(server, "grounded")
        ask(server, "stale", stale=True)
    spans = app.finished()
    collector = App(
        load_settings(
            overrides={
                "otlp_grpc_endpoint": "127.0.0.1:0",
                "otlp_http_endpoint": "127.0.0.1:0",
                "http_endpoint": "127.0.0.1:0",
                "state_dir": tmp_path / "state",
                "content_evaluation": {"enabled": True, "sample_rate": 1.0},
            }
        )
    )
    collector.start()
    try:
        addresses = collector.addresses()
        exporter = OTLPSpanExporter(endpoint=addresses["otlp_grpc"], insecure=True)
        assert exporter.export(spans).name == "SUCCESS"
        exporter.shutdown()

        def faithfulness() -> dict[str, Any]:
            url = f"http://{addresses['http']}/api/v1/series?window=1h"
            with urllib.request.urlopen(url, timeout=10) as response:
                rows = json.load(response)["series"]
            return {
                row["series"]["feature"]: row["evaluations"].get("faithfulness", {})
                for row in rows
                if row["evaluations"].get("faithfulness", {}).get("samples") == 3
            }

        deadline = time.monotonic() + 20
        while len(found := faithfulness()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        collector.stop(1.0)
    assert found["grounded"]["mean"] == 1.0
    assert found["stale"]["mean"] < 0.5
