"""The calibration loop: predicted quality in the registry against measured quality, flagged for review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from otel_llm_collector import scenarios
from otel_llm_collector.alerting import Alerting
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.calibration import CALIBRATION_ALERT, CalibrationMonitor, CalibrationSettings
from otel_llm_collector.config import ConfigError, load_settings
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.windows import WindowEngine

MINUTE_NS = 60 * 10**9


def _run(
    tmp_path: Path, *, predicted: float | None, faithfulness: float, minutes: int = 60, **calibration: Any
) -> tuple[list[AlertEvent], Alerting]:
    settings = load_settings(None, {"state_dir": str(tmp_path), "calibration": calibration})
    alerting = Alerting(settings, tmp_path, Counters())
    baselines = {} if predicted is None else {"quality": predicted}
    alerting.registry.register("answer", "1.0.0", "Answer.", created_by="dev", baselines=baselines)
    alerting.registry.deploy("answer", "1.0.0", by="dev")
    seen: list[AlertEvent] = []
    alerting.on_events = seen.extend  # type: ignore[method-assign]
    pipeline = alerting.pipeline(WindowEngine())
    phase = scenarios.Phase(
        start_ns=scenarios.at(10, 0),
        calls_per_second=1.0,
        evaluated_share=0.5,
        prompt_version="1.0.0",
        faithfulness=scenarios.constant(faithfulness),
    )
    traffic = scenarios.Scenario(name="calibration", phases=(phase,), end_ns=scenarios.at(10, minutes))
    for request in traffic.requests():
        pipeline.apply(decode_traces(request))
    return [e for e in seen if e.alertname == CALIBRATION_ALERT], alerting


def test_an_overestimated_version_is_flagged_for_review_after_the_sustain(tmp_path: Path) -> None:
    flagged, alerting = _run(tmp_path, predicted=0.90, faithfulness=0.70)
    try:
        assert [e.status for e in flagged] == ["firing"]
        event = flagged[0]
        assert (event.severity, event.actions) == ("P3", ("alert", "flag_for_review"))
        assert event.at_ns - event.starts_at_ns >= 30 * MINUTE_NS
        assert event.labels["prompt_version"] == "1.0.0"
        assert "predicted 0.90" in event.annotations["summary"]
        assert event.value is not None
        assert event.value == pytest.approx(-0.20, abs=0.03)
        lines = alerting.metrics_lines()
        [delta] = [line for line in lines if line.startswith("otel_llm_calibration_delta{")]
        assert 'prompt_version="1.0.0"' in delta
        assert 'evaluation="faithfulness",window="1h"' in delta
        assert float(delta.rsplit(" ", 1)[1]) == pytest.approx(-0.20, abs=0.03)
        # The flag is listed among the active alerts (`otel_llm_alert`, `/api/v1/alerts`).
        [active] = [line for line in lines if line.startswith('otel_llm_alert{alertname="CalibrationDrift"')]
        assert 'state="firing"' in active
    finally:
        alerting.stop()


def test_a_well_calibrated_version_is_quiet_and_still_measured(tmp_path: Path) -> None:
    flagged, alerting = _run(tmp_path, predicted=0.88, faithfulness=0.85)
    try:
        assert flagged == []
        assert any(line.startswith("otel_llm_calibration_delta{") for line in alerting.metrics_lines())
    finally:
        alerting.stop()


def test_no_prediction_means_no_calibration(tmp_path: Path) -> None:
    flagged, alerting = _run(tmp_path, predicted=None, faithfulness=0.3)
    try:
        assert flagged == []
        assert not any("otel_llm_calibration" in line for line in alerting.metrics_lines())
    finally:
        alerting.stop()


def test_the_flag_waits_for_its_sustain_and_its_samples(tmp_path: Path) -> None:
    # 20 minutes of drift is shorter than the 30-minute sustain.
    flagged, alerting = _run(tmp_path / "short", predicted=0.9, faithfulness=0.6, minutes=20)
    alerting.stop()
    assert flagged == []
    # Too few evaluated calls for the minimum.
    flagged, alerting = _run(tmp_path / "few", predicted=0.9, faithfulness=0.6, min_samples=100_000)
    alerting.stop()
    assert flagged == []


def test_it_resolves_when_production_meets_the_prediction_again() -> None:
    monitor = CalibrationMonitor(CalibrationSettings(window="5m", sustain_seconds=0, min_samples=5))
    engine = WindowEngine()
    bad = scenarios.Phase(
        start_ns=scenarios.at(10, 0),
        evaluated_share=1.0,
        prompt_version="1.0.0",
        faithfulness=scenarios.constant(0.5),
    )
    good = scenarios.Phase(
        start_ns=scenarios.at(10, 10),
        evaluated_share=1.0,
        prompt_version="1.0.0",
        faithfulness=scenarios.constant(0.9),
    )
    traffic = scenarios.Scenario(name="c", phases=(bad, good), end_ns=scenarios.at(10, 30))
    statuses: list[str] = []
    minute = scenarios.at(10, 1)
    for request in traffic.requests():
        batch = decode_traces(request)
        engine.apply(batch)
        latest = max((c.end_time_ns for c in batch.calls), default=0)
        while latest >= minute + MINUTE_NS:
            minute += MINUTE_NS
            statuses += [e.status for e in monitor.evaluate(minute, {("answer", "1.0.0"): 0.9}, engine)]
    assert statuses == ["firing", "resolved"]


def test_bad_calibration_settings_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"calibration\.threshold"):
        load_settings(None, {"state_dir": str(tmp_path), "calibration": {"threshold": 2}})
    with pytest.raises(ConfigError, match=r"calibration\.window"):
        load_settings(None, {"state_dir": str(tmp_path), "calibration": {"window": "7m"}})
