"""Connects finished calls to the background evaluation worker.

    otel_llm.enable_evaluation()                         # groundedness + refusal on 10% of calls
    otel_llm.enable_evaluation([my_judge], sample_rate=0.5)
    otel_llm.disable_evaluation()                        # drains and stops the worker

Zero-code: `OTEL_LLM_EVALUATORS=groundedness,refusal,leak` (and `OTEL_LLM_EVALUATION_SAMPLE_RATE=0.1`) make
`instrument()` enable it. Evaluators marked `every_call` (the `leak` scanner: a leak must not be sampled
away) run on a second worker at sample rate 1.0, whatever the sample rate of the others (the workers'
counters add up: a call offered to both counts twice in `otel_llm.evaluation.submitted`).

The hook runs on the app's thread when a call ends; it builds the evaluator's
input (request messages, answer text, `llm_context(retrieved_context=...)`) and hands it to the worker,
which decides sampling and never blocks. Evaluation results are emitted as `gen_ai.evaluation.result` log
records carrying the call's span context, so the collector joins them to the call's series.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from otel_llm.call import LLMCall, add_completion_hook, remove_completion_hook
from otel_llm.evaluation_worker import EvaluationWorker
from otel_llm.evaluators import EvaluationInput, Evaluator, groundedness, refusal
from otel_llm.finisher import finisher
from otel_llm.leaks import leak
from otel_llm.wire import ResponseInfo

_log = logging.getLogger(__name__)

LOCAL_EVALUATORS: dict[str, Evaluator] = {"groundedness": groundedness, "refusal": refusal, "leak": leak}

_worker: EvaluationWorker | None = None
_every_call_worker: EvaluationWorker | None = None
"""Runs the evaluators marked `every_call` on every finished call, unsampled."""


def _every_call(evaluator: Evaluator) -> bool:
    return getattr(evaluator, "every_call", False) is True


def _on_call_end(call: LLMCall, info: ResponseInfo | None) -> None:
    worker, every_call_worker = _worker, _every_call_worker
    if worker is None and every_call_worker is None:
        return
    messages = call.request.messages
    data = EvaluationInput(
        request_messages=messages if isinstance(messages, list | str) else (),
        response_text=info.output_texts[0] if info is not None and info.output_texts else "",
        context=call.context.retrieved_context or (),
        model=(info.response_model if info is not None else "") or call.request.model or None,
        feature=call.context.feature,
        response_id=(info.response_id if info is not None else "") or None,
        error_type=call.error_type or None,
    )
    span_context = call.span.get_span_context()
    for target in (worker, every_call_worker):
        if target is not None:
            target.submit(data, span_context)


def enable_evaluation(
    evaluators: Sequence[Evaluator] | None = None, *, sample_rate: float = 0.1, **options: Any
) -> EvaluationWorker:
    """Start a worker running `evaluators` (default: groundedness and refusal) on a sample of finished calls.

    Evaluators marked `every_call` get a worker of their own at sample rate 1.0. Returns the sampled worker,
    or the every-call one when every evaluator is marked.
    """
    global _worker, _every_call_worker
    disable_evaluation()
    chosen: list[Evaluator] = list(evaluators) if evaluators is not None else [groundedness, refusal]
    sampled = [e for e in chosen if not _every_call(e)]
    unsampled = [e for e in chosen if _every_call(e)]
    if unsampled:
        _every_call_worker = EvaluationWorker(unsampled, sample_rate=1.0, **options)
    if sampled or not unsampled:
        _worker = EvaluationWorker(sampled, sample_rate=sample_rate, **options)
    add_completion_hook(_on_call_end)
    worker = _worker if _worker is not None else _every_call_worker
    assert worker is not None
    return worker


def disable_evaluation(timeout_seconds: float = 5.0) -> None:
    """Stop evaluating; what is queued is drained within `timeout_seconds`."""
    global _worker, _every_call_worker
    finisher.flush(timeout_seconds)  # calls already ended still reach the evaluators
    remove_completion_hook(_on_call_end)
    workers = (_worker, _every_call_worker)
    _worker = _every_call_worker = None
    for worker in workers:
        if worker is not None:
            worker.shutdown(timeout_seconds=timeout_seconds)


def enable_from_env(env: Mapping[str, str]) -> EvaluationWorker | None:
    """`OTEL_LLM_EVALUATORS=groundedness,refusal,leak`; unknown names and bad rates are logged and ignored."""
    names = [n.strip() for n in env.get("OTEL_LLM_EVALUATORS", "").split(",") if n.strip()]
    if not names:
        return None
    chosen = [LOCAL_EVALUATORS[n] for n in names if n in LOCAL_EVALUATORS]
    unknown = [n for n in names if n not in LOCAL_EVALUATORS]
    if unknown:
        _log.warning("OTEL_LLM_EVALUATORS: unknown evaluators ignored: %s", ", ".join(unknown))
    if not chosen:
        return None
    rate = 0.1
    raw_rate = env.get("OTEL_LLM_EVALUATION_SAMPLE_RATE")
    if raw_rate is not None:
        try:
            rate = float(raw_rate)
            if not 0.0 <= rate <= 1.0:
                raise ValueError
        except ValueError:
            _log.warning("OTEL_LLM_EVALUATION_SAMPLE_RATE=%r is not within [0, 1]; using 0.1", raw_rate)
            rate = 0.1
    return enable_evaluation(chosen, sample_rate=rate)
