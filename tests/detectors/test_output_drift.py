"""Output drift: format, script, refusal and tool mixes against the day before; the two output evaluators."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import statistics
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from otel_llm_collector import scenarios
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.drift import DriftLevel
from otel_llm_collector.drift_monitor import HOUR_NS, OTHER, OUTPUT_SIGNALS, DriftMonitor, _NumericSample
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.replay import replay
from otel_llm_collector.rules import load_default_rules
from otel_llm_collector.scenarios import at
from otel_llm_collector.windows import WindowEngine

from otel_llm.evaluation_hook import LOCAL_EVALUATORS
from otel_llm.evaluators import EvaluationInput, EvaluationOutcome
from otel_llm.output_signals import SCRIPTS, output_format, output_script

# --- the evaluators ------------------------------------------------------------------------------------


def _answer(text: str, *, error_type: str | None = None) -> EvaluationInput:
    return EvaluationInput(
        request_messages=[{"role": "user", "content": "?"}], response_text=text, error_type=error_type
    )


@pytest.mark.parametrize(
    ("text", "label", "score"),
    [
        ('{"order_id": 42, "items": ["a", "b"]}', "json", 1.0),
        ('  [{"sku": "x-1"}, {"sku": "x-2"}]\n', "json", 1.0),
        ('```json\n{"order_id": 42}\n```', "json", 1.0),
        ("```JSON\n[1, 2]\n```\n", "json", 1.0),
        ('```\n{"order_id": 42}\n```', "json", 1.0),
        ('{"order_id": 42, "items": ["a", "b"]', "invalid_json", 0.0),
        ("{'order_id': 42}", "invalid_json", 0.0),
        ('```json\n{"order_id": 42,}\n```', "invalid_json", 0.0),
        ('```json\n{"order_id": 42}', "invalid_json", 0.0),
        ('```json\n{"order_id": 42}\n```\nHope this helps!', "invalid_json", 0.0),
        ("[1] See the manual, page 4.", "invalid_json", 0.0),
        ("[" * 100_000, "invalid_json", 0.0),
        ("The order number is 42.", "text", None),
        ('Here is the JSON: {"order_id": 42}', "text", None),
        ('"just a string"', "text", None),
        ("```python\nprint({'a': 1})\n```", "text", None),
        ("```\nls -la\n```", "text", None),
    ],
)
def test_output_format_labels(text: str, label: str, score: float | None) -> None:
    outcome = output_format(_answer(text))
    assert outcome is not None
    assert (outcome.name, outcome.label, outcome.score) == ("output_format", label, score)
    assert outcome.explanation


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The refund was issued on Monday.", "latin"),
        ("Café, crème brûlée, Straße, łódź, ça va?", "latin"),
        ("Ваш заказ отправлен вчера.", "cyrillic"),
        ("Ваш заказ #42 отправлен, tracking: DHL", "cyrillic"),  # mixed: Cyrillic letters outnumber Latin
        ("您的订单已发货。", "cjk"),
        ("使用 Python 的 requests 库发送请求。", "cjk"),  # mixed: ideographs weigh more than identifiers
        ("ご注文は発送されました。", "cjk"),
        ("주문이 발송되었습니다.", "hangul"),
        ("Στείλαμε την παραγγελία σας.", "greek"),
        ("تم شحن طلبك.", "arabic"),
        ("ההזמנה שלך נשלחה.", "hebrew"),
        ("आपका ऑर्डर भेज दिया गया है।", "devanagari"),
        ("คำสั่งซื้อของคุณถูกจัดส่งแล้ว", "other"),
        ("42 → 43 🎉 !!!", "none"),
        ("abc где", "latin"),  # a tie goes to the script listed first
    ],
)
def test_output_script_labels(text: str, label: str) -> None:
    outcome = output_script(_answer(text))
    assert outcome is not None
    assert (outcome.name, outcome.label, outcome.score) == ("output_script", label, None)
    assert outcome.label in SCRIPTS


@pytest.mark.parametrize("evaluator", [output_format, output_script])
@pytest.mark.parametrize(("text", "error_type"), [("", None), ("  \n ", None), ('{"a": 1}', "500")])
def test_empty_answers_and_failed_calls_are_not_judged(
    evaluator: Callable[[EvaluationInput], EvaluationOutcome | None], text: str, error_type: str | None
) -> None:
    assert evaluator(_answer(text, error_type=error_type)) is None


def test_explanations_carry_no_answer_text() -> None:
    secret = "hunter2-Кодовое-слово"
    for text in (f'{{"password": "{secret}"', f"{secret} {secret}", f'```json\n{{"p": "{secret}"}}\n```'):
        for evaluator in (output_format, output_script):
            outcome = evaluator(_answer(text))
            assert outcome is not None
            assert "hunter2" not in str(outcome.explanation)
            assert "Кодовое" not in str(outcome.explanation)


def test_script_share_and_reading_limit() -> None:
    outcome = output_script(_answer("Привет " * 3 + "hello " * 2))
    assert outcome is not None
    assert outcome.explanation == "cyrillic: 64% of 28 letters (weighted)"
    # Only the first 4,000 characters are read: the Cyrillic tail does not count.
    late = output_script(_answer("a" * 4000 + "я" * 5000))
    assert late is not None
    assert late.label == "latin"


def test_registered_for_otel_llm_evaluators() -> None:
    assert LOCAL_EVALUATORS["output_format"] is output_format
    assert LOCAL_EVALUATORS["output_script"] is output_script


# --- the drift monitor -----------------------------------------------------------------------------------

KEY = SeriesKey("shop", "orders", "extract", "v1", "gpt-4o-mini")
T0 = at(0)


def _pick(rng: random.Random, mix: dict[str, float]) -> str:
    draw = rng.random()
    for category, share in mix.items():
        draw -= share
        if draw < 0:
            return category
    return category


class Traffic:
    """Calls of one series with output evaluations, hour by hour; each mix a dict category -> share."""

    def __init__(self, key: SeriesKey = KEY, *, seed: int = 1) -> None:
        self.key = key
        self.rng = random.Random(seed)
        self.serial = 0

    def hour(
        self,
        start_ns: int,
        calls: int,
        *,
        formats: dict[str, float] | None = None,
        scripts: dict[str, float] | None = None,
        refusals: float = 0.03,
        tools: dict[int, float] | None = None,
        tool_names: dict[str, float] | None = None,
        key: SeriesKey | None = None,
        on_span: bool = True,
    ) -> tuple[list[CallRecord], list[EvaluationRecord]]:
        """`calls` calls spread over the hour; evaluations ride on the spans, or come back separately."""
        rng = self.rng
        formats = formats or {"json": 0.95, "invalid_json": 0.03, "text": 0.02}
        scripts = scripts or {"latin": 0.7, "cyrillic": 0.2, "cjk": 0.1}
        tools = tools or {0: 0.6, 1: 0.3, 2: 0.1}
        tool_names = tool_names or {"lookup_order": 0.8, "refund": 0.2}
        out: list[CallRecord] = []
        loose: list[EvaluationRecord] = []
        for i in range(calls):
            self.serial += 1
            t = start_ns + int((i + rng.random()) / calls * HOUR_NS)
            span_id = f"{self.serial:016x}"
            refused = rng.random() < refusals
            evaluations = (
                EvaluationRecord("faithfulness", t, 0.9, "pass", trace_id="ab" * 16, span_id=span_id),
                EvaluationRecord(
                    "refusal",
                    t,
                    float(refused),
                    "fail" if refused else "pass",
                    trace_id="ab" * 16,
                    span_id=span_id,
                ),
                EvaluationRecord(
                    "output_format", t, None, _pick(rng, formats), trace_id="ab" * 16, span_id=span_id
                ),
                EvaluationRecord(
                    "output_script", t, None, _pick(rng, scripts), trace_id="ab" * 16, span_id=span_id
                ),
            )
            count = int(_pick(rng, {str(k): v for k, v in tools.items()}))
            names = tuple(_pick(rng, tool_names) for _ in range(count))
            series = key or self.key
            out.append(
                CallRecord(
                    series=series,
                    end_time_ns=t,
                    duration_s=1.0,
                    trace_id="ab" * 16,
                    span_id=span_id,
                    input_tokens=int(rng.gauss(1200, 60)),
                    output_tokens=int(rng.gauss(180, 18)),
                    finish_reasons=("tool_calls",) if count else ("stop",),
                    tool_call_count=count,
                    tool_call_names=names,
                    evaluations=tuple(dataclasses.replace(e, series=series) for e in evaluations)
                    if on_span
                    else (),
                )
            )
            if not on_span:
                loose.extend(evaluations)
        return out, loose


def _day(traffic: Traffic, monitor: DriftMonitor, hours: int = 24, calls: int = 600) -> list[AlertEvent]:
    """`hours` normal hours from T0, checked at every boundary; the events."""
    events: list[AlertEvent] = []
    for h in range(hours):
        calls_, _ = traffic.hour(T0 + h * HOUR_NS, calls)
        monitor.observe(calls_)
        events += monitor.check(T0 + (h + 1) * HOUR_NS)
    return events


def _firing(events: list[AlertEvent]) -> list[tuple[str, str]]:
    return [(e.labels["alertname"], e.labels["signal"]) for e in events if e.status == "firing"]


@pytest.mark.parametrize(
    ("change", "signals"),
    [
        ({"formats": {"json": 0.6, "invalid_json": 0.35, "text": 0.05}}, ["output_format_mix"]),
        ({"formats": {"json": 0.55, "invalid_json": 0.03, "text": 0.42}}, ["output_format_mix"]),
        ({"scripts": {"latin": 0.98, "cyrillic": 0.01, "cjk": 0.01}}, ["output_script_mix"]),
        ({"refusals": 0.3}, ["refusal_rate"]),
        # More tool calls also mean more `tool_calls` finish reasons.
        ({"tools": {0: 0.2, 1: 0.5, 2: 0.3}}, ["finish_reason_mix", "tool_mix"]),
        ({"tool_names": {"lookup_order": 0.3, "escalate": 0.7}}, ["tool_name_mix"]),
    ],
)
def test_a_changed_output_mix_fires_output_drift_naming_the_signal(
    change: dict[str, object], signals: list[str]
) -> None:
    monitor = DriftMonitor()
    traffic = Traffic()
    assert _day(traffic, monitor) == []
    calls, _ = traffic.hour(T0 + 24 * HOUR_NS, 1200, **change)  # type: ignore[arg-type]
    monitor.observe(calls)
    events = monitor.check(T0 + 25 * HOUR_NS)
    assert sorted(_firing(events)) == [("OutputDrift", signal) for signal in signals]
    for event in events:
        assert event.labels["signal"] in OUTPUT_SIGNALS
        assert event.labels["prompt_name"] == "extract"
        assert event.series == SeriesKey("shop", "orders", "extract", "", "")
        assert float(event.annotations["value"]) > 0.25
        assert "Largest change:" in event.annotations["description"]
    # Back to normal: the next hour resolves it.
    calls, _ = traffic.hour(T0 + 25 * HOUR_NS, 1200)
    monitor.observe(calls)
    resolved = monitor.check(T0 + 26 * HOUR_NS)
    assert sorted((e.status, e.labels["signal"]) for e in resolved) == [("resolved", s) for s in signals]


def test_the_description_names_the_category_that_moved() -> None:
    monitor = DriftMonitor()
    traffic = Traffic()
    _day(traffic, monitor)
    calls, _ = traffic.hour(T0 + 24 * HOUR_NS, 600, formats={"json": 0.6, "invalid_json": 0.4})
    monitor.observe(calls)
    (event,) = monitor.check(T0 + 25 * HOUR_NS)
    assert "Largest change: invalid_json 3% -> 4" in event.annotations["description"]


def test_evaluations_sent_apart_from_their_calls_are_attributed_through_the_resolver() -> None:
    monitor = DriftMonitor()
    traffic = Traffic()
    where: dict[str, SeriesKey] = {}
    for h in range(25):
        refusals = 0.3 if h == 24 else 0.03
        calls, loose = traffic.hour(T0 + h * HOUR_NS, 600, refusals=refusals, on_span=False)
        monitor.observe(calls)
        where.update((c.span_id, c.series) for c in calls)
        monitor.observe_evaluations(loose, lambda e: where.get(e.span_id))
        events = monitor.check(T0 + (h + 1) * HOUR_NS)
    assert _firing(events) == [("OutputDrift", "refusal_rate")]
    assert monitor.unattributed_evaluations == 0
    # A call the resolver does not know, and no resolver at all: counted, not attributed.
    unknown = EvaluationRecord("refusal", T0 + 25 * HOUR_NS, 1.0, "fail", span_id="ffff")
    monitor.observe_evaluations([unknown], lambda e: where.get(e.span_id))
    monitor.observe_evaluations([unknown])
    assert monitor.unattributed_evaluations == 2


def test_quiet_through_a_stable_week_with_daily_seasonality() -> None:
    """normal_week's call rate (busy afternoons, 0.15 to 1.1 calls/s; here a tenth of it is sampled by the
    app, as evaluations are), every output mix stable: not one drift alert in 167 hourly checks."""
    monitor = DriftMonitor()
    traffic = Traffic(seed=5)
    events: list[AlertEvent] = []
    tested: set[str] = set()
    for h in range(7 * 24):
        rate = max(0.15, 0.6 + 0.5 * math.sin((h % 24 - 9) / 24 * 2 * math.pi))
        calls, _ = traffic.hour(T0 + h * HOUR_NS, int(rate * 720))
        monitor.observe(calls)
        events += monitor.check(T0 + (h + 1) * HOUR_NS)
        results = monitor.last_results.items()
        tested |= {name for (_, name), r in results if r.level is not DriftLevel.INSUFFICIENT_DATA}
    assert events == []
    # Every output signal was tested with enough data in the busy hours.
    assert tested >= {"output_format_mix", "output_script_mix", "refusal_rate", "tool_mix", "tool_name_mix"}


def test_scope_is_feature_and_prompt_name_so_a_new_prompt_version_is_compared_with_the_old() -> None:
    monitor = DriftMonitor()
    traffic = Traffic()
    _day(traffic, monitor)
    v2 = KEY._replace(prompt_version="v2", model="gpt-4o")
    other_prompt = KEY._replace(prompt_name="summary")
    calls, _ = traffic.hour(T0 + 24 * HOUR_NS, 600, key=v2, formats={"json": 0.5, "text": 0.5})
    prose, _ = traffic.hour(T0 + 24 * HOUR_NS, 600, key=other_prompt, formats={"text": 1.0})
    monitor.observe([*calls, *prose])
    events = monitor.check(T0 + 25 * HOUR_NS)
    # The new version and model drift from the old ones' day; the other prompt's prose changes nothing here
    # (and it has no reference of its own yet).
    assert sorted(_firing(events)) == [("InputDrift", "model_mix"), ("OutputDrift", "output_format_mix")]
    assert {e.labels["prompt_name"] for e in events} == {"extract"}


def test_memory_is_bounded() -> None:
    monitor = DriftMonitor(max_scopes=3, max_categories=4)
    traffic = Traffic()
    for n in range(5):
        calls, _ = traffic.hour(T0, 20, key=KEY._replace(feature=f"f{n}"))
        monitor.observe(calls)
    assert monitor.dropped_scopes == 2
    assert [scope[1] for scope in monitor._hours] == ["f2", "f3", "f4"]
    # Labels beyond max_categories per mix and hour are pooled.
    labels = {f"label-{i}": 0.1 for i in range(10)}
    calls, _ = traffic.hour(T0, 200, key=KEY._replace(feature="f4"), scripts=labels)
    monitor.observe(calls)
    mix = monitor._hours[("shop", "f4", "extract")][T0 // HOUR_NS].mixes["output_script_mix"]
    assert len(mix) == 5
    assert mix[OTHER] > 0
    # A day later, the idle scopes are forgotten, and an evaluation too old to matter is not kept.
    monitor.check(T0 + 26 * HOUR_NS)
    assert len(monitor._hours) == 0
    calls, _ = traffic.hour(T0 + 30 * HOUR_NS, 5)
    monitor.observe(calls)
    monitor.observe_evaluations([EvaluationRecord("refusal", T0, 0.0, "pass", series=KEY)])
    assert list(monitor._hours[("shop", "orders", "extract")]) == [T0 // HOUR_NS + 30]


def test_the_pipeline_feeds_evaluations_that_arrive_as_log_records() -> None:
    """Calls as traces, their evaluations in later batches (log records), joined through the windows."""
    traffic = Traffic()
    events: list[AlertEvent] = []
    pipeline = Pipeline(WindowEngine(), build_evaluator(load_default_rules()), on_events=events.extend)

    def batches() -> Iterator[DecodeResult]:
        for h in range(27):
            scripts = {"latin": 0.98, "cyrillic": 0.02} if h == 24 else None
            calls, loose = traffic.hour(T0 + h * HOUR_NS, 300, scripts=scripts, on_span=False)
            for start in range(0, len(calls), 50):
                chunk = calls[start : start + 50]
                yield DecodeResult(calls=tuple(chunk))
                yield DecodeResult(evaluations=tuple(loose[4 * start : 4 * (start + 50)]))

    for batch in batches():
        pipeline.apply(batch)
    drift = [
        (e.status, e.labels["signal"], e.at_ns) for e in events if e.labels["alertname"].endswith("Drift")
    ]
    assert drift == [
        ("firing", "output_script_mix", T0 + 25 * HOUR_NS),
        ("resolved", "output_script_mix", T0 + 26 * HOUR_NS),
    ]
    assert pipeline.drift.unattributed_evaluations == 0


# --- the scenario ------------------------------------------------------------------------------------------


def test_output_drift_scenario_fires_on_the_json_share_only(tmp_path: Path) -> None:
    scenario = scenarios.output_drift()
    assert scenarios.SUITE["output_drift"] is scenarios.output_drift
    path = tmp_path / "output_drift.pb"
    scenarios.write_delimited(scenario, path)
    out, err = io.StringIO(), io.StringIO()
    summary = replay([path], evaluator=build_evaluator(load_default_rules()), out=out, errors=err)
    assert summary.bad_lines == 0, err.getvalue()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    firing = [e for e in events if e["status"] == "firing"]
    assert [(e["labels"]["alertname"], e["labels"]["signal"]) for e in firing] == [
        ("OutputDrift", scenario.expectations["signal"])
    ]
    (alert,) = firing
    assert alert["eventTimeUnixNano"] == scenario.expectations["fire_at_ns"] == at(13, 0)
    assert alert["labels"]["feature"] == "order-extract"
    assert float(alert["annotations"]["value"]) > 0.25
    assert "invalid_json" in alert["annotations"]["description"]
    assert summary.pages == scenario.expectations["pages"] == 0


def test_a_shift_in_prompt_size_fires_on_the_numeric_signal() -> None:
    traffic, monitor = Traffic(), DriftMonitor()
    assert _firing(_day(traffic, monitor)) == []
    calls, _ = traffic.hour(T0 + 24 * HOUR_NS, 600)
    monitor.observe([dataclasses.replace(c, input_tokens=(c.input_tokens or 0) + 400) for c in calls])
    events = monitor.check(T0 + 25 * HOUR_NS)
    assert "input_tokens" in [signal for _, signal in _firing(events)]


def test_numeric_samples_are_bounded_uniform_compact_and_seeded() -> None:
    def fill(seed: int) -> _NumericSample:
        sample = _NumericSample(100, random.Random(seed).random)
        for i in range(10_000):
            sample.add(float(i))
        return sample

    sample = fill(1)
    assert (len(sample), sample.seen) == (100, 10_000)
    assert isinstance(sample.items, array)  # 8 bytes a value
    assert 4_000 < statistics.mean(sample.values()) < 6_000  # uniform over 0..9,999: mean 5,000 +- 290
    assert max(sample.values()) > 9_000  # late values do get in
    assert fill(1).values() == sample.values()
    assert fill(2).values() != sample.values()
