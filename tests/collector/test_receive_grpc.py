"""OTLP/gRPC receive: the real OTLP exporters, bad input with its status code, load shedding on the wire."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult
from otel_llm_collector.receive_grpc import GrpcReceiver
from otel_llm_collector.testing import SECOND_NS, T0_NS, SpanRecorder, genai_request
from receive_support import Stack, receive_stack

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with receive_stack(max_request_bytes=1024 * 1024) as running:
        yield running


@pytest.fixture
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.grpc_endpoint) as ch:
        yield ch


def _raw_export(channel: grpc.Channel, payload: bytes, **kwargs: object) -> ExportTraceServiceResponse:
    call = channel.unary_unary(TRACE_EXPORT)
    return ExportTraceServiceResponse.FromString(call(payload, timeout=10, **kwargs))


def _expect_code(
    channel: grpc.Channel, payload: bytes, code: grpc.StatusCode, **kwargs: object
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _raw_export(channel, payload, **kwargs)
    error = info.value
    assert error.code() == code, error.details()  # type: ignore[attr-defined]
    return error


def _assert_still_serving(channel: grpc.Channel, stack: Stack) -> None:
    before = stack.sink.calls()
    response = _raw_export(channel, genai_request(spans=3, seed=99).SerializeToString())
    assert not response.HasField("partial_success")
    assert stack.sink.wait_calls(before + 3)


def _recorded_spans(count: int) -> SpanRecorder:
    recorder = SpanRecorder(service="checkout")
    for i in range(count):
        start = T0_NS + i * SECOND_NS
        recorder.genai_span(
            start_ns=start, end_ns=start + SECOND_NS // 2, feature="support", response_id=f"r{i}"
        )
    return recorder


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_real_span_exporter_delivers_genai_calls(stack: Stack, compression: grpc.Compression) -> None:
    recorder = _recorded_spans(5)
    exporter = OTLPSpanExporter(endpoint=stack.grpc_endpoint, insecure=True, compression=compression)
    try:
        assert exporter.export(recorder.exporter.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert stack.sink.wait_calls(5)
    calls = [call for result in stack.sink.results for call in result.calls]
    assert {call.series.service for call in calls} == {"checkout"}
    assert stack.counters.get("spans_received_total") == 5


def test_real_log_exporter_delivers_evaluations(stack: Stack) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=stack.grpc_endpoint, insecure=True))
    )
    logger = provider.get_logger("otel_llm.evaluation")
    logger.emit(
        LogRecord(
            timestamp=T0_NS,
            trace_id=0x5B8EFFF798038103D269B633813FC60C,
            span_id=0xEEE19B7EC3C1B174,
            event_name="gen_ai.evaluation.result",
            attributes={"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.8},
        )
    )
    provider.shutdown()
    assert stack.counters.get("logs_requests_total") == 1
    assert stack.counters.get("log_records_received_total") == 1
    assert stack.counters.get("evaluations_received_total") == 1


def test_empty_request_is_success(stack: Stack, channel: grpc.Channel) -> None:
    response = _raw_export(channel, b"")
    assert not response.HasField("partial_success")
    _assert_still_serving(channel, stack)


def test_malformed_bytes_are_invalid_argument(stack: Stack, channel: grpc.Channel) -> None:
    error = _expect_code(channel, b"\xff\xff\xff\xff not protobuf", grpc.StatusCode.INVALID_ARGUMENT)
    assert "malformed" in error.details()  # type: ignore[attr-defined]
    _assert_still_serving(channel, stack)


def test_truncated_message_is_invalid_argument(stack: Stack, channel: grpc.Channel) -> None:
    payload = genai_request(spans=4).SerializeToString()
    _expect_code(channel, payload[: len(payload) // 2], grpc.StatusCode.INVALID_ARGUMENT)
    assert stack.counters.get("traces_requests_invalid_total") == 1
    _assert_still_serving(channel, stack)


def test_oversized_request_is_resource_exhausted(stack: Stack, channel: grpc.Channel) -> None:
    payload = genai_request(spans=3000).SerializeToString()
    assert len(payload) > 1024 * 1024
    _expect_code(channel, payload, grpc.StatusCode.RESOURCE_EXHAUSTED)
    _assert_still_serving(channel, stack)


def test_gzip_bomb_is_resource_exhausted(stack: Stack, channel: grpc.Channel) -> None:
    # 16 MiB of one attribute value inflates from a few KiB; the limit applies after decompression.
    request = genai_request(spans=1)
    request.resource_spans[0].scope_spans[0].spans[0].attributes.append(
        KeyValue(key="bomb", value=AnyValue(string_value="a" * (16 * 1024 * 1024)))
    )
    payload = request.SerializeToString()
    assert len(gzip.compress(payload)) < 64 * 1024
    _expect_code(channel, payload, grpc.StatusCode.RESOURCE_EXHAUSTED, compression=grpc.Compression.Gzip)
    _assert_still_serving(channel, stack)


def test_three_byte_trace_id_rejects_only_that_span(stack: Stack, channel: grpc.Channel) -> None:
    request = genai_request(spans=4)
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01\x02\x03"
    response = _raw_export(channel, request.SerializeToString())
    assert response.partial_success.rejected_spans == 1
    assert "trace" in response.partial_success.error_message
    assert stack.sink.wait_calls(3)


def test_end_before_start_span_is_rejected(stack: Stack, channel: grpc.Channel) -> None:
    request = genai_request(spans=2)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.end_time_unix_nano = span.start_time_unix_nano - 1
    response = _raw_export(channel, request.SerializeToString())
    assert response.partial_success.rejected_spans == 1
    assert stack.sink.wait_calls(1)
    _assert_still_serving(channel, stack)


def test_attribute_bomb_is_survived(stack: Stack, channel: grpc.Channel) -> None:
    request = genai_request(spans=1)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend(KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(10_000))
    _raw_export(channel, request.SerializeToString())
    _assert_still_serving(channel, stack)


def test_metrics_are_accepted_and_counted(stack: Stack, channel: grpc.Channel) -> None:
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    metrics.add(name="a")
    metrics.add(name="b")
    channel.unary_unary(METRICS_EXPORT)(request.SerializeToString(), timeout=10)
    assert stack.counters.get("metrics_requests_total") == 1
    assert stack.counters.get("metrics_received_total") == 2


def test_logs_with_bad_span_id_get_partial_success(stack: Stack, channel: grpc.Channel) -> None:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(span_id=b"\x01\x02", event_name="gen_ai.evaluation.result")
    records.add(body=AnyValue(string_value="plain log"))
    call = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
    response = ExportLogsServiceResponse.FromString(call(request.SerializeToString(), timeout=10))
    assert response.partial_success.rejected_log_records == 1


def test_full_queue_sheds_with_retry_info_on_the_wire() -> None:
    with receive_stack(queue_max_batches=1, retry_after_seconds=1.5) as stack:
        stack.sink.gate.clear()  # the worker blocks on the first batch; the second fills the queue
        payload = genai_request(spans=2).SerializeToString()
        with grpc.insecure_channel(stack.grpc_endpoint) as channel:
            call = channel.unary_unary(TRACE_EXPORT)
            call(payload, timeout=10)
            assert stack.sink.entered.wait(10)  # the worker holds the first batch
            call(payload, timeout=10)
            with pytest.raises(grpc.RpcError) as info:
                call(payload, timeout=10)
        error = info.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        trailers = dict(error.trailing_metadata())  # type: ignore[attr-defined]
        retry = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert retry.retry_delay.ToNanoseconds() == 1_500_000_000
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == code_pb2.UNAVAILABLE
        packed = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(packed)
        assert packed.retry_delay.ToNanoseconds() == 1_500_000_000
        assert stack.counters.get("ingest_shed_batches_total") == 1
        stack.sink.gate.set()
        assert stack.sink.wait_calls(4)


def test_real_exporter_retries_after_shedding_and_nothing_is_lost() -> None:
    with receive_stack(queue_max_batches=1, retry_after_seconds=0.3) as stack:
        stack.sink.gate.clear()
        filler = genai_request(spans=1, seed=1).SerializeToString()
        with grpc.insecure_channel(stack.grpc_endpoint) as channel:
            call = channel.unary_unary(TRACE_EXPORT)
            call(filler, timeout=10)
            assert stack.sink.entered.wait(10)
            call(filler, timeout=10)  # worker busy with the first, queue holds the second: full
        recorder = _recorded_spans(3)
        exporter = OTLPSpanExporter(endpoint=stack.grpc_endpoint, insecure=True, timeout=20)
        try:
            opener = threading.Timer(1.0, stack.sink.gate.set)
            opener.start()
            result = exporter.export(recorder.exporter.get_finished_spans())
            opener.join()
        finally:
            exporter.shutdown()
        assert result is SpanExportResult.SUCCESS
        assert stack.counters.get("traces_requests_shed_total") >= 1
        assert stack.sink.wait_calls(1 + 1 + 3)


def test_request_is_parsed_from_the_original_bytes(stack: Stack, channel: grpc.Channel) -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add()  # no spans at all
    response = _raw_export(channel, request.SerializeToString())
    assert response.partial_success.rejected_spans == 0


def test_reuse_port_lets_two_receivers_share_a_port(stack: Stack) -> None:
    twin = GrpcReceiver(
        stack.receiver,
        endpoint=stack.grpc_endpoint,
        max_request_bytes=1024 * 1024,
        retry_after_seconds=1.0,
        reuse_port=True,
    )
    try:
        assert twin.port == stack.grpc.port
    finally:
        twin.stop(0)
    with pytest.raises(OSError, match="otlp_grpc_endpoint: cannot bind"):
        GrpcReceiver(
            stack.receiver,
            endpoint=stack.grpc_endpoint,
            max_request_bytes=1024 * 1024,
            retry_after_seconds=1.0,
            reuse_port=False,
        )
