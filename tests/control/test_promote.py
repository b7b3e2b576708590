"""Promotion gated by the canary analysis: `otel-llm prompts promote` against a real control HTTP server."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from otel_llm_collector import control_api
from otel_llm_collector.canary import CanaryCollector
from otel_llm_collector.httpserver import HttpServer
from otel_llm_collector.prompts_cli import main
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.registry import PromptRegistry
from otel_llm_collector.router import Router
from otel_llm_collector.switches import KillSwitches

TOKEN = "promote-token"
T0 = 1_800_000_000 * 1_000_000_000


@dataclass
class Control:
    url: str
    registry: PromptRegistry
    canary: CanaryCollector


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Control]:
    monkeypatch.setenv("OTEL_LLM_API_TOKEN", TOKEN)
    registry = PromptRegistry(tmp_path / "state")
    switches = KillSwitches(tmp_path / "state")
    canary = CanaryCollector()
    for version in ("1.0.0", "2.0.0"):
        registry.register("answer", version, f"Answer ({version}).", created_by="dev")
    registry.deploy("answer", "1.0.0", by="dev")
    router = Router()
    deployed: list[str] = []
    control_api.register(
        router,
        registry,
        switches,
        api_token=lambda: TOKEN,
        on_deploy=lambda version, reason: deployed.append(f"{version.version}: {reason}"),
        canary_report=lambda name, baseline, candidate: canary.compare(
            name, baseline=baseline, candidate=candidate
        ),
    )
    server = HttpServer(router, endpoint="127.0.0.1:0", max_body_bytes=1024 * 1024)
    server.start()
    try:
        yield Control(f"http://127.0.0.1:{server.port}", registry, canary)
    finally:
        server.stop()
        registry.close()
        switches.close()


def _traffic(
    canary: CanaryCollector, version: str, *, faithfulness: float, latency_s: float, seed: int
) -> None:
    rng = random.Random(seed)
    series = SeriesKey("support-bot", "support", "answer", version, "gpt-4o-mini")
    for i in range(600):
        score = round(min(1.0, max(0.0, rng.gauss(faithfulness, 0.1))), 2)
        evaluation = EvaluationRecord("faithfulness", T0 + i, score, label="fail" if score < 0.5 else "pass")
        call = CallRecord(
            series,
            T0 + i,
            rng.lognormvariate(0.0, 0.3) * latency_s,
            "t",
            f"{version}{i}",
            evaluations=(evaluation,),
        )
        canary.observe_call(call)


def _promote(control: Control, *extra: str) -> int:
    return main(["prompts", "promote", "answer", "2.0.0", "--url", control.url, "--by", "ci", *extra])


def test_a_candidate_as_good_as_the_active_version_is_promoted(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    _traffic(control.canary, "1.0.0", faithfulness=0.85, latency_s=1.0, seed=1)
    _traffic(control.canary, "2.0.0", faithfulness=0.85, latency_s=1.0, seed=2)
    assert _promote(control, "--reason", "shadow week done") == 0
    assert "promoted answer 2.0.0: active" in capsys.readouterr().out
    assert control.registry.active("answer").version == "2.0.0"
    [entry] = [e for e in control.registry.audit("answer") if e.action == "deploy" and e.version == "2.0.0"]
    assert entry.reason == "promoted on canary pass (score 100): shadow week done"


def test_a_worse_candidate_is_refused_and_nothing_changes(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    _traffic(control.canary, "1.0.0", faithfulness=0.85, latency_s=1.0, seed=1)
    _traffic(control.canary, "2.0.0", faithfulness=0.55, latency_s=1.0, seed=2)
    assert _promote(control) == 1
    err = capsys.readouterr().err
    assert "409: canary verdict fail for answer 2.0.0 against 1.0.0: not promoted" in err
    assert control.registry.active("answer").version == "1.0.0"


def test_without_canary_data_nothing_is_promoted(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _promote(control) == 1
    assert "no canary data comparing answer 2.0.0 with the active 1.0.0" in capsys.readouterr().err
    assert control.registry.active("answer").version == "1.0.0"


def test_a_marginal_candidate_needs_the_explicit_flag(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slower but otherwise the same: three of four metrics pass, a marginal verdict.
    _traffic(control.canary, "1.0.0", faithfulness=0.85, latency_s=1.0, seed=1)
    _traffic(control.canary, "2.0.0", faithfulness=0.85, latency_s=1.5, seed=2)
    assert _promote(control) == 1
    assert "canary verdict marginal" in capsys.readouterr().err
    assert control.registry.active("answer").version == "1.0.0"
    assert _promote(control, "--allow-marginal") == 0
    assert control.registry.active("answer").version == "2.0.0"


def test_promotion_needs_the_token(control: Control, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_API_TOKEN", "wrong")
    _traffic(control.canary, "1.0.0", faithfulness=0.85, latency_s=1.0, seed=1)
    _traffic(control.canary, "2.0.0", faithfulness=0.85, latency_s=1.0, seed=2)
    assert _promote(control) == 1
    assert control.registry.active("answer").version == "1.0.0"
