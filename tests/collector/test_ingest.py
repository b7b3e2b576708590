"""The ingest queue: bounded offers, draining before the final snapshot, idle watermark, snapshots."""

from __future__ import annotations

import threading
from typing import Any

from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.ingest import IngestQueue
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.testing import genai_request
from receive_support import RecordingSink


def _batch(spans: int = 2, seed: int = 0) -> DecodeResult:
    return decode_traces(genai_request(spans=spans, seed=seed))


class _ClockedSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.watermarks: list[int] = []
        self.idle = threading.Event()

    def advance_watermark(self, now_ns: int) -> None:
        self.watermarks.append(now_ns)
        self.idle.set()


def test_full_queue_refuses_and_counts() -> None:
    sink = RecordingSink()
    sink.gate.clear()
    counters = Counters()
    queue = IngestQueue(sink, max_batches=1, counters=counters)
    queue.start()
    try:
        assert queue.offer(_batch())
        accepted = [queue.offer(_batch(seed=i)) for i in range(1, 4)]
        assert accepted.count(True) <= 2
        assert accepted[-1] is False
        assert counters.get("ingest_shed_batches_total") >= 1
        assert counters.get("ingest_shed_spans_total") == 2 * counters.get("ingest_shed_batches_total")
    finally:
        sink.gate.set()
        queue.stop()


def test_stop_applies_everything_acknowledged_before_the_final_snapshot() -> None:
    sink = RecordingSink()
    sink.gate.clear()
    saved: list[dict[str, Any]] = []
    queue = IngestQueue(sink, max_batches=100, counters=Counters(), save_snapshot=saved.append)
    queue.start()
    acknowledged = sum(queue.offer(_batch(spans=3, seed=i)) for i in range(50))
    assert acknowledged == 50
    sink.gate.set()
    queue.stop()
    assert sink.calls() == 150
    assert saved[-1]["calls"] == 150
    assert not queue.offer(_batch())  # stopped: the caller must not acknowledge


def test_empty_results_are_acknowledged_without_queueing() -> None:
    sink = RecordingSink()
    queue = IngestQueue(sink, max_batches=1, counters=Counters())
    queue.start()
    try:
        assert all(queue.offer(DecodeResult(spans_seen=5, skipped=5)) for _ in range(10))
    finally:
        queue.stop()
    assert sink.results == []


def test_idle_stream_advances_the_watermark_with_the_wall_clock() -> None:
    sink = _ClockedSink()
    queue = IngestQueue(
        sink,
        max_batches=4,
        counters=Counters(),
        idle_watermark_interval_seconds=0.01,
        wall_clock_ns=lambda: 1_767_225_600_000_000_000,
    )
    queue.start()
    try:
        assert sink.idle.wait(5)
    finally:
        queue.stop()
    assert sink.watermarks[0] == 1_767_225_600_000_000_000


def test_periodic_snapshots_are_saved_off_the_worker_thread() -> None:
    sink = RecordingSink()
    threads: list[str] = []

    def save(state: dict[str, Any]) -> None:
        threads.append(threading.current_thread().name)

    queue = IngestQueue(
        sink,
        max_batches=4,
        counters=Counters(),
        save_snapshot=save,
        snapshot_interval_seconds=0.01,
        idle_watermark_interval_seconds=0.01,
    )
    queue.start()
    try:
        assert queue.wait_for_snapshots(2, timeout_seconds=10)
    finally:
        queue.stop()
    assert threads[0] == "otel-llm-snapshot"
    assert threads[-1] == threading.current_thread().name  # the final one, on stop


def test_a_failing_save_is_counted_and_ingest_goes_on() -> None:
    sink = RecordingSink()
    counters = Counters()

    def broken(state: dict[str, Any]) -> None:
        raise OSError("disk full")

    queue = IngestQueue(sink, max_batches=4, counters=counters, save_snapshot=broken)
    queue.start()
    try:
        assert not queue.take_snapshot()
        assert queue.offer(_batch())
        assert sink.wait_calls(2)
    finally:
        queue.stop()
    assert counters.get("snapshot_failures_total") == 2
