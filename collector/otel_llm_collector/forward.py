"""Forwarding: a copy of every accepted request (all spans, not only GenAI) to downstream OTLP endpoints.

Each target has its own bounded queue (by request count and by bytes) and one sender thread, so a slow or
dead backend delays only itself: `Forwarder.submit` never blocks; when a target's queue is full the
oldest request is dropped and counted. Requests travel as their original protobuf bytes, unchanged.

A failed send is retried with exponential backoff (x1.5, +-50% jitter) from
``retry_initial_interval_seconds`` up to ``retry_max_interval_seconds``, and given up (dropped, counted)
after ``retry_max_elapsed_seconds``: the OpenTelemetry Collector's exporter defaults (5 s, 30 s, 300 s). A
server's own retry delay (gRPC ``RetryInfo``, HTTP ``Retry-After``) takes precedence. Non-retryable
answers (INVALID_ARGUMENT, 400, ...) drop the request at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast

import grpc
from google.rpc import error_details_pb2

from otel_llm_collector.config import ForwardTarget
from otel_llm_collector.receiver import Signal
from otel_llm_collector.selfmetrics import Counters, LogLimiter

__all__ = ["Forwarder", "SendResult"]

_logger = logging.getLogger(__name__)
_drop_log = LogLimiter(_logger)

_GRPC_METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
_HTTP_PATHS = {Signal.TRACES: "/v1/traces", Signal.LOGS: "/v1/logs", Signal.METRICS: "/v1/metrics"}
_RETRYABLE_GRPC = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    retryable: bool = False
    retry_after_seconds: float | None = None
    error: str = ""


class Sender(Protocol):
    """Sends one request to one target. Blocks up to the target's timeout; must not raise."""

    def send(self, signal: Signal, payload: bytes) -> SendResult: ...

    def close(self) -> None: ...


class GrpcSender:
    def __init__(self, target: ForwardTarget) -> None:
        self._channel = grpc.insecure_channel(target.endpoint)
        self._timeout = target.timeout_seconds
        self._metadata = tuple((name.lower(), value) for name, value in target.headers.items())
        self._calls = {
            signal: self._channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            for signal, method in _GRPC_METHODS.items()
        }

    def send(self, signal: Signal, payload: bytes) -> SendResult:
        try:
            self._calls[signal](payload, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            delay = None
            # grpcio hands trailers over as (key, value) pairs; the stubs call them _Metadatum.
            trailers = cast("tuple[tuple[str, bytes], ...]", error.trailing_metadata() or ())
            for key, value in trailers:
                if key == "google.rpc.retryinfo-bin":
                    info = error_details_pb2.RetryInfo.FromString(value)
                    delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return SendResult(False, code in _RETRYABLE_GRPC, delay, f"{code.name}: {error.details()}")
        return SendResult(True)

    def close(self) -> None:
        self._channel.close()


class HttpSender:
    def __init__(self, target: ForwardTarget) -> None:
        base = target.endpoint if "://" in target.endpoint else f"http://{target.endpoint}"
        self._base = base.rstrip("/")
        self._timeout = target.timeout_seconds
        self._headers = {**target.headers, "Content-Type": "application/x-protobuf"}

    def send(self, signal: Signal, payload: bytes) -> SendResult:
        request = urllib.request.Request(
            self._base + _HTTP_PATHS[signal], data=payload, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            with error:
                retry_after = error.headers.get("Retry-After", "")
                delay = float(retry_after) if retry_after.isdigit() else None
                return SendResult(False, error.code in _RETRYABLE_HTTP, delay, f"HTTP {error.code}")
        except (OSError, ValueError) as error:
            return SendResult(False, True, None, str(error))
        return SendResult(True)

    def close(self) -> None:
        pass


class _Target:
    """One target's queue and sender thread."""

    def __init__(self, target: ForwardTarget, sender: Sender, counters: Counters, name: str) -> None:
        self.config = target
        self.name = name
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        self._label = f'target="{escaped}"'
        self._sender = sender
        self._counters = counters
        self._queue: deque[tuple[Signal, bytes]] = deque()
        self._queued_bytes = 0
        self._max_bytes = target.queue_max_bytes
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"otel-llm-forward-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, signal: Signal, payload: bytes) -> None:
        dropped = 0
        with self._cond:
            self._queue.append((signal, payload))
            self._queued_bytes += len(payload)
            while len(self._queue) > self.config.queue_max_requests or (
                self._queued_bytes > self._max_bytes and len(self._queue) > 1
            ):
                _, old = self._queue.popleft()
                self._queued_bytes -= len(old)
                dropped += 1
            self._cond.notify()
        if dropped:
            self._count_drop(dropped, "queue full")

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def stop(self, timeout_seconds: float) -> None:
        """Send what is queued for up to ``timeout_seconds``, then give up the rest (counted)."""
        deadline = time.monotonic() + timeout_seconds
        with self._cond:
            self._cond.wait_for(lambda: not self._queue and not self._busy, timeout_seconds)
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        if left:
            self._count_drop(left, "shutdown")
        self._sender.close()

    def _count_drop(self, count: int, why: str) -> None:
        self._counters.add(f"forward_dropped_requests_total{{{self._label}}}", count)
        _drop_log.warning(self.name, "forward target %s: dropped %d request(s): %s", self.name, count, why)

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping.is_set())
                if not self._queue:
                    continue
                signal, payload = self._queue.popleft()
                self._queued_bytes -= len(payload)
                self._busy = True
            try:
                self._deliver(signal, payload)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, signal: Signal, payload: bytes) -> None:
        config = self.config
        started = time.monotonic()
        interval = config.retry_initial_interval_seconds
        while True:
            result = self._sender.send(signal, payload)
            if result.ok:
                self._counters.add(f"forward_sent_requests_total{{{self._label}}}")
                return
            self._counters.add(f"forward_failed_attempts_total{{{self._label}}}")
            if not result.retryable:
                self._count_drop(1, f"not retryable: {result.error}")
                return
            delay = result.retry_after_seconds
            if delay is None:
                delay = interval * random.uniform(0.5, 1.5)
                interval = min(interval * 1.5, config.retry_max_interval_seconds)
            elapsed = time.monotonic() - started
            max_elapsed = config.retry_max_elapsed_seconds
            if max_elapsed and elapsed + delay > max_elapsed:
                self._count_drop(1, f"retries exhausted: {result.error}")
                return
            _logger.debug("forward target %s: %s; retrying in %.2fs", self.name, result.error, delay)
            if self._stopping.wait(delay):
                with self._cond:
                    self._queue.appendleft((signal, payload))
                    self._queued_bytes += len(payload)
                return


class Forwarder:
    """Fans accepted requests out to every configured target."""

    def __init__(self, targets: tuple[ForwardTarget, ...], counters: Counters) -> None:
        self._targets: list[_Target] = []
        for index, target in enumerate(targets):
            sender: Sender = GrpcSender(target) if target.protocol == "grpc" else HttpSender(target)
            name = f"{index}:{target.endpoint}"
            self._targets.append(_Target(target, sender, counters, name))
        counters.gauge("forward_queue_requests", lambda: float(sum(t.depth() for t in self._targets)))

    def __bool__(self) -> bool:
        return bool(self._targets)

    def start(self) -> None:
        for target in self._targets:
            target.start()

    def submit(self, signal: Signal, payload: bytes) -> None:
        for target in self._targets:
            target.submit(signal, payload)

    def depths(self) -> Mapping[str, int]:
        return {target.name: target.depth() for target in self._targets}

    def idle(self) -> bool:
        """True when every queue is empty and no send is in progress (tests)."""
        return all(target.idle() for target in self._targets)

    def stop(self, timeout_seconds: float = 5.0) -> None:
        for target in self._targets:
            target.stop(timeout_seconds)
