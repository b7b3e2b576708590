"""Connects finished calls to the background evaluation worker.

    otel_llm.enable_evaluation()                         # groundedness + refusal on 10% of calls
    otel_llm.enable_evaluation([my_judge], sample_rate=0.5)
    otel_llm.enable_judge(model="gpt-4o-mini", sample_rate=0.02, daily_budget_usd=5.0)  # see otel_llm.judge
    otel_llm.disable_evaluation()                        # drains and stops every worker, the judge's too

Zero-code: `OTEL_LLM_EVALUATORS=groundedness,refusal,leak` (and `OTEL_LLM_EVALUATION_SAMPLE_RATE=0.1`) make
`instrument()` enable it. Evaluators marked `every_call` (the `leak` scanner: a leak must not be sampled
away) run on a second worker at sample rate 1.0, whatever the sample rate of the others (the workers'
counters add up: a call offered to both counts twice in `otel_llm.evaluation.submitted`).

The judge evaluators (`enable_judge`, or `OTEL_LLM_JUDGE_MODEL` at `instrument()`) run on a third worker
with `source` `judge` and a sampling policy, queue and threads of their own; `enable_evaluation` and
`enable_judge` replace only their own workers, `disable_judge` stops only the judge's.

The hook runs on the app's thread when a call ends; it builds the evaluator's
input (request messages, answer text, `llm_context(retrieved_context=...)`) and hands it to the worker,
which decides sampling and never blocks. Evaluation results are emitted as `gen_ai.evaluation.result` log
records carrying the call's span context, so the collector joins them to the call's series.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider

from otel_llm.call import LLMCall, add_completion_hook, remove_completion_hook
from otel_llm.evaluation_worker import EvaluationWorker
from otel_llm.evaluators import EvaluationInput, Evaluator, groundedness, refusal, relevance
from otel_llm.finisher import finisher
from otel_llm.leaks import leak
from otel_llm.output_signals import output_format, output_script
from otel_llm.wire import ResponseInfo

if TYPE_CHECKING:
    from otel_llm.judge import Judge

_log = logging.getLogger(__name__)

LOCAL_EVALUATORS: dict[str, Evaluator] = {
    "groundedness": groundedness,
    "refusal": refusal,
    "relevance": relevance,
    "leak": leak,
    "output_format": output_format,
    "output_script": output_script,
}

_worker: EvaluationWorker | None = None
_every_call_worker: EvaluationWorker | None = None
"""Runs the evaluators marked `every_call` on every finished call, unsampled."""
_judge_worker: EvaluationWorker | None = None
"""Runs the judge evaluators (`enable_judge`)."""

_JUDGE_WORKER_DEFAULTS: dict[str, Any] = {"sample_rate": 0.01, "workers": 2, "max_queue": 1000}


def _every_call(evaluator: Evaluator) -> bool:
    return getattr(evaluator, "every_call", False) is True


def _on_call_end(call: LLMCall, info: ResponseInfo | None) -> None:
    targets = [w for w in (_worker, _every_call_worker, _judge_worker) if w is not None]
    if not targets:
        return
    messages = call.request.messages
    data = EvaluationInput(
        request_messages=messages if isinstance(messages, list | str) else (),
        response_text=info.output_texts[0] if info is not None and info.output_texts else "",
        context=call.context.retrieved_context or (),
        model=(info.response_model if info is not None else "") or call.request.model or None,
        feature=call.context.feature,
        tenant=call.context.tenant,
        response_id=(info.response_id if info is not None else "") or None,
        error_type=call.error_type or None,
    )
    span_context = call.span.get_span_context()
    for target in targets:
        target.submit(data, span_context)


def _install_hook() -> None:
    remove_completion_hook(_on_call_end)  # at most once, however often workers are replaced
    add_completion_hook(_on_call_end)


def _stop(workers: Sequence[EvaluationWorker | None], timeout_seconds: float) -> None:
    for worker in workers:
        if worker is not None:
            worker.shutdown(timeout_seconds=timeout_seconds)


def enable_evaluation(
    evaluators: Sequence[Evaluator] | None = None, *, sample_rate: float = 0.1, **options: Any
) -> EvaluationWorker:
    """Start a worker running `evaluators` (default: groundedness and refusal) on a sample of finished calls.

    Evaluators marked `every_call` get a worker of their own at sample rate 1.0. Returns the sampled worker,
    or the every-call one when every evaluator is marked.
    """
    global _worker, _every_call_worker
    finisher.flush(5.0)  # calls already ended are evaluated by the workers being replaced
    replaced = (_worker, _every_call_worker)
    _worker = _every_call_worker = None
    _stop(replaced, 5.0)
    chosen: list[Evaluator] = list(evaluators) if evaluators is not None else [groundedness, refusal]
    sampled = [e for e in chosen if not _every_call(e)]
    unsampled = [e for e in chosen if _every_call(e)]
    if unsampled:
        _every_call_worker = EvaluationWorker(unsampled, sample_rate=1.0, **options)
    if sampled or not unsampled:
        _worker = EvaluationWorker(sampled, sample_rate=sample_rate, **options)
    _install_hook()
    worker = _worker if _worker is not None else _every_call_worker
    assert worker is not None
    return worker


def disable_evaluation(timeout_seconds: float = 5.0) -> None:
    """Stop evaluating, the judge included; what is queued is drained within `timeout_seconds`."""
    global _worker, _every_call_worker, _judge_worker
    finisher.flush(timeout_seconds)  # calls already ended still reach the evaluators
    remove_completion_hook(_on_call_end)
    workers = (_worker, _every_call_worker, _judge_worker)
    _worker = _every_call_worker = _judge_worker = None
    _stop(workers, timeout_seconds)


def enable_judge(
    judge: Judge | None = None,
    *,
    criteria: Sequence[str] | None = None,
    sample_rate: float | None = None,
    feature_sample_rates: Mapping[str, float] | None = None,
    tenant_sample_rates: Mapping[str, float] | None = None,
    workers: int | None = None,
    max_queue: int | None = None,
    include_explanation: bool | None = None,
    meter_provider: MeterProvider | None = None,
    env: Mapping[str, str] | None = None,
    **judge_options: Any,
) -> EvaluationWorker:
    """Run judge evaluators (default: all four criteria) on a sample of finished calls; see `otel_llm.judge`.

    Give a `Judge`, or its settings as keyword arguments (`model=`, `kind=`, `base_url=`, `api_key=`,
    `timeout_seconds=`, `calls_per_minute=`, `daily_budget_usd=`, ...). Each setting left out comes from
    `OTEL_LLM_JUDGE_*` in `env` (default `os.environ`), else its default: sample rate 0.01, 2 workers, a
    queue of 1000. Replaces a running judge worker (drained first); raises `ValueError` for bad settings.
    """
    global _judge_worker
    from otel_llm.judge import Judge, judge_evaluators, worker_options_from_env

    env = os.environ if env is None else env
    given = {
        "criteria": criteria,
        "sample_rate": sample_rate,
        "feature_sample_rates": feature_sample_rates,
        "tenant_sample_rates": tenant_sample_rates,
        "workers": workers,
        "max_queue": max_queue,
    }
    options = {
        **_JUDGE_WORKER_DEFAULTS,
        **worker_options_from_env(env),
        **{key: value for key, value in given.items() if value is not None},
    }
    if judge is None:
        judge = Judge.from_env(env, meter_provider=meter_provider, **judge_options)
    elif judge_options:
        raise TypeError(f"judge settings given with a Judge: {', '.join(sorted(judge_options))}")
    chosen = options.pop("criteria", None)
    evaluators = judge_evaluators(
        judge, list(chosen) if chosen is not None else None, include_explanation=include_explanation
    )
    worker = EvaluationWorker(evaluators, source="judge", meter_provider=meter_provider, **options)
    finisher.flush(5.0)
    replaced, _judge_worker = _judge_worker, worker
    _install_hook()
    _stop([replaced], 5.0)
    return worker


def disable_judge(timeout_seconds: float = 5.0) -> None:
    """Stop the judge worker (the local evaluators keep running); what is queued is drained first."""
    global _judge_worker
    finisher.flush(timeout_seconds)
    worker, _judge_worker = _judge_worker, None
    if _worker is None and _every_call_worker is None:
        remove_completion_hook(_on_call_end)
    _stop([worker], timeout_seconds)


def enable_from_env(env: Mapping[str, str]) -> EvaluationWorker | None:
    """`OTEL_LLM_EVALUATORS=groundedness,refusal,leak`; unknown names and bad rates are logged and ignored.

    `OTEL_LLM_JUDGE_MODEL` also starts the judge worker; a judge configuration that does not validate is
    logged as a warning and the judge stays off. Returns the local worker, if any.
    """
    if env.get("OTEL_LLM_JUDGE_MODEL", "").strip():
        try:
            enable_judge(env=env)
        except (TypeError, ValueError) as exc:
            _log.warning("otel_llm: judge not enabled: %s", exc)
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
