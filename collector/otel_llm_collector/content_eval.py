"""Evaluation in the collector: the `otel_llm` evaluators run on a sample of the calls apps captured.

Teams that turn content capture on in their apps can leave evaluation to the collector: it samples the
captured calls, runs the same evaluators (`groundedness`, `refusal`, ... and optionally the judge) and feeds
the same `gen_ai.evaluation.result` records into the windows, so the apps need no evaluator or judge
configuration. The records carry the call's trace id, span id and response id and are attributed to the
call's series by the join index, exactly like evaluations the apps send.

    content_evaluation:
      enabled: true
      sample_rate: 0.1                  # share of captured calls evaluated
      always_on_error: true             # failed calls always
      evaluators: [groundedness, refusal]   # the names of OTEL_LLM_EVALUATORS
      judge:                            # optional: LLM-as-judge (see otel_llm.judge)
        model: gpt-4o-mini
        kind: openai                    # or anthropic
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY     # the variable holding the key, never the key
        sample_rate: 0.01
        calls_per_minute: 60
        daily_budget_usd: 5.0
      queue_max_calls: 1000
      workers: 2

Data flow. `decode_traces` / `decode_logs` decode as usual and let `content_capture` copy the content of
the sampled calls (the sampling is decided from the span id before any content is read); `offer` passes the
decoded request to the ingest queue and, once the queue accepted it, hands the captured calls to this
module's bounded queue. (A request the ingest queue sheds is retried by its client; evaluating it now would
evaluate it twice.) Worker threads run the evaluators and offer the records, batched, to the same ingest
queue as a `DecodeResult` holding only evaluations, so the pipeline sees them on its own thread. Requests
replayed from the write-ahead log at start are not evaluated again.

Backpressure, never blocking a receiver or a worker:

- a sampled call that finds this module's queue full is dropped and counted
  (`content_evaluation_dropped_queue_full_total`); the receivers never wait for the evaluators;
- records that the ingest queue refuses (full: the windows worker is behind; or stopping) are dropped and
  counted (`content_evaluation_dropped_ingest_total`), never retried in a loop;
- `stop(timeout_seconds)` stops taking calls, lets the workers drain the queue until the timeout, then
  drops what is left (`content_evaluation_dropped_on_stop_total`). A running judge call is bounded by the
  judge's `timeout_seconds`. A crash loses the calls queued here (the calls themselves are in the windows).

Self-metrics (`otel_llm_collector_content_evaluation_*`): `sampled_total` (calls chosen),
`skipped_no_content_total` (chosen, but the call carried no captured input or output),
`skipped_too_large_total` (content over `max_content_chars`), `duplicates_total` (a call seen on both its
span and its details event), `dropped_queue_full_total`, `evaluated_total` (calls evaluated),
`records_total` (evaluation records produced), `errors_total` (an evaluator raised, or content nested too
deeply to read), `dropped_ingest_total` (records), `dropped_on_stop_total`; gauge `queue_calls`; with a
judge, `judge_calls_total`, `judge_failed_calls_total` (no score: timeout, unparseable answer, HTTP error),
`judge_rate_limited_total`, `judge_budget_exhausted_total` and `judge_cost_usd_total`.

Judge calls are plain HTTP from the collector (`urllib`), not traced. The judge's explanation quotes the
content, so it is kept only with `judge.include_explanation`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from otel_llm.evaluation_hook import LOCAL_EVALUATORS
from otel_llm.evaluators import Evaluator
from otel_llm.judge import CRITERIA, Judge, JudgeKind, judge_evaluators
from otel_llm.judge_wire import JudgeTransport
from otel_llm_collector import decode
from otel_llm_collector.content_capture import (
    CapturedCall,
    ContentTooLarge,
    SamplePlan,
    capture_log_record,
    capture_span,
    evaluation_input,
    threshold,
)
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.records import CallRecord, EvaluationRecord
from otel_llm_collector.selfmetrics import Counters, LogLimiter

__all__ = ["ContentEvaluationSettings", "ContentEvaluator", "JudgeSettings"]

_logger = logging.getLogger(__name__)
_log = LogLimiter(_logger)

PREFIX: Final = "content_evaluation_"
MAX_BATCH_RECORDS: Final = 256
"""Records offered to the ingest queue at once; fewer when the evaluators' queue runs empty."""
_MAX_TEXT_CHARS: Final = decode.MAX_ATTRIBUTE_STRING_CHARS
_STOP: Final = object()

Offer = Callable[[DecodeResult, int, "bytes | None"], bool]
"""`IngestQueue.offer`."""


class JudgeSettings(BaseModel):
    """The `content_evaluation.judge` section: the arguments of `otel_llm.judge.Judge`, validated by it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    kind: JudgeKind = JudgeKind.OPENAI
    base_url: str | None = None
    """Default: the kind's public API."""
    api_key_env: str | None = None
    """The environment variable holding the API key; default `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`."""
    criteria: tuple[str, ...] = CRITERIA
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    """Share of captured calls sent to the judge (the same span-id sampling: a subset of the calls the
    local evaluators see when it is at most `content_evaluation.sample_rate`)."""
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_output_tokens: int = Field(default=200, ge=1)
    calls_per_minute: int = Field(default=60, ge=0)
    """0: no limit."""
    daily_budget_usd: float | None = Field(default=None, gt=0)
    include_explanation: bool = False
    """Keep the judge's explanation (it may quote the prompt and the answer)."""

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in CRITERIA]
        if unknown:
            raise ValueError(f"unknown criteria {unknown}; expected some of {list(CRITERIA)}")
        return value

    def build(self, env: Mapping[str, str], transport: JudgeTransport | None = None) -> Judge:
        """The judge; raises `ValueError` naming the setting (an unpriced model with a budget, ...)."""
        key_env = self.api_key_env or (
            "ANTHROPIC_API_KEY" if self.kind is JudgeKind.ANTHROPIC else "OPENAI_API_KEY"
        )
        api_key = env.get(key_env)
        if self.api_key_env and not api_key:
            _logger.warning("content_evaluation.judge.api_key_env: %s is not set", self.api_key_env)
        return Judge(
            model=self.model,
            kind=self.kind,
            base_url=self.base_url,
            api_key=api_key,
            timeout_seconds=self.timeout_seconds,
            max_output_tokens=self.max_output_tokens,
            calls_per_minute=self.calls_per_minute or None,
            daily_budget_usd=self.daily_budget_usd,
            transport=transport,
        )


class ContentEvaluationSettings(BaseModel):
    """The `content_evaluation` section of the collector's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    sample_rate: float = Field(default=0.1, ge=0, le=1)
    """Share of captured calls the evaluators run on; evaluators marked `every_call` (`leak`) see all."""
    always_on_error: bool = True
    evaluators: tuple[str, ...] = ("groundedness", "refusal")
    """Names as in `OTEL_LLM_EVALUATORS`."""
    judge: JudgeSettings | None = None
    queue_max_calls: int = Field(default=1000, ge=1)
    """Sampled calls waiting for the workers; beyond it new ones are dropped and counted."""
    workers: int = Field(default=2, ge=1, le=64)
    max_content_chars: int = Field(default=200_000, ge=1000)
    """Captured text per call; a larger call is skipped and counted (it would be held in the queue)."""

    @field_validator("evaluators")
    @classmethod
    def _evaluators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in LOCAL_EVALUATORS]
        if unknown:
            raise ValueError(f"unknown evaluators {unknown}; expected some of {sorted(LOCAL_EVALUATORS)}")
        return value


def _every_call(evaluator: Evaluator) -> bool:
    return getattr(evaluator, "every_call", False) is True


class _RequestCapture:
    """What decode captured from one request, until `offer` learns whether the request was accepted."""

    __slots__ = ("calls", "no_content", "owner", "plan", "result", "too_large")

    def __init__(self, owner: ContentEvaluator) -> None:
        self.owner = owner
        self.plan = owner.plan
        self.calls: list[CapturedCall] = []
        self.no_content = 0
        self.too_large = 0
        self.result: DecodeResult | None = None

    def _keep(self, captured: CapturedCall) -> None:
        if captured.has_content:
            self.calls.append(captured)
        else:
            self.no_content += 1

    def span(self, span: Any, call: CallRecord) -> None:
        """`decode.SpanCapture`: runs on the receiver's thread for each GenAI call span; never raises."""
        try:
            captured = capture_span(self.plan, span, call)
        except ContentTooLarge:
            self.too_large += 1
        except Exception:
            self.owner.capture_failed()
        else:
            if captured is not None:
                self._keep(captured)

    def log_record(self, record: Any) -> None:
        """`decode.LogCapture`: runs on the receiver's thread for each non-evaluation log record."""
        try:
            captured = capture_log_record(self.plan, record)
        except ContentTooLarge:
            self.too_large += 1
        except Exception:
            self.owner.capture_failed()
        else:
            if captured is not None:
                self._keep(captured)

    @property
    def empty(self) -> bool:
        return not (self.calls or self.no_content or self.too_large)


class ContentEvaluator:
    """Samples captured calls at decode, evaluates them on worker threads, feeds the records to ingest.

    Wire `decode_traces`, `decode_logs` and `offer` into the same `Receiver` (decode keeps the captured
    calls for the thread until `offer` hands them over). `start` before the listeners, `stop` after the
    listeners and before the ingest queue stops. Raises `ValueError` for a judge that does not validate.
    """

    def __init__(
        self,
        settings: ContentEvaluationSettings,
        *,
        offer: Offer,
        counters: Counters,
        env: Mapping[str, str] | None = None,
        judge_transport: JudgeTransport | None = None,
    ) -> None:
        self.settings = settings
        self._offer_to_ingest = offer
        self._counters = counters
        chosen = [LOCAL_EVALUATORS[name] for name in settings.evaluators]
        self._sampled: list[Evaluator] = [e for e in chosen if not _every_call(e)]
        self._unsampled: list[Evaluator] = [e for e in chosen if _every_call(e)]
        self.judge: Judge | None = None
        self._judged: Sequence[Evaluator] = ()
        judge_rate = 0.0
        if settings.judge is not None:
            self.judge = settings.judge.build(os.environ if env is None else env, judge_transport)
            self._judged = judge_evaluators(
                self.judge, settings.judge.criteria, include_explanation=settings.judge.include_explanation
            )
            judge_rate = settings.judge.sample_rate
        self.plan = SamplePlan(
            local=threshold(settings.sample_rate) if self._sampled else 0,
            judge=threshold(judge_rate) if self._judged else 0,
            every_call=bool(self._unsampled),
            always_on_error=settings.always_on_error,
            max_content_chars=settings.max_content_chars,
        )
        self._queue: queue.Queue[object] = queue.Queue(maxsize=settings.queue_max_calls)
        self._accepting = False
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, None] = OrderedDict()  # a FIFO: O(1) from the front
        self._recent_max = max(10_000, 4 * settings.queue_max_calls)
        self._pending = threading.local()
        self._out: list[EvaluationRecord] = []
        self._out_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._abandon = threading.Event()
        names = (
            "sampled",
            "skipped_no_content",
            "skipped_too_large",
            "duplicates",
            "dropped_queue_full",
            "evaluated",
            "records",
            "errors",
            "dropped_ingest",
            "dropped_on_stop",
        )
        counters.add_many({f"{PREFIX}{name}_total": 0 for name in names})
        counters.gauge(PREFIX + "queue_calls", lambda: float(self._queue.qsize()))
        if self.judge is not None:
            self._register_judge_gauges(self.judge)

    def _register_judge_gauges(self, judge: Judge) -> None:
        gauges: dict[str, Callable[[], float]] = {
            "judge_calls_total": lambda: judge.stats.calls,
            "judge_failed_calls_total": lambda: judge.stats.calls - judge.stats.ok,
            "judge_rate_limited_total": lambda: judge.stats.rate_limited,
            "judge_budget_exhausted_total": lambda: judge.stats.budget_exhausted,
            "judge_cost_usd_total": lambda: judge.stats.cost_usd,
        }
        for name, read in gauges.items():
            self._counters.gauge(PREFIX + name, read)

    # --- the receiver's side ----------------------------------------------------------------------------

    def decode_traces(self, request: Any, **options: Any) -> DecodeResult:
        """`decode.decode_traces` that also captures the sampled calls (kept for this thread's `offer`)."""
        capture = _RequestCapture(self)
        result = decode.decode_traces(request, capture=capture.span, **options)
        self._hold(capture, result)
        return result

    def decode_logs(self, request: Any) -> DecodeResult:
        """`decode.decode_logs` that also captures the sampled details events."""
        capture = _RequestCapture(self)
        result = decode.decode_logs(request, capture=capture.log_record)
        self._hold(capture, result)
        return result

    def _hold(self, capture: _RequestCapture, result: DecodeResult) -> None:
        capture.result = result
        self._pending.capture = None if capture.empty else capture

    def offer(self, result: DecodeResult, signal: int = 0, payload: bytes | None = None) -> bool:
        """`IngestQueue.offer`; when it accepts the request, the calls captured from it are queued."""
        accepted = self._offer_to_ingest(result, signal, payload)
        capture: _RequestCapture | None = getattr(self._pending, "capture", None)
        if capture is not None and capture.result is result:
            self._pending.capture = None
            if accepted:
                self.submit(capture.calls, no_content=capture.no_content, too_large=capture.too_large)
        return accepted

    def submit(self, calls: Sequence[CapturedCall], *, no_content: int = 0, too_large: int = 0) -> int:
        """Queue captured calls for the workers without blocking; returns how many were queued."""
        queued = duplicates = dropped = 0
        with self._lock:
            accepting = self._accepting
            for call in calls if accepting else ():
                key = call.trace_id + call.span_id  # a call on both its span and its details event
                if key in self._recent:
                    duplicates += 1
                    continue
                try:
                    self._queue.put_nowait(call)
                except queue.Full:
                    dropped += 1
                    continue
                self._recent[key] = None
                if len(self._recent) > self._recent_max:
                    self._recent.popitem(last=False)
                queued += 1
        self._counters.add_many(
            {
                PREFIX + "sampled_total": len(calls) - duplicates + no_content + too_large,
                PREFIX + "skipped_no_content_total": no_content,
                PREFIX + "skipped_too_large_total": too_large,
                PREFIX + "duplicates_total": duplicates,
                PREFIX + "dropped_queue_full_total": dropped,
                PREFIX + "dropped_on_stop_total": 0 if accepting else len(calls),
            }
        )
        if dropped:
            _log.warning(
                "queue_full",
                "content evaluation: %d sampled call(s) dropped, the evaluators' queue is full",
                dropped,
            )
        return queued

    def capture_failed(self) -> None:
        """Counts a capture that raised (a bug: the request itself is decoded and kept)."""
        _logger.debug("content capture failed", exc_info=True)
        self._counters.add(PREFIX + "errors_total")

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._accepting = True
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._run, name=f"otel-llm-content-eval-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Stop taking calls, evaluate what is queued within `timeout_seconds`, offer the last records."""
        with self._lock:
            self._accepting = False
        deadline = time.monotonic() + timeout_seconds
        threads, self._threads = self._threads, []
        try:
            for _ in threads:
                self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            self._abandon.set()
            dropped = 0
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                dropped += item is not _STOP
            for _ in threads:  # room was just made: the workers find these after their current call
                self._queue.put_nowait(_STOP)
            self._counters.add(PREFIX + "dropped_on_stop_total", dropped)
            _logger.warning("content evaluation: %d queued call(s) not evaluated before stopping", dropped)
        self._flush(force=True)

    # --- the workers' side ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._flush(force=True)
                return
            if self._abandon.is_set():
                continue
            assert isinstance(item, CapturedCall)
            try:
                self._emit(self.evaluate(item))
            except Exception:  # a bug here must not cost the collector a worker
                _logger.exception("content evaluation failed")
                self._counters.add(PREFIX + "errors_total")

    def evaluate(self, call: CapturedCall) -> list[EvaluationRecord]:
        """Run the evaluators chosen for `call`; their exceptions are counted, never raised."""
        try:
            data = evaluation_input(call)
        except RecursionError:  # content nested beyond reason
            self._counters.add(PREFIX + "errors_total")
            return []
        if not data.response_text and not data.request_messages:
            self._counters.add(PREFIX + "skipped_no_content_total")
            return []
        chosen = [
            *self._unsampled,
            *(self._sampled if call.local else ()),
            *(self._judged if call.judged else ()),
        ]
        records: list[EvaluationRecord] = []
        errors = 0
        for evaluator in chosen:
            try:
                outcome = evaluator(data)
            except Exception:
                errors += 1
                _logger.debug("evaluator %r failed", evaluator, exc_info=True)
                _log.warning("errors", "content evaluation: an evaluator raised (counted; details at debug)")
                continue
            if outcome is None or not outcome.name:
                continue
            score = outcome.score
            if score is not None and not math.isfinite(score):
                score = None  # as decode does: NaN would poison every mean downstream
            if score is None and not outcome.label:
                continue
            records.append(
                EvaluationRecord(
                    name=outcome.name[:_MAX_TEXT_CHARS],
                    time_ns=call.time_ns,
                    score=score,
                    label=(outcome.label or "")[:_MAX_TEXT_CHARS],
                    explanation=(outcome.explanation or "")[:_MAX_TEXT_CHARS],
                    trace_id=call.trace_id,
                    span_id=call.span_id,
                    response_id=call.response_id,
                )
            )
        self._counters.add_many(
            {
                PREFIX + "evaluated_total": 1,
                PREFIX + "records_total": len(records),
                PREFIX + "errors_total": errors,
            }
        )
        return records

    def _emit(self, records: list[EvaluationRecord]) -> None:
        with self._out_lock:
            self._out.extend(records)
        self._flush(force=False)

    def _flush(self, *, force: bool) -> None:
        """Offer the pending records when forced, when the batch is full, or when no call is waiting (a
        call still queued means a worker will flush after it)."""
        with self._out_lock:
            if not self._out:
                return
            if not force and len(self._out) < MAX_BATCH_RECORDS and not self._queue.empty():
                return
            batch, self._out = tuple(self._out), []
        if not self._offer_to_ingest(DecodeResult(evaluations=batch), 0, None):
            self._counters.add(PREFIX + "dropped_ingest_total", len(batch))
            _log.warning(
                "ingest", "content evaluation: %d record(s) dropped, the ingest queue is full", len(batch)
            )
