"""OTLP over HTTP: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``, protobuf or JSON, gzip or deflate.

Answers follow the OTLP/HTTP specification and always use the request's content type (protobuf or JSON):

- 200 with ``Export*ServiceResponse``, carrying ``partial_success`` when items were rejected;
- 400 with a ``google.rpc.Status`` body for a body that does not parse (or a gzip stream that is broken);
- 413 when the body exceeds ``max_request_bytes``, before or after decompression. Decompression stops at
  the cap, so a gzip bomb costs at most ``max_request_bytes`` of memory, never its inflated size;
- 415 for another content type or content encoding;
- 503 with ``Retry-After`` (and a ``google.rpc.RetryInfo`` in the Status body) when load is shed.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from google.protobuf import any_pb2, duration_pb2, json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_llm_collector.otlp_json import parse_json
from otel_llm_collector.receiver import Receiver, Signal, Verdict
from otel_llm_collector.router import Handler, Request, Response, Router

__all__ = ["PROTOBUF", "add_otlp_routes", "decompress_capped", "too_large_response"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_PATHS = {Signal.TRACES: "/v1/traces", Signal.LOGS: "/v1/logs", Signal.METRICS: "/v1/metrics"}


class _TooLarge(Exception):
    pass


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""``deflate`` is the zlib format (RFC 1950), what the OpenTelemetry Python HTTP exporter sends."""


def decompress_capped(body: bytes, limit: int, encoding: str = "gzip") -> bytes:
    """Inflate a gzip or deflate body, refusing (``_TooLarge``) once the output would exceed ``limit``."""
    inflater = zlib.decompressobj(wbits=_WBITS[encoding])
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise _TooLarge
    if not inflater.eof:
        raise zlib.error("truncated gzip stream")
    return out


def _media_type(request: Request) -> str:
    return request.header("content-type").split(";", 1)[0].strip().lower()


def _status_response(
    http_status: int, code: int, message: str, media: str, retry_after: float = 0
) -> Response:
    status = status_pb2.Status(code=code, message=message)
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after > 0:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
        headers = (("Retry-After", str(max(1, math.ceil(retry_after)))),)
    return _encode(http_status, status, media, headers)


def _encode(
    http_status: int, message: Message, media: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    if media == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
        return Response(http_status, body, JSON, headers)
    return Response(http_status, message.SerializeToString(), PROTOBUF, headers)


def _success(signal: Signal, rejected: int, message: str) -> Message:
    response: Any
    if signal is Signal.TRACES:
        response = ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
    elif signal is Signal.LOGS:
        response = ExportLogsServiceResponse()
        if rejected or message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
    else:
        response = ExportMetricsServiceResponse()
    return response  # type: ignore[no-any-return]


def add_otlp_routes(
    router: Router, receiver: Receiver, *, max_request_bytes: int, retry_after_seconds: float
) -> None:
    """Register the three OTLP/HTTP export paths on ``router``."""
    for signal, path in _PATHS.items():
        router.add("POST", path, _export_handler(signal, receiver, max_request_bytes, retry_after_seconds))


def too_large_response(receiver: Receiver) -> Handler:
    """The server's answer for a body over the cap (it never read the body)."""

    def answer(request: Request) -> Response:
        for signal, path in _PATHS.items():
            if request.path == path:
                receiver.too_large(signal)
        media = JSON if _media_type(request) == JSON else PROTOBUF
        return _status_response(413, code_pb2.RESOURCE_EXHAUSTED, "request body too large", media)

    return answer


def _export_handler(signal: Signal, receiver: Receiver, limit: int, retry_after: float) -> Handler:
    request_type = signal.request_type

    def handle(request: Request) -> Response:
        media = _media_type(request)
        answer_media = JSON if media == JSON else PROTOBUF
        if media not in (JSON, PROTOBUF):
            return _status_response(
                415, code_pb2.INVALID_ARGUMENT, f"unsupported content type {media!r}", answer_media
            )
        encoding = request.header("content-encoding", "identity").strip().lower()
        body = request.body
        if encoding in _WBITS:
            try:
                body = decompress_capped(body, limit, encoding)
            except _TooLarge:
                receiver.too_large(signal)
                return _status_response(
                    413,
                    code_pb2.RESOURCE_EXHAUSTED,
                    "request body too large after decompression",
                    answer_media,
                )
            except zlib.error as exc:
                outcome = receiver.invalid(signal, f"invalid {encoding} body: {exc}")
                return _status_response(400, code_pb2.INVALID_ARGUMENT, outcome.message, answer_media)
        elif encoding not in ("identity", ""):
            return _status_response(
                415, code_pb2.INVALID_ARGUMENT, f"unsupported content encoding {encoding!r}", answer_media
            )
        if media == JSON:
            try:
                parsed = parse_json(body, request_type)
            except Exception as exc:  # OtlpJsonError, or anything else the parser raises
                outcome = receiver.invalid(signal, f"malformed {signal.value} request: {exc}")
                return _status_response(400, code_pb2.INVALID_ARGUMENT, outcome.message, answer_media)
            outcome = receiver.export(signal, parsed)
        else:
            outcome = receiver.export_protobuf(signal, body)
        if outcome.verdict is Verdict.INVALID:
            return _status_response(400, code_pb2.INVALID_ARGUMENT, outcome.message, answer_media)
        if outcome.verdict is Verdict.SHED:
            return _status_response(503, code_pb2.UNAVAILABLE, outcome.message, answer_media, retry_after)
        return _encode(200, _success(signal, outcome.rejected, outcome.message), answer_media)

    return handle
