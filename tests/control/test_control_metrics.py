"""Kill switches, canary verdicts and rollback times as exposition lines: exact text, escaping, the pairing
rule and the bounds."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping

import pytest
from otel_llm_collector import control_metrics
from otel_llm_collector.canary import CanaryCollector, CanaryReport
from otel_llm_collector.control_metrics import (
    CanaryPair,
    canary_lines,
    canary_metric_lines,
    canary_pairs,
    kill_switch_lines,
    rollback_lines,
    serving_calls,
)
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.rollback import Decision
from otel_llm_collector.switches import Switch
from otel_llm_collector.windows import WindowEngine

T0 = 1_800_000_000 * 1_000_000_000
SECOND_NS = 1_000_000_000


def _switch(service: str, feature: str, kind: str, *, enabled: bool = True) -> Switch:
    return Switch(service, feature, kind, None, enabled, 1_800_000_000.0, "ops", "")  # type: ignore[arg-type]


def _report(group: str, baseline: str, candidate: str, verdict: str, score: float | None) -> CanaryReport:
    return CanaryReport(group, baseline, candidate, verdict, score, ())  # type: ignore[arg-type]


def test_exports() -> None:
    assert control_metrics.__all__ == [
        "CANARY_VERDICTS",
        "MAX_CANARY_PAIRS",
        "MAX_ROLLBACK_SERIES",
        "SERVING_WINDOW",
        "CanaryPair",
        "canary_lines",
        "canary_metric_lines",
        "canary_pairs",
        "kill_switch_lines",
        "rollback_lines",
        "serving_calls",
    ]
    assert all(hasattr(control_metrics, name) for name in control_metrics.__all__)


# --- kill switches --------------------------------------------------------------------------------------
def test_kill_switch_lines_one_sample_per_switch_one_when_enabled_zero_when_off() -> None:
    lines = kill_switch_lines(
        [
            _switch("checkout", "*", "disable_tools"),
            _switch("checkout", "chat", "downgrade_model", enabled=False),
        ]
    )
    assert lines == [
        "# HELP otel_llm_kill_switch_active Kill switch state by service, feature (* for all) and switch "
        "kind: 1 enabled, 0 switched off.",
        "# TYPE otel_llm_kill_switch_active gauge",
        'otel_llm_kill_switch_active{service="checkout",feature="*",switch="disable_tools"} 1',
        'otel_llm_kill_switch_active{service="checkout",feature="chat",switch="downgrade_model"} 0',
    ]


def test_kill_switch_label_values_are_escaped() -> None:
    [*_, sample] = kill_switch_lines([_switch('shop "eu"', "a\\b\nc", "disable_retrieval")])
    assert sample == (
        'otel_llm_kill_switch_active{service="shop \\"eu\\"",feature="a\\\\b\\nc",'
        'switch="disable_retrieval"} 1'
    )


def test_no_switches_no_family() -> None:
    assert kill_switch_lines([]) == []


# --- canary lines ---------------------------------------------------------------------------------------
def test_canary_lines_score_and_one_hot_verdict() -> None:
    lines = canary_lines(
        [_report("answer", "1.0.0", "2.0.0", "fail", 50.0), _report("answer", "1.0.0", "3.0.0", "pass", 100)],
        omitted=2,
    )
    pair = 'prompt_name="answer",baseline="1.0.0",candidate="2.0.0"'
    other = 'prompt_name="answer",baseline="1.0.0",candidate="3.0.0"'
    assert lines == [
        "# HELP otel_llm_canary_score Canary score of the candidate against the baseline: 100 * passing / "
        "conclusive metrics.",
        "# TYPE otel_llm_canary_score gauge",
        f"otel_llm_canary_score{{{pair}}} 50.0",
        f"otel_llm_canary_score{{{other}}} 100.0",
        "# HELP otel_llm_canary_verdict Canary verdict of the candidate against the baseline: 1 for the "
        "current verdict, 0 otherwise.",
        "# TYPE otel_llm_canary_verdict gauge",
        f'otel_llm_canary_verdict{{{pair},verdict="pass"}} 0',
        f'otel_llm_canary_verdict{{{pair},verdict="marginal"}} 0',
        f'otel_llm_canary_verdict{{{pair},verdict="fail"}} 1',
        f'otel_llm_canary_verdict{{{pair},verdict="inconclusive"}} 0',
        f'otel_llm_canary_verdict{{{other},verdict="pass"}} 1',
        f'otel_llm_canary_verdict{{{other},verdict="marginal"}} 0',
        f'otel_llm_canary_verdict{{{other},verdict="fail"}} 0',
        f'otel_llm_canary_verdict{{{other},verdict="inconclusive"}} 0',
        "# HELP otel_llm_canary_pairs_omitted Canary pairs not compared on this scrape because of the pair "
        "limit.",
        "# TYPE otel_llm_canary_pairs_omitted gauge",
        "otel_llm_canary_pairs_omitted 2",
    ]


def test_an_inconclusive_canary_has_a_verdict_but_no_score_and_labels_are_escaped() -> None:
    lines = canary_lines([_report('say "hi"', "v\\1", "v2", "inconclusive", None)])
    assert not any(line.startswith("otel_llm_canary_score") for line in lines)
    pair = 'prompt_name="say \\"hi\\"",baseline="v\\\\1",candidate="v2"'
    assert f'otel_llm_canary_verdict{{{pair},verdict="inconclusive"}} 1' in lines
    assert f'otel_llm_canary_verdict{{{pair},verdict="pass"}} 0' in lines
    assert lines[-1] == "otel_llm_canary_pairs_omitted 0"


def test_without_reports_only_the_omitted_gauge() -> None:
    assert canary_lines([]) == [
        "# HELP otel_llm_canary_pairs_omitted Canary pairs not compared on this scrape because of the pair "
        "limit.",
        "# TYPE otel_llm_canary_pairs_omitted gauge",
        "otel_llm_canary_pairs_omitted 0",
    ]


# --- pairing ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("serving", "active", "expected"),
    [
        # the registry's active version is the baseline when it serves, even with the smaller share
        ({"answer": {"1.0.0": 10, "2.0.0": 90}}, {"answer": "1.0.0"}, [("answer", "1.0.0", "2.0.0")]),
        # otherwise the version serving the most calls
        ({"answer": {"1.0.0": 10, "2.0.0": 90}}, {}, [("answer", "2.0.0", "1.0.0")]),
        ({"answer": {"1.0.0": 10, "2.0.0": 90}}, {"answer": "3.0.0"}, [("answer", "2.0.0", "1.0.0")]),
        # a tie goes to the lower version string
        ({"answer": {"b": 5, "a": 5}}, {}, [("answer", "a", "b")]),
        # every other serving version is a candidate, in version order
        (
            {"answer": {"v3": 1, "v1": 50, "v2": 2}},
            {},
            [("answer", "v1", "v2"), ("answer", "v1", "v3")],
        ),
        # one serving version (or one with calls) is no canary
        ({"answer": {"1.0.0": 10}, "plan": {"a": 3, "b": 0}}, {}, []),
    ],
)
def test_canary_pairs(
    serving: Mapping[str, Mapping[str, int]], active: Mapping[str, str], expected: list[tuple[str, str, str]]
) -> None:
    assert canary_pairs(serving, active) == ([CanaryPair(*p) for p in expected], 0)


def test_canary_pairs_are_bounded_and_the_rest_counted() -> None:
    serving = {f"p{i}": {"a": 2, "b": 1, "c": 1} for i in range(3)}
    pairs, omitted = canary_pairs(serving, {}, max_pairs=4)
    assert pairs == [
        CanaryPair("p0", "a", "b"),
        CanaryPair("p0", "a", "c"),
        CanaryPair("p1", "a", "b"),
        CanaryPair("p1", "a", "c"),
    ]
    assert omitted == 2


# --- from the engine and the canary samples ------------------------------------------------------------
def _calls(version: str, n: int, *, error_every: int, faithfulness: float, seed: int) -> list[CallRecord]:
    rng = random.Random(seed)
    series = SeriesKey("support-bot", "support-answer", "answer", version, "gpt-4o-mini")
    calls = []
    for i in range(n):
        end = T0 + i * SECOND_NS
        score = round(min(1.0, max(0.0, rng.gauss(faithfulness, 0.05))), 3)
        calls.append(
            CallRecord(
                series,
                end,
                rng.lognormvariate(0.0, 0.2),
                f"{version}-{i}",
                f"{i}",
                error_type="500" if i % error_every == 0 else "",
                evaluations=(EvaluationRecord("faithfulness", end, score, label="pass"),),
            )
        )
    return calls


def _feed(*batches: list[CallRecord]) -> tuple[WindowEngine, CanaryCollector]:
    engine, canary = WindowEngine(), CanaryCollector()
    for calls in batches:
        engine.apply_calls(calls)
        canary.observe_calls(calls)
    return engine, canary


def test_canary_metric_lines_judge_the_smaller_share_against_the_larger() -> None:
    baseline = _calls("1.0.0", 400, error_every=100, faithfulness=0.88, seed=1)
    candidate = _calls("2.0.0", 100, error_every=3, faithfulness=0.5, seed=2)
    engine, canary = _feed(baseline, candidate)
    assert serving_calls(engine, ["answer"]) == {"answer": {"1.0.0": 400, "2.0.0": 100}}
    asked: list[bool] = []

    def active() -> dict[str, str]:
        asked.append(True)
        return {}

    lines = canary_metric_lines(canary, engine, active_versions=active)
    pair = 'prompt_name="answer",baseline="1.0.0",candidate="2.0.0"'
    report = canary.compare("answer", baseline="1.0.0", candidate="2.0.0")
    assert report is not None
    assert report.verdict == "fail"
    assert report.score is not None
    assert f"otel_llm_canary_score{{{pair}}} {report.score!r}" in lines
    assert f'otel_llm_canary_verdict{{{pair},verdict="fail"}} 1' in lines
    assert asked == [True]


def test_the_registry_active_version_is_the_baseline() -> None:
    engine, canary = _feed(
        _calls("1.0.0", 400, error_every=100, faithfulness=0.88, seed=1),
        _calls("2.0.0", 100, error_every=100, faithfulness=0.88, seed=2),
    )
    lines = canary_metric_lines(canary, engine, active_versions=lambda: {"answer": "2.0.0"})
    assert (
        'otel_llm_canary_verdict{prompt_name="answer",baseline="2.0.0",candidate="1.0.0",verdict="pass"} 1'
        in (lines)
    )


def test_one_version_serving_is_no_canary_and_the_registry_is_not_read() -> None:
    engine, canary = _feed(_calls("1.0.0", 50, error_every=10, faithfulness=0.9, seed=1))

    def active() -> dict[str, str]:
        raise AssertionError("the registry is read only when two versions serve")

    assert canary_metric_lines(canary, engine, active_versions=active) == canary_lines([])


def test_a_version_gone_from_the_serving_window_is_no_longer_compared() -> None:
    old = _calls("1.0.0", 100, error_every=10, faithfulness=0.9, seed=1)
    later = [
        dataclasses.replace(call, end_time_ns=call.end_time_ns + 2 * 3600 * SECOND_NS)
        for call in _calls("2.0.0", 100, error_every=10, faithfulness=0.9, seed=2)
    ]
    engine, canary = _feed(old, later)
    assert serving_calls(engine, ["answer"]) == {"answer": {"2.0.0": 100}}
    assert canary.versions("answer") == ["1.0.0", "2.0.0"]
    assert canary_metric_lines(canary, engine, active_versions=dict) == canary_lines([])


def test_only_prompt_version_canaries() -> None:
    with pytest.raises(ValueError, match="prompt versions only"):
        canary_metric_lines(CanaryCollector(dimension="model"), WindowEngine(), active_versions=dict)


# --- rollback times -------------------------------------------------------------------------------------
ROLLBACK_HELP = [
    "# HELP otel_llm_rollback_timestamp_seconds Event time (Unix seconds) of the latest automatic rollback "
    "decision by prompt, versions and outcome.",
    "# TYPE otel_llm_rollback_timestamp_seconds gauge",
]


def _decision(prompt: str, at_ns: int, from_version: str, to_version: str, outcome: str) -> Decision:
    return Decision(
        prompt=prompt,
        at_ns=at_ns,
        alert="error-rate-rollback",
        from_version=from_version,
        to_version=to_version,
        outcome=outcome,
    )


def test_rollback_lines_one_sample_per_label_set_with_the_time_of_its_latest_decision() -> None:
    lines = rollback_lines(
        [
            _decision("answer", T0, "2.0.0", "1.0.0", "rolled_back"),
            _decision("answer", T0 + 60_500_000_000, "2.0.0", "1.0.0", "refused"),
            _decision("plan", T0 + 100 * SECOND_NS, "b", "", "refused"),
            _decision("answer", T0 + 3600 * SECOND_NS + 250_000_000, "2.0.0", "1.0.0", "rolled_back"),
        ]
    )
    assert lines == [
        *ROLLBACK_HELP,
        'otel_llm_rollback_timestamp_seconds{prompt_name="answer",from_version="2.0.0",to_version="1.0.0",'
        'outcome="refused"} 1800000060.5',
        'otel_llm_rollback_timestamp_seconds{prompt_name="plan",from_version="b",to_version="",'
        'outcome="refused"} 1800000100',
        'otel_llm_rollback_timestamp_seconds{prompt_name="answer",from_version="2.0.0",to_version="1.0.0",'
        'outcome="rolled_back"} 1800003600.25',
    ]


@pytest.mark.parametrize(
    ("at_ns", "value"),
    [
        (T0, "1800000000"),
        (T0 + 123_000_000, "1800000000.123"),
        (T0 + 1, "1800000000.000000001"),
        (T0 + 999_999_999, "1800000000.999999999"),
        (0, "0"),
        (-1_500_000_000, "-1.5"),
    ],
)
def test_rollback_times_are_exact_decimal_seconds(at_ns: int, value: str) -> None:
    [*_, sample] = rollback_lines([_decision("answer", at_ns, "2", "1", "dry_run")])
    assert sample.rsplit(" ", 1)[1] == value


def test_rollback_label_values_are_escaped() -> None:
    [*_, sample] = rollback_lines([_decision('say "hi"', T0, "v\\2", "v\n1", "failed")])
    assert sample == (
        'otel_llm_rollback_timestamp_seconds{prompt_name="say \\"hi\\"",from_version="v\\\\2",'
        'to_version="v\\n1",outcome="failed"} 1800000000'
    )


def test_rollback_lines_keep_the_most_recently_decided_label_sets() -> None:
    decisions = [_decision(f"p{i}", T0 + i * SECOND_NS, "2", "1", "rolled_back") for i in range(60)]
    decisions.append(_decision("p3", T0 + 100 * SECOND_NS, "2", "1", "rolled_back"))  # p3 again, last
    lines = rollback_lines(decisions)
    samples = lines[2:]
    assert len(samples) == control_metrics.MAX_ROLLBACK_SERIES == 50
    prompts = [line.split('"', 2)[1] for line in samples]
    assert prompts == [f"p{i}" for i in range(11, 60)] + ["p3"]
    assert samples[-1].endswith(" 1800000100")
    assert rollback_lines(decisions, max_series=2)[2:] == samples[-2:]
    assert rollback_lines(decisions, max_series=0) == []


def test_no_decisions_no_family() -> None:
    assert rollback_lines([]) == []
