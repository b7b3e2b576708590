"""The alert state machine in event time: for/keep_firing_for, insufficient data, incidents and inhibition,
the watchdog, fingerprints, persistence, and whole scenarios through a real `WindowEngine`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest
from otel_llm_collector.alerts import (
    SERIES_SILENT,
    AlertEvent,
    AlertState,
    ChartDetector,
    RuleEvaluator,
    WatchdogSettings,
    engine_metrics,
    fingerprint,
    format_time,
)
from otel_llm_collector.conditions import MetricSource, WindowMetrics
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.rules import DetectorSpec, RuleSet, load_default_rules, parse_rules
from otel_llm_collector.windows import WindowEngine
from rules_support import KEY, MINUTE_NS, OTHER, T0_NS, Fixed, fill

Values = Mapping[str, tuple[float, int] | None]


def _ruleset(*rules: Mapping[str, object]) -> RuleSet:
    ruleset, errors = parse_rules({"rules": list(rules)})
    assert ruleset is not None, errors
    return ruleset


def _run(
    evaluator: RuleEvaluator, timeline: Sequence[tuple[int, Values]], keys: Sequence[SeriesKey] = (KEY,)
) -> list[tuple[int, str, str]]:
    """Evaluate at each minute offset with fixed figures; return (minute, rule, status) per event."""
    out: list[tuple[int, str, str]] = []
    for minute, values in timeline:
        source = Fixed(values)
        events = evaluator.evaluate(T0_NS + minute * MINUTE_NS, keys, lambda _k, _w, s=source: s)
        out.extend((minute, e.rule, e.status) for e in events)
    return out


NO_WATCHDOG = WatchdogSettings(enabled=False)
ERRORS = {"name": "errors", "condition": "error_rate > 5%", "severity": "P1", "min_samples": 20}
BAD = {"error_rate": (0.5, 100)}
GOOD = {"error_rate": (0.0, 100)}
SPARSE = {"error_rate": (0.5, 5)}


@pytest.mark.parametrize(
    ("rule", "timeline", "expected"),
    [
        pytest.param(
            {"for": "10m"},
            [(m, BAD) for m in range(12)],
            [(0, "pending"), (10, "firing")],
            id="pending-fires-only-after-for",
        ),
        pytest.param({"for": "0s"}, [(0, BAD), (1, BAD)], [(0, "firing")], id="no-for-fires-at-once"),
        pytest.param(
            {"for": "10m"},
            [(0, BAD), (5, BAD), (9, GOOD), (10, BAD), (19, BAD), (20, BAD)],
            [(0, "pending"), (9, "inactive"), (10, "pending"), (20, "firing")],
            id="a-gap-restarts-the-sustain-clock",
        ),
        pytest.param(
            {"keep_firing_for": "5m"},
            [(0, BAD), (1, GOOD), (3, GOOD), (4, BAD), (5, GOOD), (9, GOOD), (10, GOOD)],
            [(0, "firing"), (10, "resolved")],
            id="keep-firing-for-holds-and-resets",
        ),
        pytest.param(
            {}, [(0, BAD), (1, GOOD)], [(0, "firing"), (1, "resolved")], id="no-hysteresis-resolves-at-once"
        ),
        pytest.param(
            {"for": "5m"},
            [(0, SPARSE), (1, {}), (2, SPARSE), (3, GOOD), (4, SPARSE), (5, GOOD), (6, {})],
            [(4, "insufficient_data"), (5, "inactive"), (6, "insufficient_data")],
            id="insufficient-data-is-its-own-state",
        ),
        pytest.param(
            {"for": "5m"},
            [(0, BAD), (3, SPARSE), (4, BAD), (9, BAD)],
            [(0, "pending"), (3, "insufficient_data"), (4, "pending"), (9, "firing")],
            id="sparse-window-interrupts-pending",
        ),
        pytest.param(
            {"keep_firing_for": "10m"},
            [(0, BAD), (5, SPARSE), (14, SPARSE), (15, SPARSE), (16, SPARSE)],
            [(0, "firing"), (15, "resolved")],
            id="firing-without-data-is-held-then-resolved",
        ),
    ],
)
def test_state_machine(
    rule: Mapping[str, object], timeline: list[tuple[int, Values]], expected: list[tuple[int, str]]
) -> None:
    evaluator = RuleEvaluator(_ruleset({**ERRORS, **rule}), watchdog=NO_WATCHDOG)
    assert [(m, status) for m, _, status in _run(evaluator, timeline)] == expected


def test_a_pair_without_data_is_insufficient_without_an_event_or_a_slot() -> None:
    evaluator = RuleEvaluator(_ruleset(ERRORS), watchdog=NO_WATCHDOG)
    assert _run(evaluator, [(0, SPARSE), (1, {})], keys=(KEY, OTHER)) == []
    assert evaluator.state("errors", KEY) is AlertState.INSUFFICIENT_DATA
    assert evaluator.snapshot()["slots"] == []
    assert evaluator.active_alerts() == []
    # Once it has had data, losing it is reported; a series the windows forgot starts over.
    assert _run(evaluator, [(2, GOOD), (3, SPARSE)], keys=(KEY,)) == [(3, "errors", "insufficient_data")]
    assert evaluator.state("errors", OTHER) is AlertState.INACTIVE  # no longer present
    assert _run(evaluator, [(4, GOOD), (5, {})], keys=(KEY,)) == [
        (4, "errors", "inactive"),
        (5, "errors", "insufficient_data"),
    ]
    assert _run(evaluator, [(6, {})], keys=(OTHER,)) == []  # KEY forgotten by the windows
    assert _run(evaluator, [(7, {})], keys=(KEY, OTHER)) == []  # back without data: starts over, silent
    assert evaluator.snapshot()["slots"] == []


def test_resolution_for_lack_of_data_says_so() -> None:
    evaluator = RuleEvaluator(_ruleset(ERRORS), watchdog=NO_WATCHDOG)
    _run(evaluator, [(0, BAD)])
    events = evaluator.evaluate(T0_NS + MINUTE_NS, [KEY], lambda _k, _w: Fixed(SPARSE))
    assert [e.status for e in events] == ["resolved"]
    assert events[0].annotations["resolved_reason"] == "insufficient_data"
    assert evaluator.state("errors", KEY) is AlertState.INSUFFICIENT_DATA


def test_events_have_the_alertmanager_shape_and_event_times() -> None:
    rule = {
        **ERRORS,
        "for": "2m",
        "runbook_url": "https://runbooks.example/errors",
        "summary": "Errors {{ $value }} on {{ $labels.feature }}",
        "labels": {"team": "{{ $labels.service }}-oncall"},
    }
    evaluator = RuleEvaluator(_ruleset(rule), watchdog=NO_WATCHDOG)
    events = []
    for minute, figures in ((0, BAD), (2, BAD), (3, GOOD)):
        source = Fixed(figures)
        events += evaluator.evaluate(
            T0_NS + minute * MINUTE_NS + 500_000_000, [KEY], lambda _k, _w, s=source: s
        )
    pending, firing, resolved = events
    assert [e.status for e in events] == ["pending", "firing", "resolved"]
    assert firing.labels == {
        "alertname": "errors",
        "severity": "P1",
        "service": "checkout",
        "feature": "support-answer",
        "prompt_name": "answer",
        "prompt_version": "v1",
        "model": "gpt-4o-mini",
        "team": "checkout-oncall",
    }
    assert firing.annotations["summary"] == "Errors 0.5 on support-answer"
    assert firing.annotations["value"] == "0.5"
    assert firing.annotations["runbook_url"] == "https://runbooks.example/errors"
    assert firing.annotations["deployment"] == ""
    data = firing.to_dict()
    assert data["status"] == "firing"
    assert data["startsAt"] == "2026-01-01T00:00:00.500Z"  # active since the pending start
    assert data["endsAt"] == "0001-01-01T00:00:00Z"
    assert data["eventTime"] == "2026-01-01T00:02:00.500Z"
    assert data["fingerprint"] == pending.fingerprint == resolved.fingerprint
    assert json.loads(json.dumps(data)) == data
    assert resolved.to_dict()["endsAt"] == "2026-01-01T00:03:00.500Z"
    assert resolved.to_alertmanager()["endsAt"] == "2026-01-01T00:03:00.500Z"
    lease = firing.to_alertmanager(ends_at_ns=T0_NS + 6 * MINUTE_NS)
    assert lease["endsAt"] == "2026-01-01T00:06:00Z"
    assert "deployment" not in lease["annotations"]  # empty annotations are not sent


def test_fingerprint_matches_alertmanager() -> None:
    # Reference values from prometheus/common model tests (labelSetToFingerprint).
    assert fingerprint({}) == f"{14695981039346656037:016x}"
    assert (
        fingerprint({"name": "garland, briggs", "fear": "love is not enough"})
        == f"{5799056148416392346:016x}"
    )
    assert fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_format_time() -> None:
    assert format_time(T0_NS) == "2026-01-01T00:00:00Z"
    assert format_time(T0_NS + 1_234_567_890) == "2026-01-01T00:00:01.234Z"


QUALITY = [
    {"name": "faith-p1", "condition": "eval_mean{faithfulness} < 0.65", "severity": "P1", "group": "quality"},
    {"name": "faith-p2", "condition": "eval_mean{faithfulness} < 0.75", "severity": "P2", "group": "quality"},
    {
        "name": "halluc-p2",
        "condition": "eval_fail_rate{hallucination} > 0.2",
        "severity": "P2",
        "group": "quality",
    },
    {"name": "errors", "condition": "error_rate > 0.05", "severity": "P3"},
]


def _firing(evaluator: RuleEvaluator) -> dict[str, bool]:
    return {e.rule: e.inhibited for e in evaluator.active_alerts() if e.status == "firing"}


def test_most_severe_alert_of_a_group_inhibits_the_rest() -> None:
    evaluator = RuleEvaluator(_ruleset(*QUALITY), watchdog=NO_WATCHDOG)
    mild = {
        "eval_mean{faithfulness}": (0.70, 50),
        "eval_fail_rate{hallucination}": (0.3, 50),
        "error_rate": (0.1, 50),
    }
    severe = {**mild, "eval_mean{faithfulness}": (0.5, 50)}

    events = evaluator.evaluate(T0_NS, [KEY], lambda _k, _w: Fixed(mild))
    assert {(e.rule, e.status, e.inhibited) for e in events} == {
        ("faith-p2", "firing", False),
        ("halluc-p2", "firing", False),
        ("errors", "firing", False),
    }
    events = evaluator.evaluate(T0_NS + MINUTE_NS, [KEY], lambda _k, _w: Fixed(severe))
    assert {(e.rule, e.status, e.inhibited, e.inhibited_by) for e in events} == {
        ("faith-p1", "firing", False, ""),
        ("faith-p2", "firing", True, "faith-p1"),
        ("halluc-p2", "firing", True, "faith-p1"),
    }
    assert _firing(evaluator) == {"faith-p1": False, "faith-p2": True, "halluc-p2": True, "errors": False}
    group_keys = {e.group_key for e in evaluator.active_alerts() if e.rule != "errors"}
    assert len(group_keys) == 1
    assert group_keys != {""}

    events = evaluator.evaluate(T0_NS + 2 * MINUTE_NS, [KEY], lambda _k, _w: Fixed(mild))
    assert {(e.rule, e.status, e.inhibited) for e in events} == {
        ("faith-p1", "resolved", False),
        ("faith-p2", "firing", False),
        ("halluc-p2", "firing", False),
    }


def test_groups_are_per_series() -> None:
    evaluator = RuleEvaluator(_ruleset(*QUALITY[:2]), watchdog=NO_WATCHDOG)
    figures = {
        KEY: Fixed({"eval_mean{faithfulness}": (0.5, 50)}),
        OTHER: Fixed({"eval_mean{faithfulness}": (0.7, 50)}),
    }
    events = evaluator.evaluate(T0_NS, [KEY, OTHER], lambda key, _w: figures[key])
    assert {(e.series, e.rule, e.inhibited) for e in events} == {
        (KEY, "faith-p1", False),
        (KEY, "faith-p2", True),
        (OTHER, "faith-p2", False),
    }


def test_scope_limits_the_series_evaluated() -> None:
    rule = {**ERRORS, "scope": {"feature": "search"}}
    evaluator = RuleEvaluator(_ruleset(rule), watchdog=NO_WATCHDOG)
    events = evaluator.evaluate(T0_NS, [KEY, OTHER], lambda _k, _w: Fixed(BAD))
    assert [(e.series, e.status) for e in events] == [(OTHER, "firing")]


def test_event_time_must_not_go_backwards() -> None:
    evaluator = RuleEvaluator(_ruleset(ERRORS), watchdog=NO_WATCHDOG)
    evaluator.evaluate(T0_NS, [KEY], lambda _k, _w: Fixed(GOOD))
    with pytest.raises(ValueError, match="backwards"):
        evaluator.evaluate(T0_NS - 1, [KEY], lambda _k, _w: Fixed(GOOD))


def test_snapshot_and_restore_continue_where_it_left_off() -> None:
    ruleset = _ruleset({**ERRORS, "for": "10m"})
    first = RuleEvaluator(ruleset, watchdog=NO_WATCHDOG)
    assert _run(first, [(0, BAD), (4, BAD)]) == [(0, "errors", "pending")]
    saved = json.loads(json.dumps(first.snapshot()))
    second = RuleEvaluator(ruleset, watchdog=NO_WATCHDOG)
    second.restore(saved)
    assert _run(second, [(9, BAD), (10, BAD)]) == [(10, "errors", "firing")]
    assert second.active_alerts()[0].starts_at_ns == T0_NS
    other_rules = RuleEvaluator(_ruleset({**ERRORS, "name": "renamed"}), watchdog=NO_WATCHDOG)
    other_rules.restore(saved)
    assert other_rules.active_alerts() == []


# --- through a real WindowEngine ---------------------------------------------------------------------------


def _evaluate_engine(
    evaluator: RuleEvaluator, engine: WindowEngine, start_min: int, end_min: int, feed: dict[str, object]
) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for minute in range(start_min, end_min):
        t = T0_NS + minute * MINUTE_NS
        fill(engine, t, t + MINUTE_NS, **feed)  # type: ignore[arg-type]
        engine.advance_watermark(t + MINUTE_NS - 1)
        events += evaluator.evaluate(engine.now_ns, engine.series(), engine_metrics(engine))
    return events


def test_faithfulness_drop_pages_once_within_ten_minutes() -> None:
    engine = WindowEngine()
    evaluator = RuleEvaluator(load_default_rules())
    healthy = {"evaluations": {"faithfulness": 0.88}, "evaluate_every": 10}
    broken = {"evaluations": {"faithfulness": 0.55}, "evaluate_every": 10}
    before = _evaluate_engine(evaluator, engine, 0, 72, healthy)  # 1 call/s, 10% evaluated
    assert [e for e in before if e.status in ("pending", "firing")] == []
    after = _evaluate_engine(evaluator, engine, 72, 100, broken)
    pages = [e for e in after if e.status == "firing" and e.severity in ("P0", "P1") and not e.inhibited]
    assert [e.rule for e in pages] == ["faithfulness-p1"]
    assert pages[0].at_ns <= T0_NS + 82 * MINUTE_NS  # within 10 minutes of the change
    assert pages[0].annotations["value"].startswith("0.5")
    others = {e.rule for e in after if e.status == "firing"} - {"faithfulness-p1"}
    assert others == {"faithfulness-p2"}
    assert all(e.inhibited for e in after if e.rule == "faithfulness-p2" and e.status == "firing")
    assert not any(e.rule.startswith(("error", "latency", "success")) for e in after if e.status == "firing")


def test_evaluation_outage_is_insufficient_data_not_an_alert() -> None:
    engine = WindowEngine()
    evaluator = RuleEvaluator(load_default_rules())
    sparse = {"every_s": 1.0, "evaluations": {"faithfulness": 0.2}, "evaluate_every": 1800}
    events = _evaluate_engine(evaluator, engine, 0, 120, sparse)
    assert not [e for e in events if e.status in ("pending", "firing")]
    assert evaluator.state("faithfulness-p1", KEY) is AlertState.INSUFFICIENT_DATA
    assert evaluator.state("faithfulness-p0", KEY) is AlertState.INSUFFICIENT_DATA
    assert evaluator.state("error-rate-critical", KEY) is AlertState.INACTIVE


def test_latency_regression_against_the_learned_baseline() -> None:
    engine = WindowEngine()
    evaluator = RuleEvaluator(load_default_rules())
    events = _evaluate_engine(evaluator, engine, 0, 90, {"every_s": 2.0, "duration_s": 1.0})
    assert not [e for e in events if e.status == "firing"]
    baseline = evaluator.baselines.value(
        KEY, next(iter(load_default_rules().by_name("latency-p95-2x").metrics))
    )
    assert baseline == pytest.approx(1.0, rel=0.05)
    events = _evaluate_engine(evaluator, engine, 90, 130, {"every_s": 2.0, "duration_s": 3.0})
    fired = {e.rule for e in events if e.status == "firing"}
    assert fired == {"latency-p95-2x", "latency-p95-1.5x"}
    # Frozen while the regression is reported: the slow latency did not become the new normal (the
    # period or two before the rule went pending nudged it, far from the regressed 3 s).
    learned = evaluator.baselines.value(
        KEY, next(iter(load_default_rules().by_name("latency-p95-2x").metrics))
    )
    assert learned is not None
    assert learned < 1.25
    firing = next(e for e in events if e.rule == "latency-p95-2x" and e.status == "firing")
    assert firing.annotations["baseline"].startswith("1")
    assert "baseline 1" in firing.annotations["summary"]


def test_watchdog_reports_a_busy_series_going_silent() -> None:
    engine = WindowEngine()
    evaluator = RuleEvaluator(_ruleset(ERRORS))
    events = _evaluate_engine(evaluator, engine, 0, 30, {})
    quiet: list[AlertEvent] = []
    for minute in range(30, 45):
        engine.advance_watermark(T0_NS + (minute + 1) * MINUTE_NS - 1)
        quiet += evaluator.evaluate(engine.now_ns, engine.series(), engine_metrics(engine))
    silent = [e for e in quiet if e.rule == SERIES_SILENT]
    assert [e.status for e in silent] == ["firing"]
    assert silent[0].at_ns == T0_NS + 35 * MINUTE_NS - 1  # the first whole 5-minute window without a call
    assert silent[0].labels["feature"] == "support-answer"
    events = _evaluate_engine(evaluator, engine, 45, 46, {})
    assert [(e.rule, e.status) for e in events if e.rule == SERIES_SILENT] == [(SERIES_SILENT, "resolved")]


def test_watchdog_ignores_series_that_were_never_busy() -> None:
    engine = WindowEngine()
    evaluator = RuleEvaluator(_ruleset(ERRORS), watchdog=WatchdogSettings(busy_calls=1000))
    _evaluate_engine(evaluator, engine, 0, 10, {})
    events = []
    for minute in range(10, 30):
        engine.advance_watermark(T0_NS + minute * MINUTE_NS)
        events += evaluator.evaluate(engine.now_ns, engine.series(), engine_metrics(engine))
    assert not [e for e in events if e.rule == SERIES_SILENT]


class _Shift:
    """A toy detector for the wiring test: alarms once a value falls below a fixed line."""

    def __init__(self, spec: DetectorSpec) -> None:
        self.line = spec.params.get("line", 0.8)
        self.seen = 0

    def update(self, value: float, samples: int, at_ns: int) -> bool | None:
        self.seen += 1
        return None if self.seen < 3 else value < self.line


def test_detector_rules_need_a_registered_detector() -> None:
    assert RuleEvaluator(load_default_rules()).unavailable_rules == ("quality-trend-p3",)
    rule = {
        "name": "trend",
        "detector": {"kind": "shift", "metric": "eval_mean{faithfulness}", "params": {"line": 0.8}},
        "severity": "P3",
        "min_samples": 5,
    }
    evaluator = RuleEvaluator(_ruleset(rule), detectors={"shift": _Shift}, watchdog=NO_WATCHDOG)
    assert evaluator.unavailable_rules == ()
    engine = WindowEngine()
    events = _evaluate_engine(evaluator, engine, 0, 20, {"evaluations": {"faithfulness": 0.9}})
    assert events == []  # learning (insufficient data, never reported), then in control: nothing to say
    assert evaluator.state("trend", KEY) is AlertState.INACTIVE
    events = _evaluate_engine(evaluator, engine, 20, 40, {"evaluations": {"faithfulness": 0.6}})
    assert [e.status for e in events] == ["firing"]
    # Learned at the first evaluation of the next baseline period (minute 25 began it; the minute-long
    # evaluation steps reach it at 26 - 1 ns).
    assert events[0].at_ns == T0_NS + 26 * MINUTE_NS - 1


def test_metric_source_factory_is_asked_per_series_and_window() -> None:
    asked: list[tuple[SeriesKey, str]] = []

    def factory(key: SeriesKey, window: str) -> MetricSource:
        asked.append((key, window))
        return WindowMetrics(None)

    rules = _ruleset(ERRORS, {**ERRORS, "name": "errors-1h", "window": "1h"})
    RuleEvaluator(rules, watchdog=NO_WATCHDOG).evaluate(T0_NS, [KEY], factory)
    assert sorted(set(asked)) == [(KEY, "15m"), (KEY, "1h"), (KEY, "5m")]
    assert len(asked) == len(set(asked))  # one source per (series, window) per evaluation


class _Signal:
    def __init__(self, direction: str) -> None:
        self.direction = direction


class _Chart:
    """A two-point warm-up, then a signal whenever a value leaves [0.8, 1.0]."""

    def __init__(self) -> None:
        self.points = 0

    @property
    def ready(self) -> bool:
        return self.points >= 2

    def update(self, value: float) -> _Signal | None:
        self.points += 1
        if not self.ready or 0.8 <= value <= 1.0:
            return None
        return _Signal("down" if value < 0.8 else "up")


@pytest.mark.parametrize(
    ("direction", "values", "expected"),
    [
        ("down", [0.9, 0.9, 0.9, 0.5, 1.5], [None, False, False, True, False]),
        ("up", [0.9, 0.9, 0.5, 1.5], [None, False, False, True]),
        ("both", [0.9, 0.9, 0.5, 1.5], [None, False, True, True]),
    ],
)
def test_chart_detector_alarms_in_the_bad_direction_only(
    direction: str, values: list[float], expected: list[bool | None]
) -> None:
    detector = ChartDetector(_Chart(), direction)
    assert [detector.update(v, 10, T0_NS) for v in values] == expected
