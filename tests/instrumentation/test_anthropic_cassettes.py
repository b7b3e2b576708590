"""The real `anthropic` SDK against recorded Anthropic responses, replayed over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import anthropic
import pytest

from tests.conftest import Telemetry
from tests.support.cassettes import CassetteServer, load_cassette

# The recordings use models the SDK now warns about; the warning is the SDK's, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

CASES = [
    "test_anthropic_message_create_legacy",
    "test_anthropic_message_streaming_legacy",
    "test_anthropic_tools_legacy",
    "test_anthropic_tools_streaming_legacy",
    "test_anthropic_prompt_caching_legacy",
    "test_anthropic_prompt_caching_stream_legacy",
]


def _recorded_usage(interaction: Any) -> tuple[dict[str, Any], list[str], int | None]:
    """(usage merged as Anthropic reports it, stop reasons, event count) read from the recording."""
    if interaction.is_sse:
        usage: dict[str, Any] = {}
        reasons: list[str] = []
        events = [
            json.loads(line[5:])
            for line in interaction.decoded_body.decode().splitlines()
            if line.startswith("data:")
        ]
        for event in events:
            if event["type"] == "message_start":
                usage.update({k: v for k, v in event["message"]["usage"].items() if v is not None})
            if event["type"] == "message_delta":
                usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                reasons = [event["delta"]["stop_reason"]]
        return usage, reasons, len(events)
    doc = interaction.response_json()
    return doc["usage"], [doc["stop_reason"]], None


def _create(client: anthropic.Anthropic, request: dict[str, Any]) -> None:
    result = client.messages.create(**request)
    if request.get("stream"):
        for _ in result:
            pass


@pytest.mark.parametrize("name", CASES)
def test_recorded_messages_produce_semconv_spans(telemetry: Telemetry, name: str) -> None:
    cassette = load_cassette("anthropic", name)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(CassetteServer(cassette))
        client = stack.enter_context(anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0))
        for interaction in cassette.interactions:
            _create(client, interaction.request_json())
        server.assert_all_played()

    spans = telemetry.genai_spans()
    assert len(spans) == len(cassette.interactions)
    for span, interaction in zip(spans, cassette.interactions, strict=True):
        a = dict(span.attributes or {})
        request = interaction.request_json()
        usage, reasons, events = _recorded_usage(interaction)
        assert span.name == f"chat {request['model']}"
        assert a["gen_ai.provider.name"] == "anthropic"
        assert a["gen_ai.request.max_tokens"] == request["max_tokens"]
        assert list(a["gen_ai.response.finish_reasons"]) == reasons
        cache_read = usage.get("cache_read_input_tokens") or 0
        cache_write = usage.get("cache_creation_input_tokens") or 0
        # The conventions count cached tokens as input; Anthropic reports them apart.
        assert a["gen_ai.usage.input_tokens"] == usage["input_tokens"] + cache_read + cache_write
        assert a["gen_ai.usage.output_tokens"] == usage["output_tokens"]
        if "cache_read_input_tokens" in usage:
            assert a["gen_ai.usage.cache_read.input_tokens"] == cache_read
            assert a["gen_ai.usage.cache_creation.input_tokens"] == cache_write
        if events is not None:
            assert a["otel_llm.stream.chunks"] == events
            assert a["gen_ai.response.time_to_first_chunk"] > 0


def test_prompt_caching_write_then_read(telemetry: Telemetry) -> None:
    cassette = load_cassette("anthropic", "test_anthropic_prompt_caching_legacy")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(CassetteServer(cassette))
        client = stack.enter_context(anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0))
        for interaction in cassette.interactions:
            _create(client, interaction.request_json())
    first, second = telemetry.genai_spans()[:2]
    assert (first.attributes or {})["gen_ai.usage.cache_creation.input_tokens"] > 0
    assert (second.attributes or {})["gen_ai.usage.cache_read.input_tokens"] > 0


def test_streamed_tool_use_is_assembled(telemetry: Telemetry) -> None:
    cassette = load_cassette("anthropic", "test_anthropic_tools_streaming_legacy")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(CassetteServer(cassette))
        client = stack.enter_context(anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0))
        _create(client, cassette.interactions[0].request_json())
    a = telemetry.only_call().attributes or {}
    assert a["otel_llm.tool_calls.count"] >= 1
    assert a["gen_ai.response.finish_reasons"] == ("tool_use",)


def test_async_stream_manager(telemetry: Telemetry) -> None:
    cassette = load_cassette("anthropic", "test_anthropic_message_stream_manager_legacy")
    request = cassette.interactions[0].request_json()
    request.pop("stream", None)

    async def run() -> str:
        async with anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0) as client:
            async with client.messages.stream(**request) as stream:
                return await stream.get_final_text()

    with CassetteServer(cassette) as server:
        text = asyncio.run(run())
    assert text
    a = telemetry.only_call().attributes or {}
    assert a["gen_ai.request.stream"] is True
    assert a["otel_llm.usage.reported"] is True
    assert "otel_llm.stream.aborted" not in a
