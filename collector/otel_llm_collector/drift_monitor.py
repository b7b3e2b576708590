"""Input and output drift per feature and prompt: is this hour's traffic unlike the day before it?

    monitor = DriftMonitor()
    monitor.observe(calls)                           # per decode result; evaluations on the calls included
    monitor.observe_evaluations(evaluations, join.lookup)   # evaluations that arrived on their own
    events = monitor.check(at_ns)                    # at each hour boundary of event time

Signals, per scope, in hourly buckets of event time:

| signal | from | alert |
|---|---|---|
| `input_tokens`, `context_tokens` | calls (reservoirs) | `InputDrift` |
| `model_mix` | calls: the response model | `InputDrift` |
| `output_tokens` | calls (reservoir) | `OutputDrift` |
| `finish_reason_mix` | calls: finish reasons | `OutputDrift` |
| `tool_mix` | calls: 0, 1 or 2+ tool calls in the answer | `OutputDrift` |
| `tool_name_mix` | calls: the tools the answers called, one count per call of a tool | `OutputDrift` |
| `refusal_rate` | evaluation `refusal`: its `pass` / `fail` label mix | `OutputDrift` |
| `output_format_mix` | evaluation `output_format`: `json` / `invalid_json` / `text` | `OutputDrift` |
| `output_script_mix` | evaluation `output_script`: `latin`, `cyrillic`, `cjk`, ... | `OutputDrift` |

The tool calls are outputs: the model chose them. The evaluations come from the app's evaluators
(`otel_llm.evaluators.refusal`, `otel_llm.output_signals`); an evaluation's category is its label, lower-case
(or its score when it has no label). At each hour boundary the last complete hour is compared with the 23
hours before it (the reference, excluding the current hour): numeric signals by `drift.numeric_drift`
(Kolmogorov-Smirnov decides whether, PSI over the reference's quantile bins how much: 0.1 moderate, 0.25
significant), mixes by `drift.categorical_drift` (chi-square and categorical PSI).

Stricter than `drift`'s defaults: `alpha` 0.001 and `min_samples` 100 in the hour (sampled calls, or
evaluations). A week is 168 checks of ten signals; at 0.01 and 30 samples about 17 of them reject by chance,
and in a quiet hour a chance rejection comes with a large PSI. On the stable, seasonal week of
`tests/detectors/test_output_drift.py` (other seeds and volumes) those settings raised about one false
alert a week (6 in 6 weeks); these raised none in 42. The price: a scope needs about 400 calls an hour
(100 sampled) for its call signals to be tested, and 100 evaluations of a name for that mix; quieter hours
are `insufficient_data`, which neither fires nor resolves.

A significant drift raises an `InputDrift` or `OutputDrift` alert at P3, in the same alert shape as the
rules', with the signal in the `signal` label and the change in the description (the median of a numeric
signal, the category of a mix whose share moved most); it resolves at the first hour that is no longer
significant.

Scope: (service, feature, prompt name), not the full series. Prompt version and model are left out on
purpose: a new prompt version or model starts a new series, with no reference, and it is exactly the change
that most often moves what a model returns (a prompt edit that breaks the JSON, a model that refuses more).
Within the scope the new version is compared with the day of the old one before it, and `model_mix` itself
is a signal. The prompt name stays in: two templates of one feature (an extractor that returns JSON, a
writer that returns prose) have different outputs, and a shift of traffic between them would read as drift
of one mix. A renamed prompt starts a scope of its own, with a reference after an hour.

Cost on the ingest path: one call in `sample_every` (by span id) is sampled, a few reservoir and counter
updates each. Evaluations are not sampled again (the app sampled them already): one name lookup each, a
counter update for the three names above. Memory is bounded: `reservoir_size` values per numeric signal per
hour, `max_categories` per mix per hour (the rest count as `__other__`), 25 hours, `max_scopes` scopes (the
one that least recently started an hour goes first, counted in `dropped_scopes`); a scope without data for
a day is forgotten. Evaluations whose call the join index no longer knows (or does not know yet) are
counted in `unattributed_evaluations`.
"""

from __future__ import annotations

import random
import statistics
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.drift import DriftLevel, DriftResult, categorical_drift, numeric_drift
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey

HOUR_NS: Final = 3600 * 1_000_000_000
NUMERIC: Final = ("input_tokens", "context_tokens", "output_tokens")
EVALUATION_SIGNALS: Final = {
    "refusal": "refusal_rate",
    "output_format": "output_format_mix",
    "output_script": "output_script_mix",
}
"""Evaluation name -> the signal of its label mix."""
CATEGORICAL: Final = (
    "model_mix",
    "tool_mix",
    "tool_name_mix",
    "finish_reason_mix",
    *EVALUATION_SIGNALS.values(),
)
OUTPUT_SIGNALS: Final = frozenset(
    {"output_tokens", "tool_mix", "tool_name_mix", "finish_reason_mix", *EVALUATION_SIGNALS.values()}
)
REFERENCE_HOURS: Final = 23
DEFAULT_ALPHA: Final = 0.001
DEFAULT_MIN_SAMPLES: Final = 100
KEPT_HOURS: Final = REFERENCE_HOURS + 2
OTHER: Final = "__other__"

Scope = tuple[str, str, str]
"""(service, feature, prompt name)."""
Resolver = Callable[[EvaluationRecord], SeriesKey | None]


class _NumericSample:
    """Algorithm R over floats, kept in an `array("d")` (8 bytes a value where a list of floats takes 32)
    and drawing from the monitor's one generator (one per sample took 2.5 KB of state): at 1,000 scopes,
    3 signals and 25 hours the samples take ~120 MB instead of ~670 MB."""

    __slots__ = ("capacity", "items", "random", "seen")

    def __init__(self, capacity: int, random_source: Callable[[], float]) -> None:
        self.capacity = capacity
        self.items: array[float] = array("d")
        self.random = random_source
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(value)
            return
        slot = int(self.random() * self.seen)
        if slot < self.capacity:
            self.items[slot] = value

    def values(self) -> list[float]:
        return self.items.tolist()

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Hour:
    numeric: dict[str, _NumericSample] = field(default_factory=dict)
    mixes: dict[str, Counter[str]] = field(default_factory=dict)


def _tool_bucket(count: int) -> str:
    return "0" if count == 0 else "1" if count == 1 else "2+"


def _category(evaluation: EvaluationRecord) -> str:
    if evaluation.label:
        return evaluation.label.lower()
    return "?" if evaluation.score is None else format(evaluation.score, "g")


class DriftMonitor:
    """Hourly drift checks per (service, feature, prompt name). Not thread-safe: the pipeline's one caller
    owns it."""

    def __init__(
        self,
        *,
        sample_every: int = 4,
        reservoir_size: int = 200,
        max_scopes: int = 1000,
        max_categories: int = 20,
        alpha: float = DEFAULT_ALPHA,
        min_samples: int = DEFAULT_MIN_SAMPLES,
    ) -> None:
        self.sample_every = sample_every
        # A call is sampled by the last two hex digits of its span id (a value in 0..255, taken modulo
        # `sample_every`): random, and the same calls whatever the batching. A set of those suffixes is a
        # cheaper test per call than parsing the digits.
        self._sampled_suffixes: frozenset[str] | None = (
            frozenset(f"{i:02x}" for i in range(256) if i % sample_every == 0) if sample_every > 1 else None
        )
        self.alpha = alpha
        self.min_samples = min_samples
        self.reservoir_size = reservoir_size
        self.max_scopes = max_scopes
        self.max_categories = max_categories
        self._hours: OrderedDict[Scope, dict[int, _Hour]] = OrderedDict()
        self._random = random.Random(0).random
        """One seeded generator for every sample: the same calls in the same order give the same samples."""
        self._firing: dict[tuple[Scope, str], AlertEvent] = {}
        self.dropped_scopes = 0
        self.unattributed_evaluations = 0
        self.last_results: dict[tuple[Scope, str], DriftResult] = {}

    # --- ingest ---------------------------------------------------------------------------------------
    def observe(self, calls: Iterable[CallRecord]) -> None:
        """Sample the calls; count every output evaluation riding on them."""
        sampled = self._sampled_suffixes
        hours: dict[SeriesKey, tuple[int, _Hour | None]] = {}  # per batch: one `_hour` per series and hour
        for call in calls:
            if call.evaluations:
                self._observe_evaluations(call.series, call.evaluations)
            if sampled is not None and call.span_id[-2:] not in sampled:
                continue
            series = call.series
            index = call.end_time_ns // HOUR_NS
            known = hours.get(series)
            if known is not None and known[0] == index:
                hour = known[1]
            else:
                scope = (series.service, series.feature, series.prompt_name)
                hour = self._hour(scope, call.end_time_ns)
                hours[series] = (index, hour)
            if hour is None:
                continue
            for name, value in (
                ("input_tokens", call.input_tokens),
                ("context_tokens", call.context_tokens),
                ("output_tokens", call.output_tokens),
            ):
                if value is not None:
                    reservoir = hour.numeric.get(name)
                    if reservoir is None:
                        reservoir = hour.numeric[name] = _NumericSample(self.reservoir_size, self._random)
                    reservoir.add(float(value))
            mixes = hour.mixes
            self._count(mixes, "model_mix", series.model or "?")
            mixes.setdefault("tool_mix", Counter())[_tool_bucket(call.tool_call_count)] += 1
            for tool in call.tool_call_names:
                self._count(mixes, "tool_name_mix", tool)
            for reason in call.finish_reasons or ("?",):
                self._count(mixes, "finish_reason_mix", reason)

    def observe_evaluations(
        self, evaluations: Iterable[EvaluationRecord], resolve: Resolver | None = None
    ) -> None:
        """Count the output evaluations among `evaluations` (those not carried on their call's span).

        An evaluation without a `series` is attributed by `resolve` (the windows' `JoinIndex.lookup`, which
        must not block); one that stays unattributed is counted in `unattributed_evaluations` and skipped.
        """
        signals = EVALUATION_SIGNALS
        for evaluation in evaluations:
            signal = signals.get(evaluation.name)
            if signal is None:
                continue
            series = evaluation.series
            if series is None and resolve is not None:
                series = resolve(evaluation)
            if series is None:
                self.unattributed_evaluations += 1
                continue
            self._observe_one(series, signal, evaluation)

    def _observe_evaluations(self, series: SeriesKey, evaluations: Iterable[EvaluationRecord]) -> None:
        signals = EVALUATION_SIGNALS
        for evaluation in evaluations:
            signal = signals.get(evaluation.name)
            if signal is not None:
                self._observe_one(series, signal, evaluation)

    def _observe_one(self, series: SeriesKey, signal: str, evaluation: EvaluationRecord) -> None:
        hour = self._hour((series.service, series.feature, series.prompt_name), evaluation.time_ns)
        if hour is not None:
            self._count(hour.mixes, signal, _category(evaluation))

    def _count(self, mixes: dict[str, Counter[str]], signal: str, category: str) -> None:
        mix = mixes.get(signal)
        if mix is None:
            mix = mixes[signal] = Counter()
        if category not in mix and len(mix) >= self.max_categories:
            category = OTHER
        mix[category] += 1

    def _hour(self, scope: Scope, time_ns: int) -> _Hour | None:
        """The scope's bucket for the hour of `time_ns`; None when that hour is too old to matter."""
        index = time_ns // HOUR_NS
        hours = self._hours.get(scope)
        if hours is None:
            hours = self._hours[scope] = {}
            if len(self._hours) > self.max_scopes:
                self._hours.popitem(last=False)
                self.dropped_scopes += 1
        hour = hours.get(index)
        if hour is None:
            newest = max(hours, default=index)
            if index < newest - KEPT_HOURS:
                return None
            hour = hours[index] = _Hour()
            for old in [i for i in hours if i < index - KEPT_HOURS]:
                del hours[old]
            self._hours.move_to_end(scope)  # once per scope and hour: eviction goes by the last new hour
        return hour

    # --- checks ---------------------------------------------------------------------------------------
    def check(self, at_ns: int) -> list[AlertEvent]:
        """At an hour boundary: compare the last complete hour with its reference; the alert transitions."""
        current_index = at_ns // HOUR_NS - 1
        events: list[AlertEvent] = []
        stale: list[Scope] = []
        for scope, hours in self._hours.items():
            current = hours.get(current_index)
            reference = [
                hours[i] for i in range(current_index - REFERENCE_HOURS, current_index) if i in hours
            ]
            if current is None or not reference:
                if not hours or max(hours) < current_index - REFERENCE_HOURS:
                    stale.append(scope)
                continue
            for name in (*NUMERIC, *CATEGORICAL):
                compared = self._compare(name, current, reference)
                if compared is None:
                    continue
                result, moved = compared
                self.last_results[(scope, name)] = result
                events += self._transition(scope, name, result, moved, at_ns)
        for scope in stale:
            del self._hours[scope]
            for key in [k for k in self.last_results if k[0] == scope]:
                del self.last_results[key]
        return events

    def _compare(
        self, name: str, current: _Hour, reference: list[_Hour]
    ) -> tuple[DriftResult, Callable[[], str]] | None:
        """The comparison, and how to describe the change (called only for an alert)."""
        if name in NUMERIC:
            now = current.numeric.get(name)
            if now is None:
                return None
            ref = [v for hour in reference if (r := hour.numeric.get(name)) is not None for v in r.values()]
            values = now.values()
            result = numeric_drift(ref, values, alpha=self.alpha, min_samples=self.min_samples)
            return result, lambda: _median_move(ref, values)
        mix = current.mixes.get(name)
        if mix is None:
            return None
        total: Counter[str] = Counter()
        for hour in reference:
            total.update(hour.mixes.get(name, {}))
        result = categorical_drift(total, mix, alpha=self.alpha, min_samples=self.min_samples)
        return result, lambda: _largest_move(total, mix)

    def _transition(
        self, scope: Scope, name: str, result: DriftResult, moved: Callable[[], str], at_ns: int
    ) -> list[AlertEvent]:
        key = (scope, name)
        firing = self._firing.get(key)
        significant = result.level is DriftLevel.SIGNIFICANT
        if significant and firing is None:
            event = _event(scope, name, result, moved(), at_ns, status="firing", starts_at_ns=at_ns)
            self._firing[key] = event
            return [event]
        if not significant and firing is not None and result.level is not DriftLevel.INSUFFICIENT_DATA:
            del self._firing[key]
            return [
                _event(
                    scope, name, result, moved(), at_ns, status="resolved", starts_at_ns=firing.starts_at_ns
                )
            ]
        return []

    def active(self) -> list[AlertEvent]:
        return list(self._firing.values())


def _median_move(reference: list[float], current: list[float]) -> str:
    if not reference or not current:
        return ""
    return f"median {statistics.median(reference):.4g} -> {statistics.median(current):.4g}"


def _largest_move(reference: Mapping[str, int], current: Mapping[str, int]) -> str:
    """The category whose share changed most, as "`invalid_json` 3% -> 41%"; "" without data."""
    n_ref, n_cur = sum(reference.values()), sum(current.values())
    if not n_ref or not n_cur:
        return ""
    category = max(
        sorted({*reference, *current}),
        key=lambda c: abs(current.get(c, 0) / n_cur - reference.get(c, 0) / n_ref),
    )
    return f"{category} {reference.get(category, 0) / n_ref:.0%} -> {current.get(category, 0) / n_cur:.0%}"


def _event(
    scope: Scope, name: str, result: DriftResult, moved: str, at_ns: int, *, status: str, starts_at_ns: int
) -> AlertEvent:
    alertname = "OutputDrift" if name in OUTPUT_SIGNALS else "InputDrift"
    psi = result.psi if result.psi is not None else result.statistic
    value = "" if psi is None else f"{psi:.3g}"
    service, feature, prompt_name = scope
    labels = {
        "alertname": alertname,
        "severity": "P3",
        "service": service,
        "feature": feature,
        "signal": name,
    }
    if prompt_name:
        labels["prompt_name"] = prompt_name
    where = "/".join(part for part in scope if part)
    annotations = {
        "summary": f"{name} of {where} drifted from the previous day (PSI {value})",
        "description": (
            f"{result.method} over the last hour vs the {REFERENCE_HOURS} hours before: statistic "
            f"{result.statistic}, p-value {result.p_value}, PSI {result.psi}, level {result.level} "
            f"({int(result.current_size)} vs {int(result.reference_size)} samples)."
            + (f" Largest change: {moved}." if moved else "")
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
        series=SeriesKey(service, feature, prompt_name, "", ""),
        severity="P3",
        value=psi,
    )
