"""OTLP/HTTP receive: the real HTTP exporter, protobuf and JSON, gzip, and every bad-input status code."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from collections.abc import Iterator

import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SpanExportResult
from otel_llm_collector.otlp_json import message_to_dict
from otel_llm_collector.router import Request, Response, Router
from otel_llm_collector.testing import SECOND_NS, T0_NS, SpanRecorder, genai_request
from receive_support import Stack, receive_stack

LIMIT = 1024 * 1024
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def stack() -> Iterator[Stack]:
    with receive_stack(max_request_bytes=LIMIT) as running:
        yield running


def _post(stack: Stack, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.http.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _assert_still_serving(stack: Stack) -> None:
    before = stack.sink.calls()
    status, _, body = _post(stack, "/v1/traces", genai_request(spans=2, seed=7).SerializeToString(), PROTOBUF)
    assert status == 200
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert stack.sink.wait_calls(before + 2)


def _status(body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(body)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate])
def test_real_http_exporter_delivers(stack: Stack, compression: Compression) -> None:
    recorder = SpanRecorder(service="checkout")
    for i in range(4):
        recorder.genai_span(start_ns=T0_NS + i * SECOND_NS, end_ns=T0_NS + i * SECOND_NS + 10**8)
    exporter = OTLPSpanExporter(endpoint=f"{stack.http_base}/v1/traces", compression=compression)
    try:
        assert exporter.export(recorder.exporter.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert stack.sink.wait_calls(4)


def test_real_http_log_exporter_delivers_evaluations(stack: Stack) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{stack.http_base}/v1/logs"))
    )
    provider.get_logger("otel_llm.evaluation").emit(
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
    assert stack.counters.get("evaluations_received_total") == 1


def test_json_request_with_hex_ids_answers_json(stack: Stack) -> None:
    document = message_to_dict(genai_request(spans=3))
    assert len(document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]) == 32
    status, headers, body = _post(stack, "/v1/traces", json.dumps(document).encode(), JSON)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {}
    assert stack.sink.wait_calls(3)
    calls = [call for result in stack.sink.results for call in result.calls]
    assert calls[0].trace_id == (1).to_bytes(16, "big").hex()


def test_json_partial_success_for_short_trace_id(stack: Stack) -> None:
    document = message_to_dict(genai_request(spans=2))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "010203"
    status, _, body = _post(stack, "/v1/traces", json.dumps(document).encode(), JSON)
    assert status == 200
    assert json.loads(body)["partialSuccess"]["rejectedSpans"] == "1"


def test_protobuf_partial_success_for_end_before_start(stack: Stack) -> None:
    request = genai_request(spans=3)
    span = request.resource_spans[0].scope_spans[0].spans[2]
    span.end_time_unix_nano = span.start_time_unix_nano - 5
    status, headers, body = _post(stack, "/v1/traces", request.SerializeToString(), PROTOBUF)
    assert status == 200
    assert headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans == 1


def test_empty_request_is_success(stack: Stack) -> None:
    status, _, body = _post(stack, "/v1/traces", b"", PROTOBUF)
    assert status == 200
    assert body == b""
    _assert_still_serving(stack)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\xff\xfe garbage", PROTOBUF),
        (genai_request(spans=4).SerializeToString()[:-7], PROTOBUF),
        (b"{not json", JSON),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON),
        (b"\x1f\x8b\x08 broken gzip", {**PROTOBUF, "Content-Encoding": "gzip"}),
        (gzip.compress(b"x" * 100)[:-12], {**PROTOBUF, "Content-Encoding": "gzip"}),
        (b"not zlib", {**PROTOBUF, "Content-Encoding": "deflate"}),
    ],
    ids=[
        "malformed",
        "truncated",
        "bad-json",
        "non-hex-id",
        "broken-gzip",
        "truncated-gzip",
        "broken-deflate",
    ],
)
def test_bad_bodies_are_400_with_status(stack: Stack, body: bytes, headers: dict[str, str]) -> None:
    status, response_headers, response = _post(stack, "/v1/traces", body, headers)
    assert status == 400
    if response_headers["content-type"] == "application/json":
        assert json.loads(response)["code"] == code_pb2.INVALID_ARGUMENT
    else:
        assert _status(response).code == code_pb2.INVALID_ARGUMENT
        assert _status(response).message
    _assert_still_serving(stack)


def test_oversized_body_is_413(stack: Stack) -> None:
    payload = genai_request(spans=3000).SerializeToString()
    assert len(payload) > LIMIT
    status, _, body = _post(stack, "/v1/traces", payload, PROTOBUF)
    assert status == 413
    assert _status(body).code == code_pb2.RESOURCE_EXHAUSTED
    assert stack.counters.get("traces_requests_too_large_total") == 1
    _assert_still_serving(stack)


def test_gzip_bomb_is_413(stack: Stack) -> None:
    bomb = gzip.compress(b"\0" * (64 * LIMIT))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < LIMIT
    status, _, body = _post(stack, "/v1/traces", bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 413
    assert _status(body).code == code_pb2.RESOURCE_EXHAUSTED
    _assert_still_serving(stack)


def test_attribute_bomb_is_survived(stack: Stack) -> None:
    request = genai_request(spans=1)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend(KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(10_000))
    status, _, _ = _post(stack, "/v1/traces", request.SerializeToString(), PROTOBUF)
    assert status == 200
    _assert_still_serving(stack)


def test_unsupported_content_type_is_415(stack: Stack) -> None:
    status, _, _ = _post(stack, "/v1/traces", b"x", {"Content-Type": "text/plain"})
    assert status == 415


def test_unknown_path_and_method_are_json_errors(stack: Stack) -> None:
    status, _, body = _post(stack, "/v1/nope", b"", PROTOBUF)
    assert status == 404
    assert json.loads(body)["status"] == 404
    connection = http.client.HTTPConnection("127.0.0.1", stack.http.port, timeout=10)
    try:
        connection.request("GET", "/v1/traces")
        response = connection.getresponse()
        assert response.status == 405
        assert response.getheader("Allow") == "POST"
        response.read()
    finally:
        connection.close()


def test_logs_and_metrics_paths_accept(stack: Stack) -> None:
    assert _post(stack, "/v1/logs", b"", PROTOBUF)[0] == 200
    assert _post(stack, "/v1/metrics", b"{}", JSON)[0] == 200
    assert stack.counters.get("metrics_requests_total") == 1


def test_shedding_answers_503_with_retry_after() -> None:
    with receive_stack(queue_max_batches=1, retry_after_seconds=2.5) as stack:
        stack.sink.gate.clear()
        payload = genai_request(spans=1).SerializeToString()
        assert _post(stack, "/v1/traces", payload, PROTOBUF)[0] == 200
        assert stack.sink.entered.wait(10)  # the worker holds the first batch: the queue has room for one
        assert _post(stack, "/v1/traces", payload, PROTOBUF)[0] == 200
        status, headers, body = _post(stack, "/v1/traces", payload, PROTOBUF)
        assert status == 503
        assert headers["retry-after"] == "3"
        detail = error_details_pb2.RetryInfo()
        assert _status(body).details[0].Unpack(detail)
        assert detail.retry_delay.ToNanoseconds() == 2_500_000_000
        stack.sink.gate.set()
        assert stack.sink.wait_calls(2)


def test_shedding_json_request_gets_a_json_status_with_retry_info() -> None:
    with receive_stack(queue_max_batches=1, retry_after_seconds=0.5) as stack:
        stack.sink.gate.clear()
        body = json.dumps(message_to_dict(genai_request(spans=1))).encode()
        statuses = [_post(stack, "/v1/traces", body, JSON) for _ in range(3)]
        status, headers, response = statuses[-1]
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert headers["retry-after"] == "1"
        document = json.loads(response)
        assert document["code"] == code_pb2.UNAVAILABLE
        assert document["details"][0] == {
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "0.500s",
        }
        stack.sink.gate.set()


def test_real_http_exporter_honours_retry_after_and_nothing_is_lost() -> None:
    with receive_stack(queue_max_batches=1, retry_after_seconds=0.5) as stack:
        stack.sink.gate.clear()
        filler = genai_request(spans=1).SerializeToString()
        assert _post(stack, "/v1/traces", filler, PROTOBUF)[0] == 200
        assert _post(stack, "/v1/traces", filler, PROTOBUF)[0] == 200  # the queue is full now
        recorder = SpanRecorder(service="checkout")
        recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 10**8)
        exporter = OTLPSpanExporter(endpoint=f"{stack.http_base}/v1/traces", timeout=20)
        opener = threading.Timer(1.5, stack.sink.gate.set)
        opener.start()
        try:
            result = exporter.export(recorder.exporter.get_finished_spans())
        finally:
            opener.join()
            exporter.shutdown()
        assert result is SpanExportResult.SUCCESS
        assert stack.counters.get("traces_requests_shed_total") >= 1
        assert stack.sink.wait_calls(3)


def test_chunked_body_is_read(stack: Stack) -> None:
    payload = genai_request(spans=2).SerializeToString()
    connection = http.client.HTTPConnection("127.0.0.1", stack.http.port, timeout=10)
    try:
        connection.request("POST", "/v1/traces", body=iter([payload[:100], payload[100:]]), headers=PROTOBUF)
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    finally:
        connection.close()
    assert stack.sink.wait_calls(2)


def test_router_dispatches_and_reports_handler_failures() -> None:
    router = Router()
    router.add("GET", "/ok", lambda request: Response.json(200, {"q": request.query_value("q")}))

    def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    router.add("GET", "/broken", broken)
    assert json.loads(router.dispatch(Request("GET", "/ok", {"q": ["1"]})).body) == {"q": "1"}
    assert router.dispatch(Request("GET", "/broken")).status == 500
    assert router.dispatch(Request("HEAD", "/ok")).status == 200
    with pytest.raises(ValueError, match="already registered"):
        router.add("GET", "/ok", broken)
