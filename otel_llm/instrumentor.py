"""`OtelLLMInstrumentor`: the OpenTelemetry instrumentor for LLM calls made through `httpx2` and `httpx`.

Zero code change: `opentelemetry-instrument python app.py` finds it through the `opentelemetry_instrumentor`
entry point. In code: `otel_llm.instrument(tracer_provider=..., meter_provider=..., logger_provider=...)`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otel_llm import telemetry, threads
from otel_llm.config import load
from otel_llm.finisher import finisher, register_exit_flush
from otel_llm.hooks import Hooks


class OtelLLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments every `httpx2`/`httpx` client in the process; other HTTP traffic passes untouched."""

    _hooks: Hooks | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        # Either HTTP library is enough; neither is required at import time.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        options = {
            key: kwargs[key]
            for key in (
                "capture_content",
                "redact_content",
                "extra_paths",
                "thread_context",
                "max_stream_buffer_bytes",
                "latest_semconv",
                "defer_spans",
            )
            if key in kwargs
        }
        settings = load(**options)
        telemetry.install(
            telemetry.build(
                tracer_provider=kwargs.get("tracer_provider"),
                meter_provider=kwargs.get("meter_provider"),
                logger_provider=kwargs.get("logger_provider"),
            )
        )
        # The Anthropic SDK traces its own calls whenever a global tracer provider exists; two spans per
        # call would count it twice, so its spans are off unless the user asked for them explicitly
        # (then ours step aside and enrich its span instead; see `otel_llm.hooks`).
        if kwargs.get("anthropic_sdk_spans") is not True:
            os.environ.setdefault("ANTHROPIC_OPEN_TELEMETRY", "false")
        register_exit_flush()
        hooks = Hooks(settings)
        hooks.install()
        type(self)._hooks = hooks
        if settings.thread_context:
            threads.install()
        from otel_llm import evaluation_hook

        evaluation_hook.enable_from_env(os.environ)
        if os.environ.get("OTEL_LLM_CONTROL_URL"):
            from otel_llm import control

            control.enable_control()

    def _uninstrument(self, **kwargs: Any) -> None:
        finisher.flush()
        if type(self)._hooks is not None:
            type(self)._hooks.uninstall()  # type: ignore[union-attr]
            type(self)._hooks = None
        threads.uninstall()
        from otel_llm import evaluation_hook

        evaluation_hook.disable_evaluation()
        from otel_llm import control

        control.disable_control()
        telemetry.install(None)


def instrument(**kwargs: Any) -> OtelLLMInstrumentor:
    """Instrument the process (idempotent); keyword arguments as for `OtelLLMInstrumentor().instrument`."""
    instrumentor = OtelLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(**kwargs)
    return instrumentor


def uninstrument() -> None:
    instrumentor = OtelLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
