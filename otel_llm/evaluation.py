"""Record quality scores and user feedback for a GenAI call, as the GenAI `gen_ai.evaluation.result` event.

    from otel_llm.evaluation import record_evaluation, record_feedback

    record_evaluation("faithfulness", score=0.42, label="fail", span_context=ctx, response_id="chatcmpl-1")
    record_feedback(False, span_context=ctx, response_id="chatcmpl-1", comment="wrong price")

Where the result goes:

- The evaluated span still recording (passed as `span`, or the current span when neither `span_context`
  nor `response_id` points elsewhere): a span event named `gen_ai.evaluation.result` on that span.
- Otherwise (the usual case: a score computed after the call, a user's thumbs-up minutes later): an
  OpenTelemetry log record with event name `gen_ai.evaluation.result`, carrying the evaluated span's trace
  id, span id and flags as its context, through the logger of `otel_llm.telemetry.current()`. The collector
  joins it to its call by span context, or by `gen_ai.response.id` when no span context is known.

Attributes, both ways: `gen_ai.evaluation.name`, `gen_ai.evaluation.score.value`,
`gen_ai.evaluation.score.label`, `gen_ai.evaluation.explanation`, `gen_ai.response.id` (those given) and
`otel_llm.evaluation.source` (`app`, `user`, `local`, `judge`...).

Score conventions the collector's default rules assume: `faithfulness`, `answer_relevance` and
`context_utilization` are in [0, 1], higher is better; `toxicity`, `hallucination` and `refusal` are 1.0 /
`fail` when the bad thing is present and 0.0 / `pass` when not; `user_feedback` is 1.0 / `pass` for a
thumbs-up and 0.0 / `fail` for a thumbs-down.

Errors: a programmer error in the arguments (empty name, a score that is not a finite number, neither score
nor label) raises `ValueError` at once. A failure inside OpenTelemetry never reaches the caller: it is
logged at debug level and the call returns `Recorded.FAILED`.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from typing import Final

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext
from opentelemetry.util.types import AttributeValue

from otel_llm import attributes as attr
from otel_llm import telemetry

__all__ = ["Recorded", "evaluation_attributes", "record_evaluation", "record_feedback"]

_logger = logging.getLogger(__name__)

USER_FEEDBACK: Final = "user_feedback"


class Recorded(enum.Enum):
    """Where an evaluation went."""

    SPAN_EVENT = "span_event"
    LOG_RECORD = "log_record"
    FAILED = "failed"
    """OpenTelemetry raised; logged at debug level, nothing emitted."""


def evaluation_attributes(
    name: str,
    *,
    score: float | None = None,
    label: str | None = None,
    explanation: str | None = None,
    response_id: str | None = None,
    source: str | None = None,
) -> dict[str, AttributeValue]:
    """The event's attributes after validation; raises `ValueError` for invalid arguments."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"evaluation name must be a non-empty string, got {name!r}")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        raise ValueError(f"evaluation score must be a finite number, got {score!r}")
    if score is None and not label:
        raise ValueError("an evaluation needs a score, a label or both")
    for field, value in (("label", label), ("explanation", explanation), ("response_id", response_id)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"evaluation {field} must be a string, got {type(value).__name__}")
    attributes: dict[str, AttributeValue] = {attr.GEN_AI_EVALUATION_NAME: name}
    if score is not None:
        attributes[attr.GEN_AI_EVALUATION_SCORE_VALUE] = float(score)
    if label:
        attributes[attr.GEN_AI_EVALUATION_SCORE_LABEL] = label
    if explanation:
        attributes[attr.GEN_AI_EVALUATION_EXPLANATION] = explanation
    if response_id:
        attributes[attr.GEN_AI_RESPONSE_ID] = response_id
    if source:
        attributes[attr.EVALUATION_SOURCE] = source
    return attributes


def record_evaluation(
    name: str,
    *,
    score: float | None = None,
    label: str | None = None,
    explanation: str | None = None,
    span: Span | None = None,
    span_context: SpanContext | None = None,
    response_id: str | None = None,
    source: str = "app",
) -> Recorded:
    """Record one evaluation result for a call; see the module docstring for where it goes.

    `span` is the evaluated span if the caller holds it; `span_context` identifies it once it has ended.
    With neither, and no `response_id`, the current span is taken as the evaluated one. With only a
    `response_id`, the current span is *not* used (it is usually the app's own request span, not the call):
    the log record then carries no span context and is joined by response id.

    Raises `ValueError` for invalid arguments; never raises for an OpenTelemetry failure.
    """
    attributes = evaluation_attributes(
        name, score=score, label=label, explanation=explanation, response_id=response_id, source=source
    )
    try:
        target = span
        if target is None and span_context is None and response_id is None:
            target = trace.get_current_span()
        if target is not None and target.is_recording():
            target.add_event(attr.GEN_AI_EVALUATION_RESULT_EVENT, attributes)
            return Recorded.SPAN_EVENT
        if span_context is None and target is not None:
            span_context = target.get_span_context()
        _emit_log_record(attributes, span_context)
    except Exception:
        _logger.debug("otel_llm: could not record evaluation %r", name, exc_info=True)
        return Recorded.FAILED
    return Recorded.LOG_RECORD


def record_feedback(
    positive: bool,
    *,
    span: Span | None = None,
    span_context: SpanContext | None = None,
    response_id: str | None = None,
    comment: str | None = None,
) -> Recorded:
    """A user's thumbs-up (`user_feedback` 1.0 / `pass`) or thumbs-down (0.0 / `fail`) for a call.

    The comment, if any, becomes the evaluation's explanation: it is user text, so the app decides whether
    to pass it (it is exported as an attribute regardless of the content-capture setting).
    """
    return record_evaluation(
        USER_FEEDBACK,
        score=1.0 if positive else 0.0,
        label="pass" if positive else "fail",
        explanation=comment,
        span=span,
        span_context=span_context,
        response_id=response_id,
        source="user",
    )


def _emit_log_record(attributes: dict[str, AttributeValue], span_context: SpanContext | None) -> None:
    # Always an explicit context: with none (or an empty one, which is falsy) the SDK would stamp the current
    # span on the record, and that is usually the app's request handling the feedback, not the call.
    evaluated: Span = trace.INVALID_SPAN
    if span_context is not None and span_context.is_valid:
        evaluated = NonRecordingSpan(span_context)
    context = trace.set_span_in_context(evaluated, Context())
    telemetry.current().logger.emit(
        timestamp=time.time_ns(),
        context=context,
        severity_number=SeverityNumber.INFO,
        event_name=attr.GEN_AI_EVALUATION_RESULT_EVENT,
        attributes=attributes,
    )
