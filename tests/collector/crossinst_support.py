"""Run the same LLM calls under one instrumentation at a time and decode what it exported.

Three producers describe a model call: ours (`otel_llm`), the official
`opentelemetry-instrumentation-openai-v2` (OpenAI only) and the Anthropic SDK's own tracing (Anthropic
only, scope `com.anthropic.sdk.python`). Each `capture` instruments exactly one of them (or, for
`ENRICHED`, ours beside the Anthropic SDK's tracing, which ours then enriches) with a fresh real SDK
`TracerProvider`, drives the real `openai` or `anthropic` SDK against a local `LLMServer` that gives every
run the same scripted answers, and uninstruments afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import anthropic
import openai
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_llm_collector import native_decode
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.records import CallRecord

import otel_llm
from otel_llm.testing.llm_server import LLMServer, Reply, ScriptedResponder

OTEL_LLM: Final = "otel_llm"
OPENAI_V2: Final = "openai_v2"
ANTHROPIC_SDK: Final = "anthropic"
ENRICHED: Final = "otel_llm+anthropic"
"""Ours and the Anthropic SDK's tracing together: one span, the SDK's, enriched by ours."""

OPENAI_MODEL: Final = "gpt-4o-mini"
ANTHROPIC_MODEL: Final = "claude-haiku-4-5"
MESSAGES: Final = [{"role": "user", "content": "What is the capital of France?"}]


@dataclass
class Run:
    """One instrumentation's run: the clients to call through and, afterwards, what was exported."""

    instrumentation: str
    server: LLMServer
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    spans: tuple[ReadableSpan, ...] = ()
    records: tuple[CallRecord, ...] = ()
    _clients: list[Any] = field(default_factory=list)

    def openai(self) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.server.openai_base_url, api_key="test", max_retries=0)
        self._clients.append(client)
        return client

    def anthropic(self) -> anthropic.Anthropic:
        # The SDK's own tracing is chosen per client; it is off, explicitly, unless this run is about it.
        native = self.instrumentation in (ANTHROPIC_SDK, ENRICHED)
        client = anthropic.Anthropic(
            base_url=self.server.anthropic_base_url,
            api_key="test",
            max_retries=0,
            open_telemetry={"tracer_provider": self.tracer_provider} if native else False,
        )
        self._clients.append(client)
        return client

    def genai_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans if (s.attributes or {}).get("gen_ai.operation.name")]


@contextmanager
def instrumented(
    instrumentation: str, replies: Sequence[Reply], *, service: str = "crossinst"
) -> Iterator[Run]:
    """Instrument with `instrumentation` alone; on exit, fill `Run.spans` and `Run.records` (decoded)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider()
    official = OpenAIInstrumentor()
    ours = instrumentation in (OTEL_LLM, ENRICHED)
    uninstrument_all()  # never two instrumentations of the same call, unless `ENRICHED` asks for it
    if ours:
        otel_llm.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif instrumentation == OPENAI_V2:
        official.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        with LLMServer(ScriptedResponder(replies)) as server:
            run = Run(instrumentation, server, tracer_provider, exporter)
            try:
                yield run
            finally:
                for client in run._clients:
                    client.close()
            otel_llm.flush()
            run.spans = tuple(exporter.get_finished_spans())
            run.records = decode(run.spans)
    finally:
        if ours:
            otel_llm.uninstrument()
        elif instrumentation == OPENAI_V2:
            official.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def uninstrument_all() -> None:
    otel_llm.uninstrument()
    official = OpenAIInstrumentor()
    if official.is_instrumented_by_opentelemetry:
        official.uninstrument()


def decode(spans: Sequence[ReadableSpan]) -> tuple[CallRecord, ...]:
    """What the collector makes of these spans: the SDK's own OTLP encoding, then our decode stage."""
    request = encode_spans(spans)
    result = decode_traces(request)
    assert result.rejected == 0, result.error_message
    if native_decode.native_available():  # the native decoder must make the same records of them
        native = native_decode.NativeTraceDecoder()(request.SerializeToString())
        assert native is None or native == result
    return result.calls


def capture(
    instrumentation: str,
    replies: Sequence[Reply],
    calls: Callable[[Run], None],
    *,
    service: str = "crossinst",
) -> Run:
    """Make `calls` under `instrumentation` alone and return the finished run."""
    with instrumented(instrumentation, replies, service=service) as run:
        calls(run)
    return run


def only_record(run: Run) -> CallRecord:
    assert len(run.records) == 1, (run.instrumentation, [s.name for s in run.spans], run.records)
    return run.records[0]
