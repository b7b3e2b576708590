"""The fast stream reader agrees with the full parser on every recorded chat stream, or declines."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_llm import chat_stream_fast
from otel_llm.openai_wire import chat_stream
from otel_llm.sse import parse_events
from otel_llm.testing.llm_server import LLMServer, Reply, ScriptedResponder, ToolCall
from tests.support.cassettes import all_cassette_paths, load_cassette

STREAMS = [p for p in all_cassette_paths() if p.parent.name == "openai" and "chat_completion" in p.name]


def _fields(info: object) -> tuple[object, ...]:
    return tuple(
        getattr(info, name)
        for name in (
            "response_id",
            "response_model",
            "finish_reasons",
            "output_texts",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "usage_reported",
            "chunks",
        )
    )


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_recorded_streams_read_alike(path: Path) -> None:
    for interaction in load_cassette(path).interactions:
        if not interaction.is_sse:
            continue
        body = interaction.decoded_body
        fast = chat_stream_fast.read(body)
        if fast is not None:
            assert _fields(fast) == _fields(chat_stream(parse_events(body)))


def _body(reply: Reply, include_usage: bool) -> bytes:
    import httpx2

    with LLMServer(ScriptedResponder([reply])) as server, httpx2.Client() as client:
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}], "stream": True}
        if include_usage:
            request["stream_options"] = {"include_usage": True}
        with client.stream("POST", f"{server.openai_base_url}/chat/completions", json=request) as response:
            return response.read()


@pytest.mark.parametrize("include_usage", [True, False])
def test_local_streams_take_the_fast_path_and_agree(include_usage: bool) -> None:
    body = _body(Reply(text='He said "49 dollars" \\ per month, naïve café ✓ ' * 20), include_usage)
    fast = chat_stream_fast.read(body)
    assert fast is not None
    assert _fields(fast) == _fields(chat_stream(parse_events(body)))
    assert '"49 dollars"' in fast.output_texts[0]


def test_tool_call_streams_are_left_to_the_full_parser() -> None:
    body = _body(Reply(text="", tool_calls=[ToolCall("lookup", {"plan": "pro"})]), True)
    assert chat_stream_fast.read(body) is None


def test_the_recorded_plain_stream_takes_the_fast_path() -> None:
    (interaction,) = load_cassette("openai", "test_chat_completion_streaming").interactions
    fast = chat_stream_fast.read(interaction.decoded_body)
    assert fast is not None
    assert fast.output_texts[0]
    assert fast.usage_reported
