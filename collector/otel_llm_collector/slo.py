"""Service level objectives: error budgets, multiwindow multi-burn-rate alerts and the release policy.

    slos = load_slos("slos.yaml")                 # or parse_slos(yaml.safe_load(text))
    tracker = SloTracker(slos)
    tracker.observe_call(call)                    # every CallRecord, in any order (event time)
    tracker.observe_evaluation(evaluation)        # every EvaluationRecord (series resolved or passed)
    events = tracker.evaluate(tick_ns)            # at each event-time minute tick: AlertEvent transitions
    tracker.statuses(tick_ns); tracker.metrics_text(tick_ns)

An SLO file::

    slos:
      - name: support-availability
        kind: availability            # good = a call without error.type
        objective: 0.99
        period: 30d
        service: support-bot          # scope: exact values of service / feature / prompt_name / model
      - name: support-latency
        kind: latency                 # good = a successful call with duration <= threshold_seconds
        threshold_seconds: 2.5
        objective: 0.95
      - name: support-faithfulness
        kind: quality                 # good = `faithfulness` score >= threshold (or label != fail)
        evaluation: faithfulness
        threshold: 0.7
        objective: 0.9

Latency SLOs count successful calls only (a failed call is the availability SLO's business). A quality
SLO judges an evaluation by its score when it has one, else by its label (`fail` is bad, anything else
good); an evaluation with neither is ignored.

Burn rate over a window = (bad / total in the window) / (1 - objective): 1.0 spends exactly the budget over
the period. Windows are 5m, 30m, 1h, 6h and 3d of whole event-time minutes before the evaluation time; a
window without calls has no burn rate (None), which never fires and resolves a firing alert. The alert
table (Google SRE workbook, chapter 5, for a 30-day budget):

========  ============  ===========  =========  ========================================
severity  long window   short window burn rate  budget spent when it fires (30d period)
========  ============  ===========  =========  ========================================
page P1   1h            5m           14.4       2% in 1 hour
page P1   6h            30m          6          5% in 6 hours
ticket P3 3d            6h           1          10% in 3 days
========  ============  ===========  =========  ========================================

Both windows of a pair must be at or above the rate (within a relative 1e-9, so that exactly 14.4x fires
despite float rounding). One alert per (SLO, severity): labels `alertname=SLOBurnRate`, `slo`, `severity`;
it fires with no pending period and resolves as soon as no pair holds.

Error budget over the period: consumed = (bad / total over the period) / (1 - objective), remaining = 1 -
consumed (negative once overspent; 1.0 with no traffic). Release policy: remaining > 0.5 `normal`, 0.2 to
0.5 `caution`, < 0.2 `freeze`.

Memory is bounded by the windows, not the traffic: per SLO a ring of 4,380 minute buckets (3 days, the
longest burn-rate window, plus one hour so that window edges inside an hour are exact) and a ring of hourly
buckets covering the period (at most 90 days: 2,160 + 2). Older records only reach the hourly ring; the
period is therefore counted in whole hours at its start edge (up to one hour more than `period`). A
record older than every retained bucket is counted in `dropped_too_old`.

Not thread-safe: one caller at a time (the ingest worker, under the app's lock for reads).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.exposition import escape_label_value
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.rules import parse_duration

__all__ = [
    "BURN_RATE_ALERTS",
    "BURN_WINDOWS",
    "RELEASE_POLICIES",
    "SLO_ALERTNAME",
    "BurnRateAlert",
    "SloError",
    "SloSet",
    "SloSpec",
    "SloStatus",
    "SloTracker",
    "load_slos",
    "parse_slos",
    "release_policy",
]

MINUTE_NS: Final = 60 * 1_000_000_000
SLO_ALERTNAME: Final = "SLOBurnRate"
BURN_WINDOWS: Final = {"5m": 5, "30m": 30, "1h": 60, "6h": 360, "3d": 4320}
"""Burn-rate window -> minutes."""
MAX_PERIOD_SECONDS: Final = 90 * 86400
MAX_SLOS: Final = 200
MINUTE_SLOTS: Final = 4320 + 60
RELEASE_POLICIES: Final = ("normal", "caution", "freeze")
_REL_TOLERANCE: Final = 1e-9
SNAPSHOT_VERSION: Final = 1

Kind = Literal["availability", "latency", "quality"]
ReleasePolicy = Literal["normal", "caution", "freeze"]


class SloError(ValueError):
    """An SLO file is invalid; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class BurnRateAlert:
    """One row of the alert table: fires when both windows burn at `rate` or more."""

    severity: Literal["P1", "P3"]
    kind: Literal["page", "ticket"]
    long_window: str
    short_window: str
    rate: float


BURN_RATE_ALERTS: Final = (
    BurnRateAlert("P1", "page", "1h", "5m", 14.4),
    BurnRateAlert("P1", "page", "6h", "30m", 6.0),
    BurnRateAlert("P3", "ticket", "3d", "6h", 1.0),
)


class SloSpec(BaseModel):
    """One SLO. Scope fields are exact values; an unset field matches every value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    kind: Kind
    objective: float = Field(gt=0.0, lt=1.0)
    """Share of good events, e.g. 0.99."""
    period: str = "30d"
    description: str = ""
    threshold_seconds: float | None = Field(default=None, gt=0.0)
    """Latency SLOs: the slowest good call."""
    evaluation: str | None = None
    """Quality SLOs: the evaluation name."""
    threshold: float = 0.5
    """Quality SLOs: the lowest good score."""
    service: str | None = None
    feature: str | None = None
    prompt_name: str | None = None
    model: str | None = None

    @field_validator("period")
    @classmethod
    def _check_period(cls, value: str) -> str:
        seconds = parse_duration(value)
        if not 3600 <= seconds <= MAX_PERIOD_SECONDS or seconds % 3600:
            raise ValueError("period: whole hours between 1h and 90d")
        return value

    @model_validator(mode="after")
    def _check_kind(self) -> SloSpec:
        if self.kind == "latency" and self.threshold_seconds is None:
            raise ValueError("threshold_seconds: required for a latency SLO")
        if self.kind == "quality" and not self.evaluation:
            raise ValueError("evaluation: required for a quality SLO")
        return self

    @property
    def period_seconds(self) -> int:
        return int(parse_duration(self.period))

    @property
    def budget(self) -> float:
        """The allowed bad share, 1 - objective."""
        return 1.0 - self.objective

    def applies_to(self, key: SeriesKey) -> bool:
        return (
            (self.service is None or self.service == key.service)
            and (self.feature is None or self.feature == key.feature)
            and (self.prompt_name is None or self.prompt_name == key.prompt_name)
            and (self.model is None or self.model == key.model)
        )

    def judge_call(self, call: CallRecord) -> bool | None:
        """Good (True), bad (False) or not counted (None) for this SLO."""
        if self.kind == "availability":
            return call.ok
        if self.kind == "latency" and call.ok and self.threshold_seconds is not None:
            return call.duration_s <= self.threshold_seconds
        return None

    def judge_evaluation(self, evaluation: EvaluationRecord) -> bool | None:
        if self.kind != "quality" or evaluation.name != self.evaluation:
            return None
        if evaluation.score is not None and math.isfinite(evaluation.score):
            return evaluation.score >= self.threshold
        if evaluation.label:
            return not evaluation.failed
        return None


class SloSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slos: tuple[SloSpec, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> SloSet:
        names = [s.name for s in self.slos]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate SLO name(s): {', '.join(duplicates)}")
        if len(self.slos) > MAX_SLOS:
            raise ValueError(f"{len(self.slos)} SLOs; at most {MAX_SLOS}")
        return self


def parse_slos(data: object, *, source: str = "slos") -> SloSet:
    """Validate parsed YAML (`{"slos": [...]}`); raise `SloError` naming every problem."""
    if data is None:
        return SloSet()
    try:
        return SloSet.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise SloError("\n".join(problems)) from None


def load_slos(path: str | Path) -> SloSet:
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SloError(f"{path}: {exc}") from None
    return parse_slos(data, source=str(path))


def release_policy(remaining: float) -> ReleasePolicy:
    """> 0.5 normal, 0.2 to 0.5 caution, < 0.2 freeze (compared at 9 decimals: 1 - 0.99 is not 0.01)."""
    remaining = round(remaining, 9)
    if remaining > 0.5:
        return "normal"
    if remaining >= 0.2:
        return "caution"
    return "freeze"


class _Ring:
    """Good/total counts per bucket index, the newest `size` indices kept (older slots are reused)."""

    __slots__ = ("good", "index", "size", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self.index = [-1] * size
        self.good = [0] * size
        self.total = [0] * size

    def add(self, index: int, good: int, total: int) -> bool:
        slot = index % self.size
        held = self.index[slot]
        if held != index:
            if index < held:
                return False
            self.index[slot], self.good[slot], self.total[slot] = index, 0, 0
        self.good[slot] += good
        self.total[slot] += total
        return True

    def sum(self, start: int, end: int) -> tuple[int, int]:
        good = total = 0
        for index in range(max(start, end - self.size), end):
            slot = index % self.size
            if self.index[slot] == index:
                good += self.good[slot]
                total += self.total[slot]
        return good, total

    def items(self) -> list[list[int]]:
        return [[i, g, t] for i, g, t in zip(self.index, self.good, self.total) if i >= 0 and t]


class _Counts:
    """Minute and hourly rings of one SLO."""

    def __init__(self, period_hours: int) -> None:
        self.minutes = _Ring(MINUTE_SLOTS)
        self.hours = _Ring(max(period_hours, 72) + 2)

    def add(self, minute: int, good: bool) -> bool:
        g = 1 if good else 0
        kept_minute = self.minutes.add(minute, g, 1)
        kept_hour = self.hours.add(minute // 60, g, 1)
        return kept_minute or kept_hour

    def sum(self, start: int, end: int, newest_minute: int) -> tuple[int, int]:
        """Counts of minutes [start, end); whole hours where the minute ring no longer reaches."""
        if start <= newest_minute - MINUTE_SLOTS:
            start = (start // 60) * 60
        first_hour, last_hour = -(-start // 60), end // 60
        if first_hour >= last_hour:
            return self.minutes.sum(start, end)
        g1, t1 = self.minutes.sum(start, first_hour * 60)
        g2, t2 = self.hours.sum(first_hour, last_hour)
        g3, t3 = self.minutes.sum(last_hour * 60, end)
        return g1 + g2 + g3, t1 + t2 + t3


@dataclass(frozen=True, slots=True)
class SloStatus:
    """An SLO at an event time: period figures, burn rates, release policy, firing alerts."""

    name: str
    kind: str
    objective: float
    period: str
    at_ns: int
    good: int
    total: int
    budget_consumed: float
    budget_remaining: float
    release_policy: ReleasePolicy
    burn_rates: Mapping[str, float | None]
    firing: tuple[str, ...]
    """Severities of the firing burn-rate alerts."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "objective": self.objective,
            "period": self.period,
            "at_ns": self.at_ns,
            "good": self.good,
            "total": self.total,
            "error_budget_consumed": self.budget_consumed,
            "error_budget_remaining": self.budget_remaining,
            "release_policy": self.release_policy,
            "burn_rates": dict(self.burn_rates),
            "firing": list(self.firing),
        }


@dataclass(slots=True)
class _AlertSlot:
    firing: bool = False
    since_ns: int = 0


def _series(spec: SloSpec) -> SeriesKey:
    return SeriesKey(spec.service or "", spec.feature or "", spec.prompt_name or "", "", spec.model or "")


def _at_least(value: float | None, rate: float) -> bool:
    return value is not None and value >= rate * (1.0 - _REL_TOLERANCE)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class SloTracker:
    """Good/total counts per SLO in event time, burn-rate alerts and budgets (see the module docstring)."""

    def __init__(self, slos: SloSet | Sequence[SloSpec]) -> None:
        self.slos: tuple[SloSpec, ...] = tuple(slos.slos if isinstance(slos, SloSet) else slos)
        self._counts = {s.name: _Counts(s.period_seconds // 3600) for s in self.slos}
        self._alerts: dict[tuple[str, str], _AlertSlot] = {}
        self._newest_minute = -(1 << 62)
        self._last_at_ns = 0
        self.dropped_too_old = 0

    @property
    def now_ns(self) -> int:
        """The last evaluation time, or the end of the newest minute seen before any evaluation."""
        if self._last_at_ns:
            return self._last_at_ns
        return max(0, (self._newest_minute + 1) * MINUTE_NS)

    # --- input ----------------------------------------------------------------------------------------
    def _add(self, spec: SloSpec, time_ns: int, good: bool) -> None:
        minute = time_ns // MINUTE_NS
        self._newest_minute = max(self._newest_minute, minute)
        if not self._counts[spec.name].add(minute, good):
            self.dropped_too_old += 1

    def observe_call(self, call: CallRecord) -> None:
        """Count a call (and the evaluations it carries) for every SLO whose scope and kind take it."""
        for spec in self.slos:
            if spec.applies_to(call.series):
                verdict = spec.judge_call(call)
                if verdict is not None:
                    self._add(spec, call.end_time_ns, verdict)
        for evaluation in call.evaluations:
            self.observe_evaluation(evaluation, series=call.series)

    def observe_calls(self, calls: Iterable[CallRecord]) -> None:
        for call in calls:
            self.observe_call(call)

    def observe_evaluation(self, evaluation: EvaluationRecord, *, series: SeriesKey | None = None) -> None:
        """Count an evaluation for quality SLOs; without a series (its own or `series`) it is skipped."""
        key = series or evaluation.series
        if key is None:
            return
        for spec in self.slos:
            if spec.applies_to(key):
                verdict = spec.judge_evaluation(evaluation)
                if verdict is not None:
                    self._add(spec, evaluation.time_ns, verdict)

    # --- figures --------------------------------------------------------------------------------------
    def _ratio(self, spec: SloSpec, minutes: int, at_ns: int) -> tuple[int, int]:
        end = at_ns // MINUTE_NS
        return self._counts[spec.name].sum(end - minutes, end, self._newest_minute)

    def burn_rates(self, name: str, at_ns: int) -> dict[str, float | None]:
        """Burn rate per window of `BURN_WINDOWS` at `at_ns`; None for a window without events."""
        spec = self._spec(name)
        rates: dict[str, float | None] = {}
        for window, minutes in BURN_WINDOWS.items():
            good, total = self._ratio(spec, minutes, at_ns)
            rates[window] = (total - good) / total / spec.budget if total else None
        return rates

    def status(self, name: str, at_ns: int | None = None) -> SloStatus:
        spec = self._spec(name)
        at = self.now_ns if at_ns is None else at_ns
        good, total = self._ratio(spec, spec.period_seconds // 60, at)
        consumed = (total - good) / total / spec.budget if total else 0.0
        remaining = 1.0 - consumed
        firing = tuple(
            severity
            for severity in ("P1", "P3")
            if (slot := self._alerts.get((name, severity))) is not None and slot.firing
        )
        return SloStatus(
            name=name,
            kind=spec.kind,
            objective=spec.objective,
            period=spec.period,
            at_ns=at,
            good=good,
            total=total,
            budget_consumed=consumed,
            budget_remaining=remaining,
            release_policy=release_policy(remaining),
            burn_rates=self.burn_rates(name, at),
            firing=firing,
        )

    def statuses(self, at_ns: int | None = None) -> list[SloStatus]:
        return [self.status(s.name, at_ns) for s in self.slos]

    def _spec(self, name: str) -> SloSpec:
        for spec in self.slos:
            if spec.name == name:
                return spec
        raise KeyError(name)

    # --- alerts ---------------------------------------------------------------------------------------
    def evaluate(self, at_ns: int) -> list[AlertEvent]:
        """Burn-rate alerts at event time `at_ns` (a minute tick); return the firing/resolved transitions."""
        if at_ns < self._last_at_ns:
            raise ValueError(f"event time went backwards: {at_ns} < {self._last_at_ns}")
        self._last_at_ns = at_ns
        events: list[AlertEvent] = []
        for spec in self.slos:
            rates = self.burn_rates(spec.name, at_ns)
            for severity in ("P1", "P3"):
                rows = [a for a in BURN_RATE_ALERTS if a.severity == severity]
                held = [a for a in rows if _at_least(rates[a.long_window], a.rate)]
                held = [a for a in held if _at_least(rates[a.short_window], a.rate)]
                slot = self._alerts.setdefault((spec.name, severity), _AlertSlot())
                if held and not slot.firing:
                    slot.firing, slot.since_ns = True, at_ns
                    events.append(self._event(spec, severity, rows[0].kind, held[0], rates, at_ns, slot))
                elif not held and slot.firing:
                    slot.firing = False
                    events.append(self._event(spec, severity, rows[0].kind, None, rates, at_ns, slot))
        return events

    def _event(
        self,
        spec: SloSpec,
        severity: str,
        kind: str,
        row: BurnRateAlert | None,
        rates: Mapping[str, float | None],
        at_ns: int,
        slot: _AlertSlot,
    ) -> AlertEvent:
        labels = {"alertname": SLO_ALERTNAME, "slo": spec.name, "severity": severity}
        annotations = {f"burn_rate_{w}": _fmt(v) for w, v in rates.items()}
        annotations["objective"] = f"{spec.objective:g}"
        annotations["kind"] = kind
        if row is not None:
            annotations["windows"] = f"{row.long_window}/{row.short_window}"
            annotations["summary"] = (
                f"SLO {spec.name} burns its error budget at {_fmt(rates[row.long_window])}x over "
                f"{row.long_window} and {_fmt(rates[row.short_window])}x over {row.short_window} "
                f"(threshold {row.rate:g}x)"
            )
        else:
            annotations["summary"] = f"SLO {spec.name} burn rate is back under the {kind} thresholds"
        value = rates[row.long_window] if row is not None else None
        return AlertEvent(
            status="firing" if row is not None else "resolved",
            labels=labels,
            annotations=annotations,
            starts_at_ns=slot.since_ns,
            ends_at_ns=None if row is not None else at_ns,
            at_ns=at_ns,
            rule=SLO_ALERTNAME,
            series=_series(spec),
            severity=severity,
            value=value,
            group_key=f"{SLO_ALERTNAME}:{spec.name}",
        )

    def active_alerts(self) -> list[tuple[str, str, int]]:
        """(slo, severity, firing since) of every firing burn-rate alert."""
        return sorted((n, s, slot.since_ns) for (n, s), slot in self._alerts.items() if slot.firing)

    # --- exposition -----------------------------------------------------------------------------------
    def metrics_text(self, at_ns: int | None = None) -> str:
        """`otel_llm_slo_*` gauges in Prometheus text format 0.0.4 (to append to `/metrics`)."""
        remaining: list[str] = []
        burn: list[str] = []
        policy: list[str] = []
        for status in self.statuses(at_ns):
            slo = f'slo="{escape_label_value(status.name)}"'
            remaining.append(
                f"otel_llm_slo_error_budget_remaining_ratio{{{slo}}} {status.budget_remaining!r}"
            )
            for window, rate in status.burn_rates.items():
                if rate is not None:
                    burn.append(f'otel_llm_slo_burn_rate{{{slo},window="{window}"}} {rate!r}')
            for mode in RELEASE_POLICIES:
                current = 1 if mode == status.release_policy else 0
                policy.append(f'otel_llm_slo_release_policy{{{slo},mode="{mode}"}} {current}')
        lines: list[str] = []
        for name, help_text, samples in (
            ("otel_llm_slo_error_budget_remaining_ratio", "Share of the SLO error budget left.", remaining),
            ("otel_llm_slo_burn_rate", "Error budget burn rate over the window (1 = on budget).", burn),
            ("otel_llm_slo_release_policy", "Release policy mode from the remaining budget.", policy),
        ):
            if samples:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
        return "\n".join(lines) + "\n" if lines else ""

    # --- persistence ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state: non-empty buckets, alert states and the event-time cursor."""
        return {
            "version": SNAPSHOT_VERSION,
            "newest_minute": self._newest_minute,
            "last_at_ns": self._last_at_ns,
            "dropped_too_old": self.dropped_too_old,
            "slos": {
                name: {"minutes": counts.minutes.items(), "hours": counts.hours.items()}
                for name, counts in self._counts.items()
            },
            "alerts": [[n, s, slot.firing, slot.since_ns] for (n, s), slot in self._alerts.items()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a `snapshot`; SLOs no longer configured are skipped, new ones start empty."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported SLO snapshot version {data.get('version')!r}")
        self._newest_minute = int(data["newest_minute"])
        self._last_at_ns = int(data["last_at_ns"])
        self.dropped_too_old = int(data.get("dropped_too_old", 0))
        for name, rings in data["slos"].items():
            counts = self._counts.get(name)
            if counts is None:
                continue
            for index, good, total in rings["minutes"]:
                counts.minutes.add(int(index), int(good), int(total))
            for index, good, total in rings["hours"]:
                counts.hours.add(int(index), int(good), int(total))
        for name, severity, firing, since in data["alerts"]:
            if name in self._counts:
                self._alerts[(name, severity)] = _AlertSlot(bool(firing), int(since))
