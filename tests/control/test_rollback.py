"""Safe automatic rollback against the real prompt registry: the action, its safeguards, dry run, recovery."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.canary import CanaryCollector
from otel_llm_collector.records import CallRecord, SeriesKey
from otel_llm_collector.registry import PromptRegistry, RegistryRollbackTarget
from otel_llm_collector.rollback import RollbackController, RollbackSettings

MINUTE = 60 * 1_000_000_000
T0 = 1_767_225_600 * 1_000_000_000


@pytest.fixture
def registry(tmp_path: Path) -> PromptRegistry:
    registry = PromptRegistry(tmp_path)
    for version in ("1.0.0", "2.0.0"):
        registry.register("answer", version, f"Answer from the context ({version}).", created_by="dev")
    registry.deploy("answer", "1.0.0", by="dev")
    registry.deploy("answer", "2.0.0", by="dev")
    return registry


def _alert(
    at_ns: int, version: str = "2.0.0", *, actions: tuple[str, ...] = ("alert", "auto_rollback")
) -> AlertEvent:
    labels = {
        "alertname": "error-rate-rollback",
        "severity": "P1",
        "service": "support-bot",
        "feature": "support-answer",
        "prompt_name": "answer",
        "prompt_version": version,
        "model": "gpt-4o-mini",
    }
    return AlertEvent(
        status="firing",
        labels=labels,
        annotations={"summary": "errors"},
        starts_at_ns=at_ns - 5 * MINUTE,
        ends_at_ns=None,
        at_ns=at_ns,
        rule="error-rate-rollback",
        series=SeriesKey("support-bot", "support-answer", "answer", version, "gpt-4o-mini"),
        severity="P1",
        value=0.3,
        actions=actions,
    )


def _controller(registry: PromptRegistry, **settings: object) -> RollbackController:
    return RollbackController(RegistryRollbackTarget(registry), RollbackSettings(**settings))  # type: ignore[arg-type]


def test_firing_alert_rolls_the_active_version_back_and_audits_it(registry: PromptRegistry) -> None:
    controller = _controller(registry)
    decision = controller.consider(_alert(T0))
    assert decision is not None
    assert (decision.outcome, decision.from_version, decision.to_version) == ("rolled_back", "2.0.0", "1.0.0")
    assert registry.active("answer").version == "1.0.0"
    assert any(row.action == "auto_rollback" for row in registry.audit("answer"))
    assert controller.annotations(decision)["rollback"] == "rolled_back"


def test_a_second_regression_within_15_minutes_is_not_rolled_back(registry: PromptRegistry) -> None:
    controller = _controller(registry)
    assert controller.consider(_alert(T0)).outcome == "rolled_back"  # type: ignore[union-attr]
    registry.deploy("answer", "2.0.0", by="dev")
    second = controller.consider(_alert(T0 + 10 * MINUTE))
    assert second is not None
    assert second.outcome == "refused"
    assert "manual action needed" in second.reason
    assert registry.active("answer").version == "2.0.0"


def test_the_fourth_automatic_rollback_in_a_day_is_refused(registry: PromptRegistry) -> None:
    controller = _controller(registry)
    outcomes = []
    for i in range(4):
        if i:
            registry.deploy("answer", "2.0.0", by="dev")
        decision = controller.consider(_alert(T0 + i * 20 * MINUTE))
        assert decision is not None
        outcomes.append(decision.outcome)
    assert outcomes == ["rolled_back", "rolled_back", "rolled_back", "refused"]
    assert "automatic rollback is off" in controller.decisions[-1].reason
    assert registry.active("answer").version == "2.0.0"


def test_dry_run_changes_nothing(registry: PromptRegistry) -> None:
    decision = _controller(registry, dry_run=True).consider(_alert(T0))
    assert decision is not None
    assert decision.outcome == "dry_run"
    assert registry.active("answer").version == "2.0.0"


def test_only_the_active_version_and_only_rollback_actions(registry: PromptRegistry) -> None:
    controller = _controller(registry)
    assert controller.consider(_alert(T0, actions=("alert",))) is None
    old = controller.consider(_alert(T0, version="1.0.0"))
    assert old is not None
    assert old.outcome == "refused"
    assert registry.active("answer").version == "2.0.0"


def test_no_reference_means_manual(tmp_path: Path) -> None:
    registry = PromptRegistry(tmp_path)
    registry.register("answer", "2.0.0", "only one", created_by="dev")
    registry.deploy("answer", "2.0.0", by="dev")
    decision = _controller(registry).consider(_alert(T0))
    assert decision is not None
    assert decision.outcome == "refused"
    assert "manual action needed" in decision.reason


def test_recovery_is_reported_after_the_watch(registry: PromptRegistry) -> None:
    controller = _controller(registry, recovery_seconds=600)
    decision = controller.consider(_alert(T0))
    assert decision is not None
    assert decision.recovery == "pending"
    assert controller.check_recovery(T0 + 5 * MINUTE, recovered=lambda event: True) == []
    (done,) = controller.check_recovery(T0 + 11 * MINUTE, recovered=lambda event: True)
    assert done.recovery == "recovered"


def test_deploy_can_retire_older_versions_but_keeps_the_rollback_reference(registry: PromptRegistry) -> None:
    registry.register("answer", "3.0.0", "v3", created_by="dev")
    registry.deploy("answer", "3.0.0", by="dev", deprecate_older=True)
    status = {v.version: v.status for v in registry.versions("answer")}
    assert status == {"1.0.0": "deprecated", "2.0.0": "staged", "3.0.0": "active"}
    decision = _controller(registry).consider(_alert(T0, version="3.0.0"))
    assert decision is not None
    assert (decision.outcome, decision.to_version) == ("rolled_back", "2.0.0")


def _canary_traffic(canary: CanaryCollector, version: str, *, error_rate: float, seed: int) -> None:
    rng = random.Random(seed)
    series = SeriesKey("support-bot", "support-answer", "answer", version, "gpt-4o-mini")
    for i in range(600):
        canary.observe_call(
            CallRecord(
                series,
                T0 + i,
                rng.lognormvariate(0.0, 0.3),
                "t",
                f"{version}-{i}",
                error_type="Timeout" if rng.random() < error_rate else "",
            )
        )


def _guarded(registry: PromptRegistry, canary: CanaryCollector) -> RollbackController:
    def verdict(
        prompt: str, baseline: str, candidate: str, event: AlertEvent
    ) -> tuple[str, float | None] | None:
        report = canary.compare(prompt, baseline=baseline, candidate=candidate)
        return None if report is None else (str(report.verdict), report.score)

    return RollbackController(RegistryRollbackTarget(registry), canary=verdict)


def test_no_rollback_when_the_canary_finds_the_version_no_worse(registry: PromptRegistry) -> None:
    # Both versions served at once and both failed as often: an outage under both, not the version's fault.
    canary = CanaryCollector()
    _canary_traffic(canary, "1.0.0", error_rate=0.3, seed=1)
    _canary_traffic(canary, "2.0.0", error_rate=0.3, seed=2)
    decision = _guarded(registry, canary).consider(_alert(T0))
    assert decision is not None
    assert decision.outcome == "refused"
    assert decision.reason.startswith("canary: 2.0.0 is no worse than 1.0.0")
    assert "manual action needed" in decision.reason
    assert registry.active("answer").version == "2.0.0"


def test_the_rollback_goes_ahead_when_the_canary_blames_the_version(registry: PromptRegistry) -> None:
    canary = CanaryCollector()
    _canary_traffic(canary, "1.0.0", error_rate=0.01, seed=1)
    _canary_traffic(canary, "2.0.0", error_rate=0.3, seed=2)
    decision = _guarded(registry, canary).consider(_alert(T0))
    assert decision is not None
    assert decision.outcome == "rolled_back"
    assert registry.active("answer").version == "1.0.0"
    # Without canary data for the reference, the rule's verdict stands too.
    registry.deploy("answer", "2.0.0", by="dev")
    empty = _guarded(registry, CanaryCollector()).consider(_alert(T0 + 30 * MINUTE))
    assert empty is not None
    assert empty.outcome == "rolled_back"


def test_the_alerts_metric_must_be_among_what_the_canary_judged() -> None:
    from otel_llm_collector.alerting import canary_metric_names
    from otel_llm_collector.rules import load_default_rules

    rules = load_default_rules().rules
    assert canary_metric_names("faithfulness-p0", rules) == {"score:faithfulness"}
    assert canary_metric_names("error-rate-rollback", rules) == {"error_rate"}
    assert canary_metric_names("toxicity-p0", rules) == {"fail_rate:toxicity"}
    assert canary_metric_names("cost-per-call-2x", rules) == set()
    assert canary_metric_names("no-such-rule", rules) == set()


def test_scores_sent_as_log_records_reach_the_canary_and_a_collapse_is_rolled_back(tmp_path: Path) -> None:
    """The demo's shape: both versions error-free and equally fast, faithfulness only in evaluation log
    records. The canary must see the scores (and fail 2.0.0), so the rollback goes ahead."""
    from otel_llm_collector.alerting import Alerting
    from otel_llm_collector.config import load_settings
    from otel_llm_collector.contracts import DecodeResult
    from otel_llm_collector.decode import decode_traces
    from otel_llm_collector.records import EvaluationRecord
    from otel_llm_collector.selfmetrics import Counters
    from otel_llm_collector.testing import SECOND_NS, SpanRecorder
    from otel_llm_collector.windows import WindowEngine

    alerting = Alerting(load_settings(None, {"state_dir": str(tmp_path)}), tmp_path, Counters())
    try:
        for version in ("1.0.0", "2.0.0"):
            alerting.registry.register("answer", version, f"v{version}", created_by="dev")
            alerting.registry.deploy("answer", version, by="dev")
        pipeline = alerting.pipeline(WindowEngine())
        for minute in range(12):
            recorder = SpanRecorder(service="support-bot")
            scores: list[EvaluationRecord] = []
            for i in range(30):
                start = T0 + (minute * 60 + i * 2) * SECOND_NS
                version = "1.0.0" if minute < 4 else "2.0.0"
                response_id = f"r{minute}-{i}"
                recorder.genai_span(
                    start_ns=start, end_ns=start + SECOND_NS, prompt_version=version, response_id=response_id
                )
                score = 1.0 if version == "1.0.0" else 0.1
                scores.append(
                    EvaluationRecord("faithfulness", start + 2 * SECOND_NS, score, response_id=response_id)
                )
            pipeline.apply(decode_traces(recorder.request()))
            # As decoded from evaluation log records: no series, joined by response id.
            pipeline.apply(DecodeResult(evaluations=scores))
        report = alerting.canary.compare("answer", baseline="1.0.0", candidate="2.0.0")
        decisions = list(alerting.rollbacks.decisions)
    finally:
        alerting.stop()
    assert report is not None
    assert {m.name: m.verdict for m in report.metrics}["score:faithfulness"] == "fail"
    assert [d.outcome for d in decisions][:1] == ["rolled_back"]
