"""The protocol-independent half of receive: decode, queue, forward, count, and decide the answer.

The gRPC and HTTP receivers parse the wire format into an OTLP protobuf request and call
`Receiver.export`; they only translate the returned `Outcome` into their status codes. That keeps the
OTLP rules (partial success, INVALID_ARGUMENT for bad data, UNAVAILABLE when shedding, empty request is
success) in one place and identical on both transports.

A request is forwarded only once it was accepted: a shed request is retried by its client, and forwarding
it as well would duplicate it downstream.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.selfmetrics import Counters, LogLimiter

__all__ = ["BytesDecoder", "Forwarder", "Outcome", "Receiver", "Signal", "Verdict"]

_logger = logging.getLogger(__name__)
_shed_log = LogLimiter(_logger)


class Signal(enum.Enum):
    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"

    @property
    def request_type(self) -> type[Any]:
        return _REQUEST_TYPES[self]

    @property
    def code(self) -> int:
        """A stable small number for the write-ahead log."""
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> Signal:
        return _SIGNALS_BY_CODE[code]


_REQUEST_TYPES: dict[Signal, type[Any]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}


_CODES = {Signal.TRACES: 1, Signal.LOGS: 2, Signal.METRICS: 3}
_SIGNALS_BY_CODE = {code: signal for signal, code in _CODES.items()}


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    """Success, possibly partial (see `Outcome.rejected`)."""
    INVALID = "invalid"
    """The request as a whole is malformed: INVALID_ARGUMENT / 400, not retryable."""
    SHED = "shed"
    """The ingest queue is full: UNAVAILABLE / 503 with a retry delay; nothing was kept."""


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    rejected: int = 0
    message: str = ""


class Forwarder(Protocol):
    """Passes accepted requests on downstream. Called on receiver threads: must not block or raise."""

    def submit(self, signal: Signal, payload: bytes) -> None: ...


Decoder = Callable[[Any], DecodeResult]
BytesDecoder = Callable[[bytes], "DecodeResult | None"]
"""Decodes a request straight from its protobuf bytes, or returns None to let the parse-then-decode path
take it (`native_decode.NativeTraceDecoder`)."""
Offer = Callable[[DecodeResult, int, "bytes | None"], bool]
"""`IngestQueue.offer`: the decoded result, the signal's code and the request's protobuf bytes."""


def _count_metric_points(request: ExportMetricsServiceRequest) -> int:
    return sum(len(sm.metrics) for rm in request.resource_metrics for sm in rm.scope_metrics)


class Receiver:
    """Turns one parsed export request into an `Outcome`, feeding the ingest queue and the forwarders."""

    def __init__(
        self,
        *,
        offer: Offer,
        counters: Counters,
        decode_traces: Decoder,
        decode_logs: Decoder,
        forwarder: Forwarder | None = None,
        decode_trace_bytes: BytesDecoder | None = None,
    ) -> None:
        self._offer = offer
        self._counters = counters
        self._decoders: dict[Signal, Decoder] = {Signal.TRACES: decode_traces, Signal.LOGS: decode_logs}
        self._bytes_decoders: dict[Signal, BytesDecoder] = (
            {Signal.TRACES: decode_trace_bytes} if decode_trace_bytes is not None else {}
        )
        self._forwarder = forwarder

    def invalid(self, signal: Signal, message: str) -> Outcome:
        """Record a request the transport could not even parse."""
        self._counters.add(f"{signal.value}_requests_invalid_total")
        return Outcome(Verdict.INVALID, message=message)

    def too_large(self, signal: Signal) -> None:
        self._counters.add(f"{signal.value}_requests_too_large_total")

    def export_protobuf(self, signal: Signal, payload: bytes) -> Outcome:
        """Handle a request in its protobuf encoding: decoded straight from the bytes where a bytes decoder
        takes it, else parsed (a malformed request answers INVALID) and handled as `export`."""
        decode_bytes = self._bytes_decoders.get(signal)
        if decode_bytes is not None:
            result = decode_bytes(payload)
            if result is not None:
                return self._accept(signal, result, None, payload)
            self._counters.add(f"{signal.value}_native_declined_total")
        try:
            request = signal.request_type.FromString(payload)
        except Exception as exc:
            return self.invalid(signal, f"malformed {signal.value} request: {exc}")
        return self.export(signal, request, payload)

    def export(self, signal: Signal, request: Any, payload: bytes | None = None) -> Outcome:
        """Handle a parsed request; ``payload`` is its original protobuf encoding, forwarded as is."""
        counters = self._counters
        if signal is Signal.METRICS:
            counters.add_many(
                {"metrics_requests_total": 1, "metrics_received_total": _count_metric_points(request)}
            )
            self._forward(signal, request, payload)
            return Outcome(Verdict.ACCEPTED)
        try:
            result = self._decoders[signal](request)
        except Exception as exc:
            # Decode validates structure; anything it cannot digest is the request's fault as far as the
            # client is concerned (retrying the same bytes would fail the same way).
            _logger.debug("decode failed", exc_info=True)
            return self.invalid(signal, f"cannot decode request: {exc}")
        return self._accept(signal, result, request, payload)

    def _accept(self, signal: Signal, result: DecodeResult, request: Any, payload: bytes | None) -> Outcome:
        """Queue a decoded request (or shed it), count it and forward it."""
        counters = self._counters
        if (result.calls or result.evaluations) and payload is None:
            payload = request.SerializeToString()  # an OTLP/JSON request: logged and forwarded as protobuf
        if not self._offer(result, signal.code, payload):
            counters.add(f"{signal.value}_requests_shed_total")
            _shed_log.warning("shed", "ingest queue full: shedding load (clients are told to retry)")
            return Outcome(Verdict.SHED, message="ingest queue full, retry later")
        unit = "spans" if signal is Signal.TRACES else "log_records"
        counters.add_many(
            {
                f"{signal.value}_requests_total": 1,
                f"{unit}_received_total": result.spans_seen,
                f"{unit}_rejected_total": result.rejected,
                "calls_received_total": len(result.calls),
                "evaluations_received_total": len(result.evaluations),
            }
        )
        self._forward(signal, request, payload)
        return Outcome(Verdict.ACCEPTED, rejected=result.rejected, message=result.error_message)

    def _forward(self, signal: Signal, request: Any, payload: bytes | None) -> None:
        if self._forwarder is None:
            return
        self._forwarder.submit(signal, payload if payload is not None else request.SerializeToString())
