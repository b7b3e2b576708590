"""What failing evaluations said, in the annotations of the alert they set off (leaks first of all).

A leak alert (`eval_fail_count{leak} > 0`) is of little use as a number: whoever responds needs the call,
the kind of secret, where it sits in the answer and which secret it is (its digest). The `leak` evaluator
writes exactly that in its explanation (kinds, positions and digests; never the text). `FindingsAnnotator`
keeps the latest failing evaluations of the watched names and, when a rule that reads one of them starts
firing, adds their explanations to the alert::

    findings = FindingsAnnotator(engine.join, inner=DeploymentAnnotator(deployments, history))
    evaluator.annotator = findings        # the RuleEvaluator's `Annotator`
    findings.observe(result)              # every DecodeResult, before or after the windows apply it

Annotations, on an alert whose rule reads `eval_*{name}` for a watched name:

- `findings`: one line per failing evaluation of the alert's series within the rule's window, newest first,
  at most `max_listed`: `<trace_id>/<span_id> <name>: <explanation>`;
- `findings_count`: how many such evaluations are kept (at most `max_kept` over all series).

Explanations pass through `otel_llm.redaction.redact` and are cut at `max_explanation_chars`: whatever an
evaluator writes, a secret of a format the redaction knows does not reach a notifier.

An evaluation's series is resolved when an alert fires, through the windows' join index, so an evaluation
that arrived before its call is found once the call has arrived. Memory is bounded: at most `max_kept`
failing evaluations, the oldest forgotten first (counted in `forgotten`). Not thread-safe: the ingest worker
is the one caller, as for the windows.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Final

from otel_llm.redaction import redact
from otel_llm_collector.alerts import Annotator
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.join import JoinIndex
from otel_llm_collector.records import EvaluationRecord, SeriesKey
from otel_llm_collector.rules import Rule, parse_duration

__all__ = ["DEFAULT_WATCHED", "FindingsAnnotator"]

DEFAULT_WATCHED: Final = ("leak",)
"""Evaluation names whose explanations are worth an alert's annotations by default."""


class FindingsAnnotator:
    """An `Annotator` adding the explanations of failing evaluations; see the module docstring."""

    def __init__(
        self,
        join: JoinIndex | None = None,
        *,
        evaluations: Iterable[str] = DEFAULT_WATCHED,
        inner: Annotator | None = None,
        max_kept: int = 1000,
        max_listed: int = 5,
        max_explanation_chars: int = 512,
    ) -> None:
        if max_kept < 1:
            raise ValueError(f"max_kept must be at least 1, got {max_kept}")
        if max_listed < 1:
            raise ValueError(f"max_listed must be at least 1, got {max_listed}")
        if max_explanation_chars < 16:
            raise ValueError(f"max_explanation_chars must be at least 16, got {max_explanation_chars}")
        self.join = join
        self.evaluations = frozenset(evaluations)
        self.inner = inner
        """Another annotator whose annotations come first (the deployment correlation)."""
        self.max_listed = max_listed
        self.max_explanation_chars = max_explanation_chars
        self._kept: collections.deque[EvaluationRecord] = collections.deque(maxlen=max_kept)
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._kept)

    def observe(self, result: DecodeResult) -> None:
        """Keep the failing evaluations of watched names: those on calls' spans and those on their own."""
        watched = self.evaluations
        for call in result.calls:
            for evaluation in call.evaluations:
                if evaluation.name in watched and evaluation.failed:
                    self._keep(evaluation, call.series)
        for evaluation in result.evaluations:
            if evaluation.name in watched and evaluation.failed:
                self._keep(evaluation, evaluation.series)

    def _keep(self, evaluation: EvaluationRecord, series: SeriesKey | None) -> None:
        if len(self._kept) == self._kept.maxlen:
            self.forgotten += 1
        if series is not None and evaluation.series != series:
            evaluation = dataclasses.replace(evaluation, series=series)
        self._kept.append(evaluation)

    def _series(self, evaluation: EvaluationRecord) -> SeriesKey | None:
        if evaluation.series is not None:
            return evaluation.series
        return self.join.lookup(evaluation) if self.join is not None else None

    def annotate(self, rule: Rule, series: SeriesKey, at_ns: int) -> Mapping[str, str]:
        out = dict(self.inner.annotate(rule, series, at_ns)) if self.inner is not None else {}
        names = {
            m.argument for m in rule.metrics if m.name.startswith("eval_") and m.argument in self.evaluations
        }
        if not names:
            return out
        start_ns = at_ns - int(parse_duration(rule.window) * 1e9)
        found = [
            e
            for e in reversed(self._kept)
            if e.name in names and start_ns <= e.time_ns < at_ns and self._series(e) == series
        ]
        lines = []
        for evaluation in found[: self.max_listed]:
            explanation = redact(evaluation.explanation)[: self.max_explanation_chars] or "(no explanation)"
            lines.append(f"{evaluation.trace_id}/{evaluation.span_id} {evaluation.name}: {explanation}")
        out["findings"] = "\n".join(lines)
        out["findings_count"] = str(len(found))
        return out
