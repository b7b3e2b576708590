"""CPU time `otel_llm` adds on the app's thread around one `httpx2` send, without the SDK or a network.

    .venv/bin/python bench/request_path.py [calls-per-round]

A `MockTransport` answers a chat completion; the same prepared request is sent through the instrumented
`Client.send` and through the original one (`__wrapped__`), alternately, in 7 rounds. The figure is the
median over rounds of (instrumented median - bare median), in calling-thread CPU time. The finisher
thread's work is not in it (it runs beside the app); `instrumentation_overhead.py` measures whole calls.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_llm

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What does the Pro plan cost?"}]}
RESPONSE = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "49 dollars."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _median_us(fn: Callable[[], Any], calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.thread_time_ns()
        fn()
        samples.append(time.thread_time_ns() - start)
    otel_llm.flush()
    return statistics.median(samples) / 1000


def main(calls: int) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    otel_llm.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, logger_provider=LoggerProvider()
    )
    body = json.dumps(RESPONSE).encode()
    client = httpx2.Client(transport=httpx2.MockTransport(lambda request: httpx2.Response(200, content=body)))
    request = client.build_request("POST", "https://api.openai.com/v1/chat/completions", json=REQUEST)
    bare_send = httpx2.Client.send.__wrapped__  # type: ignore[attr-defined]

    def instrumented() -> Any:
        return client.send(request)

    def bare() -> Any:
        return bare_send(client, request)

    for _ in range(300):
        instrumented()
        bare()
    otel_llm.flush()
    rounds = [(_median_us(bare, calls), _median_us(instrumented, calls)) for _ in range(7)]
    added = statistics.median(inst - base for base, inst in rounds)
    print(
        f"bare send {statistics.median(b for b, _ in rounds):.1f} µs, "
        f"instrumented {statistics.median(i for _, i in rounds):.1f} µs: added {added:+.1f} µs CPU per call"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
