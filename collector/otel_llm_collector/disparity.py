"""Quality by segment: each segment's pass rate against the rest of its feature, and a P2 alert on a gap.

    tracker = DisparityTracker(join=engine.join)        # settings: DisparitySettings(...)
    tracker.observe(result)                             # every DecodeResult (calls and evaluations)
    events = tracker.evaluate(tick_ns)                  # at each event-time minute tick: AlertEvent changes
    tracker.metrics_text()                              # otel_llm_segment_* gauges, to append to /metrics

Segments are the few labels an app puts on its calls (`llm_context(segments={"locale": "de"})` becomes the
span attribute `otel_llm.segment.locale`), such as locale or customer tier. A feature whose mean quality
looks fine can still fail one segment badly: German answers at 0.55 faithfulness hide in a feature mean of
0.81 when a fifth of the traffic is German. Thresholds on the series cannot see that (a trend detector may
see the mean move, without naming the segment); this tracker compares segments.

What is compared. For each (service, feature, evaluation name, segment name), each value's pass rate (the
share of its labelled evaluations not labelled `fail`) over the last `window_seconds` of event time, against
the pass rate of all other values of that segment together ("the rest"). Evaluations without a label are
left out (counted in `records["unlabelled"]`). A value is flagged when

1. it and the rest each have at least `min_samples` labelled evaluations in the window,
2. its pass rate is below the rest's by at least `min_difference` (absolute: 0.10 is ten points), and
3. a one-sided pooled two-proportion z test (`proportions.two_proportion_test`, "the segment passes less
   often than the rest") gives a p-value below `1 - confidence`, divided by the number of values tested
   in the group (Bonferroni: a segment with ten values gets ten chances at a fluke).

The minimum difference keeps huge groups from alerting on gaps too small to matter; the test keeps small
groups from alerting on noise. A value flagged for `for_seconds` of event time fires; a firing one that is
not flagged for `keep_firing_for_seconds` (its data gone, or back within bounds) resolves. Transitions are
`AlertEvent`s: `pending`, `firing`, `resolved`, and `inactive` for a pending one that cleared.

Alerts (P2 by default, `alertname=SegmentDisparity`): labels `service`, `feature`, `evaluation`, `segment`,
`segment_value`; annotations `summary`, `description`, `segment_pass_rate`, `rest_pass_rate`, `difference`
with its two-sided Newcombe interval at `confidence` (`difference_low`, `difference_high`), `p_value`,
`segment_samples`, `rest_samples`, the mean scores of both sides when the evaluations have scores, and
`window`. `group_key` names the (service, feature, evaluation, segment), so two bad locales are one incident.

Cardinality. Segment labels count against bounds of their own: at most `max_values_per_segment` values per
segment name in a group (further values fold into `__other__`, counted in `records["other"]`) and at most
`max_cells` (group, value) cells in all (records for further cells are dropped, counted in
`records["dropped_cells"]`). `__other__` is part of "the rest" and exposed, never alerted on: it is not
one segment. A value whose window empties is forgotten, which frees its place. The exposition writes four
series per cell at most.

Joining evaluations to segments. An evaluation on its call's span takes that call's segments. One that
arrives as a log record is matched by span context or response id against recent calls that carry
segments (at most `max_calls`, for `call_ttl_seconds` of event time). When it arrives before its call it
waits (at most `max_pending`, for `pending_ttl_seconds`). Given the windows' `JoinIndex` (`join=`), an
evaluation of a call that is known there but had no segments is skipped at once instead of waiting;
evaluations never matched are counted in `records["unmatched"]`.

Not thread-safe: one caller (the ingest worker), as for the windows. State is not snapshotted: after a
restart the window refills within `window_seconds`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.exposition import escape_label_value
from otel_llm_collector.join import JoinIndex
from otel_llm_collector.proportions import two_proportion_test
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey

__all__ = [
    "ALERTNAME",
    "OTHER_VALUE",
    "DisparitySettings",
    "DisparityTracker",
    "SegmentFigures",
]

ALERTNAME: Final = "SegmentDisparity"
RULE: Final = "segment-disparity"
OTHER_VALUE: Final = "__other__"
MINUTE_NS: Final = 60 * 1_000_000_000
RUNBOOK_URL: Final = "docs/runbooks/segment-disparity.md"

_N, _PASSES, _SCORE_SUM, _SCORED = 0, 1, 2, 3
_OUTCOMES: Final = ("counted", "other", "dropped_cells", "too_old", "unmatched", "unlabelled")

_Group = tuple[str, str, str, str]
"""(service, feature, evaluation, segment name)."""
_Cell = tuple[str, str, str, str, str]
"""A group and one segment value."""
_Segments = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DisparitySettings:
    """Validated once, with a `ValueError` naming the setting."""

    window_seconds: float = 3600.0
    confidence: float = 0.99
    """One-sided level of the test before the Bonferroni division (p < 0.01 / values tested)."""
    min_difference: float = 0.10
    """Smallest pass-rate gap (absolute) worth an alert."""
    min_samples: int = 30
    """Labelled evaluations needed on each side (the segment, and the rest)."""
    for_seconds: float = 600.0
    keep_firing_for_seconds: float = 600.0
    severity: Literal["P0", "P1", "P2", "P3"] = "P2"
    evaluations: tuple[str, ...] | None = None
    """Evaluation names compared; None: every evaluation that carries a label."""
    max_values_per_segment: int = 20
    max_cells: int = 2000
    max_calls: int = 100_000
    call_ttl_seconds: float = 3600.0
    max_pending: int = 10_000
    pending_ttl_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.window_seconds < 60 or self.window_seconds % 60:
            raise ValueError(f"window_seconds must be whole minutes, at least 60, got {self.window_seconds}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0.0 <= self.min_difference < 1.0:
            raise ValueError(f"min_difference must be in [0, 1), got {self.min_difference}")
        for name in ("min_samples", "max_values_per_segment", "max_cells", "max_calls"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("for_seconds", "keep_firing_for_seconds", "call_ttl_seconds", "pending_ttl_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.max_pending < 0:
            raise ValueError(f"max_pending must not be negative, got {self.max_pending}")
        if self.severity not in ("P0", "P1", "P2", "P3"):
            raise ValueError(f"severity must be one of P0..P3, got {self.severity!r}")


@dataclass(frozen=True, slots=True)
class SegmentFigures:
    """One segment value against the rest of its group, over the window ending at `at_ns`."""

    service: str
    feature: str
    evaluation: str
    segment: str
    value: str
    samples: int
    pass_rate: float
    score_mean: float | None
    rest_samples: int
    rest_pass_rate: float | None
    rest_score_mean: float | None
    difference: float | None
    """`pass_rate - rest_pass_rate`: negative when the segment does worse."""
    difference_low: float | None
    difference_high: float | None
    p_value: float | None
    """One-sided, before the Bonferroni correction; None when the value was not tested."""
    threshold: float | None
    """The p-value below which the value counts as worse (`1 - confidence` / values tested)."""
    flagged: bool

    @property
    def cell(self) -> _Cell:
        return (self.service, self.feature, self.evaluation, self.segment, self.value)


@dataclass(slots=True)
class _Slot:
    firing: bool
    since_ns: int
    clear_since_ns: int | None = None
    figures: SegmentFigures | None = None


class DisparityTracker:
    """Pass rates per segment value in event time, compared with the rest; see the module docstring."""

    def __init__(self, settings: DisparitySettings | None = None, *, join: JoinIndex | None = None) -> None:
        self.settings = settings if settings is not None else DisparitySettings()
        self.join = join
        s = self.settings
        self._window_minutes = int(s.window_seconds // 60)
        self._names = frozenset(s.evaluations) if s.evaluations is not None else None
        self._cells: dict[_Group, dict[str, dict[int, list[float]]]] = {}
        self._cell_count = 0
        # Calls with segments, by span key and by response id: (service, feature, segments, end time).
        # OrderedDicts: emptied from the front, a dict makes each `next(iter(...))` walk the deleted slots.
        self._calls: OrderedDict[str, tuple[str, str, _Segments, int]] = OrderedDict()
        self._pending: OrderedDict[int, EvaluationRecord] = OrderedDict()
        """Evaluations waiting for their call, by ticket (insertion order: about the oldest first)."""
        self._pending_keys: dict[str, int] = {}
        self._next_ticket = 0
        self._slots: dict[_Cell, _Slot] = {}
        self._newest_ns = 0
        self._last_at_ns = 0
        self.records: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)
        """Evaluation results by what became of them: `counted`, `other` and `dropped_cells` once per segment
        label of the call; `too_old`, `unmatched` and `unlabelled` once per evaluation."""

    # --- input ----------------------------------------------------------------------------------------
    def observe(self, result: DecodeResult) -> None:
        """Count a decode result: calls first (their own evaluations, and those waiting for them)."""
        for call in result.calls:
            self._observe_call(call)
        for evaluation in result.evaluations:
            self._observe_evaluation(evaluation)

    def _observe_call(self, call: CallRecord) -> None:
        span_key = call.trace_id + call.span_id
        keys = (span_key, call.response_id) if call.response_id else (span_key,)
        waiting = self._release(keys) if self._pending else []
        if not call.segments:
            return  # evaluations that waited for it have no segment to count in
        entry = (call.series.service, call.series.feature, call.segments, call.end_time_ns)
        for key in keys:
            self._calls[key] = entry
        while len(self._calls) > self.settings.max_calls:
            self._calls.popitem(last=False)
        for evaluation in (*call.evaluations, *waiting):
            self._count(entry[0], entry[1], call.segments, evaluation)

    def _observe_evaluation(self, evaluation: EvaluationRecord) -> None:
        if not self._wanted(evaluation):
            return
        keys = _keys(evaluation)
        for key in keys:
            entry = self._calls.get(key)
            if entry is not None:
                self._count(entry[0], entry[1], entry[2], evaluation)
                return
        if self.join is not None and self.join.lookup(evaluation) is not None:
            return  # its call is known and carried no segments
        if not keys or self.settings.max_pending == 0:
            self.records["unmatched"] += 1
            return
        if len(self._pending) >= self.settings.max_pending:
            self._give_up(next(iter(self._pending)))
        ticket = self._next_ticket
        self._next_ticket += 1
        self._pending[ticket] = evaluation
        for key in keys:
            self._pending_keys[key] = ticket

    def _release(self, keys: Iterable[str]) -> list[EvaluationRecord]:
        released: list[EvaluationRecord] = []
        for key in keys:
            ticket = self._pending_keys.pop(key, None)
            evaluation = self._pending.pop(ticket, None) if ticket is not None else None
            if evaluation is not None:
                for other in _keys(evaluation):
                    if self._pending_keys.get(other) == ticket:
                        del self._pending_keys[other]
                released.append(evaluation)
        return released

    def _give_up(self, ticket: int) -> None:
        evaluation = self._pending.pop(ticket)
        for key in _keys(evaluation):
            if self._pending_keys.get(key) == ticket:
                del self._pending_keys[key]
        self.records["unmatched"] += 1

    def _wanted(self, evaluation: EvaluationRecord) -> bool:
        if self._names is not None and evaluation.name not in self._names:
            return False
        if not evaluation.label:
            self.records["unlabelled"] += 1
            return False
        return True

    def _count(self, service: str, feature: str, segments: _Segments, evaluation: EvaluationRecord) -> None:
        if not self._wanted(evaluation):
            return
        minute = evaluation.time_ns // MINUTE_NS
        if self._last_at_ns and minute < self._last_at_ns // MINUTE_NS - self._window_minutes:
            self.records["too_old"] += 1
            return
        self._newest_ns = max(self._newest_ns, evaluation.time_ns)
        passed = 0.0 if evaluation.failed else 1.0
        score = evaluation.score if evaluation.score is not None and math.isfinite(evaluation.score) else None
        for name, value in segments:
            group = (service, feature, evaluation.name, name)
            values = self._cells.get(group)
            if values is None:
                values = self._cells[group] = {}
            minutes = values.get(value)
            if minutes is None:
                if len(values) - (OTHER_VALUE in values) >= self.settings.max_values_per_segment:
                    value = OTHER_VALUE
                    self.records["other"] += 1
                    minutes = values.get(value)
                if minutes is None:
                    if self._cell_count >= self.settings.max_cells:
                        self.records["dropped_cells"] += 1
                        continue
                    minutes = values[value] = {}
                    self._cell_count += 1
            bucket = minutes.get(minute)
            if bucket is None:
                bucket = minutes[minute] = [0.0, 0.0, 0.0, 0.0]
            bucket[_N] += 1
            bucket[_PASSES] += passed
            if score is not None:
                bucket[_SCORE_SUM] += score
                bucket[_SCORED] += 1
            self.records["counted"] += 1

    # --- figures --------------------------------------------------------------------------------------
    def _expire(self, at_ns: int) -> None:
        first = at_ns // MINUTE_NS - self._window_minutes
        for group in list(self._cells):
            values = self._cells[group]
            for value in list(values):
                minutes = values[value]
                for minute in [m for m in minutes if m < first]:
                    del minutes[minute]
                if not minutes:
                    del values[value]
                    self._cell_count -= 1
            if not values:
                del self._cells[group]
        call_horizon = at_ns - int(self.settings.call_ttl_seconds * 1e9)
        while self._calls and next(iter(self._calls.values()))[3] < call_horizon:
            del self._calls[next(iter(self._calls))]
        pending_horizon = at_ns - int(self.settings.pending_ttl_seconds * 1e9)
        while self._pending:
            ticket = next(iter(self._pending))
            if self._pending[ticket].time_ns >= pending_horizon:
                break
            self._give_up(ticket)

    def figures(self, at_ns: int | None = None) -> list[SegmentFigures]:
        """Every segment value's figures over the window ending at `at_ns` (default: the last tick)."""
        at = (
            at_ns
            if at_ns is not None
            else (self._last_at_ns or self._newest_ns - self._newest_ns % MINUTE_NS)
        )
        last = at // MINUTE_NS
        first = last - self._window_minutes
        s = self.settings
        out: list[SegmentFigures] = []
        for group in sorted(self._cells):
            sums = {
                value: _sum(minutes, first, last) for value, minutes in sorted(self._cells[group].items())
            }
            total = [sum(column) for column in zip(*sums.values())]
            tested = [
                v
                for v, c in sums.items()
                if v != OTHER_VALUE and c[_N] >= s.min_samples and total[_N] - c[_N] >= s.min_samples
            ]
            threshold = (1.0 - s.confidence) / len(tested) if tested else None
            for value, mine in sums.items():
                if mine[_N] == 0:
                    continue
                rest = [t - m for t, m in zip(total, mine)]
                out.append(_compare(group, value, mine, rest, value in tested, threshold, s))
        return out

    # --- alerts ---------------------------------------------------------------------------------------
    def evaluate(self, at_ns: int) -> list[AlertEvent]:
        """Advance every segment value to event time `at_ns` (a minute tick); return the transitions."""
        if at_ns < self._last_at_ns:
            raise ValueError(f"event time went backwards: {at_ns} < {self._last_at_ns}")
        self._last_at_ns = at_ns
        self._expire(at_ns)
        s = self.settings
        current = {f.cell: f for f in self.figures(at_ns)}
        events: list[AlertEvent] = []
        for cell in sorted(set(current) | set(self._slots)):
            found = current.get(cell)
            flagged = found is not None and found.flagged
            slot = self._slots.get(cell)
            if slot is None:
                if not flagged:
                    continue
                slot = self._slots[cell] = _Slot(firing=False, since_ns=at_ns)
                if s.for_seconds > 0:
                    slot.figures = found
                    events.append(self._event(cell, slot, "pending", at_ns))
                    continue
            if found is not None:
                slot.figures = found
            if not slot.firing:
                if not flagged:
                    events.append(self._event(cell, slot, "inactive", at_ns))
                    del self._slots[cell]
                elif at_ns - slot.since_ns >= s.for_seconds * 1e9:
                    slot.firing = True
                    events.append(self._event(cell, slot, "firing", at_ns))
            elif flagged:
                slot.clear_since_ns = None
            else:
                if slot.clear_since_ns is None:
                    slot.clear_since_ns = at_ns
                if at_ns - slot.clear_since_ns >= s.keep_firing_for_seconds * 1e9:
                    events.append(self._event(cell, slot, "resolved", at_ns, data=found is not None))
                    del self._slots[cell]
        return events

    def active(self) -> list[tuple[_Cell, str, int]]:
        """(cell, `pending` or `firing`, since) of every active disparity alert."""
        return [(c, "firing" if s.firing else "pending", s.since_ns) for c, s in sorted(self._slots.items())]

    def _event(
        self,
        cell: _Cell,
        slot: _Slot,
        status: Literal["pending", "firing", "resolved", "inactive"],
        at_ns: int,
        *,
        data: bool = True,
    ) -> AlertEvent:
        service, feature, evaluation, segment, value = cell
        severity = self.settings.severity
        labels = {
            "alertname": ALERTNAME,
            "severity": severity,
            "service": service,
            "feature": feature,
            "evaluation": evaluation,
            "segment": segment,
            "segment_value": value,
        }
        labels = {k: v for k, v in labels.items() if v}
        f = slot.figures
        window = _duration(self.settings.window_seconds)
        annotations = {"window": window, "runbook_url": RUNBOOK_URL}
        where = f"{service}/{feature}" if service else feature
        if f is not None:
            annotations.update(_annotations(f))
            annotations["summary"] = (
                f"{evaluation} pass rate of {segment}={value} on {where} is {_pct(f.pass_rate)} against "
                f"{_pct(f.rest_pass_rate)} for the other {segment} values ({window})"
            )
            annotations["description"] = (
                f"{f.samples} labelled {evaluation} results for {segment}={value} and {f.rest_samples} for "
                f"the rest over the last {window}: difference {_num(f.difference)} "
                f"(interval {_num(f.difference_low)} to {_num(f.difference_high)}), one-sided p-value "
                f"{_num(f.p_value)} against a threshold of {_num(f.threshold)} after the Bonferroni "
                f"correction, and at least {self.settings.min_difference:g} apart."
            )
        if status == "resolved" and not data:
            annotations["resolved_reason"] = "insufficient_data"
        return AlertEvent(
            status=status,
            labels=labels,
            annotations=annotations,
            starts_at_ns=slot.since_ns,
            ends_at_ns=at_ns if status == "resolved" else None,
            at_ns=at_ns,
            rule=RULE,
            series=SeriesKey(service, feature, "", "", ""),
            severity=severity,
            value=f.difference if f is not None else None,
            group_key=f"{ALERTNAME}:{service}/{feature}/{evaluation}/{segment}",
            actions=("alert",),
        )

    # --- exposition -----------------------------------------------------------------------------------
    def metrics_text(self, at_ns: int | None = None) -> str:
        """`otel_llm_segment_*` families in Prometheus text format 0.0.4 (to append to `/metrics`)."""
        families: dict[str, tuple[str, str, list[str]]] = {
            "otel_llm_segment_quality": (
                "gauge",
                "Pass ratio of a segment value's labelled evaluations.",
                [],
            ),
            "otel_llm_segment_samples": (
                "gauge",
                "Labelled evaluations of a segment value in the window.",
                [],
            ),
            "otel_llm_segment_disparity": (
                "gauge",
                "Pass ratio of a segment value minus that of the other values of its segment.",
                [],
            ),
            "otel_llm_segment_disparity_p_value": (
                "gauge",
                "One-sided p-value of the segment value passing less often than the rest.",
                [],
            ),
            "otel_llm_segment_records_total": (
                "counter",
                "Evaluation results seen by the segment comparison, by outcome.",
                [],
            ),
        }
        for f in self.figures(at_ns):
            labels = ",".join(
                f'{name}="{escape_label_value(v)}"'
                for name, v in (
                    ("service", f.service),
                    ("feature", f.feature),
                    ("evaluation", f.evaluation),
                    ("segment", f.segment),
                    ("segment_value", f.value),
                )
            )
            families["otel_llm_segment_quality"][2].append(f"{{{labels}}} {f.pass_rate!r}")
            families["otel_llm_segment_samples"][2].append(f"{{{labels}}} {f.samples}")
            if f.difference is not None:
                families["otel_llm_segment_disparity"][2].append(f"{{{labels}}} {f.difference!r}")
            if f.p_value is not None:
                families["otel_llm_segment_disparity_p_value"][2].append(f"{{{labels}}} {f.p_value!r}")
        for outcome, count in self.records.items():
            families["otel_llm_segment_records_total"][2].append(f'{{outcome="{outcome}"}} {count}')
        lines: list[str] = []
        for name, (kind, help_text, samples) in families.items():
            if samples:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                lines += [f"{name}{sample}" for sample in samples]
        return "\n".join(lines) + "\n"


def _keys(evaluation: EvaluationRecord) -> list[str]:
    return [k for k in (evaluation.trace_id + evaluation.span_id, evaluation.response_id) if k]


def _sum(minutes: Mapping[int, list[float]], first: int, last: int) -> list[float]:
    out = [0.0, 0.0, 0.0, 0.0]
    for minute, bucket in minutes.items():
        if first <= minute < last:
            for i, v in enumerate(bucket):
                out[i] += v
    return out


def _compare(
    group: _Group,
    value: str,
    mine: list[float],
    rest: list[float],
    tested: bool,
    threshold: float | None,
    s: DisparitySettings,
) -> SegmentFigures:
    n, rest_n = int(mine[_N]), int(rest[_N])
    pass_rate = mine[_PASSES] / n
    rest_rate = rest[_PASSES] / rest_n if rest_n else None
    difference = low = high = p_value = None
    flagged = False
    if rest_rate is not None:
        difference = pass_rate - rest_rate
        result = two_proportion_test(
            rest[_PASSES], rest_n, mine[_PASSES], n, confidence=s.confidence, alternative="less"
        )
        low, high = result.low, result.high
        if tested:
            p_value = result.p_value
            flagged = threshold is not None and p_value < threshold and -difference >= s.min_difference
    return SegmentFigures(
        *group,
        value,
        samples=n,
        pass_rate=pass_rate,
        score_mean=mine[_SCORE_SUM] / mine[_SCORED] if mine[_SCORED] else None,
        rest_samples=rest_n,
        rest_pass_rate=rest_rate,
        rest_score_mean=rest[_SCORE_SUM] / rest[_SCORED] if rest[_SCORED] else None,
        difference=difference,
        difference_low=low,
        difference_high=high,
        p_value=p_value,
        threshold=threshold if tested else None,
        flagged=flagged,
    )


def _annotations(f: SegmentFigures) -> dict[str, str]:
    out = {
        "segment_pass_rate": _num(f.pass_rate),
        "rest_pass_rate": _num(f.rest_pass_rate),
        "difference": _num(f.difference),
        "difference_low": _num(f.difference_low),
        "difference_high": _num(f.difference_high),
        "p_value": _num(f.p_value),
        "segment_samples": str(f.samples),
        "rest_samples": str(f.rest_samples),
        "value": _num(f.difference),
    }
    if f.score_mean is not None:
        out["segment_score_mean"] = _num(f.score_mean)
    if f.rest_score_mean is not None:
        out["rest_score_mean"] = _num(f.rest_score_mean)
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
