"""Finished calls reach the background evaluators; results come back as log records joined to the call."""

from __future__ import annotations

import openai
import pytest

import otel_llm
from otel_llm.testing.llm_server import LLMServer, Reply, ScriptedResponder
from tests.conftest import Telemetry

DOCS = ["The Pro plan costs 49 dollars per month.", "The Basic plan costs 9 dollars per month."]


def _ask(server: LLMServer) -> None:
    with otel_llm.llm_context(feature="pricing", retrieved_context=DOCS, context_documents=len(DOCS)):
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "What does Pro cost?"}]
            )


def test_sampled_calls_are_scored_off_the_request_path(telemetry: Telemetry) -> None:
    script = ScriptedResponder(
        [Reply(text="The Pro plan costs 29 dollars per month."), Reply(text="I can't help with that.")]
    )
    worker = otel_llm.enable_evaluation(sample_rate=1.0)
    try:
        with LLMServer(script) as server:
            _ask(server)
            _ask(server)
    finally:
        otel_llm.disable_evaluation()
    assert worker.evaluated == 4
    spans = telemetry.genai_spans()
    records = [r.log_record for r in telemetry.logs.get_finished_logs()]
    by_span: dict[int, dict[str, float]] = {}
    for record in records:
        a = record.attributes or {}
        by_span.setdefault(record.span_id or 0, {})[str(a["gen_ai.evaluation.name"])] = float(
            a["gen_ai.evaluation.score.value"]  # type: ignore[arg-type]
        )
    first, second = (by_span[s.context.span_id] for s in spans)
    # A stale price (29, not in the context) is not grounded; a refusal is flagged.
    assert first["faithfulness"] < 0.5
    assert first["refusal"] == 0.0
    assert second["refusal"] == 1.0


def test_sampling_zero_evaluates_nothing(telemetry: Telemetry, llm_server: LLMServer) -> None:
    worker = otel_llm.enable_evaluation(sample_rate=0.0)
    try:
        _ask(llm_server)
    finally:
        otel_llm.disable_evaluation()
    assert worker.sampled_out == 1
    assert telemetry.logs.get_finished_logs() == ()


def test_env_enables_local_evaluators(monkeypatch: pytest.MonkeyPatch, telemetry: Telemetry) -> None:
    from otel_llm import evaluation_hook

    monkeypatch.setenv("OTEL_LLM_EVALUATORS", "refusal,nonsense")
    monkeypatch.setenv("OTEL_LLM_EVALUATION_SAMPLE_RATE", "2.5")
    worker = evaluation_hook.enable_from_env(__import__("os").environ)
    try:
        assert worker is not None
        assert worker.submitted == 0
    finally:
        otel_llm.disable_evaluation()
