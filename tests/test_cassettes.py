"""Recorded OpenAI and Anthropic traffic replays through the real SDKs."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.resources.messages.messages import DEPRECATED_MODELS
from support import cassettes
from support.cassettes import (
    Cassette,
    CassetteServer,
    all_cassette_paths,
    load_cassette,
    require_cassettes_dir,
)

CURRENT_CLAUDE = "claude-haiku-4-5"


@pytest.fixture(autouse=True)
def _cassettes_present() -> None:
    require_cassettes_dir()


def _split_known(method: Callable[..., Any], body: dict[str, Any]) -> dict[str, Any]:
    """Recorded request bodies as SDK keyword arguments; what today's signature lacks goes in extra_body."""
    known = inspect.signature(method).parameters
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    return {**kwargs, "extra_body": extra} if extra else kwargs


def _drain(result: Any) -> Any:
    if isinstance(result, (openai.Stream, anthropic.Stream)):
        return list(result)
    return result


def replay(cassette: Cassette) -> list[Any]:
    """Send every recorded request through the matching SDK method; returns results or raised errors."""
    outcomes: list[Any] = []
    paths = {interaction.path for interaction in cassette.interactions}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(CassetteServer(cassette))
        # Only the SDK the cassette needs: building a client is the slow part of a replay.
        if paths & {"/v1/chat/completions", "/v1/responses", "/v1/embeddings"}:
            oai = stack.enter_context(openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0))
        if paths & {"/v1/messages", "/v1/complete"}:
            claude = stack.enter_context(
                anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
            )
        for interaction in cassette.interactions:
            body = interaction.request_json()
            call: Callable[..., Any]
            if interaction.path == "/v1/chat/completions":
                call = oai.chat.completions.create
            elif interaction.path == "/v1/responses":
                call = oai.responses.create
            elif interaction.path == "/v1/embeddings":
                call = oai.embeddings.create
            elif interaction.path == "/v1/messages":
                call = claude.messages.create
                if body.get("model") in DEPRECATED_MODELS:
                    body["model"] = CURRENT_CLAUDE  # the SDK warns on retired names; the reply is recorded
            elif interaction.path == "/v1/complete":  # the legacy API, gone from the SDK's resources

                def call(**kw: Any) -> Any:
                    return claude.post("/v1/complete", body=kw, cast_to=object)

            else:
                raise AssertionError(f"no SDK method for {interaction.path}")
            kwargs = _split_known(call, body) if interaction.path != "/v1/complete" else body
            try:
                outcomes.append(_drain(call(**kwargs)))
            except (openai.APIStatusError, anthropic.APIStatusError) as exc:
                outcomes.append(exc)
            if interaction.status >= 400:
                assert getattr(outcomes[-1], "status_code", None) == interaction.status
        server.assert_all_played()
    return outcomes


# --- loading ------------------------------------------------------------------------------------------------


def test_cassettes_directory_is_found() -> None:
    assert len(all_cassette_paths()) >= 80
    assert {p.parent.name for p in all_cassette_paths()} == {"openai", "anthropic"}


@pytest.mark.parametrize("path", all_cassette_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_cassette_loads_and_decodes(path: Path) -> None:
    cassette = load_cassette(path)

    assert cassette.interactions
    for interaction in cassette.interactions:
        assert interaction.method == "POST"
        assert interaction.path.startswith("/v1/")
        assert isinstance(interaction.request_json(), dict)
        if interaction.is_sse:
            assert interaction.decoded_body.lstrip().startswith((b"event:", b"data:"))
        else:
            assert isinstance(interaction.response_json(), dict)


@pytest.mark.parametrize("path", all_cassette_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_cassette_replays_through_the_sdk(path: Path) -> None:
    cassette = load_cassette(path)

    outcomes = replay(cassette)

    assert len(outcomes) == len(cassette.interactions)


def test_missing_directory_skips_with_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cassettes, "CASSETTES_DIR", tmp_path / "absent")

    with pytest.raises(pytest.skip.Exception, match="absent"):
        require_cassettes_dir()
    assert all_cassette_paths() == []


# --- OpenAI -------------------------------------------------------------------------------------------------


def _recorded(cassette: Cassette, index: int = 0) -> Any:
    return cassette.interactions[index].response_json()


def test_chat_completion(request: pytest.FixtureRequest) -> None:
    cassette = load_cassette("openai", "test_chat_completion_with_content")
    recorded = _recorded(cassette)

    [result] = replay(cassette)

    assert result.id == recorded["id"]
    assert result.choices[0].message.content == recorded["choices"][0]["message"]["content"]
    assert result.usage.prompt_tokens == recorded["usage"]["prompt_tokens"]
    assert result.usage.completion_tokens == recorded["usage"]["completion_tokens"]


def test_chat_completion_streaming_with_usage() -> None:
    [chunks] = replay(load_cassette("openai", "test_chat_completion_streaming"))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == '"This is a test."'
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 5)


def test_chat_completion_multiple_choices_streaming() -> None:
    [chunks] = replay(load_cassette("openai", "test_chat_completion_multiple_choices_streaming"))

    indexes = {choice.index for chunk in chunks for choice in chunk.choices}
    assert indexes == {0, 1}


def test_chat_completion_streamed_tool_calls() -> None:
    [chunks] = replay(load_cassette("openai", "test_chat_completion_multiple_tools_streaming_with_content"))

    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.function and delta.function.name:
                names[delta.index] = delta.function.name
            arguments[delta.index] = arguments.get(delta.index, "") + (
                (delta.function.arguments or "") if delta.function else ""
            )
    assert len(names) == 2
    assert all(isinstance(json.loads(a), dict) for a in arguments.values())


async def test_async_chat_streaming_replay() -> None:
    cassette = load_cassette("openai", "test_chat_completion_streaming")
    body = cassette.interactions[0].request_json()
    with CassetteServer(cassette) as server:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
            stream = await client.chat.completions.create(**body)
            chunks = [chunk async for chunk in stream]
        server.assert_all_played()

    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 17


def test_responses_create_and_cache_tokens() -> None:
    cassette = load_cassette("openai", "test_responses_create_aggregates_cache_tokens[content_mode0]")
    recorded = _recorded(cassette)

    [result] = replay(cassette)

    assert result.id == recorded["id"]
    assert result.usage.input_tokens == recorded["usage"]["input_tokens"]
    assert (
        result.usage.input_tokens_details.cached_tokens
        == recorded["usage"]["input_tokens_details"]["cached_tokens"]
    )


def test_responses_streaming() -> None:
    [events] = replay(load_cassette("openai", "test_responses_create_streaming[content_mode0]"))

    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text
    assert events[-1].response.usage.output_tokens > 0


def test_embeddings_batch() -> None:
    cassette = load_cassette("openai", "test_embeddings_with_batch_input")
    recorded = _recorded(cassette)

    [result] = replay(cassette)

    assert len(result.data) == len(recorded["data"])
    assert result.usage.prompt_tokens == recorded["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    ("name", "error_class"),
    [
        ("test_chat_completion_404", openai.NotFoundError),
        ("test_embeddings_model_not_found", openai.NotFoundError),
        ("test_responses_create_api_error[content_mode0]", openai.BadRequestError),
    ],
)
def test_recorded_errors_raise_sdk_types(name: str, error_class: type[Exception]) -> None:
    [error] = replay(load_cassette("openai", name))

    assert isinstance(error, error_class)


# --- Anthropic ----------------------------------------------------------------------------------------------


def test_anthropic_message_forwards_gzip_body() -> None:
    cassette = load_cassette("anthropic", "test_anthropic_message_create_legacy")
    interaction = cassette.interactions[0]
    assert interaction.is_gzip
    body = interaction.request_json() | {"model": CURRENT_CLAUDE}

    with (
        CassetteServer(cassette) as server,
        anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0) as client,
    ):
        raw = client.messages.with_raw_response.create(**body)
        message = raw.parse()

    assert raw.headers["content-encoding"] == "gzip"
    recorded = interaction.response_json()
    assert message.id == recorded["id"]
    assert message.content[0].type == "text"
    assert message.content[0].text == recorded["content"][0]["text"]
    assert message.usage.output_tokens == recorded["usage"]["output_tokens"]


def test_gzip_body_is_decoded_for_a_client_that_does_not_accept_it() -> None:
    cassette = load_cassette("anthropic", "test_anthropic_message_create_legacy")
    with CassetteServer(cassette) as server, httpx.Client(headers={"accept-encoding": "identity"}) as client:
        response = client.post(f"{server.url}/v1/messages", json={})

    assert "content-encoding" not in response.headers
    assert response.json() == cassette.interactions[0].response_json()


def test_anthropic_streaming() -> None:
    [events] = replay(load_cassette("anthropic", "test_anthropic_message_streaming_legacy"))

    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert events[0].message.usage.input_tokens == 17
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0


def test_anthropic_streamed_tool_use_with_stream_helper() -> None:
    cassette = load_cassette("anthropic", "test_anthropic_tools_streaming_legacy")
    body = cassette.interactions[0].request_json() | {"model": CURRENT_CLAUDE}
    body.pop("stream")

    with (
        CassetteServer(cassette) as server,
        anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0) as client,
        client.messages.stream(**body) as stream,
    ):
        final = stream.get_final_message()

    tools = [block for block in final.content if block.type == "tool_use"]
    assert tools
    assert all(isinstance(tool.input, dict) and tool.input for tool in tools)
    assert final.stop_reason == "tool_use"


def test_anthropic_prompt_caching_reports_cache_tokens() -> None:
    write, read = replay(load_cassette("anthropic", "test_anthropic_prompt_caching_legacy"))

    assert write.usage.cache_creation_input_tokens > 0
    assert read.usage.cache_read_input_tokens == write.usage.cache_creation_input_tokens


async def test_async_anthropic_replay() -> None:
    cassette = load_cassette("anthropic", "test_anthropic_async_multi_modal_legacy")
    body = cassette.interactions[0].request_json() | {"model": CURRENT_CLAUDE}
    with CassetteServer(cassette) as server:
        async with anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0) as client:
            message = await client.messages.create(**body)
        server.assert_all_played()

    assert message.content[0].type == "text"
    assert message.usage.input_tokens > 0


# --- the replay server --------------------------------------------------------------------------------------


def test_unrecorded_request_gets_418_and_is_reported() -> None:
    cassette = load_cassette("openai", "test_chat_completion_with_content")
    with CassetteServer(cassette) as server, httpx.Client(base_url=server.url) as client:
        response = client.post("/v1/embeddings", json={})
        assert response.status_code == 418
        assert server.unmatched == [("POST", "/v1/embeddings")]
        with pytest.raises(AssertionError, match="without a recorded interaction"):
            server.assert_all_played()


def test_unplayed_interactions_are_reported() -> None:
    with (
        CassetteServer(load_cassette("openai", "test_chat_completion_with_content")) as server,
        pytest.raises(AssertionError, match="never requested"),
    ):
        server.assert_all_played()


def test_sse_events_are_sent_one_per_chunk() -> None:
    cassette = load_cassette("openai", "test_chat_completion_streaming")
    with (
        CassetteServer(cassette) as server,
        httpx.Client(base_url=server.url) as client,
        client.stream("POST", "/v1/chat/completions", json={}) as response,
    ):
        pieces = list(response.iter_raw())

    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"".join(pieces) == cassette.interactions[0].decoded_body
    assert len(pieces) > 5
    assert all(piece.startswith(b"data: ") for piece in pieces)
