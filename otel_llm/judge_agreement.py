"""How well an evaluator agrees with hand labels: accuracy of its labels and AUC of its scores.

    python -m otel_llm.judge_agreement labels.jsonl                           # the local evaluators
    python -m otel_llm.judge_agreement labels.jsonl --judge-model gpt-4o-mini # and a judge (OPENAI_API_KEY)
    python -m otel_llm.judge_agreement labels.jsonl --judge-model claude-haiku-4-5 --judge-kind anthropic

The labelled set is JSON lines, one answer per line: `question`, `context` (a list of documents), `answer`,
and a label per evaluation, 1 when the answer should `pass` and 0 when it should `fail`, e.g.
`{"question": "...", "context": ["..."], "answer": "...", "faithfulness": 0, "answer_relevance": 1}`. The
test suite's `tests/instrumentation/data/judge_set.jsonl` has that shape; label a few dozen of your own
answers the same way before trusting any evaluator on your traffic.

For each evaluator and evaluation: how many items it scored (an evaluator may abstain, a judge may answer
unparseably, time out or fail: those are `not scored` and left out of both figures), the accuracy of its
`pass`/`fail` labels against the hand labels, and the AUC of its scores (oriented so that higher means
`pass`; 0.5 is chance, ties count half). The judge's calls are real calls and cost money: its spend is
printed from the judge's own cost accounting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_llm.evaluators import EvaluationInput, Evaluator, groundedness, relevance

__all__ = ["LOCAL_EVALUATORS", "Agreement", "auc", "load_labelled", "main", "measure"]

LOCAL_EVALUATORS: Mapping[str, Evaluator] = {"faithfulness": groundedness, "answer_relevance": relevance}
"""The local evaluator for each evaluation the labelled sets carry."""
_LOWER_IS_BETTER = frozenset({"hallucination", "toxicity", "refusal"})


@dataclass(frozen=True, slots=True)
class Agreement:
    evaluation: str
    items: int
    scored: int
    correct: int
    auc: float | None
    """`None` when the scored items lack either class."""

    @property
    def not_scored(self) -> int:
        return self.items - self.scored

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a random positive outscores a random negative (ties half); `None` without both."""
    positives = [score for score, label in zip(scores, labels) if label]
    negatives = [score for score, label in zip(scores, labels) if not label]
    if not positives or not negatives:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def load_labelled(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluation_input(item: Mapping[str, Any]) -> EvaluationInput:
    return EvaluationInput(
        request_messages=[{"role": "user", "content": item.get("question", "")}],
        response_text=item["answer"],
        context=tuple(item.get("context") or ()),
    )


def measure(evaluator: Evaluator, evaluation: str, items: Iterable[Mapping[str, Any]]) -> Agreement:
    """Run `evaluator` on every item labelled for `evaluation` and compare."""
    labelled = [item for item in items if item.get(evaluation) in (0, 1)]
    scores: list[float] = []
    labels: list[int] = []
    correct = 0
    for item in labelled:
        outcome = evaluator(evaluation_input(item))
        if outcome is None or outcome.score is None or outcome.label not in ("pass", "fail"):
            continue
        passed = int(outcome.label == "pass")
        correct += int(passed == item[evaluation])
        scores.append(1.0 - outcome.score if evaluation in _LOWER_IS_BETTER else outcome.score)
        labels.append(int(item[evaluation]))
    return Agreement(evaluation, len(labelled), len(scores), correct, auc(scores, labels))


def _row(name: str, agreement: Agreement) -> str:
    accuracy = (
        "-"
        if agreement.accuracy is None
        else f"{agreement.correct}/{agreement.scored} = {agreement.accuracy:.3f}"
    )
    area = "-" if agreement.auc is None else f"{agreement.auc:.3f}"
    cells = (name, agreement.evaluation, agreement.items, agreement.not_scored, accuracy, area)
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m otel_llm.judge_agreement",
        description="Agreement of the local evaluators (and a judge) with hand labels.",
    )
    parser.add_argument("labels", help="JSON lines: question, context, answer, and 0/1 labels per evaluation")
    parser.add_argument("--judge-model", help="also measure a judge with this model")
    parser.add_argument("--judge-kind", default="openai", choices=("openai", "anthropic"))
    parser.add_argument("--judge-base-url", help="default: the provider's API")
    parser.add_argument("--criteria", default="faithfulness,answer_relevance", help="comma-separated")
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    items = load_labelled(args.labels)
    criteria = [name.strip() for name in args.criteria.split(",") if name.strip()]
    print("| evaluator | evaluation | items | not scored | accuracy | AUC |")
    print("|---|---|---|---|---|---|")
    for evaluation in criteria:
        local = LOCAL_EVALUATORS.get(evaluation)
        if local is not None:
            print(_row(f"local `{type(local).__name__.lower()}`", measure(local, evaluation, items)))
    if args.judge_model:
        from otel_llm.judge import Judge, JudgeEvaluator

        options: dict[str, Any] = {
            "model": args.judge_model,
            "kind": args.judge_kind,
            "calls_per_minute": None,
        }
        if args.judge_base_url:
            options["base_url"] = args.judge_base_url
        judge = Judge.from_env(timeout_seconds=args.timeout_seconds, **options)
        for evaluation in criteria:
            evaluator = JudgeEvaluator(judge, evaluation)
            print(
                _row(
                    f"judge `{evaluator.prompt.id}` {args.judge_model}", measure(evaluator, evaluation, items)
                )
            )
        stats = judge.stats
        print(
            f"\njudge calls {stats.calls}: unparseable {stats.unparseable}, timeouts {stats.timeouts}, "
            f"errors {stats.errors}; cost ${stats.cost_usd:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
