"""The bounded queue between the receivers and the single windows worker thread.

Receivers call `IngestQueue.offer` with a decoded request; ``False`` means the queue is full and the
receiver sheds load (UNAVAILABLE / 503 with a retry delay), so the client keeps the data and retries. A
request is acknowledged only after ``offer`` returned ``True``: acknowledged records are in memory, in
order, and the worker applies every one of them before a graceful shutdown takes its final snapshot.

One thread owns the window engine's writes, so the engine needs no locking of its own for ingest; readers
(``/metrics``, ``/api/v1/series``) take `IngestQueue.engine_lock` to see a consistent state. While no
data arrives, the worker advances the engine's watermark with wall-clock time, so windows close and
alerts resolve on an idle stream. Every ``snapshot_interval_seconds`` it takes ``engine.snapshot()`` (the
engine is not thread-safe, so this part stalls ingest) and hands the result to a saver thread, so the
slow part, serialising and writing it, overlaps ingest. A snapshot that comes due while the previous one
is still being written is skipped, not queued: only the newest matters.

What a crash loses: graceful shutdown (SIGTERM, SIGINT) loses nothing. A SIGKILL, an OOM kill or a power
loss loses the window contributions of records acknowledged since the last snapshot (at most one snapshot
interval, 30 s by default, plus what was still queued). There is deliberately no write-ahead log: at the
target rate (100k spans/s) logging accepted requests costs about as much as ingest itself, and the data
lost is window statistics, not the spans, which the forward targets still receive. Shorten
``snapshot_interval_seconds`` to shrink the window of loss.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.selfmetrics import Counters

__all__ = ["IngestQueue", "WindowSink"]

_logger = logging.getLogger(__name__)
_STOP = object()


class WindowSink(Protocol):
    """What the worker drives: the window engine. Called from the worker thread only; must not block."""

    def apply(self, result: DecodeResult) -> Any: ...

    def advance_watermark(self, now_ns: int) -> Any: ...

    def snapshot(self) -> dict[str, Any]: ...


class IngestQueue:
    """A bounded queue of decoded requests and the worker thread that applies them to the windows."""

    def __init__(
        self,
        engine: WindowSink,
        *,
        max_batches: int,
        counters: Counters,
        save_snapshot: Callable[[dict[str, Any]], None] | None = None,
        snapshot_interval_seconds: float = 30.0,
        idle_watermark_interval_seconds: float = 1.0,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.engine = engine
        self.engine_lock = threading.Lock()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_batches)
        self._counters = counters
        self._save_snapshot = save_snapshot
        self._snapshot_interval = snapshot_interval_seconds
        self._idle_interval = idle_watermark_interval_seconds
        self._wall_clock_ns = wall_clock_ns
        self._accepting = False
        self._offer_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._snapshots_done = threading.Condition()
        self.snapshots_taken = 0
        self._saver: threading.Thread | None = None
        counters.gauge("ingest_queue_batches", lambda: float(self._queue.qsize()))
        counters.gauge("ingest_queue_capacity_batches", lambda: float(max_batches))

    def start(self) -> None:
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="otel-llm-windows", daemon=True)
        self._thread.start()

    def offer(self, result: DecodeResult) -> bool:
        """Queue a decoded request; False when full (or stopped): the caller must shed load, not ack."""
        if not result.calls and not result.evaluations:
            return self._accepting  # Nothing for the windows; acknowledging it loses nothing.
        # The lock orders offers against `stop`: nothing can be queued behind the stop marker, where it
        # would be acknowledged but never applied.
        with self._offer_lock:
            if not self._accepting:
                return False
            try:
                self._queue.put_nowait(result)
            except queue.Full:
                pass
            else:
                return True
        self._counters.add_many(
            {"ingest_shed_batches_total": 1, "ingest_shed_spans_total": result.spans_seen}
        )
        return False

    def stop(self, timeout_seconds: float = 60.0) -> None:
        """Stop accepting, apply everything already queued, then take the final snapshot."""
        with self._offer_lock:
            self._accepting = False
        thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)  # blocking: lands after every acknowledged batch
        thread.join(timeout_seconds)
        self._thread = None
        if self._saver is not None:
            self._saver.join()
        self.take_snapshot()

    def take_snapshot(self) -> bool:
        """Save the engine's state now; False (logged, counted) when saving failed or there is no store."""
        if self._save_snapshot is None:
            return False
        with self.engine_lock:
            state = self.engine.snapshot()
        return self._save(state)

    def _snapshot_in_background(self) -> None:
        if self._save_snapshot is None:
            return
        if self._saver is not None and self._saver.is_alive():
            self._counters.add("snapshots_skipped_total")
            return
        with self.engine_lock:
            state = self.engine.snapshot()
        self._saver = threading.Thread(
            target=self._save, args=(state,), name="otel-llm-snapshot", daemon=True
        )
        self._saver.start()

    def _save(self, state: dict[str, Any]) -> bool:
        assert self._save_snapshot is not None
        try:
            self._save_snapshot(state)
        except Exception:
            _logger.exception("saving the window snapshot failed")
            self._counters.add("snapshot_failures_total")
            return False
        self._counters.add("snapshots_total")
        with self._snapshots_done:
            self.snapshots_taken += 1
            self._snapshots_done.notify_all()
        return True

    def wait_for_snapshots(self, count: int, timeout_seconds: float) -> bool:
        """Block until at least ``count`` snapshots were taken (tests and benchmarks)."""
        with self._snapshots_done:
            return self._snapshots_done.wait_for(lambda: self.snapshots_taken >= count, timeout_seconds)

    def _run(self) -> None:
        next_snapshot = time.monotonic() + self._snapshot_interval
        while True:
            try:
                item = self._queue.get(timeout=self._idle_interval)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            try:
                with self.engine_lock:
                    if isinstance(item, DecodeResult):
                        self.engine.apply(item)
                    else:
                        self.engine.advance_watermark(self._wall_clock_ns())
            except Exception:
                # One bad batch must not stop the windows; it is logged and counted.
                _logger.exception("applying a batch to the windows failed")
                self._counters.add("ingest_apply_failures_total")
            else:
                if isinstance(item, DecodeResult):
                    self._counters.add("ingest_applied_batches_total")
            if time.monotonic() >= next_snapshot:
                self._snapshot_in_background()
                next_snapshot = time.monotonic() + self._snapshot_interval
