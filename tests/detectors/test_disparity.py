"""Quality by segment: a disparity between segment values pages P2; equal or sparse segments stay quiet."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import pytest
from otel_llm_collector import scenarios
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.disparity import ALERTNAME, OTHER_VALUE, DisparitySettings, DisparityTracker
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.rules import load_default_rules
from otel_llm_collector.scenarios import Scenario, Segment, at, constant
from otel_llm_collector.testing import SECOND_NS, T0_NS
from otel_llm_collector.windows import MINUTE_NS, WindowEngine


def _run(scenario: Scenario, tracker: DisparityTracker) -> tuple[list[AlertEvent], list[AlertEvent]]:
    """Replay through the real pipeline with the default rules; the tracker wired as the collector would
    wire it: fed every decode result, evaluated on the pipeline's event-time ticks."""
    rule_events: list[AlertEvent] = []
    engine = WindowEngine()
    tracker.join = engine.join
    disparity_events: list[AlertEvent] = []

    def tick(at_ns: int) -> list[AlertEvent]:
        found = tracker.evaluate(at_ns)
        disparity_events.extend(found)
        return found

    pipeline = Pipeline(
        engine, build_evaluator(load_default_rules()), on_events=rule_events.extend, on_tick=tick
    )
    for request in scenario.requests():
        result = decode_traces(request)
        tracker.observe(result)
        pipeline.apply(result)
    return disparity_events, [e for e in rule_events if e.rule != "segment-disparity"]


def test_fires_on_the_generated_disparity_and_resolves_after_the_fix() -> None:
    scenario = scenarios.segment_disparity()
    healthy = scenario.phases[0]
    repaired = dataclasses.replace(healthy, start_ns=at(11, 0))
    fixed = dataclasses.replace(scenario, phases=(*scenario.phases, repaired), end_ns=at(12, 45))
    events, rule_events = _run(fixed, DisparityTracker())

    firing = [e for e in events if e.status == "firing"]
    assert [(e.labels["segment"], e.labels["segment_value"], e.labels["evaluation"]) for e in firing] == [
        ("locale", "de", "faithfulness")
    ]
    (page,) = firing
    assert scenario.expectations["segment"] == ("locale", "de")
    assert at(10, 0) < page.at_ns <= scenario.expectations["fire_by_ns"]  # type: ignore[operator]
    assert page.labels["alertname"] == ALERTNAME
    assert page.severity == page.labels["severity"] == "P2"
    assert (page.labels["service"], page.labels["feature"]) == ("support-bot", "support-answer")
    pending = next(e for e in events if e.status == "pending")
    assert page.at_ns - pending.at_ns == 10 * MINUTE_NS  # for: 10m
    assert page.starts_at_ns == pending.at_ns
    notes = page.annotations
    assert float(notes["segment_pass_rate"]) < 0.9
    assert float(notes["rest_pass_rate"]) > 0.99
    assert float(notes["difference"]) == pytest.approx(
        float(notes["segment_pass_rate"]) - float(notes["rest_pass_rate"]), abs=1e-3
    )
    assert float(notes["difference_high"]) < -0.1
    assert float(notes["p_value"]) < 0.01 / 4
    assert int(notes["segment_samples"]) >= 30
    assert int(notes["rest_samples"]) > int(notes["segment_samples"])
    assert float(notes["segment_score_mean"]) < float(notes["rest_score_mean"])
    assert "locale=de" in notes["summary"]
    assert notes["window"] == "1h"
    json.dumps(page.to_dict())  # the Alertmanager shape, serialisable

    (resolved,) = [e for e in events if e.status == "resolved"]
    assert resolved.labels == page.labels
    assert at(11, 50) < resolved.at_ns < at(12, 30)  # the bad hour leaves the window, then 10m of quiet
    assert resolved.ends_at_ns == resolved.at_ns

    # The threshold rules do not see it: the feature's mean faithfulness stays above every threshold (only
    # the P3 trend detector may notice the step in the mean, without naming a segment).
    assert not [e for e in rule_events if e.status == "firing" and e.rule.startswith("faithfulness")]
    assert not [e for e in rule_events if e.status == "firing" and e.severity in ("P0", "P1")]


def test_quiet_on_equal_segments_even_near_the_pass_threshold() -> None:
    # Every locale at faithfulness 0.70 (the label threshold): pass rates near 50%, the noisiest case.
    base = scenarios.segment_disparity().phases[0]
    noisy = dataclasses.replace(base, faithfulness=constant(0.70))
    scenario = Scenario(name="equal_segments", phases=(noisy,), end_ns=at(11, 0), seed=41)
    tracker = DisparityTracker()
    events, _ = _run(scenario, tracker)
    assert events == []
    figures = {f.value: f for f in tracker.figures() if f.evaluation == "faithfulness"}
    assert set(figures) == {"en", "de", "fr", "es"}
    assert all(0.35 < f.pass_rate < 0.65 for f in figures.values())
    assert all(f.p_value is not None for f in figures.values())  # tested, and found nothing


KEY = SeriesKey("shop", "support", "answer", "v1", "gpt-4o-mini")


def _call(
    n: int, t_ns: int, segments: tuple[tuple[str, str], ...], *evaluations: EvaluationRecord
) -> CallRecord:
    return CallRecord(
        series=KEY,
        end_time_ns=t_ns,
        duration_s=1.0,
        trace_id="ab" * 16,
        span_id=f"{n:016x}",
        response_id=f"r-{n}",
        segments=segments,
        evaluations=evaluations,
    )


def _result(
    n: int, t_ns: int, passed: bool, *, name: str = "faithfulness", label: bool = True
) -> EvaluationRecord:
    return EvaluationRecord(
        name,
        t_ns,
        0.9 if passed else 0.3,
        label=("pass" if passed else "fail") if label else "",
        trace_id="ab" * 16,
        span_id=f"{n:016x}",
        response_id=f"r-{n}",
    )


def _traffic(
    tier_fail: dict[str, tuple[int, int]], *, start_ns: int = T0_NS, first: int = 0
) -> list[CallRecord]:
    """Calls with span-event evaluations: per tier (failed, passed) counts, spread over ten minutes."""
    calls: list[CallRecord] = []
    n = first
    for tier, (failed, passed) in tier_fail.items():
        for i in range(failed + passed):
            t = start_ns + (i * 10 * MINUTE_NS) // (failed + passed)
            calls.append(_call(n, t, (("tier", tier),), _result(n, t, i >= failed)))
            n += 1
    return calls


def test_too_few_samples_is_quiet_until_the_guard_is_met() -> None:
    tracker = DisparityTracker(DisparitySettings(for_seconds=0))
    # Enterprise fails every answer, but only 20 answers were judged: below min_samples (30).
    tracker.observe(DecodeResult(calls=tuple(_traffic({"free": (5, 495), "enterprise": (20, 0)}))))
    assert tracker.evaluate(T0_NS + 11 * MINUTE_NS) == []
    (sparse,) = [f for f in tracker.figures() if f.value == "enterprise"]
    assert (sparse.samples, sparse.p_value, sparse.flagged) == (20, None, False)
    assert sparse.difference == pytest.approx(-0.99)
    # Ten more judged answers meet the guard, and the same gap now fires.
    more = _traffic({"enterprise": (10, 0)}, start_ns=T0_NS + 11 * MINUTE_NS, first=1000)
    tracker.observe(DecodeResult(calls=tuple(more)))
    (event,) = tracker.evaluate(T0_NS + 22 * MINUTE_NS)
    assert (event.status, event.labels["segment_value"], event.annotations["segment_samples"]) == (
        "firing",
        "enterprise",
        "30",
    )


def test_a_small_gap_is_not_worth_an_alert_however_significant() -> None:
    tracker = DisparityTracker(DisparitySettings(for_seconds=0))
    # 92% against 99.5% over thousands of samples: highly significant, but under the 10-point minimum.
    tracker.observe(DecodeResult(calls=tuple(_traffic({"a": (40, 460), "b": (10, 1990)}))))
    assert tracker.evaluate(T0_NS + 11 * MINUTE_NS) == []
    (a,) = [f for f in tracker.figures() if f.value == "a"]
    assert a.p_value is not None
    assert a.threshold is not None
    assert a.p_value < a.threshold
    assert not a.flagged
    loose = DisparityTracker(DisparitySettings(for_seconds=0, min_difference=0.05))
    loose.observe(DecodeResult(calls=tuple(_traffic({"a": (40, 460), "b": (10, 1990)}))))
    assert [e.labels["segment_value"] for e in loose.evaluate(T0_NS + 11 * MINUTE_NS)] == ["a"]


def test_cardinality_bound_folds_values_into_other_and_never_alerts_on_it() -> None:
    tracker = DisparityTracker(DisparitySettings(for_seconds=0, max_values_per_segment=3))
    # Ten tenants; the seven that arrive last are all bad, but they fold into `__other__`.
    counts = {f"t{i}": (0, 100) for i in range(3)} | {f"t{i}": (100, 0) for i in range(3, 10)}
    tracker.observe(DecodeResult(calls=tuple(_traffic(counts))))
    assert tracker.evaluate(T0_NS + 11 * MINUTE_NS) == []
    values = {f.value: f for f in tracker.figures()}
    assert set(values) == {"t0", "t1", "t2", OTHER_VALUE}
    assert values[OTHER_VALUE].samples == 700
    assert values[OTHER_VALUE].pass_rate == 0.0
    assert values[OTHER_VALUE].p_value is None  # not tested: not one segment
    assert tracker.records["other"] == 700
    text = tracker.metrics_text()
    assert len(re.findall(r"^otel_llm_segment_quality\{", text, re.MULTILINE)) == 4
    assert 'segment_value="t9"' not in text
    assert 'otel_llm_segment_records_total{outcome="other"} 700' in text


def test_cell_bound_drops_and_counts_what_does_not_fit() -> None:
    tracker = DisparityTracker(DisparitySettings(max_cells=2))
    tracker.observe(DecodeResult(calls=tuple(_traffic({"a": (0, 10), "b": (0, 10), "c": (0, 10)}))))
    assert {f.value for f in tracker.figures(T0_NS + 11 * MINUTE_NS)} == {"a", "b"}
    assert tracker.records["dropped_cells"] == 10
    assert tracker.records["counted"] == 20


def test_log_record_evaluations_join_their_calls_segments_in_either_order() -> None:
    engine = WindowEngine()
    tracker = DisparityTracker(join=engine.join)
    t = T0_NS + 5 * SECOND_NS
    segmented = [_call(i, t, (("locale", "de"), ("tier", "pro"))) for i in range(3)]
    plain = dataclasses.replace(_call(9, t, ()), span_id=f"{9:016x}")
    early = DecodeResult(evaluations=(_result(0, t + 1, False),))  # before its call
    tracker.observe(early)
    engine.apply(early)
    calls = DecodeResult(calls=(*segmented, plain))
    tracker.observe(calls)
    engine.apply(calls)
    late = DecodeResult(
        evaluations=(
            _result(1, t + 2, True),
            _result(2, t + 3, True, label=False),  # no label: not counted
            _result(9, t + 4, False),  # a call without segments, known to the windows: skipped
            _result(77, t + 5, False),  # a call never seen: waits, then given up
        )
    )
    tracker.observe(late)
    engine.apply(late)
    figures = {(f.segment, f.value): (f.samples, f.pass_rate) for f in tracker.figures(T0_NS + MINUTE_NS)}
    assert figures == {("locale", "de"): (2, 0.5), ("tier", "pro"): (2, 0.5)}
    assert tracker.records["unlabelled"] == 1
    assert tracker.records["unmatched"] == 0
    tracker.evaluate(T0_NS + 10 * MINUTE_NS)  # past the 5-minute pending limit
    assert tracker.records["unmatched"] == 1


def test_metrics_text_has_the_figures_escaped() -> None:
    tracker = DisparityTracker(DisparitySettings(min_samples=5))
    tracker.observe(DecodeResult(calls=tuple(_traffic({'de "CH"': (5, 5), "fr": (0, 10)}))))
    text = tracker.metrics_text(T0_NS + 11 * MINUTE_NS)
    labels = (
        'service="shop",feature="support",evaluation="faithfulness",segment="tier",'
        'segment_value="de \\"CH\\""'
    )
    assert f"otel_llm_segment_quality{{{labels}}} 0.5\n" in text
    assert f"otel_llm_segment_samples{{{labels}}} 10\n" in text
    assert f"otel_llm_segment_disparity{{{labels}}} -0.5\n" in text
    assert re.search(rf"otel_llm_segment_disparity_p_value\{{{re.escape(labels)}\}} 0\.00\d+", text)
    assert "# TYPE otel_llm_segment_records_total counter" in text
    assert text.count("# TYPE otel_llm_segment_quality gauge") == 1


def test_pending_that_clears_goes_inactive_and_time_cannot_go_back() -> None:
    tracker = DisparityTracker(DisparitySettings(window_seconds=600))
    tracker.observe(DecodeResult(calls=tuple(_traffic({"a": (40, 0), "b": (0, 100)}))))
    (pending,) = tracker.evaluate(T0_NS + 10 * MINUTE_NS)
    assert pending.status == "pending"
    assert tracker.active()[0][1:] == ("pending", T0_NS + 10 * MINUTE_NS)
    (cleared,) = tracker.evaluate(T0_NS + 25 * MINUTE_NS)  # the window emptied before `for` elapsed
    assert cleared.status == "inactive"
    assert tracker.active() == []
    with pytest.raises(ValueError, match="backwards"):
        tracker.evaluate(T0_NS)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"window_seconds": 90}, "window_seconds"),
        ({"confidence": 1.0}, "confidence"),
        ({"min_difference": -0.1}, "min_difference"),
        ({"min_samples": 0}, "min_samples"),
        ({"max_cells": 0}, "max_cells"),
        ({"for_seconds": -1}, "for_seconds"),
    ],
)
def test_settings_are_validated_naming_the_setting(settings: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        DisparitySettings(**settings)  # type: ignore[arg-type]


def test_segment_support_leaves_the_other_scenarios_byte_for_byte() -> None:
    # A segment is drawn only in phases that have segments, so existing scenarios generate the same traffic
    # (the digest was taken before segments existed).
    digest = hashlib.sha256()
    for request in scenarios.refusal_spike().requests():
        digest.update(request.SerializeToString(deterministic=True))
    assert digest.hexdigest() == "a7ede61bd2aace8ecdd2828d98f52a9b46ef7659676c63812293136655ae26d1"
    segmented = next(scenarios.segment_disparity().requests())
    values = {
        kv.value.string_value
        for rs in segmented.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
        for kv in sp.attributes
        if kv.key == "otel_llm.segment.locale"
    }
    assert values == {"en", "de", "fr", "es"}
    assert scenarios.SUITE["segment_disparity"] is scenarios.segment_disparity
    assert Segment("x", 1.0).faithfulness is None
