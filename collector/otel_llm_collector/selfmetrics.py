"""The collector's own health counters (received, rejected, shed, dropped, ...), shared by all stages.

A single lock-protected mapping of counter name to value: increments happen once per request or batch,
not per span, so the lock costs nothing measurable. Names are the Prometheus sample names without the
``otel_llm_collector_`` prefix the exposition adds; gauges (queue depths) are read through callbacks at
scrape time so they are never stale.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

__all__ = ["Counters"]


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

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            values = dict(self._values)
            gauges = dict(self._gauges)
        for name, read in gauges.items():
            values[name] = read()
        return values
