"""Forwarding to a second in-process OTLP receiver: every span, unchanged, through outages, never stalling."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import grpc
import pytest
from otel_llm_collector.config import ForwardTarget
from otel_llm_collector.forward import Forwarder
from otel_llm_collector.httpserver import HttpServer
from otel_llm_collector.receiver import Signal
from otel_llm_collector.router import Request, Response, Router
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.testing import genai_request
from receive_support import receive_stack

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FAST_RETRY = {
    "retry_initial_interval_seconds": 0.05,
    "retry_max_interval_seconds": 0.2,
    "timeout_seconds": 2.0,
}


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _mixed_request_bytes() -> bytes:
    request = genai_request(spans=3)
    plain = request.resource_spans[0].scope_spans[0].spans.add()
    plain.CopyFrom(request.resource_spans[0].scope_spans[0].spans[0])
    del plain.attributes[:]
    plain.name = "GET /health"
    plain.span_id = b"\x09" * 8
    return request.SerializeToString()


def test_every_span_reaches_the_grpc_target_unchanged() -> None:
    with receive_stack() as downstream:
        target = ForwardTarget(endpoint=downstream.grpc_endpoint, protocol="grpc", **FAST_RETRY)
        with receive_stack(forward=(target,)) as upstream:
            payload = _mixed_request_bytes()
            with grpc.insecure_channel(upstream.grpc_endpoint) as channel:
                channel.unary_unary(TRACE_EXPORT)(payload, timeout=10)
            assert _wait(lambda: downstream.counters.get("spans_received_total") == 4)
            assert downstream.sink.wait_calls(3)
            assert upstream.counters.get("spans_received_total") == 4
            assert _wait(lambda: upstream.counters.total("forward_sent_requests_total") == 1)


def test_http_target_receives_json_requests_as_protobuf() -> None:
    with receive_stack() as downstream:
        target = ForwardTarget(endpoint=downstream.http_base, protocol="http", **FAST_RETRY)
        counters = Counters()
        forwarder = Forwarder((target,), counters)
        forwarder.start()
        try:
            forwarder.submit(Signal.TRACES, _mixed_request_bytes())
            forwarder.submit(Signal.LOGS, b"")
            assert _wait(forwarder.idle)
        finally:
            forwarder.stop(2.0)
        assert downstream.counters.get("spans_received_total") == 4
        assert downstream.counters.get("logs_requests_total") == 1
        assert counters.total("forward_sent_requests_total") == 2


def test_target_down_then_back_receives_everything() -> None:
    port = _free_port()
    target = ForwardTarget(endpoint=f"127.0.0.1:{port}", protocol="grpc", **FAST_RETRY)
    with receive_stack(forward=(target,)) as upstream:
        with grpc.insecure_channel(upstream.grpc_endpoint) as channel:
            for seed in range(3):
                channel.unary_unary(TRACE_EXPORT)(
                    genai_request(spans=2, seed=seed).SerializeToString(), timeout=10
                )
        assert _wait(lambda: upstream.counters.total("forward_failed_attempts_total") >= 2)
        assert upstream.counters.total("forward_sent_requests_total") == 0
        with receive_stack(grpc_endpoint=f"127.0.0.1:{port}") as downstream:
            assert _wait(lambda: downstream.counters.get("spans_received_total") == 6)
            assert _wait(lambda: upstream.counters.total("forward_sent_requests_total") == 3)
        assert upstream.counters.total("forward_dropped_requests_total") == 0


def test_dead_target_never_stalls_ingest_and_drops_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    slow_retry = {**FAST_RETRY, "retry_initial_interval_seconds": 30.0, "queue_max_requests": 2}
    target = ForwardTarget(endpoint=f"127.0.0.1:{_free_port()}", protocol="grpc", **slow_retry)
    with receive_stack(forward=(target,)) as upstream:
        started = time.monotonic()
        with grpc.insecure_channel(upstream.grpc_endpoint) as channel:
            for seed in range(8):
                channel.unary_unary(TRACE_EXPORT)(
                    genai_request(spans=2, seed=seed).SerializeToString(), timeout=10
                )
        assert time.monotonic() - started < 5.0
        assert upstream.sink.wait_calls(16)
        # One request is held by the retrying sender, two wait in the queue: five were dropped.
        assert _wait(lambda: upstream.counters.total("forward_dropped_requests_total") == 5)
        assert upstream.counters.get(f'forward_dropped_requests_total{{target="0:{target.endpoint}"}}') == 5
    drops = [r for r in caplog.records if "dropped" in r.getMessage() and target.endpoint in r.getMessage()]
    assert len(drops) == 1  # counted every time, logged once a minute


def test_retries_give_up_after_max_elapsed() -> None:
    quick = {**FAST_RETRY, "retry_max_elapsed_seconds": 0.3}
    target = ForwardTarget(endpoint=f"127.0.0.1:{_free_port()}", protocol="http", **quick)
    counters = Counters()
    forwarder = Forwarder((target,), counters)
    forwarder.start()
    try:
        forwarder.submit(Signal.TRACES, b"")
        assert _wait(lambda: counters.total("forward_dropped_requests_total") == 1)
        assert counters.total("forward_failed_attempts_total") >= 2
    finally:
        forwarder.stop(1.0)


def test_bytes_arrive_unchanged_with_the_configured_headers() -> None:
    received: list[Request] = []

    def capture(request: Request) -> Response:
        received.append(request)
        return Response(200, b"", "application/x-protobuf")

    router = Router()
    router.add("POST", "/v1/traces", capture)
    downstream = HttpServer(router, endpoint="127.0.0.1:0", max_body_bytes=1 << 20)
    downstream.start()
    target = ForwardTarget(
        endpoint=f"http://127.0.0.1:{downstream.port}",
        protocol="http",
        headers={"X-Tenant": "llm"},
        **FAST_RETRY,
    )
    try:
        with receive_stack(forward=(target,)) as upstream:
            payload = _mixed_request_bytes()
            with grpc.insecure_channel(upstream.grpc_endpoint) as channel:
                channel.unary_unary(TRACE_EXPORT)(payload, timeout=10)
            assert _wait(lambda: len(received) == 1)
    finally:
        downstream.stop()
    assert received[0].body == payload
    assert received[0].header("x-tenant") == "llm"
    assert received[0].header("content-type") == "application/x-protobuf"


def test_non_retryable_answer_drops_at_once() -> None:
    router = Router()
    router.add("POST", "/v1/traces", lambda request: Response(400, b"", "application/x-protobuf"))
    downstream = HttpServer(router, endpoint="127.0.0.1:0", max_body_bytes=1 << 20)
    downstream.start()
    counters = Counters()
    target = ForwardTarget(endpoint=f"127.0.0.1:{downstream.port}", protocol="http", **FAST_RETRY)
    forwarder = Forwarder((target,), counters)
    forwarder.start()
    try:
        forwarder.submit(Signal.TRACES, b"")
        assert _wait(lambda: counters.total("forward_dropped_requests_total") == 1)
        assert counters.total("forward_failed_attempts_total") == 1
    finally:
        forwarder.stop(1.0)
        downstream.stop()
