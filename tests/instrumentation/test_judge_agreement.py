"""Agreement with hand labels on `data/judge_set.jsonl`: the local evaluators, and the judge pipeline.

The local figures measure the heuristics. The judge figures come from scripted verdicts
(`data/judge_scripted_verdicts.jsonl`: mostly right, four wrong, five breaking the output contract) served by
the local OpenAI-compatible server: they measure the pipeline (prompt, HTTP, strict parsing, labels,
counting), not any model. `python -m otel_llm.judge_agreement` runs the same measurement against a real
judge. Figures and limits: docs/evaluators.md.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm.evaluators import EvaluationInput, groundedness, refusal, relevance
from otel_llm.judge import Judge, JudgeEvaluator
from otel_llm.judge_agreement import auc, load_labelled, main, measure
from otel_llm.judge_prompts import load_prompt
from otel_llm.testing.llm_server import LLMRequest, LLMServer, Reply, Usage

DATA = Path(__file__).with_name("data")
JUDGE_SET = DATA / "judge_set.jsonl"
SCRIPTED = DATA / "judge_scripted_verdicts.jsonl"
EVALUATIONS = ("faithfulness", "answer_relevance")
_ANSWER = re.compile(r"<answer>\n(.*)\n</answer>", re.DOTALL)


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return load_labelled(JUDGE_SET)


def test_the_labelled_set_is_big_and_balanced_enough_to_mean_something(items: list[dict[str, Any]]) -> None:
    assert len(items) >= 40
    assert len({item["id"] for item in items}) == len({item["answer"] for item in items}) == len(items)
    for evaluation in EVALUATIONS:
        labels = [item[evaluation] for item in items]
        assert set(labels) == {0, 1}
        assert 0.3 <= sum(labels) / len(labels) <= 0.7, evaluation
    # Every combination occurs: a true answer to another question is faithful but irrelevant, and so on.
    assert len(Counter((item["faithfulness"], item["answer_relevance"]) for item in items)) == 4


def test_auc_counts_ties_half_and_needs_both_classes() -> None:
    assert auc([0.9, 0.1], [1, 0]) == 1.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5
    assert auc([0.1, 0.9], [1, 0]) == 0.0
    assert auc([0.9, 0.8], [1, 1]) is None


def test_groundedness_agreement(items: list[dict[str, Any]]) -> None:
    agreement = measure(groundedness, "faithfulness", items)
    # Measured 36/48 = 0.750, AUC 0.750 (docs/evaluators.md): the misses are the documented blind spots,
    # contradiction and negation with the context's own words, paraphrase, spelled-out numbers.
    assert agreement.scored == 48
    assert agreement.correct >= 36
    assert agreement.auc is not None
    assert agreement.auc >= 0.75


def test_relevance_agreement(items: list[dict[str, Any]]) -> None:
    agreement = measure(relevance, "answer_relevance", items)
    # Measured 41/48 = 0.854, AUC 0.906: every miss is a relevant answer in words the question does not use.
    assert agreement.scored == 48
    assert agreement.correct >= 41
    assert agreement.auc is not None
    assert agreement.auc >= 0.90


def test_refusal_flags_none_of_the_answers(items: list[dict[str, Any]]) -> None:
    outcomes = [refusal(EvaluationInput(response_text=item["answer"])) for item in items]
    assert [o.label for o in outcomes if o is not None] == ["pass"] * len(items)


def test_judge_pipeline_agreement_with_scripted_verdicts(items: list[dict[str, Any]]) -> None:
    scripted = {
        (row["id"], row["criterion"]): row["reply"]
        for row in map(json.loads, SCRIPTED.read_text(encoding="utf-8").splitlines())
    }
    by_answer = {item["answer"]: item for item in items}
    systems = {load_prompt(criterion).system: criterion for criterion in EVALUATIONS}
    misrouted: list[str] = []

    def scripted_judge(request: LLMRequest) -> Reply:
        criterion = systems[request.system]
        prompt = request.last_user_text
        match = _ANSWER.search(prompt)
        item = by_answer[match.group(1)] if match else {}
        if not item or item["question"] not in prompt:
            misrouted.append(prompt[:80])
        elif criterion == "faithfulness" and item["context"][0] not in prompt:
            misrouted.append(item["id"])
        return Reply(text=scripted[(item.get("id"), criterion)], usage=Usage(output_tokens=20))

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with LLMServer(scripted_judge) as server:
        judge = Judge(
            model="gpt-4o-mini",
            base_url=server.openai_base_url,
            calls_per_minute=None,
            meter_provider=provider,
        )
        results = {
            evaluation: measure(JudgeEvaluator(judge, evaluation), evaluation, items)
            for evaluation in EVALUATIONS
        }
    assert misrouted == []
    faithfulness, answer_relevance = results["faithfulness"], results["answer_relevance"]
    # 48 items each; unparseable verdicts (2 and 3) are left out, never scored; 2 wrong verdicts each.
    assert (faithfulness.items, faithfulness.scored, faithfulness.correct) == (48, 46, 44)
    assert (answer_relevance.items, answer_relevance.scored, answer_relevance.correct) == (48, 45, 43)
    assert faithfulness.auc == pytest.approx(527 / 528)  # one pair out of order: 0.4 (tablets-2) < 0.6
    assert answer_relevance.auc == pytest.approx(449 / 450)  # 0.45 (baggage-2) < 0.6 (saas-5)
    stats = judge.stats
    assert (stats.calls, stats.ok, stats.unparseable, stats.errors, stats.timeouts) == (96, 91, 5, 0, 0)
    data = reader.get_metrics_data()
    assert data is not None
    unparseable = sum(
        point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "otel_llm.evaluation.judge.calls"
        for point in metric.data.data_points
        if dict(point.attributes or {}).get("error.type") == "unparseable"
    )
    assert unparseable == 5
    provider.shutdown()


def test_the_command_prints_the_local_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(JUDGE_SET)]) == 0
    out = capsys.readouterr().out
    assert "| local `groundedness` | faithfulness | 48 | 0 | 36/48 = 0.750 | 0.750 |" in out
    assert "| local `relevance` | answer_relevance | 48 | 0 | 41/48 = 0.854 | 0.906 |" in out
