"""A prompt version whose p95 latency stays above its registry budget is flagged for review, not paged."""

from __future__ import annotations

from pathlib import Path

from otel_llm_collector import scenarios
from otel_llm_collector.alerting import Alerting
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.config import load_settings
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.windows import WindowEngine


def _run(tmp_path: Path, latency_s: float) -> list[AlertEvent]:
    settings = load_settings(None, {"state_dir": str(tmp_path)})
    alerting = Alerting(settings, tmp_path, Counters())
    try:
        alerting.registry.register(
            "answer", "1.0.0", "Answer.", created_by="dev", baselines={"latency_p95_s": 1.5}
        )
        alerting.registry.deploy("answer", "1.0.0", by="dev")
        seen: list[AlertEvent] = []
        alerting.on_events = seen.extend  # type: ignore[method-assign]
        pipeline = alerting.pipeline(WindowEngine())
        phase = scenarios.Phase(
            start_ns=scenarios.at(10, 0), prompt_version="1.0.0", latency_s=scenarios.constant(latency_s)
        )
        traffic = scenarios.Scenario(name="budget", phases=(phase,), end_ns=scenarios.at(11, 0))
        for request in traffic.requests():
            pipeline.apply(decode_traces(request))
        return seen
    finally:
        alerting.stop()


def test_sustained_latency_over_budget_is_flagged_after_30_minutes(tmp_path: Path) -> None:
    flagged = [e for e in _run(tmp_path, 2.5) if e.alertname == "LatencyOverBudget"]
    assert [e.status for e in flagged] == ["firing"]
    event = flagged[0]
    assert event.severity == "P3"
    assert "flag_for_review" in event.actions
    assert event.at_ns - event.starts_at_ns >= 30 * 60 * 10**9
    assert event.labels["prompt_version"] == "1.0.0"


def test_latency_within_budget_flags_nothing(tmp_path: Path) -> None:
    assert [e for e in _run(tmp_path, 0.9) if e.alertname == "LatencyOverBudget"] == []
