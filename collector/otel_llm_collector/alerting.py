"""The live collector's alerting: rules on the pipeline, alert log and API, notifications through the outbox.

    alerting = Alerting(settings, state_dir, counters)
    sink = alerting.pipeline(engine)            # the ingest worker's WindowSink
    alerting.register_routes(router, lock)      # /api/v1/alerts, /api/v1/deployments
    alerting.start(); ...; alerting.stop()

Alert transitions come from the pipeline on the ingest worker's thread. Firing and resolved ones that are
not inhibited become `notify.Alert`s, routed (chat/page/webhook once per group transition, Alertmanager
with its resend lease) and enqueued in the durable outbox before the worker moves on: a notification the
collector decided to send survives a crash. The outbox's own threads deliver them. Alertmanager re-sends
are ticked on the pipeline's event time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otel_llm_collector import alert_api, budget_api, control_metrics, slo_api
from otel_llm_collector.alerts import AlertEvent, review_flag
from otel_llm_collector.budgets import BudgetTracker, load_budgets
from otel_llm_collector.calibration import CalibrationMonitor
from otel_llm_collector.canary import CanaryCollector, CanaryReport
from otel_llm_collector.conditions import WindowMetrics
from otel_llm_collector.config import CollectorSettings
from otel_llm_collector.correlation import Deployment
from otel_llm_collector.disparity import DisparitySettings, DisparityTracker
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.notify import Alert
from otel_llm_collector.notify_route import Router as NotifyRouter
from otel_llm_collector.outbox import Outbox, OutboxWorker, outbox_path
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.registry import PromptRegistry, PromptVersion, RegistryRollbackTarget
from otel_llm_collector.remote_registry import RemoteRollbackTarget
from otel_llm_collector.rollback import RollbackController, RollbackSettings, RollbackTarget
from otel_llm_collector.router import Request, Response, Router
from otel_llm_collector.rules import Rule, load_default_rules, load_rules
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.slo import SloTracker, load_slos
from otel_llm_collector.switches import Switch
from otel_llm_collector.windows import WindowEngine

__all__ = ["Alerting"]

LATENCY_BUDGET_SUSTAIN_NS = 30 * 60 * 1_000_000_000


def _budget_event(
    key: SeriesKey, budget: float, p95: float | None, since_ns: int, at_ns: int, status: str
) -> AlertEvent:
    annotations = {
        "summary": f"p95 latency of {key.prompt_name} {key.prompt_version} is over its {budget}s budget",
        "description": "The 15-minute p95 latency has stayed above the budget in the prompt registry for "
        "30 minutes: flagged for review.",
        "value": "" if p95 is None else f"{p95:.4g}",
        "runbook_url": "docs/runbooks/latency.md",
    }
    return review_flag(
        key,
        alertname="LatencyOverBudget",
        rule="latency-over-budget",
        status=status,  # type: ignore[arg-type]
        since_ns=since_ns,
        at_ns=at_ns,
        value=p95,
        annotations=annotations,
    )


_logger = logging.getLogger(__name__)


def canary_metric_names(rule_name: str, rules: Iterable[Rule]) -> set[str]:
    """The canary metrics that judge what the rule `rule_name` reads (`score:faithfulness`, `error_rate`,
    ...); empty when the canary compares nothing of it (e.g. cost)."""
    rule = next((r for r in rules if r.name == rule_name), None)
    if rule is None:
        return set()
    names: set[str] = set()
    for ref in rule.metrics:
        metric, argument = ref.name, ref.argument
        if metric.startswith("eval_mean") and argument:
            names.add(f"score:{argument}")
        elif metric.startswith("eval_fail") and argument:
            names.add(f"fail_rate:{argument}")
        elif metric in ("error_rate", "success_rate", "error_count"):
            names.add("error_rate")
        elif metric.startswith("latency"):
            names.add("latency_seconds")
    return names


def to_notify_alert(event: AlertEvent) -> Alert:
    return Alert.from_mapping(event.to_dict())


class Alerting:
    """Owns the rule evaluator, the alert log, the notification router and the outbox."""

    def __init__(self, settings: CollectorSettings, state_dir: Path, counters: Counters) -> None:
        self.settings = settings
        self._counters = counters
        self.log = alert_api.AlertLog()
        rules = load_rules(settings.rules_file) if settings.rules_file else load_default_rules()
        self.evaluator = build_evaluator(rules) if settings.rules_enabled else None
        self.notify_router = NotifyRouter.from_settings(settings.notify)
        self.outbox = Outbox(
            outbox_path(state_dir),
            notifiers=self.notify_router.notifiers,
            settings=settings.notify.outbox,
            counters=counters,
        )
        self.worker = OutboxWorker(self.outbox)
        self.slo = SloTracker(load_slos(settings.slo_file) if settings.slo_file else [])
        self.canary = CanaryCollector(dimension="prompt_version")
        self.calibration = CalibrationMonitor(settings.calibration)
        self.budgets = BudgetTracker(load_budgets(settings.budgets_file) if settings.budgets_file else [])
        self.disparity: DisparityTracker | None = None
        self.registry = PromptRegistry(state_dir)
        target: RollbackTarget = (
            RemoteRollbackTarget(settings.control_plane_url, token=self.api_token)
            if settings.control_plane_url
            else RegistryRollbackTarget(self.registry)
        )
        self.rollbacks = RollbackController(
            target,
            RollbackSettings(
                enabled=settings.auto_rollback_enabled,
                dry_run=settings.auto_rollback_dry_run,
                min_interval_seconds=settings.auto_rollback_min_interval_seconds,
                max_per_day=settings.auto_rollback_max_per_day,
                recovery_seconds=settings.auto_rollback_recovery_seconds,
            ),
            read_metric=self._series_figures,
            canary=self._canary_verdict,
        )
        self._pipeline: Pipeline | None = None
        self._last_resend_tick = 0
        self._over_budget: dict[SeriesKey, tuple[int, bool]] = {}
        counters.gauge("alerts_active", self._active_count)

    def _active_count(self) -> float:
        if self.evaluator is None:
            return 0.0
        return float(sum(1 for e in self.evaluator.active_alerts() if e.status == "firing"))

    def pipeline(self, engine: WindowEngine) -> Pipeline:
        config = self.settings.segment_disparity
        self.disparity = (
            DisparityTracker(
                DisparitySettings(
                    window_seconds=config.window_seconds,
                    confidence=config.confidence,
                    min_difference=config.min_difference,
                    min_samples=config.min_samples,
                    max_values_per_segment=config.max_values,
                    max_cells=config.max_cells,
                ),
                join=engine.join,
            )
            if config.enabled
            else None
        )
        self._pipeline = Pipeline(
            engine,
            self.evaluator,
            slo=self.slo,
            canary=self.canary,
            on_events=self.on_events,
            on_tick=self.tick,
            disparity=self.disparity,
            budgets=self.budgets,
            evaluation_share=self.settings.rule_evaluation_share,
        )
        pipeline = self._pipeline
        self._counters.gauge("rule_ticks_evaluated_total", lambda: float(pipeline.ticks_evaluated))
        self._counters.gauge("rule_ticks_coalesced_total", lambda: float(pipeline.ticks_coalesced))
        return self._pipeline

    def on_events(self, events: list[AlertEvent]) -> None:
        """The pipeline's sink (ingest worker thread): log, route and durably enqueue notifications."""
        if not events:
            return
        events = [self._maybe_roll_back(e) for e in events]
        self.log.record(events)
        at = datetime.fromtimestamp(max(e.at_ns for e in events) / 1e9, tz=UTC)
        alerts = [
            to_notify_alert(e) for e in events if e.status in ("firing", "resolved") and not e.inhibited
        ]
        notifications = self.notify_router.route(alerts, now=at) if alerts else []
        notifications += self.notify_router.tick(at)
        if notifications:
            try:
                self.outbox.enqueue_many(notifications)
            except Exception:
                _logger.exception("could not enqueue %d notifications", len(notifications))

    def _series_figures(self, event: AlertEvent) -> dict[str, Any] | None:
        """The alerting series' 5-minute figures at the time of the rollback, for the post-mortem, with the
        canary comparison of the bad version against the one the rollback returns to."""
        if self._pipeline is None:
            return None
        stats = self._pipeline.engine.window(event.series, "5m")
        if stats is None:
            return None
        figures: dict[str, Any] = {
            "calls": stats.count,
            "error_rate": stats.error_rate,
            "latency_p95_s": stats.latency_p95_s,
            "evaluations": {name: ev.mean for name, ev in stats.evaluations.items()},
        }
        prompt = event.series.prompt_name
        reference = self.rollbacks.target.rollback_reference(prompt) if prompt else None
        if reference:
            report = self.canary.compare(prompt, baseline=reference, candidate=event.series.prompt_version)
            if report is not None:
                figures["canary"] = {"verdict": str(report.verdict), "score": report.score}
        return figures

    def canary_report(
        self, prompt: str, baseline: str, candidate: str, lock: threading.Lock
    ) -> CanaryReport | None:
        """The canary comparison for the API (promotion), read under the ingest worker's lock."""
        with lock:
            return self.canary.compare(prompt, baseline=baseline, candidate=candidate)

    def _canary_verdict(
        self, prompt: str, baseline: str, candidate: str, event: AlertEvent
    ) -> tuple[str, float | None] | None:
        """The canary verdict, only when it judged the alert's own metric conclusively: a comparison that
        never saw the alerting signal (say, scores that had not arrived) must not stop a rollback."""
        report = self.canary.compare(prompt, baseline=baseline, candidate=candidate)
        if report is None:
            return None
        wanted = canary_metric_names(event.rule, self.evaluator.rules.rules if self.evaluator else ())
        judged = {m.name for m in report.metrics if m.verdict != "inconclusive"}
        if not wanted or not wanted <= judged:
            return None
        return str(report.verdict), report.score

    def _recovered(self, event: AlertEvent) -> bool | None:
        """Did the rule's condition clear on the series now serving (the rolled-back-to version)?"""
        if self._pipeline is None or self.evaluator is None:
            return None
        decision = next((d for d in reversed(self.rollbacks.decisions) if d.alert == event.alertname), None)
        rule = next((r for r in self.evaluator.rules.rules if r.name == event.rule), None)
        if decision is None or rule is None or rule.compiled is None:
            return None
        series = event.series._replace(prompt_version=decision.to_version)
        stats = self._pipeline.engine.window(series, rule.window)
        verdict = rule.compiled.evaluate(WindowMetrics(stats), min_samples=rule.min_samples)
        return None if verdict.result is None else not verdict.result

    def tick(self, at_ns: int) -> list[AlertEvent]:
        """Per event-time tick: close the rollbacks' recovery watches, check latency budgets and the
        calibration of predicted quality."""
        for decision in self.rollbacks.check_recovery(at_ns, recovered=self._recovered):
            _logger.warning(
                "rollback of %s to %s: %s", decision.prompt, decision.to_version, decision.recovery
            )
        events = self._latency_budgets(at_ns)
        if self._pipeline is not None:
            predicted = self.registry.predicted_quality()
            events += self.calibration.evaluate(at_ns, predicted, self._pipeline.engine)
        return events

    def _latency_budgets(self, at_ns: int) -> list[AlertEvent]:
        """Flag for review (P3) a prompt version whose 15-minute p95 latency stays above the budget its
        registry entry declares (`baselines.latency_p95_s`) for 30 minutes of event time."""
        if self._pipeline is None:
            return []
        engine = self._pipeline.engine
        budgets = {
            name: (version.version, version.baselines.get("latency_p95_s"))
            for name, version in self.registry.active_versions().items()
        }
        events: list[AlertEvent] = []
        for key in engine.series():
            name_version = budgets.get(key.prompt_name)
            if name_version is None or name_version[1] is None or key.prompt_version != name_version[0]:
                continue
            stats = engine.window(key, "15m")
            over = stats is not None and stats.count >= 20 and (stats.latency_p95_s or 0) > name_version[1]
            since = self._over_budget.get(key)
            if not over:
                if since is not None and since[1]:
                    events.append(_budget_event(key, name_version[1], None, since[0], at_ns, "resolved"))
                self._over_budget.pop(key, None)
                continue
            if since is None:
                self._over_budget[key] = (at_ns, False)
            elif not since[1] and at_ns - since[0] >= LATENCY_BUDGET_SUSTAIN_NS:
                self._over_budget[key] = (since[0], True)
                p95 = stats.latency_p95_s if stats is not None else None
                events.append(_budget_event(key, name_version[1], p95, since[0], at_ns, "firing"))
        return events

    def _maybe_roll_back(self, event: AlertEvent) -> AlertEvent:
        """Run the `auto_rollback` action of a firing alert; the decision goes into its annotations."""
        decision = self.rollbacks.consider(event)
        if decision is None:
            return event
        _logger.warning(
            "automatic rollback of %s: %s (%s)", decision.prompt, decision.outcome, decision.reason
        )
        return dataclasses.replace(
            event, annotations={**event.annotations, **self.rollbacks.annotations(decision)}
        )

    def record_prompt_deployment(self, version: PromptVersion, reason: str, lock: threading.Lock) -> None:
        """A deploy through the registry API, as a posted deployment for alert correlation: it names who
        deployed and why, where the telemetry alone only sees a new version appear."""
        if self._pipeline is None or version.deployed_at is None:
            return
        by = version.deployed_by or ""
        deployment = Deployment(
            id=f"prompt {version.name} {version.version} by {by}" + (f": {reason}" if reason else ""),
            time_ns=int(version.deployed_at * 1e9),
            components={"prompt_name": version.name, "prompt_version": version.version},
            author=by,
        )
        with lock:
            self._pipeline.record_deployment(deployment)

    def api_token(self) -> str | None:
        return os.environ.get(self.settings.api_token_env) or None

    def register_routes(self, router: Router, lock: threading.Lock) -> None:
        assert self._pipeline is not None, "create the pipeline first"
        alert_api.register(router, self._pipeline, lock, self.log, api_token=self.api_token)
        slo_api.register(router, self.slo, self.canary, lock)
        budget_api.register(router, self.budgets, lock)

        def list_rollbacks(request: Request) -> Response:
            with lock:
                decisions = [d.to_dict() for d in self.rollbacks.decisions]
            return Response.json(200, {"rollbacks": decisions})

        router.add("GET", "/api/v1/rollbacks", list_rollbacks)

    def metrics_lines(self, switches: Iterable[Switch] = ()) -> list[str]:
        """Alert, rollback, SLO, calibration and canary families, and the kill switches in `switches`.
        Call it under the ingest worker's lock; read `switches` (`KillSwitches.list()`) before taking it."""
        if self._pipeline is None:
            return []
        lines = alert_api.alert_metrics(self._pipeline, self.log)
        lines += [
            "# HELP otel_llm_rollbacks_total Automatic rollback decisions by outcome.",
            "# TYPE otel_llm_rollbacks_total counter",
        ]
        for outcome in ("rolled_back", "dry_run", "refused", "failed"):
            lines.append(
                f'otel_llm_rollbacks_total{{outcome="{outcome}"}} {self.rollbacks.counts.get(outcome, 0)}'
            )
        lines += control_metrics.rollback_lines(self.rollbacks.decisions)
        if self.slo.slos:
            lines += self.slo.metrics_text().rstrip("\n").splitlines()
        lines += self.calibration.metrics_lines()
        if self.budgets.budgets:
            lines += self.budgets.metrics_text().rstrip("\n").splitlines()
        if self.disparity is not None:
            lines += self.disparity.metrics_text().rstrip("\n").splitlines()
        lines += control_metrics.kill_switch_lines(switches)
        lines += control_metrics.canary_metric_lines(
            self.canary,
            self._pipeline.engine,
            active_versions=lambda: {n: v.version for n, v in self.registry.active_versions().items()},
        )
        return lines

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.outbox.close()
        self.registry.close()
