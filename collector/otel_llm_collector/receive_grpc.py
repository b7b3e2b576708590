"""OTLP over gRPC: ``TraceService/Export``, ``LogsService/Export`` and ``MetricsService/Export``.

The handlers are registered generically with no deserializer, so each receives the request's raw bytes:
the parse is timed and guarded here (a malformed message answers INVALID_ARGUMENT, never INTERNAL), and
the same bytes are forwarded downstream unchanged. Status mapping, per the OTLP specification:

- malformed or truncated message: INVALID_ARGUMENT with the parser's message;
- per-item defects: OK with ``partial_success`` (``rejected_spans`` / ``rejected_log_records``);
- larger than ``max_request_bytes`` (after decompression; gzip is handled by gRPC): RESOURCE_EXHAUSTED,
  enforced by gRPC's ``grpc.max_receive_message_length`` before any of it reaches Python;
- ingest queue full: UNAVAILABLE with a ``google.rpc.RetryInfo`` delay, sent both inside a
  ``google.rpc.Status`` in ``grpc-status-details-bin`` (what the Go exporter and the gRPC status helpers
  read) and alone in ``google.rpc.retryinfo-bin`` (what the Python exporter reads).

``grpc.so_reuseport`` (on by default on Linux, configurable) lets several processes share the port.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from otel_llm_collector.receiver import Outcome, Receiver, Signal, Verdict

__all__ = ["GrpcReceiver", "retry_trailers"]

_logger = logging.getLogger(__name__)

_SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def retry_trailers(message: str, retry_after_seconds: float) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata that tells OTLP exporters to retry after ``retry_after_seconds``."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after_seconds * 1e9))
    retry_info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
    )


def _response(signal: Signal, outcome: Outcome) -> bytes:
    if signal is Signal.TRACES:
        trace_response = ExportTraceServiceResponse()
        if outcome.rejected or outcome.message:
            trace_response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=outcome.rejected, error_message=outcome.message)
            )
        return trace_response.SerializeToString()
    if signal is Signal.LOGS:
        logs_response = ExportLogsServiceResponse()
        if outcome.rejected or outcome.message:
            logs_response.partial_success.CopyFrom(
                ExportLogsPartialSuccess(rejected_log_records=outcome.rejected, error_message=outcome.message)
            )
        return logs_response.SerializeToString()
    return ExportMetricsServiceResponse().SerializeToString()


class GrpcReceiver:
    """A grpcio server bound to one endpoint, serving the three OTLP export services."""

    def __init__(
        self,
        receiver: Receiver,
        *,
        endpoint: str,
        max_request_bytes: int,
        retry_after_seconds: float,
        max_workers: int = 8,
        reuse_port: bool = True,
    ) -> None:
        self._receiver = receiver
        self._retry_after = retry_after_seconds
        options = [
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-grpc")
        self._server = grpc.server(self._executor, options=options)
        for signal, service in _SERVICES.items():
            handler = grpc.unary_unary_rpc_method_handler(self._make_handler(signal))
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
            )
        try:
            self.port = self._server.add_insecure_port(endpoint)
        except RuntimeError as exc:
            self._executor.shutdown(wait=False)
            raise OSError(f"otlp_grpc_endpoint: cannot bind {endpoint}: {exc}") from None
        if self.port == 0:
            self._executor.shutdown(wait=False)
            raise OSError(f"otlp_grpc_endpoint: cannot bind {endpoint}")

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Refuse new calls, let running ones finish (each ends with its batch in the queue)."""
        self._server.stop(grace_seconds).wait()
        self._executor.shutdown(wait=True)

    def _make_handler(self, signal: Signal) -> Any:
        receiver = self._receiver

        def handle(payload: bytes, context: grpc.ServicerContext) -> bytes:
            outcome = receiver.export_protobuf(signal, payload)
            if outcome.verdict is Verdict.INVALID:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, outcome.message)
            if outcome.verdict is Verdict.SHED:
                context.set_trailing_metadata(retry_trailers(outcome.message, self._retry_after))
                context.abort(grpc.StatusCode.UNAVAILABLE, outcome.message)
            return _response(signal, outcome)

        return handle
