"""The collector's own health counters (received, rejected, shed, dropped, ...), shared by all stages.

A single lock-protected mapping of counter name to value: increments happen once per request or batch,
not per span, so the lock costs nothing measurable. Names are the Prometheus sample names without the
``otel_llm_collector_`` prefix the exposition adds, labels included (``name{target="x"}``). Gauges (queue
depths) are read through callbacks at scrape time so they are never stale.

The names the receive, ingest and forward stages use (each exposed as ``otel_llm_collector_<name>``;
``<signal>`` is ``traces``, ``logs`` or ``metrics``):

- ``<signal>_requests_total``: requests accepted (fully or partly); ``spans_received_total``,
  ``log_records_received_total``, ``metrics_received_total`` (metrics: the number of metrics, counted only);
- ``spans_rejected_total``, ``log_records_rejected_total``: items refused for defects (partial success);
- ``calls_received_total``, ``evaluations_received_total``: GenAI records decoded;
- ``<signal>_requests_invalid_total`` (400 / INVALID_ARGUMENT), ``<signal>_requests_too_large_total``
  (413 on HTTP; gRPC refuses oversized messages before they reach the collector's code),
  ``<signal>_requests_shed_total`` (503 / UNAVAILABLE);
- ``rule_ticks_evaluated_total``, ``rule_ticks_coalesced_total``: event-time minutes whose rules were
  evaluated, and those folded into the next under ``rule_evaluation_share`` (catching up a backlog);
- ``traces_native_declined_total``: protobuf trace requests the native decoder handed to the reference
  decoder (malformed, or a shape it leaves to the reference: `native_decode.py`);
- ``ingest_shed_batches_total``, ``ingest_shed_spans_total``, ``ingest_applied_batches_total``,
  ``ingest_apply_failures_total``; gauges ``ingest_queue_batches``, ``ingest_queue_capacity_batches``;
- ``snapshots_total``, ``snapshots_skipped_total`` (the previous save still running),
  ``snapshot_failures_total``, ``wal_failures_total``, ``wal_replayed_requests_total``;
- ``forward_sent_requests_total{target}``, ``forward_failed_attempts_total{target}``,
  ``forward_dropped_requests_total{target}`` (``target`` is ``<index>:<endpoint>``); gauge
  ``forward_queue_requests`` (all targets).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["Counters", "LogLimiter"]


class Counters:
    """Thread-safe monotonic counters plus gauges computed on read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def add_many(self, amounts: Mapping[str, float]) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._values[name] = self._values.get(name, 0) + amount

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Register a value read at snapshot time (a queue depth, for example)."""
        with self._lock:
            self._gauges[name] = read

    def get(self, name: str) -> float:
        with self._lock:
            read = self._gauges.get(name)
            value = self._values.get(name, 0)
        return read() if read is not None else value

    def total(self, family: str) -> float:
        """The sum over a family's samples: ``family`` itself and every ``family{labels}``."""
        prefix = family + "{"
        with self._lock:
            return sum(v for k, v in self._values.items() if k == family or k.startswith(prefix))

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            values = dict(self._values)
            gauges = dict(self._gauges)
        for name, read in gauges.items():
            values[name] = read()
        return values


class LogLimiter:
    """Logs a recurring condition (drops, shedding) once per interval with the count since the last line.

    The counters carry the exact figures; the log only has to say that it is happening, without one line per
    request at thousands of requests per second.
    """

    def __init__(self, logger: logging.Logger, interval_seconds: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(key, 0.0):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._next[key] = now + self._interval
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" (and {suppressed} more like it since the last report)"
        self._logger.warning(message, *args)
