"""otel-llm: OpenTelemetry instrumentation that makes LLM quality observable.

    import otel_llm
    otel_llm.instrument()                      # or run the app under `opentelemetry-instrument`

    with otel_llm.llm_context(feature="support-answer", prompt_name="answer", prompt_version="3.2.0"):
        client.chat.completions.create(...)   # a GenAI span with prompt, feature, tokens, cost, hashes

    call = otel_llm.last_call()                # keep it with the answer shown to the user ...
    otel_llm.record_feedback(True, span_context=call.span_context, response_id=call.response_id)

Importing this package imports neither HTTP library nor any collector code; the hooks are installed by
`instrument()`.
"""

from __future__ import annotations

from otel_llm.call import CallHandle, last_call
from otel_llm.context import LLMContext, current_context, llm_context
from otel_llm.control import (
    ControlClient,
    active_version,
    disable_control,
    enable_control,
    kill_switch_scope,
    model_for,
    prompt,
    retrieval_enabled,
    static_response,
    tools_enabled,
)
from otel_llm.evaluation import record_evaluation, record_feedback
from otel_llm.evaluation_hook import disable_evaluation, disable_judge, enable_evaluation, enable_judge
from otel_llm.finisher import flush
from otel_llm.instrumentor import OtelLLMInstrumentor, instrument, uninstrument
from otel_llm.quotas import Quota, QuotaExceeded, QuotaGuard
from otel_llm.tools import tool, tool_span
from otel_llm.version import __version__

__all__ = [
    "CallHandle",
    "ControlClient",
    "LLMContext",
    "OtelLLMInstrumentor",
    "Quota",
    "QuotaExceeded",
    "QuotaGuard",
    "__version__",
    "active_version",
    "current_context",
    "disable_control",
    "disable_evaluation",
    "disable_judge",
    "enable_control",
    "enable_evaluation",
    "enable_judge",
    "flush",
    "instrument",
    "kill_switch_scope",
    "last_call",
    "llm_context",
    "model_for",
    "prompt",
    "record_evaluation",
    "record_feedback",
    "retrieval_enabled",
    "static_response",
    "tool",
    "tool_span",
    "tools_enabled",
    "uninstrument",
]
