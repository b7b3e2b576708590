"""A running receive stack (gRPC + OTLP/HTTP) on port 0 over a recording window sink."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from otel_llm_collector.config import ForwardTarget
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_logs, decode_traces
from otel_llm_collector.forward import Forwarder
from otel_llm_collector.httpserver import HttpServer
from otel_llm_collector.ingest import IngestQueue
from otel_llm_collector.receive_grpc import GrpcReceiver
from otel_llm_collector.receive_http import add_otlp_routes, too_large_response
from otel_llm_collector.receiver import Receiver
from otel_llm_collector.router import Router
from otel_llm_collector.selfmetrics import Counters


class RecordingSink:
    """Stands in for the window engine at the ingest boundary: keeps what it is given."""

    def __init__(self) -> None:
        self.results: list[DecodeResult] = []
        self.applied = threading.Condition()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        """Set once the ingest worker is inside `apply` (so the queue no longer holds that batch)."""

    def apply(self, result: DecodeResult) -> None:
        self.entered.set()
        self.gate.wait(30)
        with self.applied:
            self.results.append(result)
            self.applied.notify_all()

    def advance_watermark(self, now_ns: int) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"calls": sum(len(r.calls) for r in self.results)}

    def calls(self) -> int:
        return sum(len(r.calls) for r in self.results)

    def wait_calls(self, count: int, timeout: float = 10.0) -> bool:
        with self.applied:
            return self.applied.wait_for(lambda: self.calls() >= count, timeout)


@dataclass
class Stack:
    sink: RecordingSink
    counters: Counters
    ingest: IngestQueue
    grpc: GrpcReceiver
    http: HttpServer
    forwarder: Forwarder
    receiver: Receiver

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"


@contextmanager
def receive_stack(
    *,
    queue_max_batches: int = 64,
    max_request_bytes: int = 4 * 1024 * 1024,
    retry_after_seconds: float = 0.2,
    forward: tuple[ForwardTarget, ...] = (),
    grpc_endpoint: str = "127.0.0.1:0",
) -> Iterator[Stack]:
    counters = Counters()
    sink = RecordingSink()
    ingest = IngestQueue(sink, max_batches=queue_max_batches, counters=counters)
    forwarder = Forwarder(forward, counters)
    receiver = Receiver(
        offer=ingest.offer,
        counters=counters,
        decode_traces=decode_traces,
        decode_logs=decode_logs,
        forwarder=forwarder if forwarder else None,
    )
    grpc_receiver = GrpcReceiver(
        receiver,
        endpoint=grpc_endpoint,
        max_request_bytes=max_request_bytes,
        retry_after_seconds=retry_after_seconds,
        max_workers=4,
    )
    router = Router()
    add_otlp_routes(
        router, receiver, max_request_bytes=max_request_bytes, retry_after_seconds=retry_after_seconds
    )
    http = HttpServer(
        router,
        endpoint="127.0.0.1:0",
        max_body_bytes=max_request_bytes,
        on_too_large=too_large_response(receiver),
    )
    ingest.start()
    forwarder.start()
    grpc_receiver.start()
    http.start()
    try:
        yield Stack(sink, counters, ingest, grpc_receiver, http, forwarder, receiver)
    finally:
        sink.gate.set()
        grpc_receiver.stop(1.0)
        http.stop()
        ingest.stop()
        forwarder.stop(1.0)
