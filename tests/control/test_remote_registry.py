"""Scaled out: a collector that judges a partition rolls back the control plane's registry, over its API."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otel_llm_collector import scenarios
from otel_llm_collector.alerting import Alerting
from otel_llm_collector.config import load_settings
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.remote_registry import RemoteRegistryError, RemoteRollbackTarget
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.windows import WindowEngine

from tests.e2e.collector_process import running_collector

TOKEN = "plane-token"


def _call(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "plane").mkdir()
    with running_collector(tmp_path / "plane", env={"OTEL_LLM_API_TOKEN": TOKEN}) as addresses:
        base = f"http://{addresses['http']}"
        for version in ("1.0.0", "2.0.0"):
            body = {"name": "answer", "version": version, "text": f"v{version}", "created_by": "dev"}
            _call(base, "/api/v1/prompts/register", body)
            _call(base, "/api/v1/prompts/deploy", {"name": "answer", "version": version, "by": "dev"})
        yield base


def test_the_partition_collector_rolls_the_control_plane_back(
    control_plane: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_LLM_API_TOKEN", TOKEN)
    settings = load_settings(
        None, {"state_dir": str(tmp_path / "partition"), "control_plane_url": control_plane}
    )
    alerting = Alerting(settings, tmp_path / "partition", Counters())
    try:
        pipeline = alerting.pipeline(WindowEngine())
        bad = scenarios.Phase(
            start_ns=scenarios.at(10, 0),
            calls_per_second=2.0,
            prompt_version="2.0.0",
            error_rate=scenarios.constant(0.3),
        )
        traffic = scenarios.Scenario(name="remote", phases=(bad,), end_ns=scenarios.at(10, 30))
        for request in traffic.requests():
            pipeline.apply(decode_traces(request))
        decision, *later = list(alerting.rollbacks.decisions)
    finally:
        alerting.stop()
    assert (decision.outcome, decision.from_version, decision.to_version) == ("rolled_back", "2.0.0", "1.0.0")
    # Other rollback rules firing afterwards see, through the API, that 2.0.0 is no longer active.
    assert all(d.outcome == "refused" and "not the active one (1.0.0)" in d.reason for d in later)
    # The control plane's registry changed, and it audited an automatic rollback; the local one is untouched.
    assert _call(control_plane, "/api/v1/prompts/active?name=answer")["prompt"]["version"] == "1.0.0"
    actions = [entry["action"] for entry in _call(control_plane, "/api/v1/audit?name=answer")["audit"]]
    assert actions[-1] == "auto_rollback"


def test_refusals_and_an_unreachable_plane_are_errors_with_reasons(control_plane: str) -> None:
    target = RemoteRollbackTarget(control_plane, token=lambda: TOKEN)
    assert target.active_version("answer") == "2.0.0"
    assert target.rollback_reference("answer") == "1.0.0"
    assert target.active_version("unknown") is None
    assert target.rollback_reference("unknown") is None
    with pytest.raises(RemoteRegistryError, match="403"):
        RemoteRollbackTarget(control_plane, token=lambda: "wrong").rollback(
            "answer", by="otel-llm", reason="r", automatic=True
        )
    with pytest.raises(RemoteRegistryError, match="no API token"):
        RemoteRollbackTarget(control_plane, token=lambda: None).rollback(
            "answer", by="otel-llm", reason="r", automatic=True
        )
    with pytest.raises(RemoteRegistryError, match="unreachable"):
        RemoteRollbackTarget("http://127.0.0.1:9", token=lambda: TOKEN, timeout_seconds=1).active_version(
            "answer"
        )
