"""The Prometheus rendering of the SLOs: promtool accepts the rules and their unit tests pass, and the
alert thresholds are the collector's burn-rate table."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from otel_llm_collector.slo import BURN_RATE_ALERTS, SLO_ALERTNAME

ALERTS = Path(__file__).resolve().parents[2] / "grafana" / "alerts"
RULES = ALERTS / "otel-llm-slo-rules.yaml"
RULE_TESTS = ALERTS / "otel-llm-slo-rules.test.yaml"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ALERTS
    )


def _rules() -> list[dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


@needs_promtool
def test_promtool_check_rules_passes() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_rules_cover_the_ratio_rate_family() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    windows = ("5m", "30m", "1h", "6h", "1d", "3d")
    assert {f"slo:sli_error:ratio_rate{w}" for w in windows} <= recorded
    assert {"slo:objective:ratio", "slo:error_budget:ratio"} <= recorded


def test_alert_thresholds_follow_the_collector_table() -> None:
    alerts = {rule["labels"]["severity"]: rule for rule in _rules() if "alert" in rule}
    assert {rule["alert"] for rule in alerts.values()} == {SLO_ALERTNAME}
    assert set(alerts) == {row.severity for row in BURN_RATE_ALERTS}
    for row in BURN_RATE_ALERTS:
        expr = " ".join(alerts[row.severity]["expr"].split())
        for window in (row.long_window, row.short_window):
            assert f'ratio_rate{window}{{slo="support-bot-availability"}} >= ({row.rate:g} * 0.01)' in expr
