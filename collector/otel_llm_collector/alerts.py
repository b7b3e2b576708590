"""The alert lifecycle: rules evaluated per series in event time, and the events they produce.

    evaluator = RuleEvaluator(load_default_rules())
    engine.advance_watermark(now_ns)                       # or after applying a batch
    events = evaluator.evaluate(engine.now_ns, engine.series(), engine_metrics(engine))
    for event in events: ...                               # AlertEvent, Alertmanager webhook shape

States per (rule, series)::

    inactive --true--> pending --true for `for`--> firing --false for `keep_firing_for`--> resolved (inactive)
        ^                 |                          |
        +-----false-------+                          +--(unknown for `keep_firing_for`)--> resolved, then
    insufficient_data <--unknown-- (any state but firing)                               insufficient_data

`insufficient_data` is a state of its own (a metric without data or below the rule's `min_samples`, a
baseline still warming up): never "fine", never "firing". A firing alert whose data goes away is held for
`keep_firing_for`, then resolved with annotation `resolved_reason: insufficient_data`. An event is
produced for every change of state (and of inhibition), carrying the event time of the change (`at_ns`).
A pair starts in `insufficient_data` without an event: until the rule has had data for the series there
is no state to change from (`state()` reports it; a new series would otherwise announce one event per
rule). Once it has had data, losing it is a transition like any other. Which pairs have had data is not
snapshotted: after a restart a pair must see data once more before its loss is reported.
Durations run on the event times passed to `evaluate`: the evaluator never reads a clock, so replaying
recorded traffic gives the same events at the same timestamps.

Incidents. Rules that share a `group` on one series are one incident: while the most severe of them fires,
the less severe ones in the group (pending or firing) are `inhibited`. Notifiers skip inhibited alerts;
they stay visible in `active_alerts()`. Events keep the Alertmanager shape (labels, annotations, startsAt,
endsAt, fingerprint) so a real Alertmanager can group and route them too; `group_key` names the incident.

Baselines and detectors are sampled once per baseline period (`BaselineStore.period_seconds`), when the
first evaluation of a new period arrives: every baselined metric and every detector rule's metric is read
over the store's `window` and learned (baselines frozen while a rule on that metric is pending or firing).
Detector rules need a factory for their `kind` (`detectors=`); without one the rule is listed in
`unavailable_rules` and not evaluated.

Watchdog. A series that was busy (at least `busy_calls` calls in a 5-minute window within `lookback`) and
then has no call for a whole 5-minute window fires `SeriesSilent`, resolved when calls return.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from otel_llm_collector.baselines import BaselineStore
from otel_llm_collector.conditions import MetricRef, MetricSource, Verdict, WindowMetrics
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.rules import SERIES_LABELS, DetectorSpec, Rule, RuleSet, render_template
from otel_llm_collector.windows import WindowEngine

__all__ = [
    "SERIES_SILENT",
    "AlertEvent",
    "AlertState",
    "Annotator",
    "ChartDetector",
    "ChartLike",
    "Detector",
    "DetectorFactory",
    "MetricSourceFactory",
    "RuleEvaluator",
    "WatchdogSettings",
    "engine_metrics",
    "fingerprint",
    "format_time",
    "review_flag",
    "with_deployment",
]

SERIES_SILENT: Final = "SeriesSilent"
SNAPSHOT_VERSION: Final = 1
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
"""Alertmanager's `endsAt` for an alert that has not ended."""

_FNV_OFFSET: Final = 14695981039346656037
_FNV_PRIME: Final = 1099511628211
_MASK: Final = (1 << 64) - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint: FNV-1a 64 over sorted `name 0xff value 0xff`, 16 hex digits."""
    return _fingerprint(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=4096)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    """Cached: the same label sets come back tick after tick, and the byte loop costs ~25 µs a set."""
    h = _FNV_OFFSET
    for name, value in items:
        for chunk in (name.encode(), b"\xff", value.encode(), b"\xff"):
            for byte in chunk:
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def format_time(time_ns: int) -> str:
    """RFC 3339 in UTC with millisecond precision when needed, as Alertmanager accepts."""
    seconds, rest = divmod(time_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    millis = rest // 1_000_000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


class AlertState(enum.Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    INSUFFICIENT_DATA = "insufficient_data"


Status = Literal["pending", "firing", "resolved", "inactive", "insufficient_data"]
_STATUS: Final[dict[AlertState, Status]] = {
    AlertState.INACTIVE: "inactive",
    AlertState.PENDING: "pending",
    AlertState.FIRING: "firing",
    AlertState.INSUFFICIENT_DATA: "insufficient_data",
}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One change of an alert, in the shape of an Alertmanager webhook alert plus the transition's time."""

    status: Status
    """`firing`/`resolved` are what notifiers send; `pending`, `inactive`, `insufficient_data` are for the
    API and replay output."""
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at_ns: int
    """When the alert became active (its pending start, as Prometheus reports `startsAt`)."""
    ends_at_ns: int | None
    """When a resolved alert ended; None while it has not."""
    at_ns: int
    """Event time of this transition."""
    rule: str
    series: SeriesKey
    severity: str
    value: float | None
    group_key: str = ""
    inhibited: bool = False
    inhibited_by: str = ""
    actions: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON line for replay output and `/api/v1/alerts`: the Alertmanager webhook alert plus extras."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_time(self.starts_at_ns),
            "endsAt": ZERO_TIME if self.ends_at_ns is None else format_time(self.ends_at_ns),
            "generatorURL": "",
            "fingerprint": self.fingerprint,
            "eventTime": format_time(self.at_ns),
            "eventTimeUnixNano": self.at_ns,
            "groupKey": self.group_key,
            "inhibited": self.inhibited,
            "inhibitedBy": self.inhibited_by,
            "actions": list(self.actions),
        }

    def to_alertmanager(self, *, ends_at_ns: int | None = None) -> dict[str, Any]:
        """An item of Alertmanager's `POST /api/v2/alerts` body; `ends_at_ns` overrides (resend lease)."""
        ends = ends_at_ns if ends_at_ns is not None else self.ends_at_ns
        item: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": {k: v for k, v in self.annotations.items() if v},
            "startsAt": format_time(self.starts_at_ns),
            "generatorURL": "",
        }
        if ends is not None:
            item["endsAt"] = format_time(ends)
        return item


class Detector(Protocol):
    """A statistical detector for one (rule, series), fed one value per baseline period. Must not block."""

    def update(self, value: float, samples: int, at_ns: int) -> bool | None:
        """True: a shift in the rule's bad direction; False: in control; None: still learning."""
        ...


DetectorFactory = Callable[[DetectorSpec], Detector]


class _SignalLike(Protocol):
    @property
    def direction(self) -> str: ...


class ChartLike(Protocol):
    """What `ChartDetector` needs of a control chart (the charts of `otel_llm_collector.spc` fit)."""

    @property
    def ready(self) -> bool: ...

    def update(self, value: float) -> _SignalLike | None: ...


class ChartDetector:
    """A `Detector` over a control chart: alarms on a signal in the rule's bad direction.

    Wiring, e.g. ``detectors={"ewma": lambda s: ChartDetector(EwmaChart(**s.params), s.direction)}``.
    """

    def __init__(self, chart: ChartLike, direction: str = "down") -> None:
        self.chart = chart
        self.direction = direction

    def update(self, value: float, samples: int, at_ns: int) -> bool | None:
        signal = self.chart.update(value)
        if not self.chart.ready:
            return None
        if signal is None:
            return False
        return self.direction == "both" or str(signal.direction) == self.direction


MetricSourceFactory = Callable[[SeriesKey, str], MetricSource]
"""(series, window name) -> the figures of that series over that window at the evaluation's event time."""


class Annotator(Protocol):
    """Adds annotations when an alert starts firing (deployment correlation). Must not block or raise."""

    def annotate(self, rule: Rule, series: SeriesKey, at_ns: int) -> Mapping[str, str]: ...


def engine_metrics(engine: WindowEngine) -> MetricSourceFactory:
    """Metric sources over a `WindowEngine` at its current event time (evaluate at `engine.now_ns`)."""
    return lambda key, window: WindowMetrics(engine.window(key, window))


@dataclass(frozen=True, slots=True)
class WatchdogSettings:
    enabled: bool = True
    busy_calls: int = 20
    """Calls in a 5-minute window that make a series "busy" (worth watching)."""
    lookback_seconds: float = 3600.0
    """A series counts as busy for this long after its last busy window."""
    forget_after_seconds: float = 86400.0
    """Stop reporting a series silent this long (resolved with `resolved_reason: forgotten`)."""
    severity: Literal["P0", "P1", "P2", "P3"] = "P2"


@dataclass(slots=True)
class _Slot:
    state: AlertState = AlertState.INACTIVE
    active_since_ns: int = 0
    fired_at_ns: int = 0
    clear_since_ns: int | None = None
    changed_ns: int = 0
    value: float | None = None
    baseline: float | None = None
    inhibited_by: str = ""
    extra: dict[str, str] = field(default_factory=dict)


_CALL_COUNT: Final = MetricRef("call_count")
_SEVERITY_RANK: Final = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}


class RuleEvaluator:
    """Evaluates a rule set over series in event time. Deterministic: a function of the inputs to
    `evaluate` and of its own state (`snapshot`/`restore`). Not thread-safe: one caller at a time."""

    def __init__(
        self,
        rules: RuleSet,
        *,
        baselines: BaselineStore | None = None,
        detectors: Mapping[str, DetectorFactory] | None = None,
        watchdog: WatchdogSettings | None = None,
        annotator: Annotator | None = None,
    ) -> None:
        self.rules = rules
        self.baselines = baselines if baselines is not None else BaselineStore()
        self.detectors = dict(detectors or {})
        self.watchdog = watchdog if watchdog is not None else WatchdogSettings()
        self.annotator = annotator
        self.unavailable_rules = tuple(
            r.name for r in rules.rules if r.detector is not None and r.detector.kind not in self.detectors
        )
        self._rules = [r for r in rules.rules if r.name not in self.unavailable_rules]
        self._silent_rule = Rule.model_validate(
            {
                "name": SERIES_SILENT,
                "condition": "call_count == 0",
                "window": "5m",
                "severity": self.watchdog.severity,
                "summary": "{{ $labels.service }}/{{ $labels.feature }} stopped sending calls",
                "description": "The series was busy within the last hour and has had no call for 5 minutes.",
            }
        )
        # Per rule, read once here rather than through pydantic on every (rule, series) of every tick:
        # at 10,000 series the private-attribute reads alone cost seconds per evaluation.
        self._by_name = {rule.name: rule for rule in (*rules.rules, self._silent_rule)}
        self._compiled = {name: rule.compiled for name, rule in self._by_name.items()}
        self._baseline_refs = {
            name: tuple(sorted(condition.baseline_metrics)) if condition is not None else ()
            for name, condition in self._compiled.items()
        }
        self._scoped = {name: bool(rule.scope) for name, rule in self._by_name.items()}
        self._slots: dict[tuple[str, SeriesKey], _Slot] = {}
        # Per rule, the present series it has had data for: only their loss of data is a transition. A
        # pair that never had data is in `insufficient_data` without a slot or an event, which at 20 rules
        # over 10,000 new series saves 200,000 slots and as many events that would say nothing.
        self._observed: dict[str, set[SeriesKey]] = {
            name: set() for name in (*(r.name for r in self._rules), SERIES_SILENT)
        }
        self._present: frozenset[SeriesKey] = frozenset()
        self._detector_state: dict[tuple[str, SeriesKey], Detector] = {}
        self._detector_verdicts: dict[tuple[str, SeriesKey], Verdict] = {}
        self._busy_ns: dict[SeriesKey, int] = {}
        self._last_at_ns = 0
        self._last_period = -1

    # --- evaluation -----------------------------------------------------------------------------------
    def evaluate(
        self, at_ns: int, series_keys: Iterable[SeriesKey], metric_source_factory: MetricSourceFactory
    ) -> list[AlertEvent]:
        """Advance every (rule, series) to event time `at_ns`; return the transitions, in a stable order."""
        if at_ns < self._last_at_ns:
            raise ValueError(f"event time went backwards: {at_ns} < {self._last_at_ns}")
        self._last_at_ns = at_ns
        present = sorted(set(series_keys))
        sources: dict[tuple[SeriesKey, str], MetricSource] = {}

        def source(key: SeriesKey, window: str) -> MetricSource:
            found = sources.get((key, window))
            if found is None:
                found = sources[(key, window)] = metric_source_factory(key, window)
            return found

        period = self.baselines.period(at_ns)
        if period > self._last_period:
            self._last_period = period
            self._learn(at_ns, present, source)

        changed: list[tuple[Rule, SeriesKey, Status]] = []
        present_set = set(present)
        forgotten: dict[str, list[SeriesKey]] = {}
        for name, key in self._slots:
            if key not in present_set:
                forgotten.setdefault(name, []).append(key)
        for rule in self._rules:
            scoped = self._scoped[rule.name]
            for key in present:
                if not scoped or rule.applies_to(key):
                    verdict = self._verdict(rule, key, source)
                    self._step(rule, key, verdict, at_ns, changed)
            # Series the windows forgot: their data is gone, which is "insufficient", then forgotten.
            for key in forgotten.get(rule.name, ()):
                self._step(rule, key, Verdict(None, None), at_ns, changed)
        if self.watchdog.enabled:
            self._watch(at_ns, present, source, changed)
        events = self._events(at_ns, changed)
        gone = self._present - present_set
        if gone:
            for observed in self._observed.values():
                observed -= gone
        self._present = frozenset(present_set)
        for slot_key in [
            k
            for k, slot in self._slots.items()
            if k[1] not in present_set and k[0] != SERIES_SILENT and slot.state is not AlertState.FIRING
        ]:
            del self._slots[slot_key]
        return events

    def _verdict(
        self, rule: Rule, key: SeriesKey, source: Callable[[SeriesKey, str], MetricSource]
    ) -> Verdict:
        compiled = self._compiled[rule.name]
        if compiled is None:
            return self._detector_verdicts.get((rule.name, key), Verdict(None, None))
        return compiled.evaluate(
            source(key, rule.window), min_samples=rule.min_samples, baselines=self.baselines.lookup(key)
        )

    def _learn(
        self, at_ns: int, present: list[SeriesKey], source: Callable[[SeriesKey, str], MetricSource]
    ) -> None:
        window = self.baselines.window
        for key in present:
            busy = {
                metric
                for rule in self._rules
                if (slot := self._slots.get((rule.name, key))) is not None
                and slot.state in (AlertState.PENDING, AlertState.FIRING)
                for metric in rule.metrics
            }
            wanted = {
                metric
                for rule in self._rules
                if self._compiled[rule.name] is not None and rule.applies_to(key)
                for metric in self._baseline_refs[rule.name]
            }
            metrics = source(key, window)
            for metric in sorted(wanted):
                measured = metrics.measure(metric)
                if measured is not None:
                    self.baselines.observe(
                        key, metric, measured.value, measured.samples, at_ns, frozen=metric in busy
                    )
            for rule in self._rules:
                if rule.detector is None or not rule.applies_to(key):
                    continue
                measured = metrics.measure(rule.detector.metric_ref)
                slot_key = (rule.name, key)
                if measured is None or measured.samples < max(rule.min_samples, 1):
                    self._detector_verdicts.pop(slot_key, None)  # absent reads as "no verdict"
                    continue
                detector = self._detector_state.get(slot_key)
                if detector is None:
                    detector = self._detector_state[slot_key] = self.detectors[rule.detector.kind](
                        rule.detector
                    )
                alarm = detector.update(measured.value, measured.samples, at_ns)
                self._detector_verdicts[slot_key] = Verdict(alarm, measured.value)
        self.baselines.retain(present)

    def _step(
        self,
        rule: Rule,
        key: SeriesKey,
        verdict: Verdict,
        at_ns: int,
        changed: list[tuple[Rule, SeriesKey, Status]],
    ) -> None:
        result = verdict.result
        slot = self._slots.get((rule.name, key))
        if slot is None:
            observed = self._observed[rule.name]
            if result is None:
                if key not in observed:
                    return  # never had data: insufficient, silently, and no state kept
            else:
                observed.add(key)
                if result is False:
                    return  # inactive and staying so: keep no state
            slot = self._slots[(rule.name, key)] = _Slot()
        elif result is not None:
            self._observed[rule.name].add(key)
        if verdict.value is not None or result is None:
            slot.value = verdict.value
        slot.baseline = next(
            (
                b
                for m in self._baseline_refs.get(rule.name, ())
                if (b := self.baselines.value(key, m)) is not None
            ),
            None,
        )
        status: Status | None = None
        state = slot.state
        if state is AlertState.FIRING:
            if result is True:
                slot.clear_since_ns = None
            else:
                if slot.clear_since_ns is None:
                    slot.clear_since_ns = at_ns
                if at_ns - slot.clear_since_ns >= rule.keep_firing_for_seconds * 1e9:
                    slot.state = AlertState.INACTIVE if result is False else AlertState.INSUFFICIENT_DATA
                    if result is None:
                        slot.extra["resolved_reason"] = "insufficient_data"
                    status = "resolved"
        elif result is True:
            if state is not AlertState.PENDING:
                slot.active_since_ns = at_ns
                slot.extra = {}
            if at_ns - slot.active_since_ns >= rule.for_seconds * 1e9:
                slot.state, slot.fired_at_ns, slot.clear_since_ns = AlertState.FIRING, at_ns, None
                status = "firing"
                if self.annotator is not None:
                    slot.extra.update(self.annotator.annotate(rule, key, at_ns))
            elif state is not AlertState.PENDING:
                slot.state, status = AlertState.PENDING, "pending"
        elif result is None:
            if state is not AlertState.INSUFFICIENT_DATA:
                slot.state, status = AlertState.INSUFFICIENT_DATA, "insufficient_data"
        elif state is not AlertState.INACTIVE:
            slot.state, status = AlertState.INACTIVE, "inactive"
        if status is not None:
            slot.changed_ns = at_ns
            changed.append((rule, key, status))

    def _watch(
        self,
        at_ns: int,
        present: list[SeriesKey],
        source: Callable[[SeriesKey, str], MetricSource],
        changed: list[tuple[Rule, SeriesKey, Status]],
    ) -> None:
        settings = self.watchdog
        lookback_ns = int(settings.lookback_seconds * 1e9)
        forget_ns = int(settings.forget_after_seconds * 1e9)
        keys = sorted(set(present) | set(self._busy_ns))
        counts: dict[SeriesKey, int] = {}
        scope_calls: dict[tuple[str, str], int] = {}
        for key in keys:
            measured = source(key, "5m").measure(_CALL_COUNT)
            counts[key] = calls = int(measured.value) if measured is not None else 0
            scope = (key.service, key.feature)
            scope_calls[scope] = scope_calls.get(scope, 0) + calls
        for key in keys:
            calls = counts[key]
            if calls == 0 and scope_calls[(key.service, key.feature)] > 0:
                # Superseded, not silent: the feature still answers, through a new prompt version or
                # model (a new series). That change is a deployment, not an outage.
                calls = -1
            if calls >= settings.busy_calls:
                self._busy_ns[key] = at_ns
            last_busy = self._busy_ns.get(key)
            if last_busy is None:
                continue
            slot = self._slots.get((SERIES_SILENT, key))
            quiet_ns = at_ns - last_busy
            if calls != 0:
                silent = False
            elif slot is not None and slot.state is AlertState.FIRING:
                silent = quiet_ns <= forget_ns
                if not silent:
                    slot.extra["resolved_reason"] = "forgotten"
            else:
                silent = quiet_ns <= lookback_ns
            self._step(self._silent_rule, key, Verdict(silent, float(max(calls, 0))), at_ns, changed)
            if not silent and quiet_ns > lookback_ns:
                del self._busy_ns[key]

    # --- events and incidents -------------------------------------------------------------------------
    def _rule(self, name: str) -> Rule:
        return self._by_name[name]

    def _leaders(self) -> dict[tuple[str, SeriesKey], tuple[int, str]]:
        """The most severe firing alert per (group, series): (severity rank, rule name)."""
        leaders: dict[tuple[str, SeriesKey], tuple[int, str]] = {}
        for (name, key), slot in self._slots.items():
            rule = self._rule(name)
            if rule.group and slot.state is AlertState.FIRING:
                candidate = (rule.severity_rank, name)
                current = leaders.get((rule.group, key))
                if current is None or candidate < current:
                    leaders[(rule.group, key)] = candidate
        return leaders

    def _events(self, at_ns: int, changed: list[tuple[Rule, SeriesKey, Status]]) -> list[AlertEvent]:
        leaders = self._leaders()
        events: list[AlertEvent] = []
        done: set[tuple[str, SeriesKey]] = set()
        for rule, key, status in changed:
            slot = self._slots[(rule.name, key)]
            slot.inhibited_by = self._inhibitor(rule, key, slot, leaders)
            events.append(self._event(rule, key, slot, status, at_ns))
            done.add((rule.name, key))
            if slot.state is AlertState.INACTIVE:
                del self._slots[(rule.name, key)]
        for (name, key), slot in self._slots.items():
            if (name, key) in done or slot.state not in (AlertState.PENDING, AlertState.FIRING):
                continue
            rule = self._rule(name)
            inhibitor = self._inhibitor(rule, key, slot, leaders)
            if inhibitor != slot.inhibited_by:
                slot.inhibited_by = inhibitor
                events.append(self._event(rule, key, slot, _STATUS[slot.state], at_ns))
        return events

    @staticmethod
    def _inhibitor(
        rule: Rule, key: SeriesKey, slot: _Slot, leaders: Mapping[tuple[str, SeriesKey], tuple[int, str]]
    ) -> str:
        if not rule.group or slot.state not in (AlertState.PENDING, AlertState.FIRING):
            return ""
        leader = leaders.get((rule.group, key))
        if leader is None or leader[0] >= rule.severity_rank:
            return ""
        return leader[1]

    def _labels(
        self, rule: Rule, key: SeriesKey, value: float | None, baseline: float | None
    ) -> dict[str, str]:
        series = {name: v for name, v in zip(SERIES_LABELS, key) if v}
        labels = {"alertname": rule.name, "severity": rule.severity, **series}
        for name, text in rule.labels.items():
            labels[name] = render_template(text, labels=series, value=value, baseline=baseline)
        return labels

    def _event(self, rule: Rule, key: SeriesKey, slot: _Slot, status: Status, at_ns: int) -> AlertEvent:
        labels = self._labels(rule, key, slot.value, slot.baseline)
        render = dict(labels)
        annotations = {
            "summary": render_template(rule.summary, labels=render, value=slot.value, baseline=slot.baseline),
            "description": render_template(
                rule.description, labels=render, value=slot.value, baseline=slot.baseline
            ),
            "value": "" if slot.value is None else f"{slot.value:.6g}",
            "runbook_url": rule.runbook_url,
            "deployment": "",
            **slot.extra,
        }
        if slot.baseline is not None:
            annotations["baseline"] = f"{slot.baseline:.6g}"
        active = status in ("pending", "firing", "resolved")
        return AlertEvent(
            status=status,
            labels=labels,
            annotations=annotations,
            starts_at_ns=slot.active_since_ns if active else slot.changed_ns,
            ends_at_ns=at_ns if status == "resolved" else None,
            at_ns=at_ns,
            rule=rule.name,
            series=key,
            severity=rule.severity,
            value=slot.value,
            group_key=fingerprint({"group": rule.group, **dict(zip(SERIES_LABELS, key))})
            if rule.group
            else "",
            inhibited=bool(slot.inhibited_by),
            inhibited_by=slot.inhibited_by,
            actions=rule.actions,
        )

    # --- reading and persistence ----------------------------------------------------------------------
    def active_alerts(self) -> list[AlertEvent]:
        """Current pending, firing and insufficient-data alerts (as events of their last transition)."""
        out = []
        for (name, key), slot in sorted(self._slots.items(), key=lambda item: (item[0][0], item[0][1])):
            if slot.state is AlertState.INACTIVE:
                continue
            out.append(self._event(self._rule(name), key, slot, _STATUS[slot.state], slot.changed_ns))
        return out

    def state(self, rule: str, series: SeriesKey) -> AlertState:
        """The pair's state; a present series the rule has never had data for is `insufficient_data`."""
        slot = self._slots.get((rule, series))
        if slot is not None:
            return slot.state
        known = self._by_name.get(rule)
        if (
            known is not None
            and series in self._present
            and series not in self._observed.get(rule, (series,))
            and (not self._scoped[rule] or known.applies_to(series))
        ):
            return AlertState.INSUFFICIENT_DATA
        return AlertState.INACTIVE

    def snapshot(self) -> dict[str, Any]:
        """Alert states, watchdog and baselines as JSON-serialisable data (detectors restart learning)."""
        return {
            "version": SNAPSHOT_VERSION,
            "last_at_ns": self._last_at_ns,
            "last_period": self._last_period,
            "slots": [
                {
                    "rule": name,
                    "series": list(key),
                    "state": slot.state.value,
                    "active_since_ns": slot.active_since_ns,
                    "fired_at_ns": slot.fired_at_ns,
                    "clear_since_ns": slot.clear_since_ns,
                    "changed_ns": slot.changed_ns,
                    "value": slot.value,
                    "baseline": slot.baseline,
                    "inhibited_by": slot.inhibited_by,
                    "extra": dict(slot.extra),
                }
                for (name, key), slot in self._slots.items()
            ],
            "busy": [[list(key), t] for key, t in self._busy_ns.items()],
            "baselines": self.baselines.to_dict(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a `snapshot()`; alerts of rules no longer in the rule set are dropped."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported alert snapshot version {data.get('version')!r}")
        known = {r.name for r in self._rules} | {SERIES_SILENT}
        slots: dict[tuple[str, SeriesKey], _Slot] = {}
        for item in data["slots"]:
            if item["rule"] not in known:
                continue
            clear = item.get("clear_since_ns")
            slots[(str(item["rule"]), SeriesKey(*item["series"]))] = _Slot(
                state=AlertState(item["state"]),
                active_since_ns=int(item["active_since_ns"]),
                fired_at_ns=int(item["fired_at_ns"]),
                clear_since_ns=None if clear is None else int(clear),
                changed_ns=int(item["changed_ns"]),
                value=None if item.get("value") is None else float(item["value"]),
                baseline=None if item.get("baseline") is None else float(item["baseline"]),
                inhibited_by=str(item.get("inhibited_by", "")),
                extra={str(k): str(v) for k, v in item.get("extra", {}).items()},
            )
        self._slots = slots
        self._busy_ns = {SeriesKey(*key): int(t) for key, t in data.get("busy", [])}
        self._last_at_ns = int(data["last_at_ns"])
        self._last_period = int(data["last_period"])
        self.baselines.load(data["baselines"])
        self._detector_state.clear()
        self._detector_verdicts.clear()


def review_flag(
    series: SeriesKey,
    *,
    alertname: str,
    rule: str,
    status: Literal["firing", "resolved"],
    since_ns: int,
    at_ns: int,
    value: float | None,
    annotations: Mapping[str, str],
) -> AlertEvent:
    """A P3 `flag_for_review` event on a series, for the checks built into the collector beside the rule
    file (latency over the registry budget, calibration drift): the same shape as a rule's alert."""
    return AlertEvent(
        status=status,
        labels={"alertname": alertname, "severity": "P3", **series._asdict()},
        annotations=dict(annotations),
        starts_at_ns=since_ns,
        ends_at_ns=at_ns if status == "resolved" else None,
        at_ns=at_ns,
        rule=rule,
        series=series,
        severity="P3",
        value=value,
        actions=("alert", "flag_for_review"),
    )


def with_deployment(event: AlertEvent, deployment: str) -> AlertEvent:
    """A copy of `event` with the correlated deployment filled in (for correlation done after the fact)."""
    return replace(event, annotations={**event.annotations, "deployment": deployment})
