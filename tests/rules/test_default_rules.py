"""The shipped default rules: load, cover the severity matrix, and guard every rule with samples and time."""

from __future__ import annotations

import pytest
from otel_llm_collector.conditions import MetricRef
from otel_llm_collector.rules import Rule, RuleSet, load_default_rules


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_default_rules()


def _condition_rules(rules: RuleSet, metric: MetricRef) -> list[Rule]:
    return [r for r in rules.rules if r.compiled is not None and metric in r.compiled.metrics]


@pytest.mark.parametrize(
    ("metric", "severity", "snippet"),
    [
        (MetricRef("eval_fail_rate_lower", "toxicity"), "P0", "> 1%"),
        (MetricRef("eval_mean", "faithfulness"), "P0", "< 0.40"),
        (MetricRef("eval_mean", "faithfulness"), "P1", "< 0.65"),
        (MetricRef("eval_fail_rate_lower", "hallucination"), "P1", "> 25%"),
        (MetricRef("eval_mean", "faithfulness"), "P2", "< 0.75"),
        (MetricRef("eval_mean", "answer_relevance"), "P2", "< 0.60"),
        (MetricRef("eval_mean", "user_feedback"), "P2", "< 0.50"),
        (MetricRef("error_rate"), "P1", "> 5%"),
        (MetricRef("error_rate"), "P2", "> 3%"),
        (MetricRef("success_rate"), "P2", "< 95%"),
        (MetricRef("latency_p95"), "P2", "baseline * 2"),
        (MetricRef("latency_p95"), "P3", "baseline * 1.5"),
    ],
)
def test_severity_matrix_is_covered(rules: RuleSet, metric: MetricRef, severity: str, snippet: str) -> None:
    matching = [r for r in _condition_rules(rules, metric) if r.severity == severity]
    assert any(r.condition is not None and snippet in r.condition for r in matching), matching


def test_trend_rule_uses_a_detector(rules: RuleSet) -> None:
    trend = [r for r in rules.rules if r.detector is not None]
    assert [(r.severity, r.detector.kind, r.detector.direction) for r in trend if r.detector] == [
        ("P3", "ewma", "down")
    ]


def test_every_rule_has_sample_guard_sustain_and_text(rules: RuleSet) -> None:
    for rule in rules.rules:
        assert rule.summary, rule.name
        assert rule.description, rule.name
        assert "alert" in rule.actions, rule.name
        if rule.name == "leak-p0":  # an exact count: one leak is an incident, no guard or sustain
            assert rule.condition == "eval_fail_count{leak} > 0"
            continue
        assert rule.min_samples >= (20 if rule.severity in ("P0", "P1") else 10), rule.name
        if rule.name != "toxicity-p0":  # one toxic burst is enough; its Wilson bound is the guard
            assert rule.for_seconds > 0, rule.name


def test_quality_rules_form_one_incident_group(rules: RuleSet) -> None:
    quality = {r.name for r in rules.rules if r.group == "quality"}
    assert {"faithfulness-p0", "faithfulness-p1", "hallucination-p1", "answer-relevance-p2"} <= quality
    assert rules.by_name("toxicity-p0").group != "quality"


def test_names_are_unique_and_stable(rules: RuleSet) -> None:
    names = [r.name for r in rules.rules]
    assert len(names) == len(set(names))
    assert "faithfulness-p1" in names


def _cache_traffic(cache_after: int) -> list[str]:
    """Five hours of 1 call/10 s reading 1000 cached tokens each, then from 10:30 `cache_after`; the
    default rules' firing alert names."""
    from otel_llm_collector.decode import decode_traces
    from otel_llm_collector.evaluator import build_evaluator
    from otel_llm_collector.pipeline import Pipeline
    from otel_llm_collector.scenarios import at
    from otel_llm_collector.testing import SECOND_NS, SpanRecorder
    from otel_llm_collector.windows import WindowEngine

    fired: list[str] = []
    pipeline = Pipeline(
        WindowEngine(),
        build_evaluator(load_default_rules()),
        on_events=lambda events: fired.extend(e.alertname for e in events if e.status == "firing"),
    )
    for minute in range(5 * 60):
        recorder = SpanRecorder(service="support-bot")
        for i in range(6):
            start = at(8, 0) + (minute * 60 + i * 10) * SECOND_NS
            cache = 1000 if minute < 150 else cache_after
            recorder.genai_span(
                start_ns=start,
                end_ns=start + SECOND_NS,
                cache_read_tokens=cache,
                response_id=f"r{minute}-{i}",
            )
        pipeline.apply(decode_traces(recorder.request()))
    return fired


def test_lost_prompt_caching_is_flagged_for_review_and_steady_caching_is_not() -> None:
    assert "cache-reads-drop-p3" in _cache_traffic(cache_after=100)
    assert "cache-reads-drop-p3" not in _cache_traffic(cache_after=1000)
