"""Exposition: window figures as Prometheus text format 0.0.4 (`/metrics`) and JSON (`/api/v1/series`).

Window figures are gauges (they go up and down as the window slides), named `otel_llm_window_*` with their
unit, and labelled with the series key (`service`, `feature`, `prompt_name`, `prompt_version`, `model`)
plus `window` (`1m` ... `7d`). Real monotonic counters per series are `otel_llm_calls_total` and
`otel_llm_evaluations_total`. The engine's own counters and the app's self-metrics follow under
`otel_llm_collector_*`. Every metric is listed in `docs/metrics.md`.

A figure that has no value (no latency samples, no scores) is left out rather than written as NaN, so that
dashboards and rules see "no data" instead of a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from otel_llm_collector.buckets import WindowStats
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.windows import WINDOW_NAMES, WindowEngine

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
SERIES_LABELS: Final = ("service", "feature", "prompt_name", "prompt_version", "model")
SELF_PREFIX: Final = "otel_llm_collector_"
QUANTILES: Final = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))

# name -> (type, help)
_FAMILIES: Final[dict[str, tuple[str, str]]] = {
    "otel_llm_window_calls": ("gauge", "GenAI calls in the window."),
    "otel_llm_window_calls_per_second": ("gauge", "GenAI call rate over the event time the window spans."),
    "otel_llm_window_error_ratio": ("gauge", "Failed calls over all calls in the window."),
    "otel_llm_window_success_ratio": ("gauge", "Successful calls over all calls in the window."),
    "otel_llm_window_errors": ("gauge", "Failed calls in the window by error.type."),
    "otel_llm_window_latency_seconds": (
        "summary",
        "Call duration quantiles in the window (1% relative error).",
    ),
    "otel_llm_window_time_to_first_chunk_seconds": (
        "summary",
        "Time to first streamed chunk quantiles in the window (1% relative error).",
    ),
    "otel_llm_window_tokens": ("gauge", "Tokens in the window by kind."),
    "otel_llm_window_tokens_per_call": ("gauge", "Mean tokens per call reporting that kind, by kind."),
    "otel_llm_window_cost_usd": ("gauge", "Cost of the calls in the window, in US dollars."),
    "otel_llm_window_cost_per_call_usd": ("gauge", "Mean cost per call reporting a cost, in US dollars."),
    "otel_llm_window_context_tokens_per_call": ("gauge", "Mean context size per call, in tokens."),
    "otel_llm_window_tool_calls": ("gauge", "Tool calls requested by the model in the window."),
    "otel_llm_window_eval_samples": ("gauge", "Evaluation results in the window by evaluation name."),
    "otel_llm_window_eval_score_mean": ("gauge", "Mean evaluation score in the window by evaluation name."),
    "otel_llm_window_eval_fail_ratio": ("gauge", "Evaluation results labelled fail over all, by name."),
    "otel_llm_calls_total": ("counter", "GenAI calls applied to the series since it was first seen."),
    "otel_llm_evaluations_total": ("counter", "Evaluation results applied to the series since first seen."),
}

_ENGINE_COUNTERS: Final[dict[str, tuple[str, str]]] = {
    "calls_total": ("counter", "GenAI calls applied to the windows."),
    "evaluations_total": ("counter", "Evaluation results applied to the windows."),
    "late_total": ("counter", "Records older than the watermark (applied if their bucket was retained)."),
    "dropped_too_old_total": ("counter", "Records older than every retained bucket, dropped."),
    "dropped_future_total": ("counter", "Records too far ahead of the wall clock, dropped."),
    "overflow_calls_total": ("counter", "Calls sent to the overflow series because max_series was reached."),
    "evaluations_unmatched_total": ("counter", "Evaluations never attributed to a call, given up."),
    "evaluations_pending": ("gauge", "Evaluations waiting for their call to arrive."),
    "series": ("gauge", "Active window series."),
}


def escape_label_value(value: str) -> str:
    """Escape per the text format: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.samples: dict[str, list[str]] = {}

    def add(self, name: str, labels: str, value: float | None) -> None:
        """`labels` may start with a sample suffix (`_sum{...}`), filed under the family `name`."""
        if value is None:
            return
        self.samples.setdefault(name, []).append(f"{name}{labels} {_format_value(value)}")


def _window_samples(w: _Writer, prefix: str, stats: WindowStats) -> None:
    """`prefix`: the series' escaped label pairs plus the window label, without braces."""
    lb = "{" + prefix + "}"
    w.add("otel_llm_window_calls", lb, stats.count)
    w.add("otel_llm_window_calls_per_second", lb, stats.rate_per_s)
    if stats.count:
        w.add("otel_llm_window_error_ratio", lb, stats.error_rate)
        w.add("otel_llm_window_success_ratio", lb, stats.success_rate)
    for error_type, n in stats.errors_by_type.items():
        w.add("otel_llm_window_errors", f'{{{prefix},error_type="{escape_label_value(error_type)}"}}', n)
    latency = (stats.latency_p50_s, stats.latency_p95_s, stats.latency_p99_s)
    ttfc = (stats.ttfc_p50_s, stats.ttfc_p95_s, stats.ttfc_p99_s)
    if stats.count:
        for (q, _), value in zip(QUANTILES, latency):
            w.add("otel_llm_window_latency_seconds", f'{{{prefix},quantile="{q}"}}', value)
        w.add("otel_llm_window_latency_seconds", "_sum" + lb, stats.latency_sum_s)
        w.add("otel_llm_window_latency_seconds", "_count" + lb, stats.count)
    if stats.ttfc_count:
        for (q, _), value in zip(QUANTILES, ttfc):
            w.add("otel_llm_window_time_to_first_chunk_seconds", f'{{{prefix},quantile="{q}"}}', value)
        w.add("otel_llm_window_time_to_first_chunk_seconds", "_sum" + lb, stats.ttfc_sum_s)
        w.add("otel_llm_window_time_to_first_chunk_seconds", "_count" + lb, stats.ttfc_count)
    for kind, total in stats.tokens_total.items():
        kl = f'{{{prefix},kind="{kind}"}}'
        w.add("otel_llm_window_tokens", kl, total)
        w.add("otel_llm_window_tokens_per_call", kl, stats.tokens_mean[kind])
    if stats.cost_usd_mean is not None:
        w.add("otel_llm_window_cost_usd", lb, stats.cost_usd_total)
        w.add("otel_llm_window_cost_per_call_usd", lb, stats.cost_usd_mean)
    w.add("otel_llm_window_context_tokens_per_call", lb, stats.context_tokens_mean)
    w.add("otel_llm_window_tool_calls", lb, stats.tool_calls)
    for name, ev in stats.evaluations.items():
        el = f'{{{prefix},evaluation="{escape_label_value(name)}"}}'
        w.add("otel_llm_window_eval_samples", el, ev.samples)
        w.add("otel_llm_window_eval_score_mean", el, ev.mean)
        w.add("otel_llm_window_eval_fail_ratio", el, ev.fail_rate)


def _split_self_name(name: str) -> tuple[str, str]:
    """`dropped_total{reason="x"}` -> (`dropped_total`, `{reason="x"}`); label text passes through."""
    brace = name.find("{")
    return (name, "") if brace < 0 else (name[:brace], name[brace:])


@dataclass(frozen=True, slots=True)
class SeriesFigures:
    """One series' window figures and counters, detached from the engine."""

    key: SeriesKey
    windows: dict[str, WindowStats]
    calls_total: int
    evaluations_total: int


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """Everything `/metrics` shows from the engine, as plain data: collect it under the engine's lock,
    format it after releasing the lock (formatting is the larger half of the work)."""

    series: tuple[SeriesFigures, ...]
    counters: dict[str, int]


def collect(engine: WindowEngine, windows: Sequence[str] = WINDOW_NAMES) -> EngineFigures:
    """Read every series' figures for `windows` (the part that must not race with ingest)."""
    figures: list[SeriesFigures] = []
    for key in sorted(engine.series()):
        stats = {window: engine.window(key, window) for window in windows}
        calls, evaluations = engine.totals(key)
        figures.append(
            SeriesFigures(key, {w: v for w, v in stats.items() if v is not None}, calls, evaluations)
        )
    return EngineFigures(tuple(figures), engine.counters())


def format_metrics(figures: EngineFigures, *, self_metrics: Mapping[str, float] | None = None) -> str:
    """The `/metrics` page from collected figures. `self_metrics` names are given without the
    `otel_llm_collector_` prefix; a name ending in `_total` is typed as a counter, any other as a gauge."""
    w = _Writer()
    for series in figures.series:
        series_prefix = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in zip(SERIES_LABELS, series.key))
        for window, stats in series.windows.items():
            _window_samples(w, f'{series_prefix},window="{window}"', stats)
        w.add("otel_llm_calls_total", "{" + series_prefix + "}", series.calls_total)
        w.add("otel_llm_evaluations_total", "{" + series_prefix + "}", series.evaluations_total)
    lines: list[str] = []
    for name, (kind, help_text) in _FAMILIES.items():
        samples = w.samples.get(name)
        if samples:
            lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}", *samples]
    for short, value in figures.counters.items():
        kind, help_text = _ENGINE_COUNTERS[short]
        name = SELF_PREFIX + "windows_" + short
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_format_value(value)}"]
    families: dict[str, list[str]] = {}
    for raw_name, metric_value in sorted((self_metrics or {}).items()):
        short, labels = _split_self_name(raw_name)
        name = SELF_PREFIX + short
        families.setdefault(name, []).append(f"{name}{labels} {_format_value(metric_value)}")
    for name, samples in families.items():
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {name} Collector self-metric {name[len(SELF_PREFIX) :]}.", f"# TYPE {name} {kind}"]
        lines += samples
    return "\n".join(lines) + "\n"


def render_metrics(
    engine: WindowEngine,
    *,
    self_metrics: Mapping[str, float] | None = None,
    windows: Sequence[str] = WINDOW_NAMES,
) -> str:
    """The whole `/metrics` page: `format_metrics(collect(engine, windows), self_metrics=...)`.

    With many series, prefer calling `collect` under the engine lock and `format_metrics` outside it: at
    10,000 series and all six windows the page is ~1.5 million samples (~130 MB of text) and takes seconds;
    expose fewer `windows` there."""
    return format_metrics(collect(engine, windows), self_metrics=self_metrics)


def _stats_json(stats: WindowStats) -> dict[str, Any]:
    return {
        "start_ns": stats.start_ns,
        "end_ns": stats.end_ns,
        "count": stats.count,
        "rate_per_s": stats.rate_per_s,
        "errors": stats.errors,
        "error_rate": stats.error_rate,
        "success_rate": stats.success_rate,
        "errors_by_type": stats.errors_by_type,
        "latency_s": {"p50": stats.latency_p50_s, "p95": stats.latency_p95_s, "p99": stats.latency_p99_s},
        "latency_mean_s": stats.latency_mean_s,
        "ttfc_s": {"p50": stats.ttfc_p50_s, "p95": stats.ttfc_p95_s, "p99": stats.ttfc_p99_s},
        "tokens_total": stats.tokens_total,
        "tokens_mean": stats.tokens_mean,
        "cost_usd_total": stats.cost_usd_total,
        "cost_usd_mean": stats.cost_usd_mean,
        "context_tokens_mean": stats.context_tokens_mean,
        "tool_calls": stats.tool_calls,
        "evaluations": {
            name: {"samples": ev.samples, "mean": ev.mean, "fail_rate": ev.fail_rate}
            for name, ev in stats.evaluations.items()
        },
    }


def series_json(engine: WindowEngine, window: str = "5m") -> dict[str, Any]:
    """The `/api/v1/series` body: every series with its figures over `window`."""
    if window not in WINDOW_NAMES:
        raise ValueError(f"unknown window {window!r}; expected one of {', '.join(WINDOW_NAMES)}")
    items: list[dict[str, Any]] = []
    for key in sorted(engine.series()):
        stats = engine.window(key, window)
        if stats is None:
            continue
        items.append({"series": dict(zip(SERIES_LABELS, key)), **_stats_json(stats)})
    return {
        "window": window,
        "now_ns": engine.now_ns,
        "watermark_ns": engine.watermark_ns,
        "series": items,
    }


__all__ = [
    "CONTENT_TYPE",
    "SERIES_LABELS",
    "EngineFigures",
    "SeriesFigures",
    "collect",
    "escape_label_value",
    "format_metrics",
    "render_metrics",
    "series_json",
]
