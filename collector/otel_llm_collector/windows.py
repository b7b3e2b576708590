"""Event-time windows per series: 1m, 5m, 15m, 1h, 24h and 7d figures from tiers of time buckets.

Usage (the app owns one engine and calls it from one worker thread)::

    engine = WindowEngine(max_series=10_000, allowed_lateness_seconds=60)
    engine.apply(decode_traces(request))         # calls and evaluations
    engine.advance_watermark(time.time_ns())     # when the stream is idle
    stats = engine.window(key, "5m")             # WindowStats, or None

Time. Everything runs on event time (span end timestamps). The engine's clock `now_ns` is the largest event
time seen, or the wall-clock time passed to `advance_watermark`, whichever is later; the watermark is
`now_ns - allowed_lateness`. Each window is a run of whole buckets of one tier, ending with the bucket that
holds `now_ns`, and its rate is count / the event time it spans so far:

    window  tier        buckets                  spans
    1m      1 minute    the current one          0-1 min
    5m      1 minute    current + 4 before       4-5 min
    15m     1 minute    current + 14 before      14-15 min
    1h      5 minutes   current + 11 before      55-60 min
    24h     1 hour      current + 23 before      23-24 h
    7d      1 day       current + 6 before       6-7 d

Storage. Calls land in a per-series one-minute bucket only (one cheap update per call). When the watermark
passes the end of a minute, that minute is rolled up into the 5-minute, hour and day buckets that contain
it (it also stays in the minute ring for the short windows); a long window adds the minutes not yet rolled
up. Each tier keeps a fixed number of buckets (`TIERS`), evicted as the clock advances, so memory is flat
over time and bounded per series: at most 16 + 13 + 25 + 8 buckets. Coarser tiers, rather than a day of
minutes and a week of hours, are what keep 10,000 busy series within a few hundred MB.

Late data. A record older than the watermark is counted in `late` and still applied to every tier whose
bucket for it is retained: its minute bucket (plus the coarser buckets if that minute was already rolled up),
or only the coarser buckets once the minute is gone. A record older than every retained bucket is dropped
and counted in `dropped_too_old`. A record more than `max_future_seconds` ahead of the wall clock (once the
app has passed one) is dropped as `dropped_future`: one bad clock must not move every window into the future.

Cardinality. At most `max_series` series; calls for further series go to `OVERFLOW_SERIES` and are counted
in `overflow_calls`. A series whose buckets have all expired is forgotten, which frees its place.

Evaluations carried on their call's span go to that call's series; the rest are attributed through the
`JoinIndex` (by span context or response id), else wait briefly as pending, else count as
`evaluations_unmatched`. An evaluation lands in the bucket of its own event time.

Persistence. `snapshot()` is a small JSON-ready header (clocks, counters, tier layout) plus rows of series:
each series' key, totals and buckets packed with `struct` (`Bucket.pack_into`), about a megabyte of series
per row, zlib-compressed. The ingest worker takes it under its lock, so it is made to be quick and small
rather than readable: for 10,000 busy series about 0.8 s and 3 MB of rows, where a document of plain dicts
took 3 s and 300 MB of Python objects at once, then 2 s more to become JSON. The state store writes each row
as a database row, in one transaction, and `restore(header, rows=...)` decodes them one at a time.
`snapshot_items()` gives the same state as plain data, one series at a time (the form of a version 1
snapshot, which `restore` still reads). A bucket closes when its minute is rolled up, and then keeps its
token figures in an int64 array (`Bucket.compact`), about 100 bytes less per bucket.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

from otel_llm_collector.buckets import Bucket, WindowStats, derive
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.join import JoinIndex
from otel_llm_collector.records import OVERFLOW_SERIES, CallRecord, EvaluationRecord, SeriesKey

MINUTE_NS: Final = 60 * 1_000_000_000
HOUR_NS: Final = 60 * MINUTE_NS

FIVE_MINUTES_NS: Final = 5 * MINUTE_NS
DAY_NS: Final = 24 * HOUR_NS

TIERS: Final = ((MINUTE_NS, 16), (FIVE_MINUTES_NS, 13), (HOUR_NS, 25), (DAY_NS, 8))
"""(bucket size, buckets kept) per tier: each keeps its longest window plus one bucket of slack."""
WINDOWS: Final = {"1m": (0, 1), "5m": (0, 5), "15m": (0, 15), "1h": (1, 12), "24h": (2, 24), "7d": (3, 7)}
"""Window name -> (tier, buckets)."""
WINDOW_NAMES: Final = tuple(WINDOWS)
_UNCACHED_MINUTES: Final = 5
"""Windows of this many minutes or fewer merge their few buckets on every read instead of caching."""

SNAPSHOT_VERSION: Final = 2
"""1: every series as plain data inside the snapshot dict; 2: binary rows of series (`snapshot_rows`)."""
SNAPSHOT_SERIES: Final = "series"
"""The `snapshot()` key that holds the series rows; the state store keeps each row as a row of its own."""
_SERIES_HEADER: Final = struct.Struct("<qqI")
"""calls total, evaluations total, length of the series key (a JSON array); then the key, then the tiers."""
_COUNT: Final = struct.Struct("<I")
_INDEX: Final = struct.Struct("<q")
_ROW_BYTES: Final = 1 << 20
"""Series are packed into rows of about this size before compression. zlib lets go of the GIL on every
call, and under load each call then waits up to a switch interval (5 ms) to get it back: one call per
series made a snapshot of 10,000 series hold the ingest lock for 5-12 s, one per megabyte does not."""
_ROW_COMPRESSION_LEVEL: Final = 1
"""zlib's fastest level: rows shrink about tenfold (buckets of one series look alike)."""


class _Series:
    __slots__ = ("calls_total", "closed", "evaluations_total", "revision", "tiers")

    def __init__(self) -> None:
        self.tiers: tuple[dict[int, Bucket], ...] = tuple({} for _ in TIERS)
        self.calls_total = 0
        self.evaluations_total = 0
        self.revision = 0
        """Bumped whenever a closed (rolled-up) bucket changes, i.e. on late data."""
        self.closed: dict[str, tuple[tuple[int, int, int], Bucket]] = {}
        """Per window: (stamp, merge of its closed buckets), so a read merges only the open minutes."""

    @property
    def minutes(self) -> dict[int, Bucket]:
        return self.tiers[0]


def _flush(groups: dict[int, tuple[Bucket, list[CallRecord]]]) -> None:
    for bucket, calls in groups.values():
        bucket.add_calls(calls)
    groups.clear()


class WindowEngine:
    """Per-series event-time aggregation. Not thread-safe: one worker applies, readers take `snapshot()`
    or call `window()` from the same thread (or under the app's lock)."""

    def __init__(
        self,
        *,
        max_series: int = 10_000,
        allowed_lateness_seconds: float = 60.0,
        minute_retention: int = TIERS[0][1],
        max_future_seconds: float = 300.0,
        join: JoinIndex | None = None,
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        if minute_retention < WINDOWS["15m"][1]:
            raise ValueError(f"minute_retention must cover the 15m window, got {minute_retention}")
        if allowed_lateness_seconds < 0:
            raise ValueError("allowed_lateness_seconds must not be negative")
        self.max_series = max_series
        self.lateness_ns = int(allowed_lateness_seconds * 1e9)
        self.minute_retention = minute_retention
        self._retention = (minute_retention, *(kept for _, kept in TIERS[1:]))
        self.max_future_ns = int(max_future_seconds * 1e9)
        self.join = join if join is not None else JoinIndex()
        self._series: dict[SeriesKey, _Series] = {}
        self._now_ns = 0
        self._wall_ns = 0
        self._rolled_minute = 0
        """Minutes below this index have been rolled up into the coarser tiers."""
        self.calls_total = 0
        self.evaluations_total = 0
        self.late = 0
        self.dropped_too_old = 0
        self.dropped_future = 0
        self.overflow_calls = 0

    # --- time -----------------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return self._now_ns

    @property
    def watermark_ns(self) -> int:
        return self._now_ns - self.lateness_ns

    @property
    def evaluations_unmatched(self) -> int:
        return self.join.unmatched

    def advance_watermark(self, now_ns: int) -> None:
        """Move event time forward to wall-clock `now_ns` when the stream is idle; never moves it back."""
        self._wall_ns = max(self._wall_ns, now_ns)
        if now_ns > self._now_ns:
            self._now_ns = now_ns
        self._roll_and_evict()

    def _roll_and_evict(self) -> None:
        closed_minute = self.watermark_ns // MINUTE_NS
        if self._rolled_minute == 0:
            first = min(
                (m for series in self._series.values() for m in series.minutes), default=closed_minute
            )
            self._rolled_minute = min(first, closed_minute)
        if closed_minute > self._rolled_minute:
            for series in self._series.values():
                for minute, bucket in series.minutes.items():
                    if self._rolled_minute <= minute < closed_minute:
                        for target in self._coarse_buckets(series, minute * MINUTE_NS):
                            target.merge(bucket)
                            target.compact()
                        bucket.compact()  # closed: only late calls change it now
            self._rolled_minute = closed_minute
            self._evict()
            self.join.expire(self.watermark_ns)

    def _oldest(self, tier: int) -> int:
        """The oldest bucket index that tier `tier` keeps at the current clock."""
        return self._now_ns // TIERS[tier][0] - self._retention[tier] + 1

    def _evict(self) -> None:
        oldest = [self._oldest(tier) for tier in range(len(TIERS))]
        dead: list[SeriesKey] = []
        for key, series in self._series.items():
            for tier, buckets in enumerate(series.tiers):
                for index in [i for i in buckets if i < oldest[tier]]:
                    del buckets[index]
            if not any(series.tiers):
                dead.append(key)
        for key in dead:
            del self._series[key]

    def _coarse_buckets(self, series: _Series, time_ns: int) -> list[Bucket]:
        """The retained buckets of the tiers above minutes that hold `time_ns` (created on demand)."""
        out: list[Bucket] = []
        for tier in range(1, len(TIERS)):
            index = time_ns // TIERS[tier][0]
            if index >= self._oldest(tier):
                buckets = series.tiers[tier]
                bucket = buckets.get(index)
                if bucket is None:
                    bucket = buckets[index] = Bucket()
                out.append(bucket)
        return out

    # --- ingest ---------------------------------------------------------------------------------------
    def _route(self, key: SeriesKey) -> tuple[SeriesKey, _Series]:
        series = self._series.get(key)
        if series is not None:
            return key, series
        if len(self._series) >= self.max_series + (OVERFLOW_SERIES in self._series):
            key = OVERFLOW_SERIES
            series = self._series.get(key)
            if series is not None:
                return key, series
        series = self._series[key] = _Series()
        return key, series

    def _target(self, series: _Series, time_ns: int) -> list[Bucket]:
        """The buckets a record with this event time goes to (empty when it is too old to keep)."""
        minute = time_ns // MINUTE_NS
        if time_ns < self.watermark_ns:
            self.late += 1
        if minute >= self._oldest(0):
            bucket = series.minutes.get(minute)
            if bucket is None:
                bucket = series.minutes[minute] = Bucket()
            if minute < self._rolled_minute:
                series.revision += 1
                return [bucket, *self._coarse_buckets(series, time_ns)]
            return [bucket]
        series.revision += 1
        targets = self._coarse_buckets(series, time_ns)
        if not targets:
            self.dropped_too_old += 1
        return targets

    def _observe_time(self, time_ns: int) -> bool:
        if self._wall_ns and time_ns > self._wall_ns + self.max_future_ns:
            self.dropped_future += 1
            return False
        if time_ns > self._now_ns:
            self._now_ns = time_ns
        return True

    def apply(self, result: DecodeResult) -> None:
        """Add a decode result's calls and evaluations to their series."""
        self.apply_calls(result.calls)
        self.apply_evaluations(result.evaluations)

    def apply_calls(self, calls: Iterable[CallRecord]) -> None:
        # The hot loop of the windows stage: attribute and method lookups hoisted, the clock check of
        # `_observe_time` and the known-series case of `_route` inlined.
        minute_before = self._now_ns // MINUTE_NS
        join = self.join
        join_add = join.add_call
        # With no evaluation waiting in the join index (the usual case), nothing can be released by these
        # calls: they join the index in one batch at the end instead of one `add_call` each.
        batch_joined: list[CallRecord] | None = None if join.has_pending else []
        batch_keys: list[SeriesKey] = []
        known = self._series
        route = self._route
        latest_allowed = self._wall_ns + self.max_future_ns if self._wall_ns else None
        now = self._now_ns
        rolled_minute = self._rolled_minute
        lateness = self.lateness_ns
        applied = 0
        # On-time calls are gathered per open bucket and added in one `add_calls` (same order, same sums);
        # anything else first flushes the groups, so every bucket still sees its calls in arrival order.
        groups: dict[int, tuple[Bucket, list[CallRecord]]] = {}
        for call in calls:
            end = call.end_time_ns
            if latest_allowed is not None and end > latest_allowed:
                self.dropped_future += 1
                continue
            if end > now:
                now = self._now_ns = end
            applied += 1
            key = call.series
            series = known.get(key)
            if series is None:
                key, series = route(key)
                if key is OVERFLOW_SERIES and call.series != OVERFLOW_SERIES:
                    self.overflow_calls += 1
            series.calls_total += 1
            minute = end // MINUTE_NS
            bucket = series.tiers[0].get(minute)
            if bucket is not None and minute >= rolled_minute and end >= now - lateness:
                group = groups.get(id(bucket))  # the common case: an on-time call into an open minute
                if group is None:
                    groups[id(bucket)] = (bucket, [call])
                else:
                    group[1].append(call)
            else:
                _flush(groups)
                for target in self._target(series, end):
                    target.add_call(call)
            if batch_joined is not None:
                batch_joined.append(call)
                batch_keys.append(key)
            else:
                released = join_add(call, key)
                if released:
                    for evaluation in released:
                        self._apply_evaluation(series, evaluation)
            if call.evaluations:
                for evaluation in call.evaluations:
                    self._apply_evaluation(series, evaluation)
        _flush(groups)
        if batch_joined:
            join.add_calls(batch_joined, batch_keys)
        self.calls_total += applied
        if self._now_ns // MINUTE_NS != minute_before:
            self._roll_and_evict()

    def apply_evaluations(self, evaluations: Iterable[EvaluationRecord]) -> None:
        for evaluation in evaluations:
            if not self._observe_time(evaluation.time_ns):
                continue
            key = evaluation.series if evaluation.series is not None else self.join.resolve(evaluation)
            if key is None:
                continue  # pending in the join index, or counted there as unmatched
            series = self._series.get(key)
            if series is None:
                key, series = self._route(key)
            self._apply_evaluation(series, evaluation)

    def _apply_evaluation(self, series: _Series, evaluation: EvaluationRecord) -> None:
        self.evaluations_total += 1
        series.evaluations_total += 1
        for target in self._target(series, evaluation.time_ns):
            target.add_evaluation(evaluation)

    # --- read -----------------------------------------------------------------------------------------
    def series(self) -> list[SeriesKey]:
        return list(self._series)

    def __len__(self) -> int:
        return len(self._series)

    def window(self, key: SeriesKey, window: str) -> WindowStats | None:
        """Figures of `key` over `window` (one of `WINDOW_NAMES`); None for an unknown series."""
        series = self._series.get(key)
        if series is None:
            return None
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; expected one of {', '.join(WINDOW_NAMES)}")
        tier, length = WINDOWS[window]
        size = TIERS[tier][0]
        now = self._now_ns
        last = now // size
        first = last - length + 1
        rolled = self._rolled_minute
        merged = Bucket()
        if tier or length > _UNCACHED_MINUTES:
            stamp = (first, rolled, series.revision)
            cached = series.closed.get(window)
            if cached is None or cached[0] != stamp:
                # Closed buckets change only when a minute rolls up or late data arrives (see `revision`).
                closed = Bucket()
                for index, bucket in series.tiers[tier].items():
                    if first <= index <= last and (tier or index < rolled):
                        closed.merge(bucket)
                cached = series.closed[window] = (stamp, closed)
            merged.merge(cached[1])
        else:
            for index, bucket in series.minutes.items():
                if first <= index < rolled and index <= last:
                    merged.merge(bucket)
        per_bucket = size // MINUTE_NS
        for minute, bucket in series.minutes.items():
            if minute >= rolled and first <= minute // per_bucket <= last:
                merged.merge(bucket)
        start = first * size
        end = now + 1
        return derive(merged, window=window, start_ns=start, end_ns=end, covered_s=(end - start) / 1e9)

    def totals(self, key: SeriesKey) -> tuple[int, int]:
        """Monotonic (calls, evaluations) applied to `key` since it was first seen (or restored)."""
        series = self._series.get(key)
        return (series.calls_total, series.evaluations_total) if series is not None else (0, 0)

    def counters(self) -> dict[str, int]:
        """Monotonic counters and current sizes, for self-metrics."""
        return {
            "calls_total": self.calls_total,
            "evaluations_total": self.evaluations_total,
            "late_total": self.late,
            "dropped_too_old_total": self.dropped_too_old,
            "dropped_future_total": self.dropped_future,
            "overflow_calls_total": self.overflow_calls,
            "evaluations_unmatched_total": self.join.unmatched,
            "evaluations_pending": self.join.pending,
            "series": len(self._series),
        }

    # --- persistence ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The whole state now: `snapshot_header()` plus `snapshot_rows()` as a list under `SNAPSHOT_SERIES`.

        The ingest worker takes this under its lock, so it is built to be quick and small: no per-bucket
        Python objects, only one compressed row (bytes) per series. The join index is not included.
        """
        data = self.snapshot_header()
        data[SNAPSHOT_SERIES] = list(self.snapshot_rows())
        return data

    def snapshot_header(self) -> dict[str, Any]:
        """Clocks, counters and the format: plain JSON-serialisable data, small at any series count."""
        return {
            "version": SNAPSHOT_VERSION,
            "tiers": [list(tier) for tier in TIERS],
            "now_ns": self._now_ns,
            "wall_ns": self._wall_ns,
            "rolled_minute": self._rolled_minute,
            "counters": {
                "calls_total": self.calls_total,
                "evaluations_total": self.evaluations_total,
                "late": self.late,
                "dropped_too_old": self.dropped_too_old,
                "dropped_future": self.dropped_future,
                "overflow_calls": self.overflow_calls,
            },
        }

    def snapshot_rows(self) -> Iterator[bytes]:
        """The series in rows: each series' key, totals and buckets (`Bucket.pack_into`), packed one after
        another up to about `_ROW_BYTES`, then zlib-compressed. The engine must not change while this runs
        (hold the ingest lock, or stay on the one thread that applies)."""
        chunk = bytearray()
        for key, series in self._series.items():
            _pack_series(chunk, key, series)
            if len(chunk) >= _ROW_BYTES:
                yield zlib.compress(chunk, _ROW_COMPRESSION_LEVEL)
                chunk = bytearray()
        if chunk:
            yield zlib.compress(chunk, _ROW_COMPRESSION_LEVEL)

    def snapshot_items(self) -> Iterator[tuple[SeriesKey, dict[str, Any]]]:
        """Each series as plain JSON-serialisable data, one at a time (for inspection and tests).

        These are the entries of a version 1 snapshot, which `restore` still reads (a state store written
        before the rows): ``{**snapshot_header(), "version": 1, "series": [entry, ...]}``.
        """
        for key, series in self._series.items():
            yield (
                key,
                {
                    "key": list(key),
                    "totals": [series.calls_total, series.evaluations_total],
                    "tiers": [{str(i): b.to_dict() for i, b in buckets.items()} for buckets in series.tiers],
                },
            )

    @classmethod
    def restore(
        cls, data: dict[str, Any], *, rows: Iterable[bytes] | None = None, **options: Any
    ) -> WindowEngine:
        """An engine holding a `snapshot()`'s state; `options` are the constructor's keyword arguments.

        `rows`: the series rows when they are not in `data` (the store streams them back one at a time, so
        only one row is decoded at a time beside the engine being rebuilt).
        """
        version = data.get("version")
        if version not in (1, SNAPSHOT_VERSION):
            raise ValueError(f"unsupported window snapshot version {version!r}")
        if version == SNAPSHOT_VERSION and data.get("tiers") != [list(tier) for tier in TIERS]:
            raise ValueError("window snapshot has a different tier layout")
        engine = cls(**options)
        engine._now_ns = int(data["now_ns"])
        engine._wall_ns = int(data.get("wall_ns", 0))
        engine._rolled_minute = int(data["rolled_minute"])
        counters = data.get("counters", {})
        engine.calls_total = int(counters.get("calls_total", 0))
        engine.evaluations_total = int(counters.get("evaluations_total", 0))
        engine.late = int(counters.get("late", 0))
        engine.dropped_too_old = int(counters.get("dropped_too_old", 0))
        engine.dropped_future = int(counters.get("dropped_future", 0))
        engine.overflow_calls = int(counters.get("overflow_calls", 0))
        if version == 1:
            for entry in data["series"]:
                key, series = _series_from_dict(entry)
                engine._series[key] = series
        else:
            for row in rows if rows is not None else data.get(SNAPSHOT_SERIES, ()):
                engine._series.update(_decode_row(row))
        engine._evict()
        return engine


def _pack_series(out: bytearray, key: SeriesKey, series: _Series) -> None:
    key_bytes = json.dumps(key, separators=(",", ":")).encode()
    out += _SERIES_HEADER.pack(series.calls_total, series.evaluations_total, len(key_bytes))
    out += key_bytes
    for buckets in series.tiers:
        out += _COUNT.pack(len(buckets))
        for index, bucket in buckets.items():
            out += _INDEX.pack(index)
            bucket.pack_into(out)


def _decode_row(row: bytes) -> list[tuple[SeriesKey, _Series]]:
    try:
        data = zlib.decompress(row)
        decoded = []
        offset = 0
        while offset < len(data):
            key, series, offset = _unpack_series(data, offset)
            decoded.append((key, series))
    except (zlib.error, struct.error, IndexError, ValueError) as exc:  # ValueError: bad UTF-8, JSON, lengths
        raise ValueError(f"window snapshot row is damaged: {exc}") from exc
    return decoded


def _unpack_series(data: bytes, offset: int) -> tuple[SeriesKey, _Series, int]:
    calls_total, evaluations_total, length = _SERIES_HEADER.unpack_from(data, offset)
    start = offset + _SERIES_HEADER.size
    offset = start + length
    if offset > len(data):
        raise ValueError("truncated series key")
    fields = json.loads(data[start:offset])
    if not isinstance(fields, list) or len(fields) != len(SeriesKey._fields):
        raise ValueError("malformed series key")
    series = _Series()
    series.calls_total, series.evaluations_total = calls_total, evaluations_total
    for buckets in series.tiers:
        (count,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        for _ in range(count):
            (index,) = _INDEX.unpack_from(data, offset)
            buckets[index], offset = Bucket.unpack_from(data, offset + _INDEX.size)
    return SeriesKey(*(str(field) for field in fields)), series, offset


def _series_from_dict(entry: dict[str, Any]) -> tuple[SeriesKey, _Series]:
    series = _Series()
    series.tiers = tuple(
        {int(i): Bucket.from_dict(b) for i, b in buckets.items()} for buckets in entry["tiers"]
    )
    if len(series.tiers) != len(TIERS):
        raise ValueError("window snapshot has a different tier layout")
    series.calls_total, series.evaluations_total = (int(v) for v in entry.get("totals", (0, 0)))
    return SeriesKey(*entry["key"]), series


__all__ = ["SNAPSHOT_SERIES", "TIERS", "WINDOWS", "WINDOW_NAMES", "WindowEngine", "WindowStats"]
