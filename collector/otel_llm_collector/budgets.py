"""Cost budgets per service, feature or tenant: spend against budget, projection, cache hits, cost spikes.

    budgets = load_budgets("budgets.yaml")          # or parse_budgets(yaml.safe_load(text))
    tracker = BudgetTracker(budgets)
    tracker.observe_call(call)                      # every CallRecord, in any order (event time)
    events = tracker.evaluate(tick_ns)              # at each event-time minute tick: AlertEvent transitions
    tracker.statuses(); tracker.metrics_text()      # /api/v1/budgets, /metrics

A budget file::

    budgets:
      - name: support-bot
        service: support-bot          # scope: the narrowest of service < feature < tenant that is set
        daily_usd: 40
        monthly_usd: 1000
      - name: support-answer
        service: support-bot
        feature: support-answer       # scope `feature` (within that service)
        monthly_usd: 600
      - name: tenant-acme
        tenant: acme                  # scope `tenant`: the call's `tenant` segment
        daily_usd: 5
        escalate_severity: P1         # default P2; investigate_severity default P3
    spikes:                           # optional, these are the defaults
      baseline_minutes: 60
      min_baseline_minutes: 30
      min_calls: 10
      for_minutes: 3

A budget matches a call when every scope field it sets equals the call's value (none set: every call, scope
`all`). The tenant is the call's segment `tenant` (`CallRecord.segments`). Limits are USD; a budget needs
`daily_usd`, `monthly_usd` or both.

Periods are UTC calendar days and months of event time (span end). At event time T (a minute tick), the
current period is the one holding the instant just before T, and its spend is the cost of the calls that
ended in [period start, T): the tick at midnight judges the day that just ended, whole; the next tick
judges the new day. Calls without a cost count in `unpriced_calls`, not in the spend. Figures have minute
resolution: asked at a time inside a minute, that whole minute counts.

Bands. A period's ratio is spend / pro-rated limit, where the pro-rated limit is
`limit * min(1, max(elapsed, 1 day) / period length)`: the spend a linear pace would have reached by T, but
never less than one day's share. So a daily budget is compared with its full limit (pro-rating within a day
would mistake the busy hours for an overrun), and a monthly budget with its month-to-date share (from the
second day on; during the first day, with one day's share). "10% over" means ratio 1.10. Bands, compared at
9 decimals: ratio < 1.10 `fine`; 1.10 <= ratio <= 1.20 `investigate`; ratio > 1.20 `escalate`. An
`investigate` or `escalate` band fires `BudgetOverrun` at once (labels `budget`, `scope`, `period` and the
scope's `service`/`feature`/`tenant`; severity `investigate_severity`, default P3, or
`escalate_severity`, default P2); it resolves when the band returns to `fine` (a new day or month does
that, with annotation `resolved_reason: new_period`). A change between the two bands resolves the alert of
the old severity and fires the new one.

Projection. Projected month-end spend = month-to-date spend * month length / max(elapsed, 1 day): linear in
the elapsed fraction of the month (28 to 31 days), with the same one-day floor. For a monthly budget,
projected / limit is exactly the monthly ratio.

Cache hit ratio per period: cache-read input tokens / input tokens, over the calls that reported input
tokens (input tokens include cached ones, as the GenAI conventions count them; a call without a cache
figure counts as no cache hit). None without input tokens.

Cost spikes. At each tick the last complete minute is judged, per budget, twice: `per_call` (its cost per
priced call) and `per_minute` (its spend). The baseline is the median of the previous `baseline_minutes`
minutes, leaving out minutes judged as spikes (so a spike does not become its own baseline): per call over
the minutes that had priced calls, per minute over every minute since the budget's first call (a minute
without calls spent 0). A minute is judged only with at least `min_calls` priced calls and at least
`min_baseline_minutes` baseline minutes and a positive baseline; otherwise it is insufficient data. Ratio
>= 2 (the relative tolerance 1e-9 lets exactly 2x count) is a spike: the alert `CostSpike` (label `kind`)
is pending from the first spiking minute, fires after `for_minutes` consecutive ones, and resolves after
`for_minutes` consecutive minutes that are not spikes (a pending one goes back to inactive at once).
Severity by the highest ratio of the episode: 2x to under 5x P3, 5x to under 10x P2, 10x and more P1; an
escalation resolves the lower-severity alert and fires the higher one.

Memory is bounded by the budgets, not the traffic: per budget the day totals of the current and previous
month (at most 62) and the minute totals of the spike baseline. A call older than the previous month (or,
for spikes, than the baseline) only counts where its bucket is still kept; one older than every day kept
is counted in `dropped_too_old`. Against timestamps from broken clocks, a budget keeps at most 93 days and
2,880 minutes; a call that fits in none is counted in `dropped_over_limit`. `snapshot`/`restore` keep
the totals and alert states across restarts (the last spike judgement is made again at the next tick).

Not thread-safe: one caller at a time (the ingest worker, under the app's lock for reads).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from otel_llm_collector.alerts import AlertEvent, Status
from otel_llm_collector.exposition import escape_label_value
from otel_llm_collector.records import CallRecord, SeriesKey

__all__ = [
    "BANDS",
    "BUDGET_ALERTNAME",
    "ESCALATE_RATIO",
    "INVESTIGATE_RATIO",
    "SPIKE_ALERTNAME",
    "SPIKE_KINDS",
    "SPIKE_SEVERITIES",
    "TENANT_SEGMENT",
    "BudgetError",
    "BudgetSet",
    "BudgetSpec",
    "BudgetStatus",
    "BudgetTracker",
    "PeriodStatus",
    "SpikeSettings",
    "SpikeStatus",
    "band_of",
    "load_budgets",
    "parse_budgets",
    "spike_severity",
    "tenant_of",
]

MINUTE_NS: Final = 60 * 1_000_000_000
DAY_NS: Final = 86_400 * 1_000_000_000
BUDGET_ALERTNAME: Final = "BudgetOverrun"
SPIKE_ALERTNAME: Final = "CostSpike"
TENANT_SEGMENT: Final = "tenant"
INVESTIGATE_RATIO: Final = 1.10
ESCALATE_RATIO: Final = 1.20
BANDS: Final = ("fine", "investigate", "escalate")
SPIKE_KINDS: Final = ("per_call", "per_minute")
SPIKE_RATIO: Final = 2.0
SPIKE_SEVERITIES: Final = ((10.0, "P1"), (5.0, "P2"), (SPIKE_RATIO, "P3"))
"""(lowest ratio, severity), most severe first."""
MAX_BUDGETS: Final = 200
MAX_DAYS: Final = 93
MAX_MINUTES: Final = 1440 + 1440
RUNBOOK_URL: Final = "docs/runbooks/cost.md"
SNAPSHOT_VERSION: Final = 1
_REL_TOLERANCE: Final = 1e-9

Band = Literal["fine", "investigate", "escalate"]
Period = Literal["daily", "monthly"]
SpikeKind = Literal["per_call", "per_minute"]
Severity = Literal["P0", "P1", "P2", "P3"]
_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class BudgetError(ValueError):
    """A budget file is invalid; the message lists every problem, each naming the file and the field."""


class BudgetSpec(BaseModel):
    """One budget. Scope fields are exact values; an unset field matches every value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    service: str | None = Field(default=None, min_length=1)
    feature: str | None = Field(default=None, min_length=1)
    tenant: str | None = Field(default=None, min_length=1)
    daily_usd: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    monthly_usd: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    investigate_severity: Severity = "P3"
    escalate_severity: Severity = "P2"
    description: str = ""

    @model_validator(mode="after")
    def _check_limits(self) -> BudgetSpec:
        if self.daily_usd is None and self.monthly_usd is None:
            raise ValueError("daily_usd or monthly_usd: at least one limit is required")
        return self

    @property
    def scope(self) -> str:
        """`tenant`, `feature`, `service` (the narrowest field set) or `all`."""
        if self.tenant is not None:
            return "tenant"
        if self.feature is not None:
            return "feature"
        return "service" if self.service is not None else "all"

    def limit(self, period: Period) -> float | None:
        return self.daily_usd if period == "daily" else self.monthly_usd

    def matches(self, service: str, feature: str, tenant: str) -> bool:
        return (
            (self.service is None or self.service == service)
            and (self.feature is None or self.feature == feature)
            and (self.tenant is None or self.tenant == tenant)
        )

    def scope_labels(self) -> dict[str, str]:
        labels = {"budget": self.name, "scope": self.scope}
        for key in ("service", "feature", "tenant"):
            value = getattr(self, key)
            if value is not None:
                labels[key] = value
        return labels


class SpikeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    baseline_minutes: int = Field(default=60, ge=5, le=1440)
    """Minutes before the judged one that the baseline median is taken over."""
    min_baseline_minutes: int = Field(default=30, ge=3)
    """Baseline minutes needed to judge (minutes with priced calls, for `per_call`)."""
    min_calls: int = Field(default=10, ge=1)
    """Priced calls the judged minute needs."""
    for_minutes: int = Field(default=3, ge=1, le=60)
    """Consecutive spiking minutes before firing, and calm ones before resolving."""

    @model_validator(mode="after")
    def _check_baseline(self) -> SpikeSettings:
        if self.min_baseline_minutes > self.baseline_minutes:
            raise ValueError("min_baseline_minutes: at most baseline_minutes")
        return self


class BudgetSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: tuple[BudgetSpec, ...] = ()
    spikes: SpikeSettings = SpikeSettings()

    @model_validator(mode="after")
    def _unique(self) -> BudgetSet:
        names = [b.name for b in self.budgets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"name: duplicate budget name(s): {', '.join(duplicates)}")
        if len(self.budgets) > MAX_BUDGETS:
            raise ValueError(f"budgets: {len(self.budgets)} budgets; at most {MAX_BUDGETS}")
        return self


def _where(loc: Sequence[int | str], data: object) -> str:
    """`budgets[1] (tenant-acme).daily_usd` for pydantic's `('budgets', 1, 'daily_usd')`."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int) and parts:
            name = ""
            items = data.get("budgets") if isinstance(data, Mapping) and loc[0] == "budgets" else None
            if index == 1 and isinstance(items, list) and part < len(items) and isinstance(items[part], dict):
                candidate = items[part].get("name")
                name = f" ({candidate})" if isinstance(candidate, str) and candidate else ""
            parts[-1] += f"[{part}]{name}"
        else:
            parts.append(str(part))
    return ".".join(parts)


def parse_budgets(data: object, *, source: str = "budgets") -> BudgetSet:
    """Validate parsed YAML (`{"budgets": [...], "spikes": {...}}`); raise `BudgetError` naming problems."""
    if data is None:
        return BudgetSet()
    try:
        return BudgetSet.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _where(error["loc"], data)
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
        raise BudgetError("\n".join(problems)) from None


def load_budgets(path: str | Path) -> BudgetSet:
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BudgetError(f"{path}: {exc}") from None
    return parse_budgets(data, source=str(path))


def band_of(ratio: float | None) -> Band | None:
    """< 1.10 fine, 1.10 to 1.20 investigate, > 1.20 escalate (at 9 decimals: 110/100 is 1.1)."""
    if ratio is None:
        return None
    ratio = round(ratio, 9)
    if ratio > ESCALATE_RATIO:
        return "escalate"
    if ratio >= INVESTIGATE_RATIO:
        return "investigate"
    return "fine"


def spike_severity(ratio: float) -> str | None:
    """P1 from 10x, P2 from 5x, P3 from 2x; None under 2x."""
    for lowest, severity in SPIKE_SEVERITIES:
        if ratio >= lowest * (1.0 - _REL_TOLERANCE):
            return severity
    return None


def tenant_of(call: CallRecord) -> str:
    """The call's `tenant` segment, or ""."""
    for key, value in call.segments:
        if key == TENANT_SEGMENT:
            return value
    return ""


@lru_cache(maxsize=1024)
def _month_of_day(day: int) -> int:
    d = date(1970, 1, 1) + timedelta(days=day)
    return d.year * 12 + d.month - 1


@lru_cache(maxsize=256)
def _month_bounds(month: int) -> tuple[int, int]:
    """(start, end) in Unix ns of a month index (year * 12 + month - 1)."""
    year, index = divmod(month, 12)
    start = datetime(year, index + 1, 1, tzinfo=UTC)
    end = datetime(year + (index == 11), (index + 1) % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000_000, int(end.timestamp()) * 1_000_000_000


@dataclass(slots=True)
class _Totals:
    cost: float = 0.0
    calls: int = 0
    priced: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0

    def add(self, other: _Totals) -> None:
        self.cost += other.cost
        self.calls += other.calls
        self.priced += other.priced
        self.input_tokens += other.input_tokens
        self.cache_read_tokens += other.cache_read_tokens

    def subtract(self, other: _Totals) -> None:
        self.cost -= other.cost
        self.calls -= other.calls
        self.priced -= other.priced
        self.input_tokens -= other.input_tokens
        self.cache_read_tokens -= other.cache_read_tokens

    def row(self) -> list[float | int]:
        return [self.cost, self.calls, self.priced, self.input_tokens, self.cache_read_tokens]

    @classmethod
    def of(cls, call: CallRecord) -> _Totals:
        cost = call.cost_usd
        priced = cost is not None and math.isfinite(cost)
        inputs = call.input_tokens
        return cls(
            cost=float(cost) if cost is not None and priced else 0.0,
            calls=1,
            priced=1 if priced else 0,
            input_tokens=inputs if inputs is not None and inputs > 0 else 0,
            cache_read_tokens=(call.cache_read_tokens or 0) if inputs is not None and inputs > 0 else 0,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> _Totals:
        return cls(float(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))


@dataclass(frozen=True, slots=True)
class PeriodStatus:
    """One budget's day or month at an event time."""

    period: Period
    start_ns: int
    end_ns: int
    spend_usd: float
    calls: int
    unpriced_calls: int
    cache_hit_ratio: float | None
    limit_usd: float | None
    prorated_limit_usd: float | None
    ratio: float | None
    """spend / pro-rated limit (1.0: on budget); None without a limit for this period."""
    band: Band | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "spend_usd": self.spend_usd,
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "cache_hit_ratio": self.cache_hit_ratio,
            "limit_usd": self.limit_usd,
            "prorated_limit_usd": self.prorated_limit_usd,
            "ratio": self.ratio,
            "band": self.band,
        }


@dataclass(frozen=True, slots=True)
class SpikeStatus:
    """The last judged minute of one spike kind."""

    kind: SpikeKind
    minute_start_ns: int
    value: float | None
    baseline: float | None
    ratio: float | None
    baseline_minutes: int
    state: Literal["inactive", "pending", "firing"]
    severity: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "minute_start_ns": self.minute_start_ns,
            "value_usd": self.value,
            "baseline_usd": self.baseline,
            "ratio": self.ratio,
            "baseline_minutes": self.baseline_minutes,
            "state": self.state,
            "severity": self.severity,
        }


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    name: str
    scope: str
    match: Mapping[str, str]
    at_ns: int
    daily: PeriodStatus
    monthly: PeriodStatus
    projected_month_end_usd: float
    spikes: tuple[SpikeStatus, ...]
    firing: tuple[str, ...]
    """`alertname/severity` of this budget's firing alerts."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "match": dict(self.match),
            "at_ns": self.at_ns,
            "daily": self.daily.to_dict(),
            "monthly": self.monthly.to_dict(),
            "projected_month_end_usd": self.projected_month_end_usd,
            "spikes": [s.to_dict() for s in self.spikes],
            "firing": list(self.firing),
        }


@dataclass(slots=True)
class _Slot:
    """One alert (a budget's period band, or a spike kind) and the labels it is active under."""

    status: Literal["inactive", "pending", "firing"] = "inactive"
    labels: dict[str, str] = field(default_factory=dict)
    since_ns: int = 0
    period_start_ns: int = 0
    streak: int = 0
    calm: int = 0
    max_ratio: float = 0.0


@dataclass(slots=True)
class _State:
    days: dict[int, _Totals] = field(default_factory=dict)
    minutes: dict[int, _Totals] = field(default_factory=dict)
    first_minute: int | None = None
    spike_minutes: dict[str, set[int]] = field(default_factory=lambda: {k: set() for k in SPIKE_KINDS})
    spikes: dict[str, SpikeStatus] = field(default_factory=dict)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class BudgetTracker:
    """Spend per budget in event time, bands, projection and cost spikes (see the module docstring)."""

    def __init__(
        self, budgets: BudgetSet | Sequence[BudgetSpec], *, spikes: SpikeSettings | None = None
    ) -> None:
        if isinstance(budgets, BudgetSet):
            self.budgets: tuple[BudgetSpec, ...] = budgets.budgets
            self.spike_settings = spikes or budgets.spikes
        else:
            self.budgets = tuple(budgets)
            self.spike_settings = spikes or SpikeSettings()
        self._states = {b.name: _State() for b in self.budgets}
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._match_cache: dict[tuple[str, str, str], tuple[BudgetSpec, ...]] = {}
        self._newest_ns = 0
        self._last_at_ns = 0
        self._last_judged_minute: int | None = None
        self._oldest_day: int | None = None
        self.dropped_too_old = 0
        self.dropped_over_limit = 0

    @property
    def now_ns(self) -> int:
        """The last evaluation time, or the end of the newest minute seen before any evaluation."""
        if self._last_at_ns:
            return self._last_at_ns
        return self._newest_ns - self._newest_ns % MINUTE_NS + MINUTE_NS if self._newest_ns else 0

    # --- input ----------------------------------------------------------------------------------------
    def _matching(self, call: CallRecord) -> tuple[BudgetSpec, ...]:
        key = (call.series.service, call.series.feature, tenant_of(call))
        found = self._match_cache.get(key)
        if found is None:
            if len(self._match_cache) >= 4096:  # series and tenants come from clients: keep it bounded
                self._match_cache.clear()
            found = self._match_cache[key] = tuple(b for b in self.budgets if b.matches(*key))
        return found

    def observe_call(self, call: CallRecord) -> None:
        """Count a call's cost, tokens and cache reads in every budget whose scope takes it."""
        matching = self._matching(call)
        if not matching:
            return
        end = call.end_time_ns
        day = end // DAY_NS
        if self._oldest_day is not None and day < self._oldest_day:
            self.dropped_too_old += 1
            return
        minute = end // MINUTE_NS
        oldest_minute = self._oldest_minute()
        totals = _Totals.of(call)
        kept = False
        for spec in matching:
            state = self._states[spec.name]
            # Bounded against timestamps from broken clocks: at most MAX_DAYS days and MAX_MINUTES minutes
            # per budget (pruning keeps about 62 and `baseline_minutes`).
            day_totals = state.days.get(day)
            if day_totals is None:
                if len(state.days) >= MAX_DAYS:
                    continue
                day_totals = state.days[day] = _Totals()
            day_totals.add(totals)
            kept = True
            if (oldest_minute is None or minute >= oldest_minute) and (
                minute in state.minutes or len(state.minutes) < MAX_MINUTES
            ):
                state.minutes.setdefault(minute, _Totals()).add(totals)
            if state.first_minute is None or minute < state.first_minute:
                state.first_minute = minute
        if kept:
            self._newest_ns = max(self._newest_ns, end)
        else:
            self.dropped_over_limit += 1

    def observe_calls(self, calls: Iterable[CallRecord]) -> None:
        for call in calls:
            self.observe_call(call)

    def _oldest_minute(self) -> int | None:
        if self._last_judged_minute is None:
            return None
        return self._last_judged_minute - self.spike_settings.baseline_minutes

    # --- figures --------------------------------------------------------------------------------------
    def _until(self, state: _State, first_day: int, at_ns: int) -> _Totals:
        """Totals of the calls that ended in [first_day, at_ns), at minute resolution."""
        at_day = (at_ns - 1) // DAY_NS
        out = _Totals()
        for day in range(first_day, at_day + 1):
            totals = state.days.get(day)
            if totals is not None:
                out.add(totals)
        # The day of `at_ns` may already hold calls at or after it (a batch observed before its tick):
        # take out the minutes that start at or after `at_ns` (a minute that contains it stays counted).
        at_minute = -(-at_ns // MINUTE_NS)
        for minute, totals in state.minutes.items():
            if minute >= at_minute and minute * MINUTE_NS // DAY_NS <= at_day:
                out.subtract(totals)
        return out

    def _period(
        self, spec: BudgetSpec, state: _State, period: Period, start_ns: int, end_ns: int, at_ns: int
    ) -> PeriodStatus:
        totals = self._until(state, start_ns // DAY_NS, at_ns)
        spend = max(totals.cost, 0.0) if totals.priced else 0.0
        limit = spec.limit(period)
        length = end_ns - start_ns
        prorated = ratio = None
        if limit is not None:
            prorated = limit * min(1.0, max(at_ns - start_ns, DAY_NS) / length)
            ratio = spend / prorated
        return PeriodStatus(
            period=period,
            start_ns=start_ns,
            end_ns=end_ns,
            spend_usd=spend,
            calls=totals.calls,
            unpriced_calls=totals.calls - totals.priced,
            cache_hit_ratio=totals.cache_read_tokens / totals.input_tokens if totals.input_tokens else None,
            limit_usd=limit,
            prorated_limit_usd=prorated,
            ratio=ratio,
            band=band_of(ratio),
        )

    def _periods(self, spec: BudgetSpec, at_ns: int) -> tuple[PeriodStatus, PeriodStatus, float]:
        """(day, month, projected month-end spend) at `at_ns`."""
        state = self._states[spec.name]
        # The periods holding the instant just before `at_ns`: the midnight tick judges the day that just
        # ended, whole (its last minute included); the new day is judged from the next tick on.
        last = at_ns - 1
        day_start = last - last % DAY_NS
        month_start, month_end = _month_bounds(_month_of_day(last // DAY_NS))
        daily = self._period(spec, state, "daily", day_start, day_start + DAY_NS, at_ns)
        monthly = self._period(spec, state, "monthly", month_start, month_end, at_ns)
        projected = monthly.spend_usd * (month_end - month_start) / max(at_ns - month_start, DAY_NS)
        return daily, monthly, projected

    def status(self, name: str, at_ns: int | None = None) -> BudgetStatus:
        spec = self._spec(name)
        at = self.now_ns if at_ns is None else at_ns
        daily, monthly, projected = self._periods(spec, at)
        firing = tuple(
            f"{slot.labels['alertname']}/{slot.labels['severity']}"
            for (budget, _), slot in sorted(self._slots.items())
            if budget == name and slot.status == "firing"
        )
        spikes = self._states[name].spikes
        return BudgetStatus(
            name=name,
            scope=spec.scope,
            match={k: v for k, v in spec.scope_labels().items() if k in ("service", "feature", "tenant")},
            at_ns=at,
            daily=daily,
            monthly=monthly,
            projected_month_end_usd=projected,
            spikes=tuple(spikes[k] for k in SPIKE_KINDS if k in spikes),
            firing=firing,
        )

    def statuses(self, at_ns: int | None = None) -> list[BudgetStatus]:
        return [self.status(b.name, at_ns) for b in self.budgets]

    def _spec(self, name: str) -> BudgetSpec:
        for spec in self.budgets:
            if spec.name == name:
                return spec
        raise KeyError(name)

    # --- alerts ---------------------------------------------------------------------------------------
    def evaluate(self, at_ns: int) -> list[AlertEvent]:
        """Bands and cost spikes at event time `at_ns` (a minute tick); return the alert transitions."""
        if at_ns < self._last_at_ns:
            raise ValueError(f"event time went backwards: {at_ns} < {self._last_at_ns}")
        self._last_at_ns = at_ns
        events: list[AlertEvent] = []
        judged = at_ns // MINUTE_NS - 1
        advance = self._last_judged_minute is None or judged > self._last_judged_minute
        judge = advance and self.spike_settings.enabled
        consecutive = self._last_judged_minute is not None and judged == self._last_judged_minute + 1
        for spec in self.budgets:
            state = self._states[spec.name]
            for period in self._periods(spec, at_ns)[:2]:
                if period.limit_usd is not None:
                    events += self._band(spec, period, at_ns)
            if judge:
                for kind in SPIKE_KINDS:
                    events += self._spike(spec, state, kind, judged, at_ns, consecutive)
        if advance:
            self._last_judged_minute = judged
        self._prune(at_ns)
        return events

    def _band(self, spec: BudgetSpec, period: PeriodStatus, at_ns: int) -> list[AlertEvent]:
        slot = self._slots.setdefault((spec.name, f"band:{period.period}"), _Slot())
        band = period.band
        severity = spec.escalate_severity if band == "escalate" else spec.investigate_severity
        labels = {"alertname": BUDGET_ALERTNAME, "severity": severity, **spec.scope_labels()}
        labels["period"] = period.period
        spend, limit, prorated = period.spend_usd, period.limit_usd or 0.0, period.prorated_limit_usd or 0.0
        ratio = period.ratio or 0.0
        span = _PERIOD_NOUN[period.period]
        target: Literal["firing"] | None = "firing" if band in ("investigate", "escalate") else None
        if target is not None:
            summary = (
                f"Budget {spec.name} is {ratio - 1.0:.0%} over its {period.period} pace: {spend:.2f} USD "
                f"spent against {prorated:.2f} USD pro-rated of {limit:.2f} USD ({band})"
            )
        else:
            summary = f"Budget {spec.name} is back within 10% of its {period.period} pace ({ratio:.3f}x)"
        annotations = {
            "summary": summary,
            "description": f"Spend of the {spec.scope} budget {spec.name} this {span} is {spend:.2f} USD, "
            f"{ratio:.3f}x its pro-rated limit of {prorated:.2f} USD (limit {limit:g} USD); band {band} "
            "(10% to 20% over: investigate, over 20%: escalate).",
            "value": _fmt(period.ratio),
            "spend_usd": f"{spend:.4f}",
            "limit_usd": f"{limit:g}",
            "prorated_limit_usd": f"{prorated:.4f}",
            "band": str(band),
            "runbook_url": RUNBOOK_URL,
        }
        new_period = slot.status != "inactive" and slot.period_start_ns != period.start_ns
        ending = {"resolved_reason": "new_period"} if new_period else {}
        events = self._move(
            slot, target, labels, annotations, period.ratio, at_ns, spec, f"band:{period.period}", ending
        )
        slot.period_start_ns = period.start_ns
        return events

    def _spike(
        self, spec: BudgetSpec, state: _State, kind: SpikeKind, minute: int, at_ns: int, consecutive: bool
    ) -> list[AlertEvent]:
        settings = self.spike_settings
        flags = state.spike_minutes[kind]
        current = state.minutes.get(minute)
        value: float | None = None
        if current is not None and current.priced >= settings.min_calls:
            value = current.cost / current.priced if kind == "per_call" else current.cost
        history: list[float] = []
        first = state.first_minute if state.first_minute is not None else minute
        for m in range(max(minute - settings.baseline_minutes, first), minute):
            if m in flags:
                continue
            totals = state.minutes.get(m)
            if kind == "per_call":
                if totals is not None and totals.priced:
                    history.append(totals.cost / totals.priced)
            else:
                history.append(totals.cost if totals is not None else 0.0)
        baseline = _median(history) if len(history) >= settings.min_baseline_minutes else None
        ratio = value / baseline if value is not None and baseline is not None and baseline > 0 else None
        spiking = ratio is not None and ratio >= SPIKE_RATIO * (1.0 - _REL_TOLERANCE)
        if spiking:
            flags.add(minute)
        slot = self._slots.setdefault((spec.name, f"spike:{kind}"), _Slot())
        if not consecutive:
            slot.streak = slot.calm = 0
        target: Literal["pending", "firing"] | None
        if spiking:
            assert ratio is not None
            slot.streak += 1
            slot.calm = 0
            slot.max_ratio = max(slot.max_ratio, ratio)
            target = "firing" if slot.status == "firing" or slot.streak >= settings.for_minutes else "pending"
        else:
            slot.streak = 0
            slot.calm += 1
            keep = slot.status == "firing" and slot.calm < settings.for_minutes
            target = "firing" if keep else None
        severity = spike_severity(slot.max_ratio) or "P3"
        labels = {"alertname": SPIKE_ALERTNAME, "severity": severity, **spec.scope_labels(), "kind": kind}
        what = "cost per call" if kind == "per_call" else "spend per minute"
        annotations = {
            "summary": f"{what.capitalize()} of {spec.name} is {_fmt(ratio)}x its baseline "
            f"({_fmt(value)} USD against {_fmt(baseline)} USD)",
            "description": f"The {what} of the {spec.scope} budget {spec.name} over the minute before "
            f"the tick is {_fmt(value)} USD; the median of the previous {settings.baseline_minutes} "
            f"minutes (spikes left out) is {_fmt(baseline)} USD. Highest ratio of this episode: "
            f"{slot.max_ratio:.3g}x (2x: P3, 5x: P2, 10x: P1).",
            "value": _fmt(ratio),
            "value_usd": _fmt(value),
            "baseline_usd": _fmt(baseline),
            "runbook_url": RUNBOOK_URL,
        }
        events = self._move(slot, target, labels, annotations, ratio, at_ns, spec, f"spike:{kind}", {})
        if slot.status == "inactive":
            slot.max_ratio = 0.0
        state.spikes[kind] = SpikeStatus(
            kind=kind,
            minute_start_ns=minute * MINUTE_NS,
            value=value,
            baseline=baseline,
            ratio=ratio,
            baseline_minutes=len(history),
            state=slot.status,
            severity=slot.labels.get("severity") if slot.status != "inactive" else None,
        )
        return events

    def _move(
        self,
        slot: _Slot,
        target: Literal["pending", "firing"] | None,
        labels: dict[str, str],
        annotations: dict[str, str],
        value: float | None,
        at_ns: int,
        spec: BudgetSpec,
        key: str,
        ending: Mapping[str, str],
    ) -> list[AlertEvent]:
        """Take `slot` to `target` under `labels`; an active alert under other labels is ended first."""
        events: list[AlertEvent] = []
        if slot.status != "inactive" and (target is None or slot.labels != labels):
            status: Status = "resolved" if slot.status == "firing" else "inactive"
            end_annotations = {**annotations, **ending}
            events.append(
                self._event(status, slot.labels, end_annotations, slot.since_ns, at_ns, value, spec, key)
            )
            slot.status = "inactive"
        if target is not None and (slot.status != target or slot.labels != labels):
            if slot.status == "inactive":
                slot.since_ns = at_ns
            slot.status, slot.labels = target, dict(labels)
            events.append(self._event(target, labels, annotations, slot.since_ns, at_ns, value, spec, key))
        return events

    def _event(
        self,
        status: Status,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        since_ns: int,
        at_ns: int,
        value: float | None,
        spec: BudgetSpec,
        key: str,
    ) -> AlertEvent:
        ended = status in ("resolved", "inactive")
        return AlertEvent(
            status=status,
            labels=dict(labels),
            annotations=dict(annotations),
            starts_at_ns=since_ns,
            ends_at_ns=at_ns if ended else None,
            at_ns=at_ns,
            rule=labels["alertname"],
            series=SeriesKey(spec.service or "", spec.feature or "", "", "", ""),
            severity=labels["severity"],
            value=value,
            group_key=f"{labels['alertname']}:{spec.name}:{key}",
        )

    def active_alerts(self) -> list[tuple[str, str, str, int]]:
        """(budget, alert key, status, since) of every pending or firing alert."""
        return sorted(
            (b, k, s.status, s.since_ns) for (b, k), s in self._slots.items() if s.status != "inactive"
        )

    def _prune(self, at_ns: int) -> None:
        """Forget days before the previous month and minutes the spike baseline no longer reaches."""
        month = _month_of_day(at_ns // DAY_NS)
        oldest_day = _month_bounds(month - 1)[0] // DAY_NS
        self._oldest_day = max(self._oldest_day or oldest_day, oldest_day)
        oldest_minute = self._oldest_minute()
        for state in self._states.values():
            for day in [d for d in state.days if d < oldest_day]:
                del state.days[day]
            if oldest_minute is not None:
                for minute in [m for m in state.minutes if m < oldest_minute]:
                    del state.minutes[minute]
                for flags in state.spike_minutes.values():
                    flags.difference_update([m for m in flags if m < oldest_minute])

    # --- exposition -----------------------------------------------------------------------------------
    def metrics_text(self, at_ns: int | None = None) -> str:
        """`otel_llm_budget_*`, `otel_llm_cache_hit_ratio` and `otel_llm_cost_spike_ratio` gauges in
        Prometheus text format 0.0.4 (to append to `/metrics`)."""
        families: dict[str, list[str]] = {name: [] for name in _FAMILIES}
        for status in self.statuses(at_ns):
            base = f'budget="{escape_label_value(status.name)}",scope="{status.scope}"'
            for period in (status.daily, status.monthly):
                lb = f'{{{base},period="{period.period}"}}'
                families["otel_llm_budget_spend_usd"].append(
                    f"otel_llm_budget_spend_usd{lb} {period.spend_usd!r}"
                )
                families["otel_llm_budget_calls"].append(f"otel_llm_budget_calls{lb} {period.calls}")
                families["otel_llm_budget_unpriced_calls"].append(
                    f"otel_llm_budget_unpriced_calls{lb} {period.unpriced_calls}"
                )
                if period.cache_hit_ratio is not None:
                    families["otel_llm_cache_hit_ratio"].append(
                        f"otel_llm_cache_hit_ratio{lb} {period.cache_hit_ratio!r}"
                    )
                if period.limit_usd is None or period.ratio is None:
                    continue
                families["otel_llm_budget_limit_usd"].append(
                    f"otel_llm_budget_limit_usd{lb} {period.limit_usd!r}"
                )
                families["otel_llm_budget_prorated_limit_usd"].append(
                    f"otel_llm_budget_prorated_limit_usd{lb} {period.prorated_limit_usd!r}"
                )
                families["otel_llm_budget_ratio"].append(f"otel_llm_budget_ratio{lb} {period.ratio!r}")
                for band in BANDS:
                    current = 1 if band == period.band else 0
                    families["otel_llm_budget_band"].append(
                        f'otel_llm_budget_band{{{base},period="{period.period}",band="{band}"}} {current}'
                    )
            families["otel_llm_budget_projected_month_end_usd"].append(
                f"otel_llm_budget_projected_month_end_usd{{{base}}} {status.projected_month_end_usd!r}"
            )
            for spike in status.spikes:
                if spike.ratio is not None:
                    families["otel_llm_cost_spike_ratio"].append(
                        f'otel_llm_cost_spike_ratio{{{base},kind="{spike.kind}"}} {spike.ratio!r}'
                    )
        lines: list[str] = []
        for name, help_text in _FAMILIES.items():
            if families[name]:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *families[name]]
        if self.budgets:
            name = "otel_llm_budget_dropped_calls_total"
            lines += [
                f"# HELP {name} Calls no budget could count: older than every kept day, or over the bounds.",
                f"# TYPE {name} counter",
                f'{name}{{reason="too_old"}} {self.dropped_too_old}',
                f'{name}{{reason="over_limit"}} {self.dropped_over_limit}',
            ]
        return "\n".join(lines) + "\n" if lines else ""

    # --- persistence ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state: day and minute totals, spike flags, alert states and the event-time cursor."""
        return {
            "version": SNAPSHOT_VERSION,
            "newest_ns": self._newest_ns,
            "last_at_ns": self._last_at_ns,
            "last_judged_minute": self._last_judged_minute,
            "oldest_day": self._oldest_day,
            "dropped_too_old": self.dropped_too_old,
            "dropped_over_limit": self.dropped_over_limit,
            "budgets": {
                name: {
                    "days": [[d, *t.row()] for d, t in sorted(state.days.items())],
                    "minutes": [[m, *t.row()] for m, t in sorted(state.minutes.items())],
                    "first_minute": state.first_minute,
                    "spike_minutes": {k: sorted(v) for k, v in state.spike_minutes.items()},
                }
                for name, state in self._states.items()
            },
            "alerts": [
                [b, k, s.status, s.labels, s.since_ns, s.period_start_ns, s.streak, s.calm, s.max_ratio]
                for (b, k), s in sorted(self._slots.items())
            ],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a `snapshot`; budgets no longer configured are skipped, new ones start empty."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported budget snapshot version {data.get('version')!r}")
        self._newest_ns = int(data["newest_ns"])
        self._last_at_ns = int(data["last_at_ns"])
        judged = data.get("last_judged_minute")
        self._last_judged_minute = None if judged is None else int(judged)
        oldest = data.get("oldest_day")
        self._oldest_day = None if oldest is None else int(oldest)
        self.dropped_too_old = int(data.get("dropped_too_old", 0))
        self.dropped_over_limit = int(data.get("dropped_over_limit", 0))
        for name, saved in data["budgets"].items():
            state = self._states.get(name)
            if state is None:
                continue
            state.days = {int(row[0]): _Totals.from_row(row[1:]) for row in saved["days"]}
            state.minutes = {int(row[0]): _Totals.from_row(row[1:]) for row in saved["minutes"]}
            first = saved.get("first_minute")
            state.first_minute = None if first is None else int(first)
            for kind in SPIKE_KINDS:
                state.spike_minutes[kind] = {int(m) for m in saved.get("spike_minutes", {}).get(kind, [])}
        for budget, key, status, labels, since, period_start, streak, calm, max_ratio in data["alerts"]:
            if budget in self._states and status in ("inactive", "pending", "firing"):
                self._slots[(budget, key)] = _Slot(
                    status,
                    dict(labels),
                    int(since),
                    int(period_start),
                    int(streak),
                    int(calm),
                    float(max_ratio),
                )


_PERIOD_NOUN: Final = {"daily": "day", "monthly": "month"}
_FAMILIES: Final = {
    "otel_llm_budget_spend_usd": "Spend of the budget's calls in the current UTC day or month, USD.",
    "otel_llm_budget_calls": "Calls counted by the budget in the current period.",
    "otel_llm_budget_unpriced_calls": "Calls of the budget without a cost (not in the spend).",
    "otel_llm_budget_limit_usd": "The budget's limit for the period, USD.",
    "otel_llm_budget_prorated_limit_usd": "The limit pro-rated to the elapsed period (a day at least).",
    "otel_llm_budget_ratio": "Spend / pro-rated limit (1 = on budget; bands at 1.1 and 1.2).",
    "otel_llm_budget_band": "1 for the budget's current band (fine, investigate, escalate).",
    "otel_llm_budget_projected_month_end_usd": "Month-to-date spend projected to the month end, USD.",
    "otel_llm_cache_hit_ratio": "Cache-read input tokens / input tokens of the budget's calls in the period.",
    "otel_llm_cost_spike_ratio": "Last complete minute's cost per call or spend against its baseline median.",
}
