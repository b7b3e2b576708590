"""Input and output drift per feature: is this hour's traffic unlike the day before it?

For each (service, feature), a sample of calls feeds hourly buckets (event time): reservoirs of input
tokens, context tokens and output tokens, and counts of the model mix, the tool-call mix and the finish
reason mix. At each hour boundary the last complete hour is compared with the 23 hours before it (the
reference, excluding the current hour): numeric signals by `drift.numeric_drift` (Kolmogorov-Smirnov
decides whether, PSI over the reference's quantile bins how much: 0.1 moderate, 0.25 significant),
mixes by `drift.categorical_drift` (chi-square and categorical PSI). A significant drift raises an
`InputDrift` (inputs, model and tool mix) or `OutputDrift` (output length, finish reasons) alert at P3,
in the same alert shape as the rules', and it resolves at the first hour that is no longer significant.

Cost on the ingest path: one call in `sample_every` (by span id) is sampled, a few reservoir and counter
updates each. Memory is bounded: `reservoir_size` values per signal per hour, 25 hours, `max_scopes`
scopes.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.drift import DriftLevel, DriftResult, Reservoir, categorical_drift, numeric_drift
from otel_llm_collector.records import CallRecord, SeriesKey

HOUR_NS: Final = 3600 * 1_000_000_000
NUMERIC: Final = ("input_tokens", "context_tokens", "output_tokens")
CATEGORICAL: Final = ("model_mix", "tool_mix", "finish_reason_mix")
OUTPUT_SIGNALS: Final = frozenset({"output_tokens", "finish_reason_mix"})
REFERENCE_HOURS: Final = 23

Scope = tuple[str, str]


@dataclass
class _Hour:
    numeric: dict[str, Reservoir[float]] = field(default_factory=dict)
    mixes: dict[str, Counter[str]] = field(default_factory=dict)


def _tool_bucket(count: int) -> str:
    return "0" if count == 0 else "1" if count == 1 else "2+"


class DriftMonitor:
    """Hourly drift checks per (service, feature). Not thread-safe: the pipeline's one caller owns it."""

    def __init__(self, *, sample_every: int = 4, reservoir_size: int = 200, max_scopes: int = 1000) -> None:
        self.sample_every = sample_every
        self.reservoir_size = reservoir_size
        self.max_scopes = max_scopes
        self._hours: OrderedDict[Scope, dict[int, _Hour]] = OrderedDict()
        self._firing: dict[tuple[Scope, str], AlertEvent] = {}
        self.dropped_scopes = 0
        self.last_results: dict[tuple[Scope, str], DriftResult] = {}

    def observe(self, calls: Iterable[CallRecord]) -> None:
        every = self.sample_every
        for call in calls:
            if every > 1 and int(call.span_id[-2:] or "0", 16) % every:
                continue
            scope = (call.series.service, call.series.feature)
            hour = self._hour(scope, call.end_time_ns // HOUR_NS)
            for name, value in (
                ("input_tokens", call.input_tokens),
                ("context_tokens", call.context_tokens),
                ("output_tokens", call.output_tokens),
            ):
                if value is not None:
                    reservoir = hour.numeric.get(name)
                    if reservoir is None:
                        reservoir = hour.numeric[name] = Reservoir(
                            self.reservoir_size, seed=len(hour.numeric)
                        )
                    reservoir.add(float(value))
            mixes = hour.mixes
            mixes.setdefault("model_mix", Counter())[call.series.model or "?"] += 1
            mixes.setdefault("tool_mix", Counter())[_tool_bucket(call.tool_call_count)] += 1
            for reason in call.finish_reasons or ("?",):
                mixes.setdefault("finish_reason_mix", Counter())[reason] += 1

    def _hour(self, scope: Scope, index: int) -> _Hour:
        hours = self._hours.get(scope)
        if hours is None:
            hours = self._hours[scope] = {}
            if len(self._hours) > self.max_scopes:
                self._hours.popitem(last=False)
                self.dropped_scopes += 1
        hour = hours.get(index)
        if hour is None:
            hour = hours[index] = _Hour()
            for old in [i for i in hours if i < index - REFERENCE_HOURS - 2]:
                del hours[old]
        return hour

    def check(self, at_ns: int) -> list[AlertEvent]:
        """At an hour boundary: compare the last complete hour with its reference; the alert transitions."""
        current_index = at_ns // HOUR_NS - 1
        events: list[AlertEvent] = []
        for scope, hours in self._hours.items():
            current = hours.get(current_index)
            reference = [
                hours[i] for i in range(current_index - REFERENCE_HOURS, current_index) if i in hours
            ]
            if current is None or not reference:
                continue
            for name in (*NUMERIC, *CATEGORICAL):
                result = self._compare(name, current, reference)
                if result is None:
                    continue
                self.last_results[(scope, name)] = result
                events += self._transition(scope, name, result, at_ns)
        return events

    def _compare(self, name: str, current: _Hour, reference: list[_Hour]) -> DriftResult | None:
        if name in NUMERIC:
            now = current.numeric.get(name)
            if now is None:
                return None
            ref = [v for hour in reference if (r := hour.numeric.get(name)) is not None for v in r.values()]
            return numeric_drift(ref, now.values())
        mix = current.mixes.get(name)
        if mix is None:
            return None
        total: Counter[str] = Counter()
        for hour in reference:
            total.update(hour.mixes.get(name, {}))
        return categorical_drift(total, mix)

    def _transition(self, scope: Scope, name: str, result: DriftResult, at_ns: int) -> list[AlertEvent]:
        key = (scope, name)
        firing = self._firing.get(key)
        significant = result.level is DriftLevel.SIGNIFICANT
        if significant and firing is None:
            event = _event(scope, name, result, at_ns, status="firing", starts_at_ns=at_ns)
            self._firing[key] = event
            return [event]
        if not significant and firing is not None and result.level is not DriftLevel.INSUFFICIENT_DATA:
            del self._firing[key]
            return [_event(scope, name, result, at_ns, status="resolved", starts_at_ns=firing.starts_at_ns)]
        return []

    def active(self) -> list[AlertEvent]:
        return list(self._firing.values())


def _event(
    scope: Scope, name: str, result: DriftResult, at_ns: int, *, status: str, starts_at_ns: int
) -> AlertEvent:
    alertname = "OutputDrift" if name in OUTPUT_SIGNALS else "InputDrift"
    psi = result.psi if result.psi is not None else result.statistic
    value = "" if psi is None else f"{psi:.3g}"
    labels = {
        "alertname": alertname,
        "severity": "P3",
        "service": scope[0],
        "feature": scope[1],
        "signal": name,
    }
    annotations = {
        "summary": f"{name} of {scope[0]}/{scope[1]} drifted from the previous day (PSI {value})",
        "description": (
            f"{result.method} over the last hour vs the {REFERENCE_HOURS} hours before: statistic "
            f"{result.statistic}, p-value {result.p_value}, PSI {result.psi}, level {result.level} "
            f"({int(result.current_size)} vs {int(result.reference_size)} samples)."
        ),
        "value": value,
        "runbook_url": "",
    }
    return AlertEvent(
        status=status,  # type: ignore[arg-type]
        labels=labels,
        annotations=annotations,
        starts_at_ns=starts_at_ns,
        ends_at_ns=at_ns if status == "resolved" else None,
        at_ns=at_ns,
        rule=alertname.lower(),
        series=SeriesKey(scope[0], scope[1], "", "", ""),
        severity="P3",
        value=psi,
    )
