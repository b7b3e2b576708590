"""Plain records that the decode stage hands to the windows stage.

Protobuf objects never pass the decode stage: everything downstream (windows, rules, replay) works on
these frozen, slotted dataclasses. Timestamps are Unix nanoseconds (event time, from the span or log
record); durations are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class SeriesKey(NamedTuple):
    """The identity of a window series. Empty strings stand for "not set"."""

    service: str
    feature: str
    prompt_name: str
    prompt_version: str
    model: str


OVERFLOW_SERIES = SeriesKey("__overflow__", "__overflow__", "__overflow__", "__overflow__", "__overflow__")
"""Where calls go once the series limit is reached, so nothing is silently dropped."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One GenAI model call, from whichever instrumentation produced the span."""

    series: SeriesKey
    end_time_ns: int
    duration_s: float
    trace_id: str
    span_id: str
    service_version: str = ""
    provider: str = ""
    operation: str = ""
    request_model: str = ""
    response_model: str = ""
    response_id: str = ""
    error_type: str = ""
    """Empty when the call succeeded."""
    time_to_first_chunk_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    context_documents: int | None = None
    context_tokens: int | None = None
    tool_call_count: int = 0
    tool_call_names: tuple[str, ...] = ()
    finish_reasons: tuple[str, ...] = ()
    input_hash: str = ""
    output_hash: str = ""
    instrumentation: str = ""
    """Which mapping recognised the span (`otel_llm`, `openai_v2`, `openllmetry`, `openlit`, ...)."""
    segments: tuple[tuple[str, str], ...] = ()
    evaluations: tuple[EvaluationRecord, ...] = field(default=())
    """Evaluation events carried on the call's own span."""

    @property
    def ok(self) -> bool:
        return not self.error_type


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One `gen_ai.evaluation.result`: a quality score or user feedback for a call."""

    name: str
    time_ns: int
    score: float | None
    label: str = ""
    explanation: str = ""
    trace_id: str = ""
    span_id: str = ""
    """The evaluated call's span (the parent of the event or the log record's span context)."""
    response_id: str = ""
    series: SeriesKey | None = None
    """Known when the event rode on the call's span; otherwise resolved by the join index."""

    @property
    def failed(self) -> bool:
        """Pass/fail convention: label `fail`, or a 1.0 score for the "bad thing present" evaluations."""
        if self.label:
            return self.label.lower() == "fail"
        return False
