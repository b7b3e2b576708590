"""The local LLM server, driven by the real openai and anthropic SDKs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import anthropic
import httpx
import httpx2
import openai
import pytest

from otel_llm.testing import llm_server
from otel_llm.testing.llm_server import (
    Api,
    ErrorReply,
    LLMRequest,
    LLMServer,
    LoggedRequest,
    Reply,
    ScriptedResponder,
    ToolCall,
    Usage,
    count_tokens,
    echo_responder,
)

CLAUDE = "claude-haiku-4-5"
USER = [{"role": "user", "content": "Say this is a test"}]
WEATHER = ToolCall("get_weather", {"location": "Paris, France", "unit": "celsius"}, id="call_weather")
TIME = ToolCall("get_time", '{"timezone": "Europe/Paris"}')


@pytest.fixture
def script() -> ScriptedResponder:
    return ScriptedResponder(fallback=echo_responder)


@pytest.fixture
def server(script: ScriptedResponder) -> Iterator[LLMServer]:
    with LLMServer(script) as running:
        yield running


@pytest.fixture
def oai(server: LLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
async def aoai(server: LLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(server: LLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
async def aclaude(server: LLMServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key="test", max_retries=0
    ) as client:
        yield client


# --- OpenAI chat completions --------------------------------------------------------------------------------


def test_chat_completion_echoes_with_word_token_counts(oai: openai.OpenAI, server: LLMServer) -> None:
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.2)

    assert result.choices[0].message.content == "Echo: Say this is a test"
    assert result.choices[0].finish_reason == "stop"
    assert result.model == "gpt-4o-mini"
    assert result.id.startswith("chatcmpl-")
    assert result.usage is not None
    assert result.usage.prompt_tokens == count_tokens("Say this is a test") == 5
    assert result.usage.completion_tokens == 6
    assert result.usage.total_tokens == 11
    assert server.requests == [
        LoggedRequest("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.2})
    ]


def test_chat_completion_reports_usage_override_and_model(
    oai: openai.OpenAI, script: ScriptedResponder
) -> None:
    usage = Usage(input_tokens=100, output_tokens=7, cache_read_input_tokens=60, reasoning_output_tokens=3)
    script.add(Reply(text="hi", usage=usage, model="gpt-4o-mini-2024-07-18", response_id="chatcmpl-fixed"))

    result = oai.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert (result.id, result.model) == ("chatcmpl-fixed", "gpt-4o-mini-2024-07-18")
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (100, 7)
    assert result.usage.prompt_tokens_details is not None
    assert result.usage.prompt_tokens_details.cached_tokens == 60
    assert result.usage.completion_tokens_details is not None
    assert result.usage.completion_tokens_details.reasoning_tokens == 3


def test_chat_completion_with_n_choices(oai: openai.OpenAI) -> None:
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, n=3)

    assert [c.index for c in result.choices] == [0, 1, 2]
    assert len({c.message.content for c in result.choices}) == 3
    assert result.usage is not None
    assert result.usage.completion_tokens == sum(
        count_tokens(c.message.content or "") for c in result.choices
    )


def test_chat_completion_tool_calls(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(Reply(tool_calls=[WEATHER, TIME]))

    result = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[])

    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [
        ("call_weather", "get_weather"),
        (calls[1].id, "get_time"),
    ]
    assert calls[1].id.startswith("call_")
    assert json.loads(calls[0].function.arguments) == {"location": "Paris, France", "unit": "celsius"}
    assert calls[1].function.arguments == '{"timezone": "Europe/Paris"}'


def test_chat_stream_sends_usage_chunk_only_when_asked(oai: openai.OpenAI, server: LLMServer) -> None:
    with_usage = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    without = list(oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))

    text = "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices)
    assert text == "Echo: Say this is a test"
    assert with_usage[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in with_usage if c.choices][-1] == "stop"
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert (with_usage[-1].usage.prompt_tokens, with_usage[-1].usage.completion_tokens) == (5, 6)
    assert all(c.usage is None for c in with_usage[:-1])
    assert len(without) == len(with_usage) - 1
    assert all(c.choices and c.usage is None for c in without)
    assert len({c.id for c in with_usage}) == 1


def test_chat_stream_interleaves_n_choices(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(Reply(choice_texts=["one two three", "four"]))

    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, n=2))

    texts = ["", ""]
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ["one two three", "four"]
    assert [c.choices[0].index for c in chunks[:4]] == [0, 1, 0, 1]


def test_chat_stream_splits_tool_call_arguments_across_chunks(
    oai: openai.OpenAI, script: ScriptedResponder
) -> None:
    script.add(Reply(tool_calls=[WEATHER, TIME]))

    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))

    calls: dict[int, dict[str, str]] = {}
    pieces_per_call: dict[int, int] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
                pieces_per_call[delta.index] = pieces_per_call.get(delta.index, 0) + 1
    assert calls[0]["id"] == "call_weather"
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris, France", "unit": "celsius"}
    assert json.loads(calls[1]["arguments"]) == {"timezone": "Europe/Paris"}
    assert min(pieces_per_call.values()) > 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_async_chat_completion_and_stream(aoai: openai.AsyncOpenAI) -> None:
    result = await aoai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    stream = await aoai.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert result.choices[0].message.content == "Echo: Say this is a test"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: Say this is a test"
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 11


def test_sdk_with_user_supplied_httpx_client(server: LLMServer) -> None:
    with (
        httpx.Client() as http_client,
        openai.OpenAI(base_url=server.openai_base_url, api_key="test", http_client=http_client) as client,
    ):
        result = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert result.choices[0].message.content == "Echo: Say this is a test"


def test_azure_deployment_path(server: LLMServer) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=server.base_url, api_version="2024-10-21", api_key="test", max_retries=0
    ) as client:
        result = client.chat.completions.create(model="my-gpt4o", messages=USER)
        vectors = client.embeddings.create(model="my-embedder", input="hello")

    assert result.choices[0].message.content == "Echo: Say this is a test"
    assert len(vectors.data[0].embedding) == 16
    assert [r.path for r in server.requests] == [
        "/openai/deployments/my-gpt4o/chat/completions",
        "/openai/deployments/my-embedder/embeddings",
    ]


# --- OpenAI responses, embeddings, models -------------------------------------------------------------------


def test_responses_create(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(
        Reply(text="Hello there", usage=Usage(input_tokens=40, output_tokens=2, cache_read_input_tokens=32))
    )

    result = oai.responses.create(model="gpt-4o-mini", input="Say hello", instructions="Be brief.")

    assert result.output_text == "Hello there"
    assert result.status == "completed"
    assert result.instructions == "Be brief."
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (40, 2)
    assert result.usage.input_tokens_details.cached_tokens == 32


def test_responses_create_function_call_and_incomplete(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(Reply(tool_calls=[WEATHER]), Reply(text="cut", finish_reason="length"))

    called = oai.responses.create(model="gpt-4o-mini", input="weather?")
    cut = oai.responses.create(model="gpt-4o-mini", input="long")

    call = called.output[0]
    assert call.type == "function_call"
    assert (call.name, call.call_id) == ("get_weather", "call_weather")
    assert json.loads(call.arguments) == {"location": "Paris, France", "unit": "celsius"}
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


def test_responses_stream_events(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(Reply(text="Hello there friend", usage=Usage(cache_read_input_tokens=1)))

    events = list(oai.responses.create(model="gpt-4o-mini", input="Say hello", stream=True))

    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 3
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there friend"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "Hello there friend"
    assert completed.response.usage is not None
    assert completed.response.usage.input_tokens == 2
    assert completed.response.usage.input_tokens_details.cached_tokens == 1


async def test_async_responses_stream_with_function_call(
    aoai: openai.AsyncOpenAI, script: ScriptedResponder
) -> None:
    script.add(Reply(text="Checking.", tool_calls=[WEATHER]))

    stream = await aoai.responses.create(model="gpt-4o-mini", input="weather?", stream=True)
    events = [event async for event in stream]

    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"location": "Paris, France", "unit": "celsius"}
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == ["message", "function_call"]


def test_embeddings_are_deterministic_in_float_and_base64(oai: openai.OpenAI) -> None:
    default = oai.embeddings.create(model="text-embedding-3-small", input=["a b c", "d"])
    floats = oai.embeddings.create(model="text-embedding-3-small", input="a b c", encoding_format="float")
    sized = oai.embeddings.create(model="text-embedding-3-small", input="a b c", dimensions=5)

    assert [d.index for d in default.data] == [0, 1]
    assert default.usage.prompt_tokens == 4
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert default.data[0].embedding != default.data[1].embedding
    assert sum(v * v for v in floats.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
    assert len(sized.data[0].embedding) == 5


def test_models_list_for_both_providers(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]
    assert CLAUDE in [m.id for m in claude.models.list()]


# --- Anthropic messages -------------------------------------------------------------------------------------


def test_anthropic_message(claude: anthropic.Anthropic, script: ScriptedResponder) -> None:
    script.add(
        Reply(
            text="Hi!",
            usage=Usage(input_tokens=50, cache_read_input_tokens=30, cache_creation_input_tokens=5),
        )
    )

    message = claude.messages.create(model=CLAUDE, max_tokens=64, system="Be kind.", messages=USER)

    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hi!"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 15  # Anthropic reports the uncached remainder
    assert message.usage.cache_read_input_tokens == 30
    assert message.usage.cache_creation_input_tokens == 5
    assert message.usage.output_tokens == 1


def test_anthropic_default_usage_counts_system_prompt(claude: anthropic.Anthropic, server: LLMServer) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=64, system="Be kind.", messages=USER)

    assert message.usage.input_tokens == count_tokens("Be kind. Say this is a test")
    assert server.requests[0].path == "/v1/messages"
    assert server.requests[0].body["system"] == "Be kind."


def test_anthropic_stream_events_and_usage(claude: anthropic.Anthropic, script: ScriptedResponder) -> None:
    usage = Usage(input_tokens=20, output_tokens=4, cache_read_input_tokens=8, cache_creation_input_tokens=2)
    script.add(Reply(text="one two three four", usage=usage, finish_reason="max_tokens"))

    events = list(claude.messages.create(model=CLAUDE, max_tokens=4, messages=USER, stream=True))

    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_delta") == 4
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == 10
    assert start.message.usage.cache_read_input_tokens == 8
    assert start.message.usage.cache_creation_input_tokens == 2
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "max_tokens"
    assert delta.usage.output_tokens == 4


def test_anthropic_stream_helper_accumulates_tool_use(
    claude: anthropic.Anthropic, script: ScriptedResponder
) -> None:
    script.add(Reply(text="Let me check.", tool_calls=[WEATHER]))

    with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
        events = list(stream)
        final = stream.get_final_message()

    json_deltas = [
        e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(json_deltas) > 2
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use"
    assert (tool.id, tool.name) == ("call_weather", "get_weather")
    assert tool.input == {"location": "Paris, France", "unit": "celsius"}
    assert final.stop_reason == "tool_use"


async def test_async_anthropic_message_and_stream(
    aclaude: anthropic.AsyncAnthropic, script: ScriptedResponder
) -> None:
    script.add(Reply(tool_calls=[TIME]), "streamed reply")

    message = await aclaude.messages.create(model=CLAUDE, max_tokens=64, messages=USER)
    async with aclaude.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()

    assert message.content[0].type == "tool_use"
    assert message.content[0].input == {"timezone": "Europe/Paris"}
    assert message.stop_reason == "tool_use"
    assert text == "streamed reply"
    assert final.usage.output_tokens == 2


# --- errors, delays, aborted streams ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_openai_errors_raise_sdk_types(
    oai: openai.OpenAI, script: ScriptedResponder, status: int, error_class: type[openai.APIStatusError]
) -> None:
    script.add(Reply(error=ErrorReply(status, "nope", code="some_code", retry_after_seconds=2)))

    with pytest.raises(error_class) as raised:
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert raised.value.status_code == status
    assert raised.value.code == "some_code"
    assert raised.value.body == {
        "message": "nope",
        "type": raised.value.type,
        "param": None,
        "code": "some_code",
    }
    assert raised.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.InternalServerError, "overloaded_error"),
    ],
)
def test_anthropic_errors_raise_sdk_types(
    claude: anthropic.Anthropic,
    script: ScriptedResponder,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    script.add(Reply(error=ErrorReply(status, "nope")))

    with pytest.raises(error_class) as raised:
        claude.messages.create(model=CLAUDE, max_tokens=8, messages=USER)

    assert raised.value.status_code == status
    assert raised.value.body == {"type": "error", "error": {"type": error_type, "message": "nope"}}
    assert "retry-after" not in raised.value.response.headers


def test_sdk_retry_honours_retry_after(server: LLMServer, script: ScriptedResponder) -> None:
    script.add(Reply(error=ErrorReply(429, retry_after_seconds=0.01)), "second time lucky")

    with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=1) as client:
        result = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert result.choices[0].message.content == "second time lucky"
    assert len(server.requests) == 2


def test_exhausted_script_and_failing_responder_answer_500(server: LLMServer, oai: openai.OpenAI) -> None:
    server.responder = ScriptedResponder()
    with pytest.raises(openai.InternalServerError, match="no reply left"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)

    def broken(request: LLMRequest) -> Reply:
        raise ValueError("bad responder")

    server.responder = broken
    with pytest.raises(openai.InternalServerError, match="bad responder"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)


def test_responder_sees_parsed_request(
    oai: openai.OpenAI, claude: anthropic.Anthropic, script: ScriptedResponder
) -> None:
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "q?"}]},
        ],
        max_tokens=9,
    )
    claude.messages.create(model=CLAUDE, max_tokens=8, system="be brief", messages=USER, stream=True).close()
    oai.responses.create(model="gpt-4o-mini", input="hi", instructions="inst")

    chat, messages, responses = script.requests
    assert (chat.api, chat.model, chat.stream, chat.system, chat.last_user_text) == (
        Api.CHAT_COMPLETIONS,
        "gpt-4o-mini",
        False,
        "sys",
        "q?",
    )
    assert chat.params["max_tokens"] == 9
    assert chat.headers["authorization"] == "Bearer test"
    assert (messages.api, messages.api.provider, messages.stream, messages.system) == (
        Api.ANTHROPIC_MESSAGES,
        "anthropic",
        True,
        "be brief",
    )
    assert (responses.api, responses.prompt_text, responses.last_user_text) == (
        Api.RESPONSES,
        "inst\nhi",
        "hi",
    )


def test_unknown_path_and_bad_json(server: LLMServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        missing = client.post("/v1/nothing", json={})
        bad = client.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        health = client.get("/healthz")

    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert bad.status_code == 400
    assert health.json() == {"status": "ok"}


def test_stream_is_flushed_per_chunk(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(Reply(text="a b c d e f", first_byte_delay_seconds=0.05, chunk_delay_seconds=0.08))

    started = time.perf_counter()
    arrivals = [
        time.perf_counter() - started
        for _ in oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    ]

    assert arrivals[0] >= 0.05
    # Eight events with 80 ms between them: the first must arrive long before the last.
    assert arrivals[-1] - arrivals[0] >= 0.4
    assert arrivals[1] - arrivals[0] >= 0.06


def test_abort_mid_stream_raises_connection_error(oai: openai.OpenAI, script: ScriptedResponder) -> None:
    script.add(Reply(text="a b c d e f", abort_after_chunks=3))

    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    received = [next(stream) for _ in range(3)]
    with pytest.raises(openai.APIConnectionError):
        next(stream)

    assert len(received) == 3


def test_abort_before_response_and_in_anthropic_stream(
    oai: openai.OpenAI, claude: anthropic.Anthropic, script: ScriptedResponder
) -> None:
    script.add(Reply(abort_after_chunks=0), Reply(text="x y z", abort_after_chunks=4))

    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    # The anthropic SDK lets the transport's error through unwrapped when a stream breaks.
    with pytest.raises(httpx2.RemoteProtocolError):
        list(claude.messages.create(model=CLAUDE, max_tokens=8, messages=USER, stream=True))


def test_error_inside_a_started_stream(
    oai: openai.OpenAI, claude: anthropic.Anthropic, script: ScriptedResponder
) -> None:
    failure = ErrorReply(503, "overloaded mid-stream", code="server_is_overloaded")
    script.add(*[Reply(text="a b c d", error=failure, error_after_chunks=2)] * 3)

    chat = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    assert [next(chat).choices[0].delta.role for _ in range(2)] == ["assistant", None]
    with pytest.raises(openai.APIError, match="overloaded mid-stream"):
        next(chat)
    events = list(oai.responses.create(model="gpt-4o-mini", input="x", stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "error"]
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        list(claude.messages.create(model=CLAUDE, max_tokens=8, messages=USER, stream=True))


# --- server lifecycle ---------------------------------------------------------------------------------------


def test_keep_alive_serves_many_calls_on_one_connection(oai: openai.OpenAI, server: LLMServer) -> None:
    for _ in range(200):
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert server.connections_accepted == 1
    assert len(server.requests) == 200
    server.clear_requests()
    assert server.requests == []


def test_request_log_is_bounded() -> None:
    with LLMServer(max_logged_requests=2) as server, httpx.Client(base_url=server.base_url) as client:
        for i in range(3):
            client.post("/v1/embeddings", json={"model": "m", "input": str(i)})
        assert [r.body["input"] for r in server.requests] == ["1", "2"]


def test_stop_is_prompt_with_idle_and_delayed_connections() -> None:
    arrived = threading.Event()

    def slow(request: LLMRequest) -> Reply:
        arrived.set()
        return Reply(text="slow", first_byte_delay_seconds=60)

    errors: list[Exception] = []

    def call_slowly(client: httpx.Client) -> None:
        try:
            client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
        except httpx.HTTPError as exc:
            errors.append(exc)

    server = LLMServer(slow).start()
    with (
        httpx.Client(base_url=server.base_url, timeout=120) as idle,
        httpx.Client(base_url=server.base_url, timeout=120) as waiting,
    ):
        idle.get("/healthz")  # leaves an idle keep-alive connection behind
        caller = threading.Thread(target=call_slowly, args=(waiting,))
        caller.start()
        assert arrived.wait(10)
        started = time.perf_counter()
        server.stop()
        stopped_after = time.perf_counter() - started
        caller.join(10)

    assert stopped_after < 5
    assert not caller.is_alive()
    assert len(errors) == 1


def test_lifecycle_misuse_is_reported() -> None:
    server = LLMServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    server.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    finally:
        server.stop()
    server.stop()


def test_cli_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_llm.testing.llm_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split()[3]
        with openai.OpenAI(base_url=url, api_key="test", max_retries=0) as client:
            result = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert result.choices[0].message.content == "Echo: Say this is a test"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_public_api_is_pinned() -> None:
    assert sorted(llm_server.__all__) == [
        "Api",
        "ErrorReply",
        "LLMRequest",
        "LLMServer",
        "LoggedRequest",
        "Reply",
        "Responder",
        "ScriptedResponder",
        "ToolCall",
        "Usage",
        "count_tokens",
        "echo_responder",
        "main",
    ]
