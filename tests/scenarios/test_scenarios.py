"""The scenario suite: generated traffic with known incidents, replayed through the real pipeline.

Each scenario is written to disk in a recorded-traffic format and read back by `replay`, the same code path
as `otel-llm replay`; the assertions are the behaviour the rules promise (see docs/rules.md).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from otel_llm_collector import scenarios
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.replay import Summary, replay
from otel_llm_collector.rules import load_default_rules
from otel_llm_collector.scenarios import Scenario, at


def _replay(scenario: Scenario, tmp_path: Path, *, fmt: str = "pb") -> tuple[list[dict[str, Any]], Summary]:
    path = tmp_path / f"{scenario.name}.{'pb' if fmt == 'pb' else 'jsonl'}"
    if fmt == "pb":
        scenarios.write_delimited(scenario, path)
    else:
        scenarios.write_jsonl(scenario, path)
    out, err = io.StringIO(), io.StringIO()
    summary = replay([path], evaluator=build_evaluator(load_default_rules()), out=out, errors=err)
    assert summary.bad_lines == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


def _firing(events: list[dict[str, Any]], *, pages_only: bool = False) -> list[dict[str, Any]]:
    found = [e for e in events if e["status"] == "firing"]
    if pages_only:
        found = [e for e in found if e["labels"]["severity"] in ("P0", "P1") and not e["inhibited"]]
    return found


def test_blind_spot_pages_once_by_10_22_naming_the_deployment(tmp_path: Path) -> None:
    events, summary = _replay(scenarios.blind_spot(), tmp_path)
    pages = _firing(events, pages_only=True)
    assert len(pages) == 1
    (page,) = pages
    assert page["labels"]["alertname"].startswith("faithfulness")
    assert page["eventTimeUnixNano"] <= at(10, 22)
    assert page["eventTimeUnixNano"] > at(10, 12)
    assert "service_version=1.1.0" in page["annotations"]["deployment"]
    assert page["annotations"]["deployment_confidence"] == "strong"
    # Latency and errors stayed normal: nothing else fired.
    fired = {e["labels"]["alertname"] for e in _firing(events)}
    assert fired <= {"faithfulness-p1", "faithfulness-p2", "quality-trend-p3"}
    assert summary.pages == 1


def test_normal_week_pages_nobody(tmp_path: Path) -> None:
    events, summary = _replay(scenarios.normal_week(), tmp_path)
    assert _firing(events, pages_only=True) == []
    assert not [e for e in _firing(events) if e["labels"]["alertname"].endswith("Drift")]
    assert summary.pages == 0
    assert summary.pages_per_week() == 0.0


def test_evaluation_outage_is_insufficient_data_not_an_alert(tmp_path: Path) -> None:
    events, _ = _replay(scenarios.evaluation_outage(), tmp_path)
    assert _firing(events) == []
    quality = [e for e in events if e["labels"]["alertname"] == "faithfulness-p1"]
    assert quality, "the quality rule must report its state"
    assert quality[-1]["status"] == "insufficient_data"


def test_slow_drift_is_caught_by_the_trend_detector_not_thresholds(tmp_path: Path) -> None:
    events, _ = _replay(scenarios.slow_drift(), tmp_path)
    fired: dict[str, dict[str, Any]] = {}
    for event in _firing(events):
        fired.setdefault(event["labels"]["alertname"], event)  # the first firing of each rule
    assert "quality-trend-p3" in fired
    # The thresholds had not been crossed when the trend was seen.
    threshold = [e for name, e in fired.items() if name.startswith("faithfulness")]
    trend_at = fired["quality-trend-p3"]["eventTimeUnixNano"]
    assert all(e["eventTimeUnixNano"] > trend_at for e in threshold)
    # Seen within two hours of the drift's start (08:00; 0.04 lost by then).
    assert trend_at <= at(10, 0)


def test_latency_and_cost_regressions_fire_their_rules_only(tmp_path: Path) -> None:
    events, _ = _replay(scenarios.latency_regression(), tmp_path)
    fired = {e["labels"]["alertname"] for e in _firing(events)}
    assert "latency-p95-2x" in fired
    assert "cost-per-call-2x" in fired
    assert not {name for name in fired if name.startswith(("faithfulness", "hallucination", "answer"))}


def test_two_deployments_correlation_names_the_second(tmp_path: Path) -> None:
    events, _ = _replay(scenarios.two_deployments(), tmp_path)
    page = _firing(events, pages_only=True)[0]
    assert "service_version=1.2.0" in page["annotations"]["deployment"]
    assert page["annotations"]["deployment_confidence"] in ("strong", "moderate")


def test_refusal_spike_fires_the_refusal_rule(tmp_path: Path) -> None:
    events, _ = _replay(scenarios.refusal_spike(), tmp_path)
    fired = _firing(events)
    assert [e["labels"]["alertname"] for e in fired] == ["refusal-rate-p2"]
    assert fired[0]["labels"]["prompt_version"] == "v2"


def test_same_input_same_output_and_formats_agree(tmp_path: Path) -> None:
    first, _ = _replay(scenarios.blind_spot(), tmp_path)
    again, _ = _replay(scenarios.blind_spot(), tmp_path)
    as_json, _ = _replay(scenarios.blind_spot(), tmp_path, fmt="jsonl")
    assert first == again == as_json
    assert first


def test_replay_command_prints_alerts_and_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "incident.jsonl"
    written = scenarios.write_jsonl(scenarios.blind_spot(), path)
    with path.open("a") as f:
        f.write("this is not json\n")
    result = subprocess.run(
        [sys.executable, "-m", "otel_llm_collector.cli", "replay", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(e["status"] == "firing" for e in lines)
    assert f"{path}:{written + 1}: skipped" in result.stderr
    assert "pages (P0/P1 firing): 1" in result.stderr
    assert "first firing naming" in result.stderr
    assert "8 min after the deployment" in result.stderr


def test_replay_command_rejects_missing_inputs_and_bad_rules(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "otel_llm_collector.cli", "replay", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "no such input file" in missing.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: x\n    condition: 'error_rate >'\n")
    bad = subprocess.run(
        [sys.executable, "-m", "otel_llm_collector.cli", "replay", "--rules", str(rules), str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "condition" in bad.stderr


def test_input_drift_is_reported_on_the_drifting_signal(tmp_path: Path) -> None:
    events, _ = _replay(scenarios.input_drift(), tmp_path)
    drift = [e for e in _firing(events) if e["labels"]["alertname"] == "InputDrift"]
    assert [e["labels"]["signal"] for e in drift] == ["input_tokens"]
    # Seen at the first hour boundary after the change (12:00 -> checked at 13:00).
    assert drift[0]["eventTimeUnixNano"] == at(13, 0)
    assert float(drift[0]["annotations"]["value"]) > 0.25
    assert _firing(events, pages_only=True) == []
