"""The real `openai` SDK against recorded OpenAI responses, replayed over HTTP: span and metric contract."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Telemetry
from tests.support.cassettes import CassetteServer, load_cassette

# Each case: cassette name, SDK resource path, whether the SDK call streams.
CASES = [
    ("test_chat_completion_with_content", "chat.completions"),
    ("test_chat_completion_multiple_choices", "chat.completions"),
    ("test_chat_completion_tool_calls_no_content", "chat.completions"),
    ("test_chat_completion_streaming", "chat.completions"),
    ("test_chat_completion_multiple_choices_streaming", "chat.completions"),
    ("test_chat_completion_multiple_tools_streaming_with_content", "chat.completions"),
    ("test_responses_create_basic[content_mode0]", "responses"),
    ("test_responses_create_aggregates_cache_tokens[content_mode0]", "responses"),
    ("test_responses_create_streaming[content_mode0]", "responses"),
    ("test_embeddings_no_content", "embeddings"),
    ("test_embeddings_with_batch_input", "embeddings"),
]


def _resource(client: Any, path: str) -> Any:
    for part in path.split("."):
        client = getattr(client, part)
    return client


def _expected(interaction: Any) -> dict[str, Any]:
    """What the span must say, read straight from the recorded response (independently of otel_llm)."""
    body = interaction.decoded_body
    if interaction.is_sse:
        events = [
            json.loads(line[5:])
            for line in body.decode().splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"
        ]
        usage = next((e["usage"] for e in reversed(events) if e.get("usage")), None)
        final = next((e["response"] for e in events if e.get("type") == "response.completed"), None)
        if final is not None:
            return {
                "id": final["id"],
                "model": final["model"],
                "usage": final["usage"],
                "chunks": len(events),
            }
        return {"id": events[0]["id"], "model": events[0]["model"], "usage": usage, "chunks": len(events)}
    doc = interaction.response_json()
    return {"id": doc.get("id"), "model": doc["model"], "usage": doc.get("usage"), "chunks": None}


def _call(client: Any, path: str, request: dict[str, Any]) -> None:
    result = _resource(client, path).create(**request)
    if request.get("stream"):
        for _ in result:
            pass


async def _acall(client: Any, path: str, request: dict[str, Any]) -> None:
    result = await _resource(client, path).create(**request)
    if request.get("stream"):
        async for _ in result:
            pass


def _play(server: CassetteServer, path: str, requests: list[dict[str, Any]], mode: str) -> None:
    """Send the recorded requests through the SDK, in the given client mode, closing what it opens."""
    if mode == "async":

        async def run_all() -> None:
            async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
                for request in requests:
                    await _acall(client, path, request)

        asyncio.run(run_all())
        return
    with contextlib.ExitStack() as stack:
        http_client = stack.enter_context(httpx.Client()) if mode == "httpx-client" else None
        client = stack.enter_context(
            openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, http_client=http_client)
        )
        for request in requests:
            _call(client, path, request)


@pytest.mark.parametrize(("name", "path"), CASES)
@pytest.mark.parametrize("mode", ["sync", "async", "httpx-client"])
def test_recorded_call_produces_semconv_span(telemetry: Telemetry, name: str, path: str, mode: str) -> None:
    cassette = load_cassette("openai", name)
    requests = [i.request_json() for i in cassette.interactions]
    with CassetteServer(cassette) as server:
        _play(server, path, requests, mode)
        server.assert_all_played()

    spans = telemetry.genai_spans()
    assert len(spans) == len(requests)
    for span, interaction, request in zip(spans, cassette.interactions, requests, strict=True):
        _check_span(span, interaction, request, path)

    durations = telemetry.metric_points("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == len(requests)
    assert list(durations[0].explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    if _expected(cassette.interactions[0])["usage"]:
        tokens = telemetry.metric_points("gen_ai.client.token.usage")
        assert {p.attributes["gen_ai.token.type"] for p in tokens} >= {"input"}
        assert list(tokens[0].explicit_bounds)[:3] == [1, 4, 16]


def _check_span(span: Any, interaction: Any, request: dict[str, Any], path: str) -> None:
    expected = _expected(interaction)
    a = dict(span.attributes or {})
    operation = "embeddings" if path == "embeddings" else "chat"
    assert span.name == f"{operation} {request['model']}"
    assert span.kind.name == "CLIENT"
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == request["model"]
    assert a["gen_ai.response.model"] == expected["model"]
    assert a["server.address"] == "127.0.0.1"
    assert "error.type" not in a
    assert len(a["otel_llm.input.hash"]) == 64
    if expected["id"] and path != "embeddings":
        assert a["gen_ai.response.id"] == expected["id"]
    usage = expected["usage"]
    if usage:
        assert a["otel_llm.usage.reported"] is True
        assert a["gen_ai.usage.input_tokens"] == usage.get("prompt_tokens", usage.get("input_tokens"))
        if path != "embeddings":
            assert a["gen_ai.usage.output_tokens"] == usage.get(
                "completion_tokens", usage.get("output_tokens")
            )
    else:
        assert a["otel_llm.usage.reported"] is False
        assert "gen_ai.usage.input_tokens" not in a
    if expected["chunks"] is not None:
        assert a["otel_llm.stream.chunks"] == expected["chunks"]
        assert a["gen_ai.response.time_to_first_chunk"] > 0
        assert "otel_llm.stream.aborted" not in a
    # Content is off by default: no prompt or completion text on the span.
    assert "gen_ai.input.messages" not in a
    assert "gen_ai.output.messages" not in a


def _run(name: str, path: str = "chat.completions") -> dict[str, Any]:
    cassette = load_cassette("openai", name)
    requests = [i.request_json() for i in cassette.interactions]
    with CassetteServer(cassette) as server:
        _play(server, path, requests, "sync")
    return requests[0]


def test_multiple_choices_report_every_finish_reason(telemetry: Telemetry) -> None:
    request = _run("test_chat_completion_multiple_choices")
    a = telemetry.only_call().attributes or {}
    assert a["gen_ai.request.choice.count"] == request["n"]
    assert len(a["gen_ai.response.finish_reasons"]) == request["n"]


def test_streamed_multiple_choices_report_every_finish_reason(telemetry: Telemetry) -> None:
    request = _run("test_chat_completion_multiple_choices_streaming")
    a = telemetry.only_call().attributes or {}
    assert len(a["gen_ai.response.finish_reasons"]) == request["n"]


def test_tool_calls_are_counted_and_named(telemetry: Telemetry) -> None:
    _run("test_chat_completion_tool_calls_no_content")
    a = telemetry.genai_spans()[0].attributes or {}
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert a["otel_llm.tool_calls.count"] == 2
    assert set(a["otel_llm.tool_calls.names"]) == {"get_current_weather"}


def test_streamed_tool_calls_are_assembled_from_deltas(telemetry: Telemetry) -> None:
    _run("test_chat_completion_multiple_tools_streaming_with_content")
    a = telemetry.only_call().attributes or {}
    assert a["otel_llm.tool_calls.count"] == 2
    assert list(a["otel_llm.tool_calls.names"]) == ["get_current_weather", "get_current_weather"]


def test_responses_cache_tokens_field_is_carried(telemetry: Telemetry) -> None:
    cassette = load_cassette("openai", "test_responses_create_aggregates_cache_tokens[content_mode0]")
    usage = cassette.interactions[-1].response_json()["usage"]
    _run("test_responses_create_aggregates_cache_tokens[content_mode0]", "responses")
    a = telemetry.genai_spans()[-1].attributes or {}
    # The recording has 0 cached tokens; non-zero figures are covered against the local server.
    assert a["gen_ai.usage.cache_read.input_tokens"] == usage["input_tokens_details"]["cached_tokens"]
    assert a["gen_ai.usage.input_tokens"] == usage["input_tokens"]


def test_not_found_is_an_error_and_the_sdk_error_reaches_the_app(telemetry: Telemetry) -> None:
    cassette = load_cassette("openai", "test_chat_completion_404")
    request = cassette.interactions[0].request_json()
    with CassetteServer(cassette) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(**request)
    span = telemetry.only_call()
    assert (span.attributes or {})["error.type"] == "404"
    assert span.status.status_code.name == "ERROR"
    points = telemetry.metric_points("gen_ai.client.operation.duration")
    assert points[0].attributes["error.type"] == "404"


def test_raw_response_streaming_keeps_working(telemetry: Telemetry) -> None:
    cassette = load_cassette("openai", "test_chat_completion_with_raw_response_streaming")
    request = cassette.interactions[0].request_json()
    with CassetteServer(cassette) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(**request)
            assert raw.http_response.status_code == 200
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text
    a = telemetry.only_call().attributes or {}
    assert a["otel_llm.stream.chunks"] > 1
