"""The join index: span context and response id lookups, bounds, TTL, and the pending buffer."""

from __future__ import annotations

import otel_llm_collector.join as join_module
import pytest
from otel_llm_collector.join import JoinIndex
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.testing import SECOND_NS, T0_NS

KEY = SeriesKey("svc", "feat", "p", "v1", "m")
TRACE = "ab" * 16


def _call(span: int, t_ns: int = T0_NS, response_id: str = "") -> CallRecord:
    return CallRecord(
        series=KEY,
        end_time_ns=t_ns,
        duration_s=1.0,
        trace_id=TRACE,
        span_id=f"{span:016x}",
        response_id=response_id,
    )


def _evaluation(span: int | None = None, response_id: str = "", t_ns: int = T0_NS) -> EvaluationRecord:
    span_id = f"{span:016x}" if span is not None else ""
    return EvaluationRecord(
        "relevance", t_ns, 1.0, trace_id=TRACE if span_id else "", span_id=span_id, response_id=response_id
    )


def test_lookup_by_span_context_and_by_response_id() -> None:
    index = JoinIndex()
    index.add_call(_call(1, response_id="r-1"), KEY)
    assert index.lookup(_evaluation(span=1)) == KEY
    assert index.lookup(_evaluation(response_id="r-1")) == KEY
    assert index.lookup(_evaluation(span=2)) is None
    other_trace = EvaluationRecord("e", T0_NS, 1.0, trace_id="cd" * 16, span_id=f"{1:016x}")
    assert index.lookup(other_trace) is None


def test_oldest_calls_are_forgotten_beyond_max_entries() -> None:
    index = JoinIndex(max_entries=3)
    for span in range(1, 6):
        index.add_call(_call(span, response_id=f"r-{span}"), KEY)
    assert len(index) == 3
    assert index.lookup(_evaluation(span=1)) is None
    assert index.lookup(_evaluation(response_id="r-2")) is None
    assert index.lookup(_evaluation(span=5)) == KEY


def test_a_batch_joins_as_its_calls_one_by_one() -> None:
    other = SeriesKey("svc", "feat", "p", "v2", "m")
    calls = [_call(span, t_ns=T0_NS + span, response_id=f"r-{span}") for span in range(1, 8)]
    keys = [KEY if span % 2 else other for span in range(1, 8)]
    one_by_one, batched = JoinIndex(max_entries=4), JoinIndex(max_entries=4)
    for call, key in zip(calls, keys):
        one_by_one.add_call(call, key)
    batched.add_calls(calls[:2], keys[:2])
    batched.add_calls(calls[2:], keys[2:])
    for index in (one_by_one, batched):
        assert len(index) == 4
        found = [index.lookup(_evaluation(span=span)) for span in range(1, 8)]
        assert found == [None, None, None, other, KEY, other, KEY]
        by_response = [index.lookup(_evaluation(response_id=f"r-{span}")) for span in range(1, 8)]
        assert by_response == found
    index = JoinIndex()
    index.resolve(_evaluation(span=9))
    with pytest.raises(RuntimeError, match="pending"):
        index.add_calls([_call(9)], [KEY])  # it could not release the waiting evaluation


def test_calls_expire_after_the_ttl_in_event_time() -> None:
    index = JoinIndex(ttl_seconds=60)
    index.add_call(_call(1, t_ns=T0_NS), KEY)
    index.add_call(_call(2, t_ns=T0_NS + 50 * SECOND_NS), KEY)
    index.expire(T0_NS + 100 * SECOND_NS)
    assert index.lookup(_evaluation(span=1)) is None
    assert index.lookup(_evaluation(span=2)) == KEY


def test_early_evaluation_waits_and_is_released_by_its_call() -> None:
    index = JoinIndex()
    assert index.resolve(_evaluation(response_id="r-7")) is None
    assert index.pending == 1
    released = index.add_call(_call(7, response_id="r-7"), KEY)
    assert [e.response_id for e in released] == ["r-7"]
    assert (index.pending, index.matched, index.unmatched) == (0, 1, 0)


def test_pending_evaluations_are_given_up_after_their_ttl_and_counted() -> None:
    index = JoinIndex(pending_ttl_seconds=60)
    index.resolve(_evaluation(span=9, t_ns=T0_NS))
    index.resolve(_evaluation(span=10, t_ns=T0_NS + 90 * SECOND_NS))
    assert index.expire(T0_NS + 100 * SECOND_NS) == 1
    assert (index.pending, index.unmatched) == (1, 1)
    assert index.add_call(_call(9), KEY) == []  # too late: already given up


def test_full_pending_buffer_drops_the_oldest() -> None:
    index = JoinIndex(max_pending=2)
    for span in (1, 2, 3):
        index.resolve(_evaluation(span=span))
    assert (index.pending, index.unmatched) == (2, 1)
    assert index.add_call(_call(1), KEY) == []
    assert len(index.add_call(_call(3), KEY)) == 1


def test_evaluation_without_any_reference_is_unmatched_at_once() -> None:
    index = JoinIndex()
    assert index.resolve(EvaluationRecord("e", T0_NS, 1.0)) is None
    assert (index.pending, index.unmatched) == (0, 1)


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        JoinIndex(max_entries=0)


def test_public_api_is_pinned() -> None:
    assert sorted(join_module.__all__) == ["JoinIndex"]
