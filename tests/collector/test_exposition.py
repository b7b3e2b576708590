"""Exposition: the /metrics text passes promtool, carries the window figures, and escapes labels."""

from __future__ import annotations

import shutil
import subprocess

import otel_llm_collector.exposition as exposition_module
import pytest
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.exposition import escape_label_value, render_metrics, series_json
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.testing import SECOND_NS, T0_NS, genai_request
from otel_llm_collector.windows import WindowEngine

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
NASTY = SeriesKey('svc "quoted"', "line\nbreak", "back\\slash", "v1", "model")


def _engine() -> WindowEngine:
    engine = WindowEngine()
    engine.apply(decode_traces(genai_request(spans=50, series=3)))
    call = CallRecord(
        series=NASTY,
        end_time_ns=T0_NS + SECOND_NS,
        duration_s=0.5,
        trace_id="ab" * 16,
        span_id="cd" * 8,
        error_type="rate_limit",
        time_to_first_chunk_s=0.1,
        evaluations=(EvaluationRecord("relevance", T0_NS, 0.8, label="pass", series=NASTY),),
    )
    engine.apply(DecodeResult(calls=(call,)))
    return engine


def _promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def _sample(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, lines
    return float(lines[0].rsplit(" ", 1)[1])


def test_metrics_page_passes_promtool_check_metrics() -> None:
    text = render_metrics(_engine(), self_metrics={"received_spans_total": 12, "queue_depth": 3})
    result = _promtool(text)
    complaints = result.stdout + result.stderr
    assert complaints == ""
    assert result.returncode == 0


def test_promtool_check_catches_a_broken_page() -> None:
    """Guards the test above: the check must fail on a page that breaks the conventions."""
    result = _promtool("# TYPE broken_total counter\nbroken 1\n# TYPE broken_total counter\n")
    assert result.returncode != 0


def test_window_figures_appear_with_series_labels() -> None:
    text = render_metrics(_engine())
    labels = (
        'service="checkout",feature="feature-0",prompt_name="answer",prompt_version="v1",model="gpt-4o-mini"'
    )
    assert _sample(text, f'otel_llm_window_calls{{{labels},window="5m"}}') == 17
    assert _sample(text, f"otel_llm_calls_total{{{labels}}}") == 17
    assert _sample(text, f'otel_llm_window_tokens{{{labels},window="5m",kind="input"}}') == 17 * 1200
    p99 = _sample(text, f'otel_llm_window_latency_seconds{{{labels},window="5m",quantile="0.99"}}')
    assert 0.8 < p99 < 1.2
    assert _sample(text, "otel_llm_collector_windows_calls_total ") == 51


def test_collected_figures_format_to_the_same_page() -> None:
    engine = _engine()
    figures = exposition_module.collect(engine, ("5m",))
    assert exposition_module.format_metrics(figures) == render_metrics(engine, windows=("5m",))
    assert 'window="1m"' not in exposition_module.format_metrics(figures)


def test_label_values_are_escaped() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render_metrics(_engine())
    escaped = 'service="svc \\"quoted\\"",feature="line\\nbreak",prompt_name="back\\\\slash"'
    assert (
        _sample(
            text, f'otel_llm_window_error_ratio{{{escaped},prompt_version="v1",model="model",window="1m"}}'
        )
        == 1
    )
    assert "\nbreak" not in text
    assert (
        _sample(
            text,
            f'otel_llm_window_eval_score_mean{{{escaped},prompt_version="v1",model="model",window="1m",evaluation="relevance"}}',
        )
        == 0.8
    )


def test_series_json_lists_every_series_with_its_window() -> None:
    body = series_json(_engine(), "5m")
    assert body["window"] == "5m"
    assert len(body["series"]) == 4
    first = body["series"][0]
    assert set(first["series"]) == {"service", "feature", "prompt_name", "prompt_version", "model"}
    assert {"count", "error_rate", "latency_s", "tokens_total", "evaluations"} <= set(first)
    with pytest.raises(ValueError, match="unknown window"):
        series_json(_engine(), "3m")


def test_public_api_is_pinned() -> None:
    assert sorted(exposition_module.__all__) == [
        "CONTENT_TYPE",
        "EngineFigures",
        "SERIES_LABELS",
        "SeriesFigures",
        "collect",
        "escape_label_value",
        "format_metrics",
        "render_metrics",
        "series_json",
    ]
