"""Build realistic GenAI spans and OTLP export requests, for tests, examples and the ingest benchmark.

Two ways, one vocabulary:

- `SpanRecorder` drives the real OpenTelemetry SDK (`TracerProvider` + `InMemorySpanExporter`) and encodes
  what it recorded with the OTLP exporter's own encoder, so tests see exactly what an app would send:

      recorder = SpanRecorder(service="checkout")
      recorder.genai_span(start_ns=T0, end_ns=T0 + 2 * 10**9, model="gpt-4o-mini", feature="support")
      request = recorder.request()            # ExportTraceServiceRequest

- `genai_request(...)` builds the protobuf directly, hundreds of thousands of spans per second, for load tests
  (512-span requests with ~15 attributes, spread over a chosen number of series).

`genai_attributes(...)` is the attribute set both use: what our instrumentation puts on a chat span.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final, cast

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_llm import attributes as A

SECOND_NS: Final = 1_000_000_000
T0_NS: Final = 1_767_225_600 * SECOND_NS
"""2026-01-01T00:00:00Z: a fixed, minute-aligned event time for tests."""


def genai_attributes(
    *,
    model: str = "gpt-4o-mini",
    response_model: str | None = None,
    provider: str = "openai",
    operation: str = "chat",
    feature: str = "support-answer",
    prompt_name: str = "answer",
    prompt_version: str = "v1",
    input_tokens: int = 1200,
    output_tokens: int = 180,
    cache_read_tokens: int | None = 1000,
    cost_usd: float | None = 0.00042,
    ttfc_s: float | None = None,
    response_id: str = "chatcmpl-1",
    error_type: str | None = None,
    extra: Mapping[str, AttributeValue] | None = None,
) -> dict[str, AttributeValue]:
    """The ~15 attributes our instrumentation sets on a chat span (names from `otel_llm.attributes`)."""
    attrs: dict[str, AttributeValue] = {
        A.GEN_AI_OPERATION_NAME: operation,
        A.GEN_AI_PROVIDER_NAME: provider,
        A.GEN_AI_REQUEST_MODEL: model,
        A.GEN_AI_RESPONSE_MODEL: response_model or model,
        A.GEN_AI_RESPONSE_ID: response_id,
        A.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        A.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        A.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        A.GEN_AI_PROMPT_NAME: prompt_name,
        A.GEN_AI_PROMPT_VERSION: prompt_version,
        A.FEATURE: feature,
        A.SERVER_ADDRESS: "api.openai.com",
        A.INPUT_HASH: hashlib.sha256(response_id.encode()).hexdigest(),
        A.API: "openai.chat",
    }
    if cache_read_tokens is not None:
        attrs[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read_tokens
    if cost_usd is not None:
        attrs[A.COST_USD] = cost_usd
    if ttfc_s is not None:
        attrs[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc_s
        attrs[A.GEN_AI_REQUEST_STREAM] = True
    if error_type:
        attrs[A.ERROR_TYPE] = error_type
    if extra:
        attrs.update(extra)
    return attrs


class SpanRecorder:
    """A real SDK tracer whose finished spans can be encoded into an `ExportTraceServiceRequest`."""

    def __init__(
        self,
        *,
        service: str = "checkout",
        service_version: str = "1.4.2",
        scope: str = "otel_llm",
        resource_attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        attrs: dict[str, AttributeValue] = {"service.name": service, "service.version": service_version}
        attrs.update(resource_attributes or {})
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(attrs))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(scope)

    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue],
        *,
        start_ns: int,
        end_ns: int,
        error: bool = False,
        events: Sequence[tuple[str, Mapping[str, AttributeValue], int]] = (),
    ) -> None:
        """Record one finished span; `events` are (name, attributes, timestamp_ns)."""
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start_ns)
        for event_name, event_attributes, event_ns in events:
            span.add_event(event_name, attributes=event_attributes, timestamp=event_ns)
        if error:
            span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=end_ns)

    def genai_span(
        self,
        *,
        start_ns: int,
        end_ns: int,
        events: Sequence[tuple[str, Mapping[str, AttributeValue], int]] = (),
        **attributes: object,
    ) -> None:
        """Record a chat span built by `genai_attributes(**attributes)`."""
        attrs = genai_attributes(**attributes)  # type: ignore[arg-type]
        name = " ".join((str(attrs[A.GEN_AI_OPERATION_NAME]), str(attrs[A.GEN_AI_REQUEST_MODEL])))
        self.span(name, attrs, start_ns=start_ns, end_ns=end_ns, events=events)

    def request(self, *, clear: bool = True) -> ExportTraceServiceRequest:
        """Encode the finished spans exactly as the OTLP exporters would send them."""
        spans = self.exporter.get_finished_spans()
        if clear:
            self.exporter.clear()
        return encode_spans(spans)


def _kv(key: str, value: AttributeValue) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    kv = KeyValue(key=key)
    for item in cast(Sequence[object], value):
        kv.value.array_value.values.append(AnyValue(string_value=str(item)))
    return kv


def genai_request(
    *,
    spans: int = 512,
    series: int = 1,
    start_ns: int = T0_NS,
    spacing_ns: int = 1_000_000,
    duration_ns: int = 800_000_000,
    service: str = "checkout",
    seed: int = 0,
) -> ExportTraceServiceRequest:
    """A protobuf request of `spans` GenAI chat spans spread round-robin over `series` feature names.

    Span `i` starts at `start_ns + i * spacing_ns`; ids are derived from `seed` and `i`, so requests built
    with different seeds do not collide.
    """
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [
            _kv("service.name", service),
            _kv("service.version", "1.4.2"),
            _kv("telemetry.sdk.language", "python"),
        ]
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "otel_llm"
    template = [
        _kv(k, v)
        for k, v in genai_attributes().items()
        if k not in (A.FEATURE, A.GEN_AI_RESPONSE_ID, A.GEN_AI_USAGE_OUTPUT_TOKENS)
    ]
    for i in range(spans):
        span = PbSpan(
            trace_id=(seed * 1_000_003 + i + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name="chat gpt-4o-mini",
            kind=PbSpan.SPAN_KIND_CLIENT,
            start_time_unix_nano=start_ns + i * spacing_ns,
            end_time_unix_nano=start_ns + i * spacing_ns + duration_ns + (i % 97) * 3_000_000,
        )
        span.attributes.extend(template)
        span.attributes.extend(
            [
                _kv(A.FEATURE, f"feature-{i % series}"),
                _kv(A.GEN_AI_RESPONSE_ID, f"chatcmpl-{seed}-{i}"),
                _kv(A.GEN_AI_USAGE_OUTPUT_TOKENS, 100 + i % 50),
            ]
        )
        scope_spans.spans.append(span)
    return request


__all__ = ["SECOND_NS", "T0_NS", "SpanRecorder", "genai_attributes", "genai_request"]
