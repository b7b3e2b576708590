"""Conditions: the grammar, its errors, three-valued evaluation, and fuzzing that bad input only ever
raises the documented `ConditionError`."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from otel_llm_collector.conditions import (
    MAX_CONDITION_LENGTH,
    MAX_DEPTH,
    METRICS,
    Condition,
    ConditionError,
    MetricRef,
    WindowMetrics,
    parse_condition,
    parse_metric,
    wilson_interval,
)
from otel_llm_collector.windows import WindowEngine
from rules_support import KEY, MINUTE_NS, T0_NS, Fixed, evaluation, fill


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("error_rate > 0.05", {"error_rate": (0.06, 100)}, True),
        ("error_rate > 5%", {"error_rate": (0.05, 100)}, False),
        ("error_rate >= 5%", {"error_rate": (0.05, 100)}, True),
        ("success_rate < 95%", {"success_rate": (0.949, 100)}, True),
        ("eval_mean{faithfulness} < 0.65", {"eval_mean{faithfulness}": (0.70, 40)}, False),
        ("latency_p95 > 2 * 1.5", {"latency_p95": (3.5, 40)}, True),
        ("latency_p95 - 1 > 2 / 4 + 1", {"latency_p95": (2.6, 40)}, True),
        ("-latency_p95 < -2", {"latency_p95": (2.5, 40)}, True),
        ("call_count == 0", {"call_count": (0, 0)}, True),
        ("call_count != 0", {"call_count": (3, 3)}, True),
        ("error_rate <= 0.1 and not error_rate > 0.2", {"error_rate": (0.1, 50)}, True),
        (
            "(error_rate > 0.5 or latency_p50 > 1) and call_count > 10",
            {"error_rate": (0.1, 50), "latency_p50": (2.0, 50), "call_count": (50, 50)},
            True,
        ),
        ("tokens_mean{input} > 1000", {"tokens_mean{input}": (1200.0, 30)}, True),
    ],
)
def test_evaluates_comparisons_arithmetic_and_logic(
    text: str, values: dict[str, tuple[float, int]], expected: bool
) -> None:
    assert parse_condition(text).evaluate(Fixed(values)).result is expected


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        # Kleene logic: a decisive operand settles it, otherwise unknown stays unknown.
        ("error_rate > 0.05 or latency_p95 > 2", {"latency_p95": (3.0, 50)}, True),
        ("error_rate > 0.05 or latency_p95 > 2", {"latency_p95": (1.0, 50)}, None),
        ("error_rate > 0.05 and latency_p95 > 2", {"latency_p95": (1.0, 50)}, False),
        ("error_rate > 0.05 and latency_p95 > 2", {"latency_p95": (3.0, 50)}, None),
        ("not error_rate > 0.05", {}, None),
        ("error_rate / call_count > 1", {"error_rate": (0.5, 50), "call_count": (0, 0)}, None),
        ("error_rate + 1 > 1", {}, None),
    ],
)
def test_unknowns_follow_three_valued_logic(
    text: str, values: dict[str, tuple[float, int]], expected: bool | None
) -> None:
    assert parse_condition(text).evaluate(Fixed(values)).result is expected


def test_min_samples_guard_blocks_sparse_window() -> None:
    condition = parse_condition("eval_mean{faithfulness} < 0.65")
    sparse = Fixed({"eval_mean{faithfulness}": (0.1, 19)})
    enough = Fixed({"eval_mean{faithfulness}": (0.1, 20)})
    assert condition.evaluate(sparse, min_samples=20).result is None
    assert condition.evaluate(enough, min_samples=20).result is True


def test_count_metrics_are_exempt_from_min_samples() -> None:
    condition = parse_condition("call_count == 0")
    assert condition.evaluate(WindowMetrics(None), min_samples=50).result is True


def test_bare_baseline_means_the_metric_on_the_other_side() -> None:
    condition = parse_condition("latency_p95 > baseline * 2")
    assert condition.baseline_metrics == {MetricRef("latency_p95")}
    source = Fixed({"latency_p95": (2.5, 40)})
    baselines = {MetricRef("latency_p95"): 1.0}
    assert condition.evaluate(source, baselines=baselines.get).result is True
    assert condition.evaluate(source, baselines={MetricRef("latency_p95"): 1.5}.get).result is False
    assert condition.evaluate(source, baselines={}.get).result is None  # still warming up
    assert condition.evaluate(source).result is None


def test_explicit_baseline_of_another_metric() -> None:
    condition = parse_condition("latency_p99 > baseline(latency_p95) * 3")
    assert condition.baseline_metrics == {MetricRef("latency_p95")}
    assert condition.metrics == {MetricRef("latency_p99")}


def test_verdict_value_is_the_deciding_left_hand_side() -> None:
    condition = parse_condition("eval_mean{faithfulness} < 0.4 or eval_fail_rate{toxicity} > 0.01")
    source = Fixed({"eval_mean{faithfulness}": (0.8, 40), "eval_fail_rate{toxicity}": (0.05, 40)})
    assert condition.evaluate(source) == (True, 0.05)
    quiet = Fixed({"eval_mean{faithfulness}": (0.8, 40), "eval_fail_rate{toxicity}": (0.0, 40)})
    assert condition.evaluate(quiet) == (False, 0.8)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "error_rate > 0.05)",
            "unexpected token ')' at column 18; expected an operator, 'and', 'or' or the end",
        ),
        (
            "(error_rate > 0.05",
            "unexpected end of condition at column 19; expected ')' to close the '(' at column 1",
        ),
        (
            "error_rate > ",
            "unexpected end of condition at column 14; expected a number, metric, 'baseline' or '('",
        ),
        (
            "error_rate > and",
            "unexpected token 'and' at column 14; expected a number, metric, 'baseline' or '('",
        ),
        ("eror_rate > 1", "unknown metric 'eror_rate' at column 1"),
        ("error_rate{x} > 1", "metric 'error_rate' at column 1 takes no {argument}"),
        ("eval_mean > 1", "metric 'eval_mean' at column 1 needs an evaluation name"),
        ("tokens_mean{words} > 1", "unknown token kind 'words' at column 1"),
        ("error_rate", "expected a comparison as the condition at column 1"),
        ("error_rate > 1 and 2", "expected a comparison after 'and' at column 20"),
        ("(error_rate > 1) + 2 > 1", "expected a number before '+'"),
        ("error_rate > 1 > 0", "comparisons do not chain"),
        ("baseline > 1", "write baseline(metric)"),
        ("error_rate + latency_p95 > baseline", "write baseline(metric)"),
        ("baseline(1) > 1", "expected a metric inside baseline(...)"),
        ("error_rate ? 1", "unexpected character '?' at column 12"),
        ("error_rate > 1e999", "number '1e999' at column 14 is out of range"),
        ("", "condition is empty"),
        ("   ", "condition is empty"),
    ],
)
def test_parse_errors_name_the_column_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert message in str(info.value)


def test_deep_nesting_and_long_input_are_refused_not_crashing() -> None:
    with pytest.raises(ConditionError, match="too deeply nested"):
        parse_condition("(" * 400 + "error_rate > 1" + ")" * 400)
    with pytest.raises(ConditionError, match="too deeply nested"):
        parse_condition("not " * 200 + "error_rate > 1")
    with pytest.raises(ConditionError, match="too deeply nested"):
        parse_condition("-" * 300 + "1 > error_rate")
    with pytest.raises(ConditionError, match="too deeply nested"):
        parse_condition(" + ".join(["error_rate"] * 50) + " > 1")
    with pytest.raises(ConditionError, match="at most"):
        parse_condition("error_rate > 1" + " " * MAX_CONDITION_LENGTH)


def test_moderate_nesting_is_fine() -> None:
    text = "(" * 10 + "error_rate > 1" + ")" * 10 + " and " + " and ".join(["call_count > 1"] * 20)
    assert parse_condition(text).evaluate(Fixed({"error_rate": (2, 10), "call_count": (5, 5)})).result is True


def test_parse_metric() -> None:
    assert parse_metric("eval_mean{faithfulness}") == MetricRef("eval_mean", "faithfulness")
    assert str(MetricRef("tokens_total", "output")) == "tokens_total{output}"
    with pytest.raises(ConditionError):
        parse_metric("eval_mean{faithfulness} + 1")


def test_wilson_interval_keeps_small_samples_honest() -> None:
    low_small, _ = wilson_interval(3, 5)
    low_large, _ = wilson_interval(60, 100)
    assert 0.2 < low_small < 0.25
    assert low_large > 0.49
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 200)
    assert low < 1e-12
    assert high < 0.02


def test_metrics_read_from_a_real_window_engine() -> None:
    engine = WindowEngine()
    fill(
        engine,
        T0_NS,
        T0_NS + 5 * MINUTE_NS,
        duration_s=0.5,
        error_every=10,
        evaluations={"faithfulness": 0.9},
    )
    engine.apply_evaluations(
        [evaluation("toxicity", T0_NS + i * 10**9, 1.0, label="fail" if i < 3 else "pass") for i in range(30)]
    )
    source = WindowMetrics(engine.window(KEY, "5m"))
    checks = {
        "call_count": lambda v: v == 300,
        "error_rate": lambda v: abs(v - 0.1) < 1e-9,
        "success_rate": lambda v: abs(v - 0.9) < 1e-9,
        "latency_p95": lambda v: abs(v - 0.5) < 0.05,
        "eval_mean{faithfulness}": lambda v: abs(v - 0.9) < 1e-9,
        "eval_samples{faithfulness}": lambda v: v == 30,
        "eval_fail_rate{toxicity}": lambda v: abs(v - 0.1) < 1e-9,
        "eval_fail_rate_lower{toxicity}": lambda v: 0.02 < v < 0.1,
        "eval_samples{relevance}": lambda v: v == 0,
    }
    for text, check in checks.items():
        measured = source.measure(parse_metric(text))
        assert measured is not None, text
        assert check(measured.value), (text, measured)
    assert source.measure(parse_metric("eval_mean{relevance}")) is None
    assert source.measure(parse_metric("ttfc_p95")) is None
    assert set(METRICS) >= {"cost_mean", "cost_total", "tokens_total", "feedback_positive_rate"}


# --- fuzzing ---------------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "error_rate",
        "latency_p95",
        "eval_mean{faithfulness}",
        "eval_mean{",
        "tokens_mean{input}",
        "baseline",
        "baseline(",
        "(",
        ")",
        "and",
        "or",
        "not",
        "<",
        "<=",
        ">",
        ">=",
        "==",
        "!=",
        "+",
        "-",
        "*",
        "/",
        "0",
        "1.5",
        "5%",
        "1e3",
        "1e999",
        ".",
        "{",
        "}",
        "$",
        "'",
        '"',
        "\\",
        "\n",
        " ",
        "__import__",
        "%",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(" ".join))
def test_fuzz_token_soup_only_raises_condition_error(text: str) -> None:
    outcome = _parse(text)
    if isinstance(outcome, ConditionError):
        assert str(outcome)
        return
    verdict = outcome.evaluate(
        Fixed({"error_rate": (0.0, 100), "latency_p95": (1.0, 100), "eval_mean{faithfulness}": (0.5, 100)}),
        baselines=lambda _metric: 0.0,
    )
    assert verdict.result in (True, False, None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_only_raises_condition_error(text: str) -> None:
    with contextlib.suppress(ConditionError):
        parse_condition(text)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.sampled_from(["(", "not ", "-"]))
def test_fuzz_nesting_depth_never_blows_the_stack(depth: int, opener: str) -> None:
    closer = ")" if opener == "(" else ""
    comparison = "1 > error_rate" if opener == "-" else "error_rate > 1"
    outcome = _parse(opener * depth + comparison + closer * depth)
    if depth <= MAX_DEPTH - 2:  # the comparison itself is two levels deep
        assert not isinstance(outcome, ConditionError), outcome
    elif depth > MAX_DEPTH:
        assert isinstance(outcome, ConditionError)
        assert "too deeply nested" in str(outcome) or "characters long" in str(outcome)


def _parse(text: str) -> Condition | ConditionError:
    try:
        return parse_condition(text)
    except ConditionError as exc:
        return exc
