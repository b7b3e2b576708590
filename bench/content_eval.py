"""What evaluation in the collector costs: CPU per span on the receiver's thread, and per evaluated call.

    .venv/bin/python bench/content_eval.py                  # 6 rounds
    .venv/bin/python bench/content_eval.py --rounds 12 --rate 0.1

The requests are like the ingest benchmark's (`bench/ingest.py`): 512 spans over 50 series, each span also
carrying what our instrumentation captures with content capture on: a system prompt with ~600 characters of
documents, the question, and the answer (~850 bytes per span). Figures are CPU time, not wall time, so other
load on the machine moves them little; the cases take turns in interleaved rounds and the medians are printed.

- `decode`: `decode_traces`, content evaluation off (what the collector does without the setting);
- `capture at 0` / `capture at <rate>`: `ContentEvaluator.decode_traces` + `offer` with the workers not
  started: decode plus the sampling decision (and, for the sampled calls, copying their content);
- `whole process at <rate>`: the same with the workers running the default evaluators (`groundedness`,
  `refusal`) on the sampled calls; the process's CPU, all threads, until every sampled call is evaluated
  (a fresh evaluator each round, so no call is a duplicate of the previous round's);
- `per evaluated call`: `ContentEvaluator.evaluate` alone (JSON parsing included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from otel_llm_collector.content_capture import capture_span
from otel_llm_collector.content_eval import ContentEvaluationSettings, ContentEvaluator
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.testing import genai_request

from otel_llm import attributes as A

SPANS_PER_REQUEST = 512
DOCUMENTS = (
    "Plans: Pro costs $39 per month and includes priority support. Team costs $99 per month for five "
    "seats. Annual billing saves two months. Refunds within 14 days. "
) * 3
ANSWER = "The Pro plan costs $39 per month. It includes priority support and annual billing saves two months."


def content_requests(count: int) -> list[ExportTraceServiceRequest]:
    """Requests like the ingest benchmark's (50 series), with captured content on every span."""
    base_ns = time.time_ns()
    requests = []
    for k in range(count):
        request = genai_request(spans=SPANS_PER_REQUEST, series=50, seed=k, start_ns=base_ns + k * 1_000_000)
        for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
            messages = [
                {"role": "system", "content": "Answer from these documents only:\n" + DOCUMENTS},
                {"role": "user", "content": f"What does the Pro plan cost? ({i})"},
            ]
            output = [{"role": "assistant", "content": ANSWER, "finish_reason": "stop"}]
            for key, value in ((A.GEN_AI_INPUT_MESSAGES, messages), (A.GEN_AI_OUTPUT_MESSAGES, output)):
                span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=json.dumps(value))))
        requests.append(request)
    return requests


def accept(result: DecodeResult, signal: int = 0, payload: bytes | None = None) -> bool:
    """An ingest queue that takes everything (the windows are not what is measured here)."""
    return True


def evaluator(rate: float, counters: Counters | None = None) -> ContentEvaluator:
    settings = ContentEvaluationSettings(enabled=True, sample_rate=rate, queue_max_calls=100_000)
    return ContentEvaluator(settings, offer=accept, counters=counters or Counters())


def caught_up(counters: Counters) -> bool:
    """Every sampled call evaluated (or dropped, or skipped)."""
    done = sum(
        counters.get(f"content_evaluation_{name}_total")
        for name in ("evaluated", "dropped_queue_full", "skipped_no_content", "skipped_too_large")
    )
    return done >= counters.get("content_evaluation_sampled_total")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    requests = content_requests(args.requests)
    spans = len(requests) * SPANS_PER_REQUEST
    size = sum(len(r.SerializeToString()) for r in requests[:4]) / (4 * SPANS_PER_REQUEST)
    print(f"{len(requests)} requests of {SPANS_PER_REQUEST} spans, {size:.0f} bytes/span encoded")
    off, sampled = evaluator(0.0), evaluator(args.rate)

    def through(target: ContentEvaluator) -> Callable[[Any], object]:
        def work(request: Any) -> object:
            return target.offer(target.decode_traces(request), 1, None)

        return work

    def thread_cpu(work: Callable[[Any], object]) -> float:
        started = time.thread_time()
        for request in requests:
            work(request)
        return (time.thread_time() - started) / spans * 1e6

    def process_cpu() -> float:
        counters = Counters()
        running = evaluator(args.rate, counters)
        running.start()
        work = through(running)
        started = time.process_time()
        for request in requests:
            work(request)
        while not caught_up(counters):
            time.sleep(0.005)
        spent = time.process_time() - started
        running.stop(60)
        return spent / spans * 1e6

    cases: dict[str, Callable[[], float]] = {
        "decode (content evaluation off)": lambda: thread_cpu(decode_traces),
        "capture at 0": lambda: thread_cpu(through(off)),
        f"capture at {args.rate:g}": lambda: thread_cpu(through(sampled)),
        f"whole process at {args.rate:g}": process_cpu,
    }
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            figures[name].append(case())
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:6.2f} us CPU per span  (min {min(values):.2f}, max {max(values):.2f})")
    calls: list[Any] = []
    decode_traces(
        requests[0], capture=lambda span, call: calls.append(capture_span(sampled.plan, span, call))
    )
    captured = [call for call in calls if call is not None]
    if captured:
        started = time.thread_time()
        for call in captured * 5:
            sampled.evaluate(call)
        per_call = (time.thread_time() - started) / (len(captured) * 5) * 1e6
        print(f"{'per evaluated call':34s} {per_call:6.0f} us CPU (groundedness + refusal, JSON parsed)")


if __name__ == "__main__":
    main()
