"""Rule evaluation under `evaluation_share`: a backlog of event time is caught up without evaluating every
minute of it, and an alert still fires on the data; without a share every minute is evaluated."""

from __future__ import annotations

import pytest
import yaml
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.pipeline import HOUR_NS, TICK_NS, Pipeline
from otel_llm_collector.rules import RuleSet, parse_rules
from otel_llm_collector.testing import SECOND_NS, T0_NS, SpanRecorder
from otel_llm_collector.windows import WindowEngine

_RULES = """
rules:
  - name: errors-p1
    condition: error_rate > 0.5
    window: 5m
    min_samples: 5
    for: 3m
    severity: P1
    summary: errors
"""


def _rules() -> RuleSet:
    rules, errors = parse_rules(yaml.safe_load(_RULES))
    assert rules is not None, errors
    return rules


class _Clock:
    """Wall time: `cost` seconds per evaluation, `ingest` seconds per minute of data (a backlog goes in
    far faster than event time passed)."""

    def __init__(self, cost: float, ingest: float = 2.0) -> None:
        self.now = 0.0
        self.cost = cost
        self.ingest = ingest

    def __call__(self) -> float:
        return self.now

    def evaluation(self, tick: int) -> list[AlertEvent]:
        """The pipeline's `on_tick`, called inside each evaluation."""
        self.now += self.cost
        return []


def _run(share: float | None, clock: _Clock, minutes: int) -> tuple[Pipeline, list[tuple[str, int]]]:
    events: list[tuple[str, int]] = []
    pipeline = Pipeline(
        WindowEngine(),
        build_evaluator(_rules()),
        on_events=lambda batch: events.extend((e.status, e.at_ns) for e in batch),
        evaluation_share=share,
        clock=clock,
        on_tick=clock.evaluation,
    )
    for minute in range(minutes):
        recorder = SpanRecorder(service="checkout")
        for i in range(6):
            start = T0_NS + (minute * 60 + i * 10) * SECOND_NS
            error = "TimeoutError" if minute >= 20 else None
            recorder.genai_span(
                start_ns=start, end_ns=start + SECOND_NS, error_type=error, response_id=f"r{minute}-{i}"
            )
        pipeline.apply(decode_traces(recorder.request()))
        clock.now += clock.ingest
    return pipeline, events


def test_without_a_share_every_minute_is_evaluated() -> None:
    pipeline, events = _run(None, _Clock(cost=5.0), minutes=40)
    assert pipeline.ticks_coalesced == 0
    assert pipeline.ticks_evaluated == 39  # the first minute opens the clock; each later one ticks
    firing = [at for status, at in events if status == "firing"]
    # Errors from minute 20: at the minute-23 tick the 5m window holds 18 errors of 30 (> 0.5), pending;
    # firing 3 minutes later.
    assert firing == [T0_NS + 26 * 60 * SECOND_NS]


def test_a_backlog_is_caught_up_with_coalesced_ticks_and_the_alert_still_fires() -> None:
    # Each evaluation costs 5 s and each minute of data 2 s to ingest: with a share of 0.25 the next
    # evaluation may start 15 s after one ends, so about one minute in eight is evaluated.
    pipeline, events = _run(0.25, _Clock(cost=5.0), minutes=40)
    assert pipeline.ticks_evaluated + pipeline.ticks_coalesced == 39
    assert 3 <= pipeline.ticks_evaluated <= 6
    assert pipeline.ticks_coalesced >= 33
    firing = [at for status, at in events if status == "firing"]
    assert len(firing) == 1
    assert firing[0] >= T0_NS + 26 * 60 * SECOND_NS  # never earlier than when evaluated every minute
    assert firing[0] <= T0_NS + 40 * 60 * SECOND_NS


def test_hourly_ticks_are_never_coalesced() -> None:
    clock = _Clock(cost=3600.0)  # every evaluation blocks the next for hours of wall time
    pipeline, _ = _run(0.5, clock, minutes=130)
    evaluated_hours = {
        at for at in range(T0_NS, T0_NS + 130 * TICK_NS, TICK_NS) if at % HOUR_NS == 0 and at > T0_NS
    }
    assert pipeline.ticks_evaluated == 1 + len(evaluated_hours)  # the first tick, then each hour


def test_share_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="evaluation_share"):
        Pipeline(WindowEngine(), None, evaluation_share=0.0)
