"""The tracer, meter instruments and logger that the instrumentation emits through.

One `Telemetry` is built when `instrument()` runs, from the providers it was given (or the global ones),
and read on the hot path with a plain attribute access. Every part of `otel_llm` that emits (the HTTP
hooks, tool spans, evaluations) goes through `current()`, so `uninstrument()` and re-instrumenting with
other providers take effect everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import Logger, LoggerProvider, get_logger
from opentelemetry.metrics import Counter, Histogram, MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

from otel_llm.version import __version__

SCOPE_NAME = "otel_llm"

# Bucket boundaries the GenAI semantic conventions recommend.
DURATION_BUCKETS_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracer: Tracer
    logger: Logger
    operation_duration: Histogram
    token_usage: Histogram
    time_to_first_chunk: Histogram
    cost: Counter


def build(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
) -> Telemetry:
    """Telemetry from the given providers; a provider left out means the global one."""
    tracer = trace.get_tracer(SCOPE_NAME, __version__, tracer_provider)
    meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider)
    logger = get_logger(SCOPE_NAME, __version__, logger_provider)
    hist: Any = meter.create_histogram
    return Telemetry(
        tracer=tracer,
        logger=logger,
        operation_duration=hist(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        ),
        token_usage=hist(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        ),
        time_to_first_chunk=hist(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk in a streaming operation.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        ),
        cost=meter.create_counter(
            "otel_llm.client.cost",
            unit="USD",
            description="Estimated cost of GenAI calls from the shipped price table.",
        ),
    )


_current: Telemetry | None = None


def current() -> Telemetry:
    """The active telemetry; built from the global providers if `instrument()` has not run."""
    global _current
    if _current is None:
        _current = build()
    return _current


def install(telemetry: Telemetry | None) -> None:
    """Make `telemetry` the active one (`None` resets to the global providers on next use)."""
    global _current
    _current = telemetry
