"""Behaviour the recordings cannot show, driven through the real SDKs against the local LLM server:
cache and reasoning tokens, missing usage, errors, timeouts, aborted and early-closed streams, content."""

from __future__ import annotations

import asyncio
import json
import re

import anthropic
import httpx2
import openai
import pytest

import otel_llm
from otel_llm import guard
from otel_llm.testing.llm_server import ErrorReply, LLMServer, Reply, ScriptedResponder, Usage
from tests.conftest import Telemetry, make_telemetry

MESSAGES = [{"role": "user", "content": "What does the Pro plan cost?"}]


def test_openai_cache_and_reasoning_tokens(telemetry: Telemetry) -> None:
    usage = Usage(
        input_tokens=1200, output_tokens=40, cache_read_input_tokens=1024, reasoning_output_tokens=12
    )
    with LLMServer(ScriptedResponder([Reply(text="It costs $20.", usage=usage)])) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = telemetry.only_call().attributes or {}
    assert a["gen_ai.usage.input_tokens"] == 1200
    assert a["gen_ai.usage.cache_read.input_tokens"] == 1024
    assert a["gen_ai.usage.reasoning.output_tokens"] == 12
    # Cache-aware price from the shipped table: 176 fresh input, 1024 cached, 40 output tokens.
    assert a["otel_llm.cost.usd"] == pytest.approx((176 * 0.15 + 1024 * 0.075 + 40 * 0.60) / 1e6)


def test_anthropic_stream_usage_sums_cached_input(telemetry: Telemetry) -> None:
    usage = Usage(
        input_tokens=3000, output_tokens=25, cache_read_input_tokens=2000, cache_creation_input_tokens=500
    )
    with LLMServer(ScriptedResponder([Reply(text="Twenty dollars.", usage=usage)])) as server:
        with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="t", max_retries=0) as client:
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES) as stream:
                assert stream.get_final_text() == "Twenty dollars."
    a = telemetry.only_call().attributes or {}
    assert a["gen_ai.usage.input_tokens"] == 3000
    assert a["gen_ai.usage.cache_read.input_tokens"] == 2000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 500
    assert a["gen_ai.usage.output_tokens"] == 25


def test_stream_without_usage_says_so_and_invents_nothing(
    telemetry: Telemetry, llm_server: LLMServer
) -> None:
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    a = telemetry.only_call().attributes or {}
    assert a["otel_llm.usage.reported"] is False
    assert "gen_ai.usage.input_tokens" not in a
    assert "otel_llm.cost.usd" not in a
    assert telemetry.metric_points("gen_ai.client.token.usage") == []
    assert sum(p.count for p in telemetry.metric_points("gen_ai.client.operation.time_to_first_chunk")) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_recorded_and_reraised(telemetry: Telemetry, status: int) -> None:
    with LLMServer(ScriptedResponder([Reply(error=ErrorReply(status))])) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as raised:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == status
    span = telemetry.only_call()
    assert (span.attributes or {})["error.type"] == str(status)
    assert span.status.status_code.name == "ERROR"


def test_retries_are_separate_attempt_spans(telemetry: Telemetry) -> None:
    script = ScriptedResponder([Reply(error=ErrorReply(503, retry_after_seconds=0.01)), Reply(text="ok")])
    with LLMServer(script) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=1) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    first, second = telemetry.genai_spans()
    assert (first.attributes or {})["error.type"] == "503"
    assert "error.type" not in (second.attributes or {})


def test_timeout_is_recorded_with_the_exception_type(telemetry: Telemetry) -> None:
    with LLMServer(ScriptedResponder([Reply(text="late", first_byte_delay_seconds=2.0)])) as server:
        with openai.OpenAI(
            base_url=server.openai_base_url, api_key="t", max_retries=0, timeout=0.2
        ) as client:
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = telemetry.only_call()
    assert (span.attributes or {})["error.type"] == "httpx2.ReadTimeout"
    assert span.status.status_code.name == "ERROR"


def test_connection_failure_is_recorded(telemetry: Telemetry) -> None:
    with LLMServer() as server:
        url = server.openai_base_url
    with openai.OpenAI(base_url=url, api_key="t", max_retries=0) as client:
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (telemetry.only_call().attributes or {})["error.type"] == "httpx2.ConnectError"


def test_aborted_stream_ends_the_span_with_what_is_known(telemetry: Telemetry) -> None:
    reply = Reply(text="one two three four five six seven", abort_after_chunks=3)
    with LLMServer(ScriptedResponder([reply])) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            with pytest.raises(openai.APIError):
                for _ in stream:
                    pass
    span = telemetry.only_call()
    a = span.attributes or {}
    assert a["error.type"].startswith("httpx2.")
    assert span.status.status_code.name == "ERROR"


def test_early_close_by_the_app_is_not_an_error(telemetry: Telemetry, llm_server: LLMServer) -> None:
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d e f g h i j"}], stream=True
        )
        first = next(iter(stream))
        stream.close()
    assert first.choices
    span = telemetry.only_call()
    a = span.attributes or {}
    assert a["otel_llm.stream.aborted"] is True
    assert "error.type" not in a
    assert span.end_time is not None


def test_async_streaming_context_manager(telemetry: Telemetry, llm_server: LLMServer) -> None:
    async def run() -> str:
        async with openai.AsyncOpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            parts = []
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
            return "".join(parts)

    text = asyncio.run(run())
    assert text.startswith("Echo:")
    a = telemetry.only_call().attributes or {}
    assert a["otel_llm.usage.reported"] is True
    assert a["gen_ai.usage.output_tokens"] == len(text.split())


def test_app_bytes_are_unchanged(telemetry: Telemetry) -> None:
    """The raw SSE body the app reads with us equals the body read without us."""
    script = ScriptedResponder([Reply(text="same words here", response_id="chatcmpl-fixed")] * 2)
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def fetch() -> bytes:
        url = f"{server.openai_base_url}/chat/completions"
        with httpx2.Client() as client, client.stream("POST", url, json=body) as response:
            raw = b"".join(response.iter_raw())
        # The only field that may differ between two answers is the creation second.
        return re.sub(rb'"created":\s*\d+', b'"created":0', raw)

    with LLMServer(script) as server:
        with_us = fetch()
        otel_llm.uninstrument()
        without_us = fetch()
    assert with_us == without_us
    assert len(telemetry.genai_spans()) == 1


def test_content_capture_is_opt_in_and_redacted(
    monkeypatch: pytest.MonkeyPatch, llm_server: LLMServer
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    t = make_telemetry()
    otel_llm.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    try:
        with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {
                        "role": "user",
                        "content": "mail jane.doe@example.com key sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z",
                    }
                ],
            )
    finally:
        otel_llm.uninstrument()
    a = t.only_call().attributes or {}
    captured = json.loads(a["gen_ai.input.messages"])
    text = captured[0]["content"]
    assert "jane.doe@example.com" not in text
    assert "sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z" not in text
    assert "[REDACTED:" in text
    assert "Echo:" in a["gen_ai.output.messages"]


def test_retrieved_context_is_captured_only_with_content_capture(
    monkeypatch: pytest.MonkeyPatch, llm_server: LLMServer
) -> None:
    documents = ["Pro costs 39 dollars.", "Support mail: help@example.com"]
    spans = []
    for capture in ("false", "true"):
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", capture)
        t = make_telemetry()
        otel_llm.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
        try:
            with (
                otel_llm.llm_context(retrieved_context=documents),
                openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client,
            ):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        finally:
            otel_llm.uninstrument()
        spans.append(t.only_call().attributes or {})
    assert "gen_ai.retrieval.documents" not in spans[0]
    captured = json.loads(spans[1]["gen_ai.retrieval.documents"])
    assert captured[0] == "Pro costs 39 dollars."
    assert "help@example.com" not in captured[1]  # redacted like the messages


def test_non_llm_traffic_is_untouched(telemetry: Telemetry, llm_server: LLMServer) -> None:
    with httpx2.Client() as client:
        assert client.get(f"{llm_server.openai_base_url}/models").status_code == 200
        assert client.post(f"{llm_server.base_url}/healthz").status_code in (200, 404, 405)
    assert telemetry.genai_spans() == []


def test_internal_bug_never_reaches_the_app(
    telemetry: Telemetry, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug in the instrumentation")

    monkeypatch.setattr("otel_llm.openai_wire.chat_response", broken)
    monkeypatch.setitem(__import__("otel_llm.call").call._RESPONSE_PARSERS, "openai.chat", broken)
    before = guard.internal_errors
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("Echo:")
    otel_llm.flush()  # the response is parsed off the request path
    assert guard.internal_errors >= before + 1
    # The span still ends (without the response attributes the bug prevented).
    assert telemetry.only_call().end_time is not None


def test_event_only_content_mode_emits_the_details_event(
    monkeypatch: pytest.MonkeyPatch, llm_server: LLMServer
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY")
    t = make_telemetry()
    otel_llm.instrument(
        tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, logger_provider=t.logger_provider
    )
    try:
        with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        otel_llm.uninstrument()
    span = t.only_call()
    assert "gen_ai.input.messages" not in (span.attributes or {})
    (record,) = [r.log_record for r in t.logs.get_finished_logs()]
    assert record.event_name == "gen_ai.client.inference.operation.details"
    assert record.span_id == span.context.span_id
    a = record.attributes or {}
    assert "Pro plan" in str(a["gen_ai.input.messages"])
    assert "Echo:" in str(a["gen_ai.output.messages"])


def test_latest_semconv_spells_cache_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    t = make_telemetry()
    otel_llm.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    usage = Usage(input_tokens=900, output_tokens=5, cache_creation_input_tokens=800)
    try:
        with LLMServer(ScriptedResponder([Reply(text="ok", usage=usage)])) as server:
            with anthropic.Anthropic(
                base_url=server.anthropic_base_url, api_key="t", max_retries=0
            ) as client:
                client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MESSAGES)
    finally:
        otel_llm.uninstrument()
    a = t.only_call().attributes or {}
    assert a["gen_ai.usage.cache_write.input_tokens"] == 800
    assert "gen_ai.usage.cache_creation.input_tokens" not in a
