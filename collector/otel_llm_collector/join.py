"""The join index: which series a recently seen call belongs to, by span context and by response id.

Evaluations and user feedback often arrive minutes after their call, as log records that carry only the
call's span context or its `gen_ai.response.id`. The windows stage asks this index for the call's series.

Bounded twice: at most `max_entries` calls are remembered (the oldest are forgotten first) and an entry
expires `ttl_seconds` after its call's event time. Size `max_entries` as call rate x the longest feedback
delay you want to join (the default 100,000 calls take about 40 MB; at 100 calls/s they cover
about 17 minutes).

Evaluations that arrive before their call (rare, but exporters batch independently) wait in a small pending
buffer (`max_pending`, `pending_ttl_seconds` of event time). When the call arrives within that time the
evaluation is released, attributed to it; otherwise it is given up and counted in `unmatched`. There is no
other retry: an evaluation whose call was never seen, or was forgotten, can never be attributed, so keeping
it longer would only cost memory. Expiry runs on event time (`expire(now_ns)`), never on a clock read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey

DEFAULT_MAX_ENTRIES: Final = 100_000
DEFAULT_TTL_SECONDS: Final = 3600.0
DEFAULT_MAX_PENDING: Final = 10_000
DEFAULT_PENDING_TTL_SECONDS: Final = 300.0

_Entry = tuple[SeriesKey, int, str]
"""(series, the call's end time, its trace id)."""


class JoinIndex:
    """Span context / response id -> series of recent calls, plus a buffer for early evaluations.

    Not thread-safe: owned by the single worker that applies records to the windows.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_pending: int = DEFAULT_MAX_PENDING,
        pending_ttl_seconds: float = DEFAULT_PENDING_TTL_SECONDS,
    ) -> None:
        if max_entries < 1 or max_pending < 0 or ttl_seconds <= 0 or pending_ttl_seconds < 0:
            raise ValueError("join index limits must be positive")
        self.max_entries = max_entries
        self.ttl_ns = int(ttl_seconds * 1e9)
        self.max_pending = max_pending
        self.pending_ttl_ns = int(pending_ttl_seconds * 1e9)
        # Insertion-ordered: the first entry is (about) the oldest; out-of-order calls only delay expiry.
        # OrderedDicts, not dicts: a dict emptied from the front leaves a run of deleted slots that each
        # `next(iter(...))` walks again, which made every eviction of a full index cost ~100 µs.
        # Keyed by span id alone, the record's own string, with the trace id in the entry to check: no new
        # key string per call. Two calls sharing a random 64-bit span id within the index are vanishingly
        # rare, and then the later one wins, as for a re-sent span.
        self._by_span: OrderedDict[str, _Entry] = OrderedDict()
        self._by_response: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: OrderedDict[int, tuple[EvaluationRecord, int]] = OrderedDict()
        self._pending_by_key: dict[str, list[int]] = {}
        self._next_pending = 0
        self.matched = 0
        self.unmatched = 0
        """Evaluations given up: never matched within the pending TTL, or pushed out of a full buffer."""

    def __len__(self) -> int:
        return len(self._by_span)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_call(self, call: CallRecord, series: SeriesKey) -> list[EvaluationRecord]:
        """Remember `call` under `series`; return pending evaluations that were waiting for it."""
        entry = (series, call.end_time_ns, call.trace_id)
        by_span = self._by_span
        by_span[call.span_id] = entry
        if call.response_id:
            self._by_response[call.response_id] = entry
        if len(by_span) > self.max_entries:
            by_span.popitem(last=False)
        if len(self._by_response) > self.max_entries:
            self._by_response.popitem(last=False)
        if not self._pending_by_key:
            return []
        released: list[EvaluationRecord] = []
        for key in (call.trace_id + call.span_id, call.response_id):
            for ticket in self._pending_by_key.pop(key, ()) if key else ():
                waiting = self._pending.pop(ticket, None)
                if waiting is not None:
                    released.append(waiting[0])
        self.matched += len(released)
        return released

    def add_calls(self, calls: Sequence[CallRecord], series: Sequence[SeriesKey]) -> None:
        """`add_call` for many calls (`series[i]` is the series of `calls[i]`) while nothing is pending:
        the windows' batch path, without a call and two length checks per record."""
        if self._pending_by_key:
            raise RuntimeError("add_calls is for an index without pending evaluations; use add_call")
        by_span, by_response = self._by_span, self._by_response
        for call, key in zip(calls, series):
            entry = (key, call.end_time_ns, call.trace_id)
            by_span[call.span_id] = entry
            response_id = call.response_id
            if response_id:
                by_response[response_id] = entry
        for index in (by_span, by_response):
            pop = index.popitem
            for _ in range(len(index) - self.max_entries):
                pop(False)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending_by_key)

    def lookup(self, evaluation: EvaluationRecord) -> SeriesKey | None:
        """The series of the evaluated call, by span context first and response id second."""
        if evaluation.span_id:
            entry = self._by_span.get(evaluation.span_id)
            if entry is not None and entry[2] == evaluation.trace_id:
                return entry[0]
        if evaluation.response_id:
            entry = self._by_response.get(evaluation.response_id)
            if entry is not None:
                return entry[0]
        return None

    def resolve(self, evaluation: EvaluationRecord) -> SeriesKey | None:
        """`lookup`, and when that fails keep the evaluation pending (it may be released by `add_call`)."""
        series = self.lookup(evaluation)
        if series is not None:
            self.matched += 1
            return series
        keys = [k for k in (evaluation.trace_id + evaluation.span_id, evaluation.response_id) if k]
        if not keys or self.max_pending == 0:
            self.unmatched += 1
            return None
        if len(self._pending) >= self.max_pending:
            self._drop_oldest_pending()
        ticket = self._next_pending
        self._next_pending += 1
        self._pending[ticket] = (evaluation, evaluation.time_ns)
        for key in keys:
            self._pending_by_key.setdefault(key, []).append(ticket)
        return None

    def _drop_oldest_pending(self) -> None:
        ticket = next(iter(self._pending))
        evaluation, _ = self._pending.pop(ticket)
        self.unmatched += 1
        for key in (evaluation.trace_id + evaluation.span_id, evaluation.response_id):
            tickets = self._pending_by_key.get(key)
            if tickets is not None:
                if ticket in tickets:
                    tickets.remove(ticket)
                if not tickets:
                    del self._pending_by_key[key]

    def expire(self, now_ns: int) -> int:
        """Forget calls past the TTL, give up pending evaluations past theirs; return the number given up."""
        horizon = now_ns - self.ttl_ns
        for index in (self._by_span, self._by_response):
            while index:
                key = next(iter(index))
                if index[key][1] >= horizon:
                    break
                del index[key]
        given_up = 0
        pending_horizon = now_ns - self.pending_ttl_ns
        while self._pending:
            ticket = next(iter(self._pending))
            if self._pending[ticket][1] >= pending_horizon:
                break
            self._drop_oldest_pending()
            given_up += 1
        return given_up

    def clear_pending(self) -> None:
        self._pending.clear()
        self._pending_by_key.clear()


__all__ = ["JoinIndex"]
