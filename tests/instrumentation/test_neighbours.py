"""Living beside other instrumentations: HTTP client spans nest under ours; a call is never counted twice."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

import otel_llm
from otel_llm.testing.llm_server import LLMServer
from tests.conftest import Telemetry

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def httpx_instrumented(telemetry: Telemetry) -> Iterator[None]:
    instrumentor = HTTPX2ClientInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def test_http_client_span_nests_under_the_genai_span(
    telemetry: Telemetry, httpx_instrumented: None, llm_server: LLMServer
) -> None:
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    genai = telemetry.only_call()
    http = [s for s in telemetry.finished() if s.name == "POST"]
    assert len(http) == 1
    assert http[0].parent is not None
    assert http[0].parent.span_id == genai.context.span_id
    # The request the server saw carries the HTTP span's context, in the GenAI span's trace.
    assert http[0].context.trace_id == genai.context.trace_id


def test_official_openai_instrumentation_is_detected_and_not_double_counted(
    telemetry: Telemetry, llm_server: LLMServer
) -> None:
    official = OpenAIInstrumentor()
    official.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        with otel_llm.llm_context(feature="support", prompt_name="answer", prompt_version="1.0.0"):
            with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        official.uninstrument()
    genai = [s for s in telemetry.finished() if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    assert len(genai) == 1, [(s.name, s.instrumentation_scope) for s in genai]
    span = genai[0]
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name != "otel_llm"
    a = span.attributes or {}
    # Ours enriched theirs with what only the app knows.
    assert a["otel_llm.feature"] == "support"
    assert a["gen_ai.prompt.version"] == "1.0.0"
    assert len(a["otel_llm.input.hash"]) == 64
    assert telemetry.genai_spans() == []


def test_anthropic_sdk_native_spans_are_off_unless_asked_for(
    telemetry: Telemetry, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    from opentelemetry import trace

    # The SDK traces through the global provider; set one that records into our exporter.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", telemetry.tracer_provider)
    otel_llm.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    with anthropic.Anthropic(base_url=llm_server.anthropic_base_url, api_key="t", max_retries=0) as client:
        client.messages.create(model="claude-haiku-4-5", max_tokens=32, messages=MESSAGES)
    chat = [s for s in telemetry.finished() if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    assert len(chat) == 1
    assert chat[0].instrumentation_scope is not None
    assert chat[0].instrumentation_scope.name == "otel_llm"


def test_anthropic_sdk_native_spans_when_asked_for_are_enriched_not_duplicated(
    telemetry: Telemetry, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "true")
    with otel_llm.llm_context(feature="agent"):
        client = anthropic.Anthropic(
            base_url=llm_server.anthropic_base_url,
            api_key="t",
            max_retries=0,
            open_telemetry={"tracer_provider": telemetry.tracer_provider},
        )
        with client:
            client.messages.create(model="claude-haiku-4-5", max_tokens=32, messages=MESSAGES)
    chat = [s for s in telemetry.finished() if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    assert len(chat) == 1
    assert chat[0].instrumentation_scope is not None
    assert chat[0].instrumentation_scope.name != "otel_llm"
    assert (chat[0].attributes or {})["otel_llm.feature"] == "agent"


@pytest.mark.parametrize("operation", ["invoke_agent", "execute_tool", "create_agent"])
def test_a_call_inside_an_agent_or_tool_span_gets_its_own_chat_span(
    telemetry: Telemetry, llm_server: LLMServer, operation: str
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span(f"{operation} refund-agent") as parent:
        parent.set_attribute("gen_ai.operation.name", operation)
        with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    chat = telemetry.only_call()
    assert chat.parent is not None
    assert chat.parent.span_id == parent.get_span_context().span_id
    [agent] = [s for s in telemetry.finished() if s.name == f"{operation} refund-agent"]
    assert "otel_llm.enriched" not in (agent.attributes or {})
