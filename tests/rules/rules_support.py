"""Builders shared by the rule tests: records for a real `WindowEngine`, and a fixed metric source."""

from __future__ import annotations

from collections.abc import Mapping

from otel_llm_collector.conditions import Measurement, MetricRef, MetricSource
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.testing import SECOND_NS, T0_NS
from otel_llm_collector.windows import MINUTE_NS, WindowEngine

KEY = SeriesKey("checkout", "support-answer", "answer", "v1", "gpt-4o-mini")
OTHER = SeriesKey("checkout", "search", "rank", "v3", "gpt-4o")

__all__ = ["KEY", "MINUTE_NS", "OTHER", "SECOND_NS", "T0_NS", "Fixed", "call", "evaluation", "fill"]


def call(
    t_ns: int, *, key: SeriesKey = KEY, duration_s: float = 1.0, error: str = "", n: int = 0
) -> CallRecord:
    return CallRecord(
        series=key,
        end_time_ns=t_ns,
        duration_s=duration_s,
        trace_id="ab" * 16,
        span_id=f"{n:016x}",
        error_type=error,
    )


def evaluation(
    name: str, t_ns: int, score: float | None, *, label: str = "", key: SeriesKey = KEY
) -> EvaluationRecord:
    return EvaluationRecord(name=name, time_ns=t_ns, score=score, label=label, series=key)


def fill(
    engine: WindowEngine,
    start_ns: int,
    end_ns: int,
    *,
    key: SeriesKey = KEY,
    every_s: float = 1.0,
    duration_s: float = 1.0,
    error_every: int = 0,
    evaluations: Mapping[str, float] | None = None,
    evaluate_every: int = 10,
    label: str = "",
) -> None:
    """Calls every `every_s` seconds in [start, end); every `evaluate_every`-th call gets the scores."""
    step = int(every_s * SECOND_NS)
    calls: list[CallRecord] = []
    evals: list[EvaluationRecord] = []
    for i, t in enumerate(range(start_ns, end_ns, step)):
        calls.append(
            call(
                t,
                key=key,
                duration_s=duration_s,
                error="boom" if error_every and i % error_every == 0 else "",
                n=i,
            )
        )
        if evaluations and i % evaluate_every == 0:
            evals.extend(
                evaluation(name, t, score, label=label, key=key) for name, score in evaluations.items()
            )
    engine.apply_calls(calls)
    engine.apply_evaluations(evals)


class Fixed(MetricSource):
    """A metric source with fixed figures: for state-machine tables where the numbers are the point."""

    def __init__(self, values: Mapping[str, tuple[float, int] | None]) -> None:
        self.values = dict(values)

    def measure(self, metric: MetricRef) -> Measurement | None:
        found = self.values.get(str(metric))
        return None if found is None else Measurement(*found)
