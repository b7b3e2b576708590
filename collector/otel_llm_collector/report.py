"""`otel-llm report`: daily and monthly reports for one prompt, from recorded traffic.

    otel-llm report daily --prompt answer --date 2026-01-01 --input traffic.pb [--format html] [--output F]
    otel-llm report monthly --prompt answer --month 2026-01 --input traffic.jsonl ...

The inputs (OTLP JSON lines or delimited protobuf, as for `otel-llm replay`) go through the collector's own
`Pipeline` with the rules, so the alerts, their deployment annotations and rollbacks are the ones the live
collector would have raised. Per event-time minute the report keeps the chosen prompt's calls, errors by
type, latencies, evaluation scores, tokens and cost; hours (daily) or days (monthly) are built from them.

A report has an executive summary, key metrics against the day before and against the baseline (the mean
of the previous 7 days that have data; for a month, the previous month), errors by type with their trend,
alerts and rollbacks, an error budget table (availability against a 99% objective), and recommendations
from explicit rules: quality falling more than 0.1 after a deployment, an error rate above 1%, cost per
call up more than 50%, a p95 latency up more than 50% after a deployment, an exhausted error budget, a
refused or failed rollback. The HTML form adds inline SVG charts (quality and p95 latency over time, with
a vertical marker per deployment labelled with its version). Times are UTC.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from otel_llm_collector.alerts import AlertEvent, format_time
from otel_llm_collector.config import ConfigError, load_settings
from otel_llm_collector.correlation import Deployment
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.replay import read_requests
from otel_llm_collector.rules import RulesError, load_default_rules, load_rules
from otel_llm_collector.windows import WindowEngine

__all__ = ["Collected", "add_parser", "collect", "main", "render_daily", "render_monthly"]

USAGE_ERROR: Final = 2
NS: Final = 1_000_000_000
MINUTE_NS: Final = 60 * NS
HOUR_NS: Final = 3600 * NS
DAY_NS: Final = 24 * HOUR_NS
OBJECTIVE: Final = 0.99
"""Availability objective of the error budget and SLA tables."""
QUALITY: Final = "faithfulness"
QUALITY_DROP: Final = 0.1
ERROR_RATE_LIMIT: Final = 0.01
COST_RISE: Final = 0.5
LATENCY_RISE: Final = 0.5
_SCOPE: Final = frozenset({"service", "feature", "prompt_name"})


# --- collection ---------------------------------------------------------------------------------------
@dataclass
class Bucket:
    """The chosen prompt's figures over one span of time (a minute, or the merge of several)."""

    calls: int = 0
    errors: int = 0
    error_types: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    eval_sum: dict[str, float] = field(default_factory=dict)
    eval_count: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add_call(self, call: CallRecord) -> None:
        self.calls += 1
        if call.error_type:
            self.errors += 1
            self.error_types[call.error_type] += 1
        self.latencies.append(call.duration_s)
        self.input_tokens += call.input_tokens or 0
        self.output_tokens += call.output_tokens or 0
        self.cost_usd += call.cost_usd or 0.0

    def add_evaluation(self, evaluation: EvaluationRecord) -> None:
        if evaluation.score is None:
            return
        self.eval_sum[evaluation.name] = self.eval_sum.get(evaluation.name, 0.0) + evaluation.score
        self.eval_count[evaluation.name] += 1

    def merge(self, other: Bucket) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.error_types.update(other.error_types)
        self.latencies.extend(other.latencies)
        for name, total in other.eval_sum.items():
            self.eval_sum[name] = self.eval_sum.get(name, 0.0) + total
        self.eval_count.update(other.eval_count)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd


@dataclass(frozen=True)
class Stats:
    """What a report shows of a bucket."""

    calls: int
    errors: int
    error_types: dict[str, int]
    p50_s: float | None
    p95_s: float | None
    eval_means: dict[str, float]
    tokens_per_call: float | None
    cost_usd: float
    cost_per_call: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def availability(self) -> float | None:
        return 1.0 - self.errors / self.calls if self.calls else None

    @property
    def quality(self) -> float | None:
        return self.eval_means.get(QUALITY)


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stats_of(bucket: Bucket) -> Stats:
    ordered = sorted(bucket.latencies)
    calls = bucket.calls
    return Stats(
        calls=calls,
        errors=bucket.errors,
        error_types=dict(bucket.error_types),
        p50_s=_quantile(ordered, 0.5),
        p95_s=_quantile(ordered, 0.95),
        eval_means={n: bucket.eval_sum[n] / c for n, c in bucket.eval_count.items() if c},
        tokens_per_call=(bucket.input_tokens + bucket.output_tokens) / calls if calls else None,
        cost_usd=bucket.cost_usd,
        cost_per_call=bucket.cost_usd / calls if calls else None,
    )


@dataclass
class Collected:
    """Everything a replay kept about one prompt."""

    prompt: str
    minutes: dict[int, Bucket] = field(default_factory=dict)
    alerts: list[AlertEvent] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    versions: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """(first time, {service_version, prompt_version, model}) each time what serves the prompt changes."""
    prompts_seen: set[str] = field(default_factory=set)

    def stats(self, start_ns: int, end_ns: int) -> Stats:
        """Figures of the minutes in [start, end)."""
        total = Bucket()
        for minute, bucket in self.minutes.items():
            if start_ns <= minute < end_ns:
                total.merge(bucket)
        return stats_of(total)

    def has_data(self, start_ns: int, end_ns: int) -> bool:
        return any(start_ns <= m < end_ns and b.calls for m, b in self.minutes.items())

    def previous_value(self, component: str, before_ns: int) -> str:
        """The value of `component` (e.g. `service_version`) serving the prompt just before `before_ns`,
        if it differs from the one after; empty when unknown."""
        current = ""
        for time_ns, values in self.versions:
            if time_ns >= before_ns:
                break
            current = values.get(component, "")
        return current


def collect(prompt: str, inputs: Sequence[Path], *, rules_path: Path | None, errors: IO[str]) -> Collected:
    """Replay the inputs through a fresh pipeline with the rules, keeping the figures of `prompt`."""
    settings = load_settings(None)
    rules = load_rules(rules_path) if rules_path else load_default_rules()
    found = Collected(prompt=prompt)
    series_of_prompt: set[SeriesKey] = set()

    def on_events(events: list[AlertEvent]) -> None:
        for event in events:
            if event.status in ("firing", "resolved") and _event_prompt(event) == prompt:
                found.alerts.append(event)

    engine = WindowEngine(
        max_series=settings.max_series, allowed_lateness_seconds=settings.allowed_lateness_seconds
    )
    pipeline = Pipeline(engine, build_evaluator(rules), on_events=on_events)
    last_versions: dict[str, str] | None = None
    for path in inputs:
        for result in read_requests(path, errors):
            if result.rejected and not result.calls and not result.evaluations:
                continue
            pipeline.apply(result)
            for call in result.calls:
                found.prompts_seen.add(call.series.prompt_name)
                if call.series.prompt_name != prompt:
                    continue
                series_of_prompt.add(call.series)
                minute = call.end_time_ns - call.end_time_ns % MINUTE_NS
                bucket = found.minutes.setdefault(minute, Bucket())
                bucket.add_call(call)
                for evaluation in call.evaluations:
                    found.minutes.setdefault(
                        evaluation.time_ns - evaluation.time_ns % MINUTE_NS, Bucket()
                    ).add_evaluation(evaluation)
                versions = {
                    "service_version": call.service_version,
                    "prompt_version": call.series.prompt_version,
                    "model": call.series.model,
                }
                if versions != last_versions:
                    found.versions.append((call.end_time_ns, versions))
                    last_versions = versions
            for evaluation in result.evaluations:
                if evaluation.series is not None and evaluation.series.prompt_name == prompt:
                    found.minutes.setdefault(
                        evaluation.time_ns - evaluation.time_ns % MINUTE_NS, Bucket()
                    ).add_evaluation(evaluation)
    found.versions.sort(key=lambda item: item[0])
    found.deployments = [
        d for d in pipeline.deployments.deployments() if any(d.concerns(s) for s in series_of_prompt)
    ]
    return found


def _event_prompt(event: AlertEvent) -> str:
    return event.labels.get("prompt_name") or event.series.prompt_name


# --- analysis -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """A reported span (a day or a month) and what it is compared with."""

    kind: str
    """`daily` or `monthly`."""
    label: str
    start_ns: int
    end_ns: int
    previous_label: str
    previous: Stats | None
    baseline: Stats | None
    baseline_label: str
    current: Stats
    points: list[tuple[int, Stats]]
    """(start, figures) of each hour (daily) or day (monthly)."""
    point_ns: int


@dataclass(frozen=True)
class DeploymentImpact:
    deployment: Deployment
    label: str
    previous: str
    quality_before: float | None
    quality_after: float | None
    p95_before: float | None
    p95_after: float | None


@dataclass(frozen=True)
class Analysis:
    collected: Collected
    period: Period
    deployments: list[DeploymentImpact]
    alerts: list[AlertEvent]
    rollbacks: list[AlertEvent]
    recommendations: list[str]
    budget_rows: list[tuple[str, Stats]]


def _day_start(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * NS


def _mean_stats(found: Collected, spans: Iterable[tuple[int, int]]) -> Stats | None:
    """The per-span mean of the spans that have data (calls, errors and cost are per-span means)."""
    stats = [found.stats(s, e) for s, e in spans if found.has_data(s, e)]
    if not stats:
        return None

    def mean(values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None

    names = sorted({n for s in stats for n in s.eval_means})
    types = sorted({t for s in stats for t in s.error_types})
    count = len(stats)
    calls = sum(s.calls for s in stats)
    errors = sum(s.errors for s in stats)
    cost = sum(s.cost_usd for s in stats)
    return Stats(
        calls=round(calls / count),
        errors=round(errors / count),
        error_types={t: round(sum(s.error_types.get(t, 0) for s in stats) / count) for t in types},
        p50_s=mean(s.p50_s for s in stats),
        p95_s=mean(s.p95_s for s in stats),
        eval_means={n: m for n in names if (m := mean(s.eval_means.get(n) for s in stats)) is not None},
        tokens_per_call=mean(s.tokens_per_call for s in stats),
        cost_usd=cost / count,
        cost_per_call=cost / calls if calls else None,
    )


def _daily_period(found: Collected, day: dt.date) -> Period:
    start = _day_start(day)
    end = start + DAY_NS
    yesterday = found.stats(start - DAY_NS, start) if found.has_data(start - DAY_NS, start) else None
    baseline = _mean_stats(found, ((start - k * DAY_NS, start - (k - 1) * DAY_NS) for k in range(1, 8)))
    return Period(
        kind="daily",
        label=day.isoformat(),
        start_ns=start,
        end_ns=end,
        previous_label="yesterday",
        previous=yesterday,
        baseline=baseline,
        baseline_label="7-day baseline",
        current=found.stats(start, end),
        points=[(h, found.stats(h, h + HOUR_NS)) for h in range(start, end, HOUR_NS)],
        point_ns=HOUR_NS,
    )


def _month_days(month: dt.date) -> list[dt.date]:
    days = []
    day = month.replace(day=1)
    while day.month == month.month:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


def _monthly_period(found: Collected, month: dt.date) -> Period:
    days = _month_days(month)
    start = _day_start(days[0])
    end = _day_start(days[-1]) + DAY_NS
    previous_days = _month_days(days[0] - dt.timedelta(days=1))
    previous_start = _day_start(previous_days[0])
    previous = found.stats(previous_start, start) if found.has_data(previous_start, start) else None
    return Period(
        kind="monthly",
        label=f"{month.year:04d}-{month.month:02d}",
        start_ns=start,
        end_ns=end,
        previous_label="previous month",
        previous=previous,
        baseline=_mean_stats(found, ((_day_start(d), _day_start(d) + DAY_NS) for d in days)),
        baseline_label="mean day",
        current=found.stats(start, end),
        points=[(_day_start(d), found.stats(_day_start(d), _day_start(d) + DAY_NS)) for d in days],
        point_ns=DAY_NS,
    )


def _deployment_label(deployment: Deployment) -> str:
    values = [v for k, v in deployment.components.items() if k not in _SCOPE and v]
    return ", ".join(values) or deployment.id


def _impact(found: Collected, deployment: Deployment, all_deployments: list[Deployment]) -> DeploymentImpact:
    t = deployment.time_ns
    earlier = [d.time_ns for d in all_deployments if d.time_ns < t]
    later = [d.time_ns for d in all_deployments if d.time_ns > t]
    before = found.stats(max([t - DAY_NS, *earlier]), t)
    after = found.stats(t, min([t + DAY_NS, *later]))
    changed = [k for k in deployment.components if k not in _SCOPE]
    previous = ", ".join(p for k in changed if (p := found.previous_value(k, t)))
    return DeploymentImpact(
        deployment=deployment,
        label=_deployment_label(deployment),
        previous=previous,
        quality_before=before.quality,
        quality_after=after.quality,
        p95_before=before.p95_s,
        p95_after=after.p95_s,
    )


def _rose(now: float | None, then: float | None, share: float) -> bool:
    return now is not None and then is not None and then > 0 and now > then * (1 + share)


def _recommend(period: Period, impacts: list[DeploymentImpact], alerts: list[AlertEvent]) -> list[str]:
    found: list[str] = []
    for impact in impacts:
        when = _clock(impact.deployment.time_ns, period.kind)
        before, after = impact.quality_before, impact.quality_after
        if before is not None and after is not None and before - after > QUALITY_DROP:
            target = f"roll back to version {impact.previous}" if impact.previous else "roll back"
            found.append(
                f"Review deployment {impact.label} ({impact.deployment.id}, {when}) and {target}: "
                f"{QUALITY} fell from {before:.3f} to {after:.3f} after it."
            )
        if _rose(impact.p95_after, impact.p95_before, LATENCY_RISE):
            found.append(
                f"Review deployment {impact.label} ({when}): p95 latency rose from "
                f"{_seconds(impact.p95_before)} to {_seconds(impact.p95_after)} after it."
            )
    current = period.current
    rate = current.error_rate
    if rate is not None and rate > ERROR_RATE_LIMIT:
        top = ", ".join(f"{t} ({n})" for t, n in Counter(current.error_types).most_common(3))
        found.append(
            f"Error rate is {rate:.2%}, above {ERROR_RATE_LIMIT:.0%}: check the error types ({top})."
        )
    for label, reference in (
        (period.previous_label, period.previous),
        (period.baseline_label, period.baseline),
    ):
        if reference is not None and _rose(current.cost_per_call, reference.cost_per_call, COST_RISE):
            found.append(
                f"Cost per call rose from {_money(reference.cost_per_call)} ({label}) to "
                f"{_money(current.cost_per_call)}: check tokens per call "
                f"({_number(reference.tokens_per_call)} -> {_number(current.tokens_per_call)})."
            )
            break
    if current.calls and current.errors > current.calls * (1 - OBJECTIVE):
        found.append(
            f"The error budget is exhausted ({current.errors} errors, {current.calls * (1 - OBJECTIVE):.0f} "
            "allowed): hold risky deployments until availability recovers."
        )
    for event in alerts:
        outcome = event.annotations.get("rollback", "")
        if outcome in ("refused", "failed"):
            found.append(
                f"The automatic rollback for {event.alertname} at {_clock(event.at_ns, period.kind)} was "
                f"{outcome} ({event.annotations.get('rollback_reason', '')}): manual action is needed."
            )
    still = _still_firing(alerts)
    if still:
        found.append(f"Alerts still firing at the end of the period: {', '.join(still)}; investigate them.")
    return found or ["No action needed: no rule of the report matched."]


def _still_firing(alerts: list[AlertEvent]) -> list[str]:
    state: dict[str, AlertEvent] = {}
    for event in alerts:
        state[event.fingerprint] = event
    return sorted({e.alertname for e in state.values() if e.status == "firing"})


def analyse(found: Collected, period: Period) -> Analysis:
    deployments = [d for d in found.deployments if period.start_ns <= d.time_ns < period.end_ns]
    impacts = [_impact(found, d, found.deployments) for d in deployments]
    alerts = [a for a in found.alerts if period.start_ns <= a.at_ns < period.end_ns]
    rollbacks = [a for a in alerts if a.annotations.get("rollback")]
    if period.kind == "daily":
        start = period.start_ns
        rows = [(period.label, period.current)]
        week = found.stats(start - 6 * DAY_NS, period.end_ns)
        rows.append(("last 7 days", week))
    else:
        rows = [(period.label, period.current)]
    return Analysis(
        collected=found,
        period=period,
        deployments=impacts,
        alerts=alerts,
        rollbacks=rollbacks,
        recommendations=_recommend(period, impacts, alerts),
        budget_rows=rows,
    )


# --- formatting helpers ---------------------------------------------------------------------------------
def _clock(time_ns: int, kind: str) -> str:
    text = format_time(time_ns)
    return f"{text[11:16]} UTC" if kind == "daily" else f"{text[:10]} {text[11:16]} UTC"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _delta(now: float | None, then: float | None, *, relative: bool = True) -> str:
    if now is None or then is None:
        return "n/a"
    if relative:
        if then == 0:
            return "n/a" if now else "+0.0%"
        return f"{(now - then) / then:+.1%}"
    return f"{now - then:+.3f}"


_METRICS: Final[tuple[tuple[str, str, bool], ...]] = (
    ("calls", "count", True),
    ("availability", "percent", False),
    ("error rate", "percent", False),
    ("p50 latency", "seconds", True),
    ("p95 latency", "seconds", True),
    ("tokens per call", "number", True),
    ("cost", "money", True),
    ("cost per call", "money", True),
)
"""(name, format, relative change?) of the key metrics table; evaluation means are added per name."""


def _metric_value(stats: Stats | None, name: str) -> float | None:
    if stats is None:
        return None
    if name.endswith(" (mean)"):
        return stats.eval_means.get(name.removesuffix(" (mean)"))
    values: dict[str, float | None] = {
        "calls": float(stats.calls),
        "availability": stats.availability,
        "error rate": stats.error_rate,
        "p50 latency": stats.p50_s,
        "p95 latency": stats.p95_s,
        "tokens per call": stats.tokens_per_call,
        "cost": stats.cost_usd,
        "cost per call": stats.cost_per_call,
    }
    return values[name]


def _format(value: float | None, kind: str) -> str:
    if kind == "count":
        return "n/a" if value is None else f"{value:,.0f}"
    if kind == "percent":
        return _percent(value)
    if kind == "seconds":
        return _seconds(value)
    if kind == "money":
        return _money(value)
    if kind == "score":
        return _number(value, 3)
    return _number(value)


def _metric_rows(period: Period) -> list[list[str]]:
    names = sorted(
        {
            n
            for s in (period.current, period.previous, period.baseline)
            if s is not None
            for n in s.eval_means
        },
        key=lambda n: (n != QUALITY, n),
    )
    metrics = [*_METRICS[:5], *((f"{n} (mean)", "score", False) for n in names), *_METRICS[5:]]
    rows = []
    for name, kind, relative in metrics:
        now = _metric_value(period.current, name)
        then = _metric_value(period.previous, name)
        base = _metric_value(period.baseline, name)
        rows.append(
            [
                name,
                _format(now, kind),
                _format(then, kind),
                _delta(now, then, relative=relative),
                _format(base, kind),
                _delta(now, base, relative=relative),
            ]
        )
    return rows


# --- the document ---------------------------------------------------------------------------------------
Block = tuple[str, Any]
"""("h2", text), ("p", text), ("ul", [items]), ("table", (headers, rows)), ("chart", (title, svg))."""


def _summary(analysis: Analysis) -> str:
    period = analysis.period
    current = period.current
    name = analysis.collected.prompt
    span = f"On {period.label}" if period.kind == "daily" else f"In {period.label}"
    parts = [
        f"{span}, prompt `{name}` served {current.calls:,} calls with {_percent(current.availability)} "
        f"availability and a p95 latency of {_seconds(current.p95_s)}."
    ]
    quality = current.quality
    if quality is None:
        parts.append(f"No {QUALITY} scores were recorded.")
    else:
        versus = []
        for label, ref in (
            (period.previous_label, period.previous),
            (period.baseline_label, period.baseline),
        ):
            then = None if ref is None else ref.quality
            versus.append(f"{then:.3f} {label}" if then is not None else f"no {label}")
        parts.append(f"Mean {QUALITY} was {quality:.3f} (vs {' and '.join(versus)}).")
    for impact in analysis.deployments:
        before, after = impact.quality_before, impact.quality_after
        change = (
            f"; {QUALITY} went from {before:.3f} to {after:.3f} after it"
            if before is not None and after is not None
            else ""
        )
        parts.append(
            f"Deployment {impact.label} shipped at {_clock(impact.deployment.time_ns, period.kind)}{change}."
        )
    firing = [a for a in analysis.alerts if a.status == "firing"]
    if firing:
        names = ", ".join(sorted({f"{a.alertname} ({a.severity})" for a in firing}))
        parts.append(f"{len(firing)} alert(s) fired: {names}.")
    else:
        parts.append("No alert fired.")
    done = [a for a in analysis.rollbacks if a.annotations.get("rollback") == "rolled_back"]
    if done:
        parts.append(f"{len(done)} automatic rollback(s) ran.")
    return " ".join(parts)


def _error_rows(analysis: Analysis) -> list[list[str]]:
    period = analysis.period
    current = period.current
    types = sorted(
        set(current.error_types)
        | set(period.previous.error_types if period.previous else {})
        | set(period.baseline.error_types if period.baseline else {})
    )
    rows = []
    for error_type in types:
        now = current.error_types.get(error_type, 0)
        then = period.previous.error_types.get(error_type) if period.previous else None
        base = period.baseline.error_types.get(error_type) if period.baseline else None
        reference = base if base is not None else then
        if reference is None or reference == 0:
            trend = "new" if now and reference == 0 else "n/a" if reference is None else "="
        else:
            trend = "up" if now > reference * 1.2 else "down" if now < reference * 0.8 else "steady"
        share = now / current.calls if current.calls else None
        rows.append(
            [
                error_type,
                f"{now:,}",
                _percent(share),
                "n/a" if then is None else f"{then:,}",
                "n/a" if base is None else f"{base:,}",
                trend,
            ]
        )
    return rows


def _alert_rows(analysis: Analysis) -> list[list[str]]:
    kind = analysis.period.kind
    rows = []
    for event in analysis.alerts:
        rollback = event.annotations.get("rollback", "")
        if rollback and event.annotations.get("rollback_to"):
            rollback += f" to {event.annotations['rollback_to']}"
        rows.append(
            [
                _clock(event.at_ns, kind),
                event.status,
                event.alertname,
                event.severity,
                event.annotations.get("summary", ""),
                event.annotations.get("deployment", "") or "-",
                rollback or "-",
            ]
        )
    return rows


def _budget_rows(analysis: Analysis) -> list[list[str]]:
    rows = []
    for label, stats in analysis.budget_rows:
        allowed = stats.calls * (1 - OBJECTIVE)
        used = stats.errors / allowed if allowed else None
        rows.append(
            [
                label,
                f"{stats.calls:,}",
                _percent(stats.availability, 3),
                f"{OBJECTIVE:.0%}",
                f"{allowed:,.1f}",
                f"{stats.errors:,}",
                _percent(used, 1),
                "n/a" if used is None else ("exhausted" if used > 1 else f"{1 - used:.1%} left"),
            ]
        )
    return rows


def _deployment_rows(analysis: Analysis) -> list[list[str]]:
    return [
        [
            _clock(i.deployment.time_ns, analysis.period.kind),
            i.label,
            i.deployment.id,
            i.previous or "-",
            _number(i.quality_before, 3),
            _number(i.quality_after, 3),
            _seconds(i.p95_before),
            _seconds(i.p95_after),
        ]
        for i in analysis.deployments
    ]


def _point_rows(analysis: Analysis) -> list[list[str]]:
    daily = analysis.period.kind == "daily"
    rows = []
    for start, stats in analysis.period.points:
        if not stats.calls:
            continue
        label = format_time(start)[11:16] if daily else format_time(start)[:10]
        rows.append(
            [
                label,
                f"{stats.calls:,}",
                _percent(stats.error_rate),
                _number(stats.quality, 3),
                _seconds(stats.p50_s),
                _seconds(stats.p95_s),
                _money(stats.cost_usd),
            ]
        )
    return rows


def _sla_rows(analysis: Analysis) -> list[list[str]]:
    rows = []
    for start, stats in analysis.period.points:
        availability = stats.availability
        met = "no data" if availability is None else ("met" if availability >= OBJECTIVE else "missed")
        rows.append(
            [format_time(start)[:10], f"{stats.calls:,}", _percent(availability, 3), f"{OBJECTIVE:.0%}", met]
        )
    return rows


def build(analysis: Analysis) -> tuple[str, list[Block]]:
    period = analysis.period
    daily = period.kind == "daily"
    title = f"{'Daily' if daily else 'Monthly'} report: prompt {analysis.collected.prompt}, {period.label}"
    blocks: list[Block] = [("h2", "Executive summary"), ("p", _summary(analysis))]
    blocks.append(("h2", "Key metrics"))
    blocks.append(
        (
            "table",
            (
                ["metric", period.label, period.previous_label, "change", period.baseline_label, "change"],
                _metric_rows(period),
            ),
        )
    )
    blocks.append(("chart", "quality"))
    blocks.append(("chart", "latency"))
    blocks.append(("h2", "Deployments"))
    if analysis.deployments:
        blocks.append(
            (
                "table",
                (
                    [
                        "time",
                        "version",
                        "deployment",
                        "previous",
                        f"{QUALITY} before",
                        f"{QUALITY} after",
                        "p95 before",
                        "p95 after",
                    ],
                    _deployment_rows(analysis),
                ),
            )
        )
    else:
        blocks.append(("p", "No deployment in this period."))
    blocks.append(("h2", "Hourly figures" if daily else "Daily figures"))
    blocks.append(
        (
            "table",
            (
                ["hour" if daily else "day", "calls", "error rate", QUALITY, "p50", "p95", "cost"],
                _point_rows(analysis),
            ),
        )
    )
    blocks.append(("h2", "Error analysis"))
    errors = _error_rows(analysis)
    if errors:
        blocks.append(
            (
                "table",
                (
                    [
                        "error type",
                        "count",
                        "share of calls",
                        period.previous_label,
                        period.baseline_label,
                        "trend",
                    ],
                    errors,
                ),
            )
        )
    else:
        blocks.append(("p", "No errors."))
    blocks.append(("h2", "Alerts and rollbacks"))
    if analysis.alerts:
        blocks.append(
            (
                "table",
                (
                    ["time", "status", "alert", "severity", "summary", "deployment", "rollback"],
                    _alert_rows(analysis),
                ),
            )
        )
    else:
        blocks.append(("p", "No alert fired or resolved."))
    if analysis.rollbacks:
        blocks.append(
            (
                "ul",
                [
                    f"{_clock(a.at_ns, period.kind)} {a.alertname}: rollback {a.annotations.get('rollback')}"
                    + (f" to {a.annotations['rollback_to']}" if a.annotations.get("rollback_to") else "")
                    + (
                        f" ({a.annotations['rollback_reason']})"
                        if a.annotations.get("rollback_reason")
                        else ""
                    )
                    for a in analysis.rollbacks
                ],
            )
        )
    else:
        blocks.append(("p", "No rollback."))
    blocks.append(("h2", "Error budget"))
    blocks.append(
        (
            "table",
            (
                [
                    "period",
                    "calls",
                    "availability",
                    "objective",
                    "allowed errors",
                    "errors",
                    "budget used",
                    "status",
                ],
                _budget_rows(analysis),
            ),
        )
    )
    if not daily:
        blocks.append(("h2", "SLA"))
        blocks.append(("table", (["day", "calls", "availability", "objective", "SLA"], _sla_rows(analysis))))
    blocks.append(("h2", "Recommendations"))
    blocks.append(("ul", analysis.recommendations))
    return title, blocks


# --- markdown ---------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list[Block]) -> str:
    lines = [f"# {title}", ""]
    for kind, content in blocks:
        if kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "table":
            headers, rows = content
            lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


# --- HTML and SVG ------------------------------------------------------------------------------------------
CHART_WIDTH: Final = 720
CHART_HEIGHT: Final = 240
_MARGIN: Final = (48, 16, 24, 32)
"""left, right, top, bottom."""


def svg_chart(
    title: str,
    css_class: str,
    points: Sequence[tuple[int, float | None]],
    *,
    start_ns: int,
    end_ns: int,
    markers: Sequence[tuple[int, str]],
    tick_labels: Sequence[tuple[int, str]],
    value_format: str = "{:.2f}",
) -> str:
    """A line chart as an inline SVG element: one polyline per run of points with values, a vertical dashed
    line with a label per marker."""
    left, right, top, bottom = _MARGIN
    width = CHART_WIDTH - left - right
    height = CHART_HEIGHT - top - bottom
    values = [v for _, v in points if v is not None]
    low = min(values, default=0.0)
    high = max(values, default=1.0)
    if high - low < 1e-9:
        low, high = low - 0.5 if low >= 0.5 else 0.0, high + 0.5
    pad = (high - low) * 0.1
    low, high = low - pad, high + pad
    span = max(end_ns - start_ns, 1)

    def x(t: int) -> float:
        return left + width * (t - start_ns) / span

    def y(v: float) -> float:
        return top + height * (1 - (v - low) / (high - low))

    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" width="{CHART_WIDTH}" '
        f'height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
        f'aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = low + (high - low) * fraction
        parts.append(
            f'<text x="{left - 4}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{esc(value_format.format(value))}</text>"
        )
    for t, label in tick_labels:
        parts.append(
            f'<text x="{x(t):.1f}" y="{CHART_HEIGHT - bottom + 14}" font-size="10" '
            f'text-anchor="middle">{esc(label)}</text>'
        )
    runs: list[list[tuple[int, float]]] = [[]]
    for t, v in points:
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    for run in runs:
        if not run:
            continue
        coordinates = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
        parts.append(
            f'<polyline class="{css_class}" points="{coordinates}" fill="none" stroke="#1f77b4" '
            'stroke-width="2"/>'
        )
        for t, v in run:
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="#1f77b4">'
                f"<title>{esc(value_format.format(v))}</title></circle>"
            )
    for t, label in markers:
        parts.append(
            f'<line class="deployment" x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + height}" '
            'stroke="#d62728" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text class="deployment-label" x="{x(t) + 3:.1f}" y="{top + 12}" font-size="11" '
            f'fill="#d62728">{esc(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _charts(analysis: Analysis) -> dict[str, str]:
    period = analysis.period
    half = period.point_ns // 2
    markers = [(i.deployment.time_ns, i.label) for i in analysis.deployments]
    if period.kind == "daily":
        ticks = [(period.start_ns + h * HOUR_NS, f"{h:02d}:00") for h in range(0, 25, 3)]
    else:
        ticks = [(s, format_time(s)[8:10]) for s, _ in period.points[::3]]
    quality = [(s + half, p.quality) for s, p in period.points]
    latency = [(s + half, p.p95_s) for s, p in period.points]
    per = "hour" if period.kind == "daily" else "day"
    common: dict[str, Any] = {
        "start_ns": period.start_ns,
        "end_ns": period.end_ns,
        "markers": markers,
        "tick_labels": ticks,
    }
    return {
        "quality": svg_chart(
            f"Mean {QUALITY} per {per}", "quality", quality, value_format="{:.2f}", **common
        ),
        "latency": svg_chart(
            f"p95 latency (s) per {per}", "latency", latency, value_format="{:.2f}", **common
        ),
    }


_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left;font-size:0.9em}"
    "th{background:#f0f0f0}figure{margin:1em 0}figcaption{font-weight:600}"
)


def to_html(title: str, blocks: list[Block], charts: dict[str, str]) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8"/>',
        f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for kind, content in blocks:
        if kind == "h2":
            out.append(f"<h2>{esc(content)}</h2>")
        elif kind == "p":
            out.append(f"<p>{esc(content)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in content) + "</ul>")
        elif kind == "table":
            headers, rows = content
            out.append("<table>")
            out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
            out.append("<tbody>")
            out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</tbody></table>")
        elif kind == "chart" and content in charts:
            out.append(f'<figure class="{content}">{charts[content]}</figure>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def render(analysis: Analysis, fmt: str) -> str:
    title, blocks = build(analysis)
    if fmt == "html":
        return to_html(title, blocks, _charts(analysis))
    return to_markdown(title, blocks)


def render_daily(found: Collected, day: dt.date, fmt: str = "markdown") -> str:
    return render(analyse(found, _daily_period(found, day)), fmt)


def render_monthly(found: Collected, month: dt.date, fmt: str = "markdown") -> str:
    return render(analyse(found, _monthly_period(found, month)), fmt)


# --- command line ---------------------------------------------------------------------------------------
def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else _bad_date(text, "YYYY-MM-DD")
    except ValueError:
        return _bad_date(text, "YYYY-MM-DD")


def _month(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(f"{text}-01") if len(text) == 7 else _bad_date(text, "YYYY-MM")
    except ValueError:
        return _bad_date(text, "YYYY-MM")


def _bad_date(text: str, shape: str) -> dt.date:
    raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")


def add_parser(subparsers: Any) -> None:
    """Register ``report`` (``daily``, ``monthly``) on an argparse subparsers object."""
    report = subparsers.add_parser(
        "report",
        help="daily and monthly reports for a prompt, from recorded traffic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = report.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    for kind, flag, parse, help_text in (
        ("daily", "--date", _date, "one day (YYYY-MM-DD, UTC)"),
        ("monthly", "--month", _month, "one month (YYYY-MM, UTC)"),
    ):
        parser = commands.add_parser(kind, help=f"{kind} report")
        parser.add_argument("--prompt", required=True, help="prompt name (gen_ai.prompt.name)")
        parser.add_argument(flag, dest="when", required=True, type=parse, help=help_text)
        parser.add_argument(
            "--input",
            dest="inputs",
            action="extend",
            nargs="+",
            type=Path,
            required=True,
            metavar="FILE",
            help="recorded OTLP traffic: JSON lines or delimited protobuf (.pb); repeatable",
        )
        parser.add_argument(
            "--format", choices=["markdown", "html"], help="default: from --output, else markdown"
        )
        parser.add_argument("--output", type=Path, help="write here instead of standard output")
        parser.add_argument("--rules", type=Path, help="rules file (default: the built-in rules)")
        parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"otel-llm report: {message}", file=sys.stderr)
        return USAGE_ERROR

    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        return fail(f"no such input file: {', '.join(missing)}")
    try:
        found = collect(args.prompt, args.inputs, rules_path=args.rules, errors=sys.stderr)
    except (ConfigError, RulesError) as exc:
        return fail(str(exc))
    if not found.minutes:
        seen = ", ".join(sorted(found.prompts_seen)) or "none"
        return fail(f"no calls for prompt {args.prompt!r} in the input (prompts seen: {seen})")
    if args.report_kind == "daily":
        start = _day_start(args.when)
        period_text, end = args.when.isoformat(), start + DAY_NS
    else:
        days = _month_days(args.when)
        start, end = _day_start(days[0]), _day_start(days[-1]) + DAY_NS
        period_text = f"{args.when.year:04d}-{args.when.month:02d}"
    if not found.has_data(start, end):
        first, last = format_time(min(found.minutes))[:10], format_time(max(found.minutes))[:10]
        return fail(
            f"no calls for prompt {args.prompt!r} in {period_text} (the input covers {first} to {last})"
        )
    fmt = args.format or ("html" if args.output and args.output.suffix in (".html", ".htm") else "markdown")
    if args.report_kind == "daily":
        text = render_daily(found, args.when, fmt)
    else:
        text = render_monthly(found, args.when, fmt)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``main(["report", "daily", "--prompt", ...])``; usage errors return 2 rather than exiting."""
    parser = argparse.ArgumentParser(prog="otel-llm")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
