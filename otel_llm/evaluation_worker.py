"""Background evaluation: run evaluators on a sample of finished calls, off the request path.

    from otel_llm.evaluation_worker import EvaluationWorker
    from otel_llm.evaluators import groundedness, refusal

    worker = EvaluationWorker([groundedness, refusal], sample_rate=0.1)
    worker.submit(EvaluationInput(...), span_context)   # from the call's completion; never blocks
    ...
    worker.shutdown(timeout_seconds=5)                   # at exit: drains what is queued

`submit` is called on the app's thread when a call finishes. It decides sampling, puts the call on a
bounded queue and returns at once: `True` if queued. It never blocks and never raises. When the queue is
full the call is dropped and counted; the first drop is logged as a warning.

Sampling policy, in order:

1. a failed call (`error_type` set) is always chosen when `always_on_error` (the default);
2. a call whose feature is in `feature_sample_rates`, or whose tenant is in `tenant_sample_rates`, is
   chosen at that rate (the higher one when both name it): a higher rate for a feature under watch or a
   tenant on trial, or 0.0 to leave a noisy feature out;
3. any other call at `sample_rate`.

Daemon worker threads take calls from the queue, run every evaluator and record each outcome with
`record_evaluation(..., span_context=..., response_id=...)`: a `gen_ai.evaluation.result` log record carrying
the call's span context, since the call's span has ended by then. An evaluator that raises (or returns an
invalid outcome) is counted as failed and logged at debug level; the other evaluators still run.

Counters, as attributes (`submitted`, `sampled`, `sampled_out`, `dropped`, `evaluated`, `failed`) and as
OpenTelemetry counters from the given (or global) meter provider, each with the attribute
`otel_llm.evaluation.source` (the worker's `source`: `local`, `judge`) so that two workers can be told apart:

| metric | counts |
|---|---|
| `otel_llm.evaluation.submitted` | calls passed to `submit` |
| `otel_llm.evaluation.sampled` | calls chosen by sampling (then queued or dropped) |
| `otel_llm.evaluation.sampled_out` | calls not chosen by sampling |
| `otel_llm.evaluation.queue.dropped` | sampled calls dropped: queue full or worker shut down |
| `otel_llm.evaluation.evaluated` | evaluator runs that completed (an outcome recorded or `None`) |
| `otel_llm.evaluation.failed` | evaluator runs that raised or produced an invalid outcome |

Sampling is random by default; `seed` makes it reproducible, and `sample_by_response_id=True` makes it a
pure function of the response id (the same call is chosen in every process and every run).

`shutdown(timeout_seconds, drain=True)` stops accepting calls and evaluates what is queued before the
threads stop; `drain=False` discards the queue instead (counted as dropped) and waits only for the
evaluations already running.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanContext

from otel_llm import attributes as attr
from otel_llm.evaluation import record_evaluation
from otel_llm.evaluators import EvaluationInput, Evaluator
from otel_llm.telemetry import SCOPE_NAME
from otel_llm.version import __version__

__all__ = [
    "METRIC_DROPPED",
    "METRIC_EVALUATED",
    "METRIC_FAILED",
    "METRIC_SAMPLED",
    "METRIC_SAMPLED_OUT",
    "METRIC_SUBMITTED",
    "EvaluationWorker",
]

_logger = logging.getLogger(__name__)

# Metric names (not attributes), like the histograms in `otel_llm.telemetry`.
METRIC_SUBMITTED: Final = "otel_llm.evaluation.submitted"
METRIC_SAMPLED: Final = "otel_llm.evaluation.sampled"
METRIC_SAMPLED_OUT: Final = "otel_llm.evaluation.sampled_out"
METRIC_DROPPED: Final = "otel_llm.evaluation.queue.dropped"
METRIC_EVALUATED: Final = "otel_llm.evaluation.evaluated"
METRIC_FAILED: Final = "otel_llm.evaluation.failed"

_Item = tuple[EvaluationInput, SpanContext | None]
_STOP: Final = None


class EvaluationWorker:
    """A bounded queue and daemon threads that run evaluators on sampled calls; see the module docstring.

    Settings are validated here, once, with a `ValueError` naming the setting.
    """

    def __init__(
        self,
        evaluators: Sequence[Evaluator],
        *,
        sample_rate: float = 0.1,
        always_on_error: bool = True,
        feature_sample_rates: Mapping[str, float] | None = None,
        tenant_sample_rates: Mapping[str, float] | None = None,
        max_queue: int = 1000,
        workers: int = 1,
        seed: int | None = None,
        sample_by_response_id: bool = False,
        source: str = "local",
        meter_provider: MeterProvider | None = None,
    ) -> None:
        _check_rate("sample_rate", sample_rate)
        self._feature_rates = dict(feature_sample_rates or {})
        self._tenant_rates = dict(tenant_sample_rates or {})
        for setting, rates in (
            ("feature_sample_rates", self._feature_rates),
            ("tenant_sample_rates", self._tenant_rates),
        ):
            for key, rate in rates.items():
                _check_rate(f"{setting}[{key!r}]", rate)
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self._evaluators = tuple(evaluators)
        self._sample_rate = sample_rate
        self._always_on_error = always_on_error
        self._by_response_id = sample_by_response_id
        self._source = source
        self._random = random.Random(seed)
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._closed = False
        self._drop_logged = False
        self._attributes = {attr.EVALUATION_SOURCE: source}
        self.submitted = 0
        self.sampled = 0
        self.sampled_out = 0
        self.dropped = 0
        self.evaluated = 0
        self.failed = 0
        meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider)
        counter = meter.create_counter
        self._m_submitted = counter(METRIC_SUBMITTED, "{call}", "Calls offered to the evaluation worker.")
        self._m_sampled = counter(METRIC_SAMPLED, "{call}", "Calls chosen for evaluation by sampling.")
        self._m_sampled_out = counter(METRIC_SAMPLED_OUT, "{call}", "Calls not sampled for evaluation.")
        self._m_dropped = counter(METRIC_DROPPED, "{call}", "Sampled calls dropped: queue full or shut down.")
        self._m_evaluated = counter(METRIC_EVALUATED, "{evaluation}", "Evaluator runs completed.")
        self._m_failed = counter(
            METRIC_FAILED, "{evaluation}", "Evaluator runs that raised or gave invalid results."
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"otel-llm-evaluation-{source}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_size(self) -> int:
        return self._queue.qsize()

    def submit(self, data: EvaluationInput, span_context: SpanContext | None = None) -> bool:
        """Queue `data` for evaluation if sampled; `True` when queued. Never blocks, never raises."""
        try:
            with self._lock:
                self.submitted += 1
            self._m_submitted.add(1, self._attributes)
            if not self._chosen(data):
                with self._lock:
                    self.sampled_out += 1
                self._m_sampled_out.add(1, self._attributes)
                return False
            with self._lock:
                self.sampled += 1
            self._m_sampled.add(1, self._attributes)
            with self._lock:  # against a concurrent shutdown: nothing is queued behind the stop markers
                queued = not self._closed and _put_nowait(self._queue, (data, span_context))
            if queued:
                return True
            self._count_drop()
        except Exception:
            _logger.debug("otel_llm: evaluation submit failed", exc_info=True)
        return False

    def shutdown(self, timeout_seconds: float | None = 5.0, *, drain: bool = True) -> bool:
        """Stop accepting calls, evaluate what is queued (or with `drain=False` drop it, counted), stop the
        threads; `True` if all finished within `timeout_seconds`."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        with self._lock:
            already = self._closed
            self._closed = True
        if not drain:
            discarded = 0
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    discarded += 1
            if discarded:
                self._count_drop(discarded)
        if not already or not drain:
            for _ in self._threads:
                try:
                    self._queue.put(_STOP, timeout=_remaining(deadline))
                except queue.Full:
                    break
        for thread in self._threads:
            thread.join(_remaining(deadline))
        return not any(thread.is_alive() for thread in self._threads)

    def rate_for(self, data: EvaluationInput) -> float:
        """The sampling rate that applies to this call (before `always_on_error`)."""
        chosen = [
            rates[key]
            for rates, key in ((self._feature_rates, data.feature), (self._tenant_rates, data.tenant))
            if key is not None and key in rates
        ]
        return max(chosen) if chosen else self._sample_rate

    def _chosen(self, data: EvaluationInput) -> bool:
        if self._always_on_error and data.error_type:
            return True
        rate = self.rate_for(data) if self._feature_rates or self._tenant_rates else self._sample_rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        if self._by_response_id and data.response_id:
            digest = hashlib.sha256(data.response_id.encode("utf-8", "surrogatepass")).digest()
            return int.from_bytes(digest[:8], "big") < rate * 2**64
        return self._random.random() < rate

    def _count_drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count
            first = not self._drop_logged
            self._drop_logged = True
        self._m_dropped.add(count, self._attributes)
        if first:
            _logger.warning(
                "otel_llm: evaluation queue full or closed; dropping calls (counted in %s)", METRIC_DROPPED
            )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            data, span_context = item
            for evaluator in self._evaluators:
                self._evaluate(evaluator, data, span_context)

    def _evaluate(
        self, evaluator: Evaluator, data: EvaluationInput, span_context: SpanContext | None
    ) -> None:
        try:
            outcome = evaluator(data)
            if outcome is not None:
                record_evaluation(
                    outcome.name,
                    score=outcome.score,
                    label=outcome.label,
                    explanation=outcome.explanation,
                    span_context=span_context,
                    response_id=data.response_id,
                    source=self._source,
                )
        except Exception:
            _logger.debug("otel_llm: evaluator %r failed", evaluator, exc_info=True)
            with self._lock:
                self.failed += 1
            self._m_failed.add(1, self._attributes)
            return
        with self._lock:
            self.evaluated += 1
        self._m_evaluated.add(1, self._attributes)


def _check_rate(setting: str, rate: object) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{setting} must be within [0, 1], got {rate!r}")


def _put_nowait(target: queue.Queue[_Item | None], item: _Item) -> bool:
    try:
        target.put_nowait(item)
    except queue.Full:
        return False
    return True


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
