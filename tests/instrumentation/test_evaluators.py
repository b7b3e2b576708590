from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from otel_llm.evaluators import (
    EvaluationInput,
    EvaluationOutcome,
    Evaluator,
    Groundedness,
    groundedness,
    refusal,
)

EVAL_SET = Path(__file__).with_name("data") / "eval_set.jsonl"
PRICING = "Acme Pro plan costs $39 per month and includes priority email support. Basic costs $12 per month."


def _ask(
    answer: str, context: list[str] | None = None, question: str = "How much is Pro?"
) -> EvaluationInput:
    return EvaluationInput(
        request_messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        response_text=answer,
        context=[PRICING] if context is None else context,
        response_id="chatcmpl-1",
    )


def test_evaluation_input_is_frozen() -> None:
    data = _ask("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.response_text = "y"  # type: ignore[misc]


def test_shipped_evaluators_satisfy_the_protocol() -> None:
    evaluators: list[Evaluator] = [groundedness, refusal]
    assert all(callable(evaluator) for evaluator in evaluators)


def test_supported_answer_scores_one_and_passes() -> None:
    outcome = groundedness(_ask("The Pro plan costs $39 per month and includes priority email support."))
    assert outcome == EvaluationOutcome(
        "faithfulness", 1.0, "pass", "1 of 1 answer sentences supported by the retrieved context"
    )


def test_stale_price_makes_the_sentence_unsupported() -> None:
    # Every word overlaps with the context; only the number is wrong. This is the stale-pricing incident.
    outcome = groundedness(_ask("The Pro plan costs $49 per month and includes priority email support."))
    assert outcome is not None
    assert outcome.score == 0.0
    assert outcome.label == "fail"
    assert "number absent from the context" in str(outcome.explanation)


def test_score_is_the_share_of_supported_sentences() -> None:
    answer = "Pro costs $39 per month. Basic costs $12 per month. Pro includes a dedicated account manager."
    outcome = groundedness(_ask(answer))
    assert outcome is not None
    assert outcome.score == pytest.approx(2 / 3)
    assert outcome.label == "fail"


@pytest.mark.parametrize(
    "answer",
    [
        "Pro costs $39.00 per month.",  # same number, different notation
        "1. Pro costs $39 per month.\n2. Basic costs $12 per month.",  # list markers are not numbers
        "Pro costs $39 per month [doc-7].",  # citation markers are ignored
        "Sure! Pro costs $39 per month. Happy to help.",  # pleasantries carry no claim
    ],
)
def test_formatting_does_not_count_against_the_answer(answer: str) -> None:
    outcome = groundedness(_ask(answer))
    assert outcome is not None
    assert outcome.score == 1.0


def test_numbers_from_the_question_are_allowed() -> None:
    outcome = groundedness(_ask("For 3 seats Pro costs $39 per month each.", question="Pro for 3 seats?"))
    assert outcome is not None
    assert outcome.score == 1.0


def test_thousands_separators_match() -> None:
    outcome = groundedness(
        _ask("The limit is 1,000 requests.", context=["The limit is 1000 requests per hour."])
    )
    assert outcome is not None
    assert outcome.score == 1.0


@pytest.mark.parametrize(
    "data",
    [
        _ask("Pro costs $39.", context=[]),
        _ask("Pro costs $39.", context=["   "]),
        _ask("   "),
        _ask("Sure!"),
        dataclasses.replace(_ask("Pro costs $39."), error_type="timeout"),
    ],
)
def test_groundedness_abstains_when_it_cannot_judge(data: EvaluationInput) -> None:
    assert groundedness(data) is None


def test_threshold_and_name_are_configurable() -> None:
    strict = Groundedness(min_overlap=1.0, pass_score=1.0, name="context_faithfulness")
    outcome = strict(_ask("Pro is included with priority email support and extra goodies."))
    assert outcome is not None
    assert outcome.name == "context_faithfulness"
    assert outcome.score == 0.0


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I\u2019m unable to provide that information.", True),
        ("As an AI, I don't have opinions.", True),
        ("I must respectfully decline.", True),
        ("I can't wait to show you how this works!", False),
        ("I can't help but notice you're on Basic.", False),
        ("If you are unable to log in, reset your password.", False),
        ("The endpoint cannot return more than 100 items.", False),
    ],
)
def test_refusal_detector(answer: str, refused: bool) -> None:
    outcome = refusal(EvaluationInput(response_text=answer))
    assert outcome is not None
    assert outcome.name == "refusal"
    assert (outcome.score, outcome.label) == ((1.0, "fail") if refused else (0.0, "pass"))


def test_refusal_abstains_on_empty_or_failed_calls() -> None:
    assert refusal(EvaluationInput(response_text="")) is None
    assert refusal(EvaluationInput(response_text="I can't help.", error_type="500")) is None


# --- agreement with hand labels ---------------------------------------------------------------------------


def _load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()]


def _auc(scores: list[float], labels: list[int]) -> float:
    positives = [s for s, label in zip(scores, labels) if label == 1]
    negatives = [s for s, label in zip(scores, labels) if label == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_eval_set_is_balanced_enough_to_mean_something() -> None:
    items = _load()
    assert len(items) >= 40
    for kind in ("groundedness", "refusal"):
        labels = [item["label"] for item in items if item["evaluator"] == kind]
        assert len(labels) >= 15
        assert 0.3 <= sum(labels) / len(labels) <= 0.7


def test_groundedness_agreement_with_labels() -> None:
    items = [item for item in _load() if item["evaluator"] == "groundedness"]
    scores: list[float] = []
    correct = 0
    for item in items:
        outcome = groundedness(
            EvaluationInput(
                request_messages=[{"role": "user", "content": item["question"]}],
                response_text=item["response"],
                context=item["context"],
            )
        )
        assert outcome is not None, item["id"]
        scores.append(float(outcome.score or 0.0))
        correct += int((outcome.label == "pass") == bool(item["label"]))
    accuracy = correct / len(items)
    auc = _auc(scores, [item["label"] for item in items])
    # Measured: accuracy 23/26 = 0.885, AUC 0.88 (docs/evaluators.md). Floors leave no room for regressions.
    assert accuracy >= 0.88
    assert auc >= 0.87


def test_refusal_agreement_with_labels() -> None:
    items = [item for item in _load() if item["evaluator"] == "refusal"]
    correct = 0
    for item in items:
        outcome = refusal(EvaluationInput(response_text=item["response"]))
        assert outcome is not None, item["id"]
        correct += int((outcome.label == "fail") == bool(item["label"]))
    # Measured: 16/18 = 0.889 (docs/evaluators.md).
    assert correct / len(items) >= 0.88
