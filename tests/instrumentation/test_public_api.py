"""The public surface of `otel_llm`: pinned names, a light import, the instrumentor entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import otel_llm
from otel_llm.instrumentor import OtelLLMInstrumentor


def test_exported_names_are_pinned() -> None:
    assert sorted(otel_llm.__all__) == sorted(
        [
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
    )
    for name in otel_llm.__all__:
        assert hasattr(otel_llm, name), name


def test_importing_the_instrumentation_pulls_in_no_collector_or_http_code() -> None:
    code = "import sys, otel_llm; print(__import__('json').dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    modules = set(json.loads(out.stdout))
    forbidden = {"otel_llm_collector", "grpc", "httpx", "httpx2", "openai", "anthropic", "pydantic", "yaml"}
    assert not modules & forbidden, modules & forbidden


def test_instrumentor_is_registered_for_opentelemetry_instrument() -> None:
    found = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "otel_llm"]
    assert len(found) == 1
    assert found[0].load() is OtelLLMInstrumentor


def test_instrument_and_uninstrument_are_idempotent() -> None:
    import httpx2

    original = httpx2.Client.send
    otel_llm.instrument()
    otel_llm.instrument()
    assert httpx2.Client.send is not original
    otel_llm.uninstrument()
    otel_llm.uninstrument()
    assert httpx2.Client.send is original


def test_request_model_is_read_cheaply_and_safely() -> None:
    from otel_llm.call import request_model

    assert request_model(b'{"messages": [], "model": "gpt-4o-mini"}') == "gpt-4o-mini"
    # A nested "model" key (a tool schema) makes the cheap reading ambiguous: the body is parsed instead.
    body = b'{"tools": [{"parameters": {"model": "x"}}], "model": "gpt-4o", "extra": {"model": "y"}}'
    assert request_model(body) == "gpt-4o"
    assert request_model(b'{"model": "caf\\u00e9"}') == "caf\u00e9"
    assert request_model(b'{"messages": []}') == ""
    assert request_model(b"not json") is None
    assert request_model(b'["model", "x"]') is None
