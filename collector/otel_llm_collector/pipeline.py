"""The processing core shared by the live collector and replay: windows, then rules, on event-time ticks.

    pipeline = Pipeline(engine, evaluator, on_events=print_events)
    pipeline.apply(decode_traces(request))      # windows; rules at each event-time minute boundary
    pipeline.advance_watermark(time.time_ns())  # live only, when the stream is idle

Time. Rules run at minute ticks T of event time, never on the wall clock directly. When a batch carries
records at or after the next tick T, the records before T are applied first, the rules evaluated at T (so
the windows hold exactly the data before T), then the rest. An alert's timestamps are ticks. So replaying
recorded traffic through this class yields the same alerts at the same times as the live collector that
received it, whatever the batching. The one difference: an idle live collector also ticks on the wall
clock (`advance_watermark`), so alerts resolve while no data arrives; a replay ticks only when its next
record moves event time past a boundary.

Deployments: every call whose series shows a new service version, prompt version or model is recorded as
a deployment (`DeploymentTracker`); `record_deployment` takes explicit ones (the API). At each tick the
completed minute of every series goes into a `MetricHistory`, and an alert that starts firing is annotated
with the deployment that best explains its metric's step (`DeploymentAnnotator`).

Not thread-safe: the ingest worker (or replay) is the one caller, as for `WindowEngine`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from otel_llm_collector.alerts import AlertEvent, RuleEvaluator, engine_metrics
from otel_llm_collector.annotate import DeploymentAnnotator
from otel_llm_collector.budgets import BudgetTracker
from otel_llm_collector.canary import CanaryCollector
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.correlation import Deployment, DeploymentTracker
from otel_llm_collector.disparity import DisparityTracker
from otel_llm_collector.drift_monitor import HOUR_NS, DriftMonitor
from otel_llm_collector.findings import FindingsAnnotator
from otel_llm_collector.history import MetricHistory
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.slo import SloTracker
from otel_llm_collector.windows import WindowEngine

TICK_NS: Final = 60 * 1_000_000_000
"""Rules are evaluated once per event-time minute."""

MAX_TICKS_PER_BATCH: Final = 60
"""Beyond this many minutes of jump, intermediate ticks are skipped (they would all see empty windows)."""

EventSink = Callable[[list[AlertEvent]], None]


class Pipeline:
    """Windows + rule evaluation + deployment tracking; the ingest worker's `WindowSink`."""

    def __init__(
        self,
        engine: WindowEngine,
        evaluator: RuleEvaluator | None,
        *,
        deployments: DeploymentTracker | None = None,
        history: MetricHistory | None = None,
        drift: DriftMonitor | None = None,
        slo: SloTracker | None = None,
        canary: CanaryCollector | None = None,
        on_events: EventSink | None = None,
        on_tick: Callable[[int], list[AlertEvent]] | None = None,
        disparity: DisparityTracker | None = None,
        budgets: BudgetTracker | None = None,
        tick_ns: int = TICK_NS,
        evaluation_share: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`evaluation_share`: when event time runs faster than the wall clock (a backlog being caught up,
        a replay of hours of traffic), evaluating every minute of it can take longer than ingesting it (at
        10,000 series, seconds per tick). With a share set, a tick is evaluated only once the previous
        evaluation has had its share of the wall time since; the ticks in between are coalesced into the
        next one (`for` durations still count event time; the correlation history skips their minutes,
        since recording one costs a window read per series). None
        evaluates every tick, as backtests need; the live collector uses `rule_evaluation_share`."""
        if evaluation_share is not None and not 0 < evaluation_share <= 1:
            raise ValueError(f"evaluation_share must be in (0, 1], got {evaluation_share}")
        self.engine = engine
        self.evaluator = evaluator
        self.deployments = deployments if deployments is not None else DeploymentTracker()
        self.history = history if history is not None else MetricHistory()
        self.drift = drift if drift is not None else DriftMonitor()
        self.slo = slo
        self.canary = canary
        self.disparity = disparity
        self.budgets = budgets if budgets is not None and budgets.budgets else None
        self.findings = FindingsAnnotator(engine.join)
        if evaluator is not None and evaluator.annotator is None:
            self.findings.inner = DeploymentAnnotator(self.deployments, self.history)
            evaluator.annotator = self.findings
        self._on_events = on_events
        self._on_tick = on_tick
        self._tick_ns = tick_ns
        self._next_tick_ns = 0
        self.events_emitted = 0
        self._tick_alerts: dict[str, AlertEvent] = {}
        """Pending or firing alerts of the tick's other sources (SLOs, `on_tick`), by fingerprint."""
        self._evaluation_share = evaluation_share
        self._clock = clock
        self._evaluate_after = 0.0
        self.ticks_evaluated = 0
        self.ticks_coalesced = 0
        """Ticks skipped under `evaluation_share`: their minutes were evaluated with the next tick."""

    # --- WindowSink ---------------------------------------------------------------------------------
    def apply(self, result: DecodeResult) -> None:
        self.findings.observe(result)
        if self.disparity is not None:
            self.disparity.observe(result)
        if result.calls:
            self.observe_calls(result.calls)
            if self.evaluator is not None:
                self.drift.observe(result.calls)
            if self.canary is not None:
                self.canary.observe_calls(result.calls)
            slo = self.slo
            if slo is not None and slo.slos:
                for call in result.calls:
                    slo.observe_call(call)
            if self.budgets is not None:
                self.budgets.observe_calls(result.calls)
        if self.evaluator is not None:
            latest = max(
                (c.end_time_ns for c in result.calls),
                default=max((e.time_ns for e in result.evaluations), default=0),
            )
            if self._next_tick_ns == 0 and latest:
                self._next_tick_ns = latest - latest % self._tick_ns + self._tick_ns
            if latest - self._next_tick_ns > MAX_TICKS_PER_BATCH * self._tick_ns:
                # A jump far ahead (a gap in the data): evaluate once, at the tick before the new data.
                self._next_tick_ns = latest - latest % self._tick_ns
            while self._next_tick_ns and latest >= self._next_tick_ns:
                tick = self._next_tick_ns
                before, result = _split(result, tick)
                self.engine.apply(before)
                if before.evaluations:  # after the windows: the join index knows the batch's calls
                    self.drift.observe_evaluations(before.evaluations, self.engine.join.lookup)
                    self._canary_evaluations(before.evaluations)
                self._evaluate(tick)
        self.engine.apply(result)
        if result.evaluations and self.evaluator is not None:
            self.drift.observe_evaluations(result.evaluations, self.engine.join.lookup)
            self._canary_evaluations(result.evaluations)

    def _canary_evaluations(self, evaluations: Iterable[EvaluationRecord]) -> None:
        """Evaluations that arrived on their own (log records) reach the canary through the join."""
        if self.canary is None:
            return
        lookup = self.engine.join.lookup
        for evaluation in evaluations:
            series = evaluation.series or lookup(evaluation)
            if series is not None:
                self.canary.observe_evaluation(evaluation, series=series)

    def advance_watermark(self, now_ns: int) -> None:
        self.engine.advance_watermark(now_ns)
        if self.evaluator is not None and self._next_tick_ns and now_ns >= self._next_tick_ns:
            self._evaluate(now_ns - now_ns % self._tick_ns)

    def snapshot(self) -> dict[str, Any]:
        data = self.engine.snapshot()
        data["pipeline"] = {
            "next_tick_ns": self._next_tick_ns,
            "rules": self.evaluator.snapshot() if self.evaluator is not None else None,
            "deployments": self.deployments.to_dict(),
            "slo": self.slo.snapshot() if self.slo is not None else None,
            "budgets": self.budgets.snapshot() if self.budgets is not None else None,
        }
        return data

    def restore(self, data: dict[str, Any]) -> None:
        """Restore the rule and deployment state saved by `snapshot` (the engine restores itself)."""
        saved = data.get("pipeline")
        if not isinstance(saved, dict):
            return
        self._next_tick_ns = int(saved.get("next_tick_ns") or 0)
        if self.evaluator is not None and isinstance(saved.get("rules"), dict):
            self.evaluator.restore(saved["rules"])
        if self.slo is not None and isinstance(saved.get("slo"), dict):
            self.slo.restore(saved["slo"])
        if self.budgets is not None and isinstance(saved.get("budgets"), dict):
            self.budgets.restore(saved["budgets"])
        if isinstance(saved.get("deployments"), dict):
            self.deployments = DeploymentTracker.from_dict(saved["deployments"])
            if self.evaluator is not None:
                self.findings.inner = DeploymentAnnotator(self.deployments, self.history)
                self.evaluator.annotator = self.findings

    def active_alerts(self) -> list[AlertEvent]:
        """Alerts now pending or firing: the rules', the drift monitor's, the SLOs' and `on_tick`'s."""
        if self.evaluator is None:
            return []
        return [*self.evaluator.active_alerts(), *self.drift.active(), *self._tick_alerts.values()]

    # --- deployments ----------------------------------------------------------------------------------
    def observe_calls(self, calls: Iterable[CallRecord]) -> None:
        seen: set[tuple[Any, str]] = set()
        last: dict[SeriesKey, str] = {}  # a series' latest version: most calls stop here, with no tuple
        observe = self.deployments.observe
        for call in calls:
            series, version = call.series, call.service_version
            if last.get(series) == version:
                continue
            last[series] = version
            marker = (series, version)
            if marker not in seen:
                seen.add(marker)
                observe(series, version, call.end_time_ns)

    def record_deployment(self, deployment: Deployment) -> None:
        self.deployments.record(deployment)

    # --- rules ------------------------------------------------------------------------------------------
    def _evaluate(self, tick: int) -> None:
        assert self.evaluator is not None
        self._next_tick_ns = tick + self._tick_ns
        share = self._evaluation_share
        if share is not None:
            started = self._clock()
            if started < self._evaluate_after and tick % HOUR_NS:  # hourly checks are never skipped
                self.ticks_coalesced += 1
                return
        self.ticks_evaluated += 1
        engine = self.engine
        minute = tick - self._tick_ns
        self.history.record(
            minute,
            (
                (key, stats)
                for key in engine.series()
                if (stats := engine.window(key, "1m")) is not None and stats.start_ns == minute
            ),
        )
        self._evaluate_rules(tick)
        if share is not None:
            finished = self._clock()
            self._evaluate_after = finished + (finished - started) * (1 / share - 1)

    def _evaluate_rules(self, tick: int) -> None:
        assert self.evaluator is not None
        engine = self.engine
        events = self.evaluator.evaluate(tick, engine.series(), engine_metrics(engine))
        if tick % HOUR_NS == 0:
            events += self.drift.check(tick)
        if self.disparity is not None:
            events += self.disparity.evaluate(tick)
        others: list[AlertEvent] = []
        if self.slo is not None and self.slo.slos:
            others += self.slo.evaluate(tick)
        if self.budgets is not None:
            others += self.budgets.evaluate(tick)
        if self._on_tick is not None:
            others += self._on_tick(tick)
        for event in others:
            if event.status in ("pending", "firing"):
                self._tick_alerts[event.fingerprint] = event
            else:
                self._tick_alerts.pop(event.fingerprint, None)
        events += others
        if events:
            self.events_emitted += len(events)
            if self._on_events is not None:
                self._on_events(events)


def _split(result: DecodeResult, tick: int) -> tuple[DecodeResult, DecodeResult]:
    """(records before `tick`, the rest); counts stay on the second part so nothing is counted twice."""
    before_calls = tuple(c for c in result.calls if c.end_time_ns < tick)
    before_evals = tuple(e for e in result.evaluations if e.time_ns < tick)
    if len(before_calls) == len(result.calls) and len(before_evals) == len(result.evaluations):
        return result, DecodeResult()
    before = DecodeResult(calls=before_calls, evaluations=before_evals)
    rest = dataclasses.replace(
        result,
        calls=tuple(c for c in result.calls if c.end_time_ns >= tick),
        evaluations=tuple(e for e in result.evaluations if e.time_ns >= tick),
    )
    return before, rest
