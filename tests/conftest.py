"""Shared fixtures: real OpenTelemetry SDK providers with in-memory exporters, and the instrumentation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm
from otel_llm.testing.llm_server import LLMServer


@dataclass
class Telemetry:
    """The providers a test instrumented with, and what they captured."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: InMemoryLogRecordExporter
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    def finished(self) -> list[ReadableSpan]:
        otel_llm.flush()
        return list(self.spans.get_finished_spans())

    def genai_spans(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.finished()
            if s.instrumentation_scope
            and s.instrumentation_scope.name == "otel_llm"
            and (s.attributes or {}).get("otel_llm.api")
        ]

    def only_call(self) -> ReadableSpan:
        spans = self.genai_spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metric_points(self, name: str) -> list[Any]:
        otel_llm.flush()
        data = self.metrics.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


def make_telemetry() -> Telemetry:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    return Telemetry(spans, metrics, logs, tracer_provider, meter_provider, logger_provider)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """Instrumented with fresh in-memory providers; uninstrumented afterwards."""
    t = make_telemetry()
    otel_llm.instrument(
        tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, logger_provider=t.logger_provider
    )
    try:
        yield t
    finally:
        otel_llm.uninstrument()
        t.meter_provider.shutdown()
        t.tracer_provider.shutdown()
        t.logger_provider.shutdown()


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server
