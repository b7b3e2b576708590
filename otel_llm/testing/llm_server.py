"""A local server that speaks the OpenAI and Anthropic wire APIs, for tests, examples and benchmarks.

The real SDKs can talk to it unchanged, so instrumentation is exercised through the same HTTP, JSON and
server-sent-event paths as in production, without network access or API keys::

    from otel_llm.testing.llm_server import ErrorReply, LLMServer, Reply, ScriptedResponder

    with LLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    script = ScriptedResponder([Reply(text="yes"), Reply(error=ErrorReply(429, retry_after_seconds=0.01))])
    with LLMServer(script) as server:
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test").messages.create(...)

Endpoints: ``POST /v1/chat/completions`` (also ``/openai/deployments/{name}/chat/completions`` and
``.../embeddings`` as Azure OpenAI spells them), ``POST /v1/responses``, ``POST /v1/embeddings``,
``POST /v1/messages`` (Anthropic), ``GET /v1/models`` and ``GET /healthz``. Streams are written with chunked
transfer encoding and sent event by event, so time to first chunk is observable; connections are kept alive.

What is answered comes from a *responder*: any callable ``(LLMRequest) -> Reply | str``, called on the
server's handler threads (so it must be thread-safe; it may block to simulate latency). The default one
echoes the last user message. Token counts default to whitespace-separated words (:func:`count_tokens`),
so tests can compute the expected usage.

Run it standalone (for the examples): ``python -m otel_llm.testing.llm_server --port 8000``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import enum
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

__all__ = [
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

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-haiku-4-5")
DEFAULT_EMBEDDING_DIMENSIONS = 16
# Pieces of this many characters make up streamed tool-call arguments, so a call always spans several chunks.
_ARGUMENT_PIECE_CHARS = 8


class Api(enum.StrEnum):
    """Which wire API a request was made to."""

    CHAT_COMPLETIONS = "chat_completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    ANTHROPIC_MESSAGES = "anthropic_messages"

    @property
    def provider(self) -> str:
        return "anthropic" if self is Api.ANTHROPIC_MESSAGES else "openai"


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model makes; ``arguments`` is a JSON string or an object to serialise."""

    name: str
    arguments: str | Mapping[str, Any] = "{}"
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Usage:
    """Token usage to report; a field left ``None`` is computed from the text with :func:`count_tokens`.

    ``input_tokens`` counts every prompt token including cached ones (the OpenAI and GenAI semconv
    convention); on the Anthropic wire the uncached remainder is sent as ``input_tokens``.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_output_tokens: int = 0


@dataclass(frozen=True)
class ErrorReply:
    """An error response, written in the wire shape of the API that was called.

    ``type`` defaults to the provider's name for the status (``rate_limit_error``, ...). ``body``, when
    given, is sent verbatim instead. ``retry_after_seconds`` becomes a ``Retry-After`` header.
    """

    status: int
    message: str = "error from the local LLM server"
    type: str | None = None
    code: str | None = None
    retry_after_seconds: float | None = None
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request.

    ``finish_reason`` accepts OpenAI or Anthropic vocabulary and is translated for the API called; by
    default it is ``stop`` (``tool_calls`` when there are tool calls). ``choice_texts`` gives one text per
    choice when a chat request asks for ``n`` > 1 (cycled when shorter; ``text`` when empty).
    ``first_byte_delay_seconds`` delays the whole response, ``chunk_delay_seconds`` each streamed event
    after the first. ``abort_after_chunks`` drops the connection after that many streamed events (for a
    non-streaming call: before any response byte). ``error_after_chunks`` with ``error`` makes a stream
    send that many events and then the error as an in-stream event, as the providers do mid-stream.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    response_id: str | None = None
    choice_texts: Sequence[str] = ()
    error: ErrorReply | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    first_byte_delay_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0
    abort_after_chunks: int | None = None
    error_after_chunks: int | None = None


@dataclass(frozen=True)
class LLMRequest:
    """A parsed request, as responders see it. ``params`` is the whole JSON body."""

    api: Api
    path: str
    model: str
    stream: bool
    messages: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any]
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    deployment: str | None = None

    @property
    def system(self) -> str:
        """The system prompt: Anthropic ``system``, Responses ``instructions`` or chat system messages."""
        parts = [_text_of(self.params.get("system")), _text_of(self.params.get("instructions"))]
        parts += [
            _text_of(m.get("content")) for m in self.messages if m.get("role") in ("system", "developer")
        ]
        return "\n".join(p for p in parts if p)

    @property
    def prompt_text(self) -> str:
        """All prompt text (system and every message; embedding inputs), for token counting and matching."""
        if self.api is Api.EMBEDDINGS:
            return "\n".join(_embedding_inputs(self.params.get("input")))
        parts = [_text_of(self.params.get("system")), _text_of(self.params.get("instructions"))]
        parts += [_text_of(m.get("content", m.get("output"))) for m in self.messages]
        return "\n".join(p for p in parts if p)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role", "user") == "user":
                return _text_of(message.get("content"))
        return ""


class LoggedRequest(NamedTuple):
    """One received request: the path (without query) and the parsed JSON body (``None`` for a GET)."""

    path: str
    body: Any


Responder = Callable[[LLMRequest], Reply | str]


def count_tokens(text: str) -> int:
    """The server's deterministic token count: whitespace-separated words."""
    return len(text.split())


def echo_responder(request: LLMRequest) -> Reply:
    """The default responder: a deterministic echo of the last user message (one per choice when n > 1)."""
    said = request.last_user_text or request.prompt_text
    text = f"Echo: {said}" if said else "Hello from the local LLM server."
    n = request.params.get("n")
    if isinstance(n, int) and n > 1:
        return Reply(text=text, choice_texts=[f"{text} (choice {i})" for i in range(n)])
    return Reply(text=text)


class ScriptedResponder:
    """Answers with queued replies in order; thread-safe. When the queue is empty, ``fallback`` answers if
    given, else the request fails with a 500 whose message says the script ran out."""

    def __init__(self, replies: Iterable[Reply | str] = (), *, fallback: Responder | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Reply | str] = deque(replies)
        self._fallback = fallback
        self.requests: list[LLMRequest] = []

    def add(self, *replies: Reply | str) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._queue)

    def __call__(self, request: LLMRequest) -> Reply | str:
        with self._lock:
            self.requests.append(request)
            reply = self._queue.popleft() if self._queue else None
        if reply is not None:
            return reply
        if self._fallback is not None:
            return self._fallback(request)
        return Reply(error=ErrorReply(500, "ScriptedResponder has no reply left", type="server_error"))


# --- request parsing -------------------------------------------------------------------------------------

_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<name>[^/]+)/(?P<op>chat/completions|embeddings)$")
_PATHS = {
    "/v1/chat/completions": Api.CHAT_COMPLETIONS,
    "/chat/completions": Api.CHAT_COMPLETIONS,
    "/v1/responses": Api.RESPONSES,
    "/responses": Api.RESPONSES,
    "/v1/embeddings": Api.EMBEDDINGS,
    "/embeddings": Api.EMBEDDINGS,
    "/v1/messages": Api.ANTHROPIC_MESSAGES,
}


def _text_of(content: Any) -> str:
    """The plain text in a message content: a string, or a list of parts/blocks that carry text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        return _text_of(content.get("content"))
    if isinstance(content, list):
        return " ".join(t for t in (_text_of(part) for part in content) if t)
    return ""


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]  # one pre-tokenised input: one "word" per token id
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    return []


def _parse_request(
    api: Api, path: str, body: Mapping[str, Any], headers: Mapping[str, str], query: Mapping[str, str]
) -> LLMRequest:
    deployment = None
    azure = _AZURE_PATH.match(path)
    if azure:
        deployment = azure.group("name")
    messages: Sequence[Mapping[str, Any]] = []
    if api is Api.RESPONSES:
        raw = body.get("input")
        if isinstance(raw, str):
            messages = [{"role": "user", "content": raw}]
        elif isinstance(raw, list):
            messages = [m for m in raw if isinstance(m, Mapping)]
    elif api is not Api.EMBEDDINGS:
        messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
    return LLMRequest(
        api=api,
        path=path,
        model=str(body.get("model") or deployment or ""),
        stream=bool(body.get("stream")),
        messages=messages,
        params=body,
        headers=headers,
        query=query,
        deployment=deployment,
    )


# --- reply resolution and wire shapes ----------------------------------------------------------------------

_TO_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_TO_OPENAI_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
}
_OPENAI_ERROR_TYPES |= {429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_ANTHROPIC_ERROR_TYPES |= {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}
_ANTHROPIC_ERROR_TYPES |= {500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}


@dataclass(frozen=True)
class _Resolved:
    """A reply with every default filled in: what the wire writers need, in OpenAI vocabulary."""

    id: str
    model: str
    created: int
    texts: list[str]
    tool_calls: list[ToolCall]
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_creation: int
    reasoning: int


def _resolve(request: LLMRequest, reply: Reply, serial: int) -> _Resolved:
    n = request.params.get("n") if request.api is Api.CHAT_COMPLETIONS else 1
    n = n if isinstance(n, int) and n > 0 else 1
    texts = [reply.choice_texts[i % len(reply.choice_texts)] for i in range(n)] if reply.choice_texts else []
    texts = texts or [reply.text] * n
    calls = [
        tc if tc.id else ToolCall(tc.name, tc.arguments, f"call_{serial:06d}_{i}")
        for i, tc in enumerate(reply.tool_calls)
    ]
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    finish = _TO_OPENAI_FINISH.get(finish, finish)
    usage = reply.usage or Usage()
    input_tokens = usage.input_tokens
    if input_tokens is None:
        input_tokens = count_tokens(request.prompt_text)
    output_tokens = usage.output_tokens
    if output_tokens is None:
        output_tokens = sum(map(count_tokens, texts))
        output_tokens += sum(count_tokens(f"{tc.name} {tc.arguments_json}") for tc in calls) * n
    prefix = {
        Api.CHAT_COMPLETIONS: "chatcmpl-",
        Api.RESPONSES: "resp_",
        Api.ANTHROPIC_MESSAGES: "msg_",
        Api.EMBEDDINGS: "emb_",
    }
    return _Resolved(
        id=reply.response_id or f"{prefix[request.api]}local{serial:08d}",
        model=reply.model or request.model or "local-model",
        created=int(time.time()),
        texts=texts,
        tool_calls=calls,
        finish_reason=finish,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read=usage.cache_read_input_tokens,
        cache_creation=usage.cache_creation_input_tokens,
        reasoning=usage.reasoning_output_tokens,
    )


def _pieces(text: str) -> list[str]:
    """Split text into word-sized stream deltas that join back to exactly the text."""
    return [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]


def _argument_pieces(arguments: str) -> list[str]:
    return [arguments[i : i + _ARGUMENT_PIECE_CHARS] for i in range(0, len(arguments), _ARGUMENT_PIECE_CHARS)]


def _openai_usage(r: _Resolved) -> dict[str, Any]:
    return {
        "prompt_tokens": r.input_tokens,
        "completion_tokens": r.output_tokens,
        "total_tokens": r.input_tokens + r.output_tokens,
        "prompt_tokens_details": {"cached_tokens": r.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": r.reasoning, "audio_tokens": 0},
    }


def _chat_tool_calls(r: _Resolved) -> list[dict[str, Any]]:
    return [
        {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json}}
        for tc in r.tool_calls
    ]


def _chat_completion(r: _Resolved) -> dict[str, Any]:
    choices = []
    for i, text in enumerate(r.texts):
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if r.tool_calls:
            message["tool_calls"] = _chat_tool_calls(r)
        choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": r.finish_reason})
    return {
        "id": r.id,
        "object": "chat.completion",
        "created": r.created,
        "model": r.model,
        "system_fingerprint": "fp_local",
        "choices": choices,
        "usage": _openai_usage(r),
    }


def _chat_stream(r: _Resolved, include_usage: bool) -> Iterator[bytes]:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": r.id,
            "object": "chat.completion.chunk",
            "created": r.created,
            "model": r.model,
            "system_fingerprint": "fp_local",
            "choices": choices,
        }
        if include_usage:
            data["usage"] = usage
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    per_choice: list[list[dict[str, Any]]] = []
    for text in r.texts:
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": "" if text else None, "refusal": None}
        ]
        deltas += [{"content": piece} for piece in _pieces(text)]
        for j, tc in enumerate(r.tool_calls):
            head = {
                "index": j,
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.name, "arguments": ""},
            }
            deltas.append({"tool_calls": [head]})
            deltas += [
                {"tool_calls": [{"index": j, "function": {"arguments": piece}}]}
                for piece in _argument_pieces(tc.arguments_json)
            ]
        per_choice.append(deltas)
    # Interleave the choices, as the real API does when n > 1.
    for step in itertools.zip_longest(*per_choice):
        for index, delta in enumerate(step):
            if delta is not None:
                yield chunk([choice(index, delta)])
    for index in range(len(r.texts)):
        yield chunk([choice(index, {}, r.finish_reason)])
    if include_usage:
        yield chunk([], _openai_usage(r))
    yield b"data: [DONE]\n\n"


def _responses_object(r: _Resolved, request: LLMRequest, *, done: bool) -> dict[str, Any]:
    output = _responses_output(r) if done else []
    params = request.params
    status, incomplete = "completed", None
    if r.finish_reason in _INCOMPLETE:
        status, incomplete = "incomplete", {"reason": _INCOMPLETE[r.finish_reason]}
    return {
        "id": r.id,
        "object": "response",
        "created_at": r.created,
        "status": status if done else "in_progress",
        "error": None,
        "incomplete_details": incomplete if done else None,
        "instructions": params.get("instructions"),
        "max_output_tokens": params.get("max_output_tokens"),
        "model": r.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": params.get("previous_response_id"),
        "temperature": params.get("temperature", 1.0),
        "tool_choice": params.get("tool_choice", "auto"),
        "tools": params.get("tools", []),
        "top_p": params.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": params.get("metadata", {}),
        "usage": _responses_usage(r) if done else None,
    }


def _responses_usage(r: _Resolved) -> dict[str, Any]:
    return {
        "input_tokens": r.input_tokens,
        "input_tokens_details": {"cached_tokens": r.cache_read},
        "output_tokens": r.output_tokens,
        "output_tokens_details": {"reasoning_tokens": r.reasoning},
        "total_tokens": r.input_tokens + r.output_tokens,
    }


def _responses_message(r: _Resolved, text: str, *, done: bool) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if done else []
    status = "completed" if done else "in_progress"
    return {"type": "message", "id": f"msg_{r.id}", "status": status, "role": "assistant", "content": content}


def _responses_call(tc: ToolCall, *, done: bool) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{tc.id}",
        "call_id": tc.id,
        "name": tc.name,
        "arguments": tc.arguments_json if done else "",
        "status": "completed" if done else "in_progress",
    }


def _responses_output(r: _Resolved) -> list[dict[str, Any]]:
    output = [_responses_message(r, r.texts[0], done=True)] if r.texts[0] or not r.tool_calls else []
    return output + [_responses_call(tc, done=True) for tc in r.tool_calls]


def _responses_stream(r: _Resolved, request: LLMRequest) -> Iterator[bytes]:
    sequence = itertools.count()

    def event(kind: str, **data: Any) -> bytes:
        payload = json.dumps({"type": kind, **data, "sequence_number": next(sequence)})
        return f"event: {kind}\ndata: {payload}\n\n".encode()

    yield event("response.created", response=_responses_object(r, request, done=False))
    yield event("response.in_progress", response=_responses_object(r, request, done=False))
    index = 0
    text = r.texts[0]
    if text or not r.tool_calls:
        item_id = f"msg_{r.id}"
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        empty_part = {"type": "output_text", "text": "", "annotations": []}
        yield event(
            "response.output_item.added", output_index=index, item=_responses_message(r, "", done=False)
        )
        yield event("response.content_part.added", **where, part=empty_part)
        for piece in _pieces(text):
            yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part={**empty_part, "text": text})
        yield event(
            "response.output_item.done", output_index=index, item=_responses_message(r, text, done=True)
        )
        index += 1
    for tc in r.tool_calls:
        where = {"item_id": f"fc_{tc.id}", "output_index": index}
        yield event("response.output_item.added", output_index=index, item=_responses_call(tc, done=False))
        for piece in _argument_pieces(tc.arguments_json):
            yield event("response.function_call_arguments.delta", **where, delta=piece)
        yield event(
            "response.function_call_arguments.done", **where, name=tc.name, arguments=tc.arguments_json
        )
        yield event("response.output_item.done", output_index=index, item=_responses_call(tc, done=True))
        index += 1
    final = "response.incomplete" if r.finish_reason in _INCOMPLETE else "response.completed"
    yield event(final, response=_responses_object(r, request, done=True))


def _embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from the text's hash."""
    seed = hashlib.sha256(text.encode()).digest()
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        raw += [(b - 127.5) / 127.5 for b in digest]
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def _embeddings(request: LLMRequest, reply: Reply) -> dict[str, Any]:
    inputs = _embedding_inputs(request.params.get("input"))
    dimensions = request.params.get("dimensions")
    dimensions = (
        dimensions if isinstance(dimensions, int) and dimensions > 0 else DEFAULT_EMBEDDING_DIMENSIONS
    )
    as_base64 = request.params.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(inputs):
        vector = _embedding_vector(text, dimensions)
        encoded: Any = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    usage = reply.usage or Usage()
    tokens = usage.input_tokens if usage.input_tokens is not None else sum(map(count_tokens, inputs))
    model = reply.model or request.model or "local-embedding"
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _anthropic_stop(r: _Resolved) -> str:
    return _TO_ANTHROPIC_STOP.get(r.finish_reason, r.finish_reason)


def _anthropic_usage(r: _Resolved, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": max(0, r.input_tokens - r.cache_read - r.cache_creation),
        "cache_creation_input_tokens": r.cache_creation,
        "cache_read_input_tokens": r.cache_read,
        "output_tokens": output_tokens,
    }


def _anthropic_tool_input(tc: ToolCall) -> Any:
    if isinstance(tc.arguments, str):
        return json.loads(tc.arguments or "{}")
    return dict(tc.arguments)


def _anthropic_message(r: _Resolved, *, done: bool) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if done:
        content = [{"type": "text", "text": r.texts[0]}] if r.texts[0] or not r.tool_calls else []
        content += [
            {"type": "tool_use", "id": tc.id, "name": tc.name, "input": _anthropic_tool_input(tc)}
            for tc in r.tool_calls
        ]
    return {
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": _anthropic_stop(r) if done else None,
        "stop_sequence": None,
        "usage": _anthropic_usage(r, r.output_tokens if done else 1),
    }


def _anthropic_stream(r: _Resolved) -> Iterator[bytes]:
    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    yield event("message_start", message=_anthropic_message(r, done=False))
    yield event("ping")
    index = 0
    text = r.texts[0]
    if text or not r.tool_calls:
        yield event("content_block_start", index=index, content_block={"type": "text", "text": ""})
        for piece in _pieces(text):
            yield event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        yield event("content_block_stop", index=index)
        index += 1
    for tc in r.tool_calls:
        block: dict[str, Any] = {"type": "tool_use", "id": tc.id, "name": tc.name, "input": {}}
        yield event("content_block_start", index=index, content_block=block)
        for piece in _argument_pieces(json.dumps(_anthropic_tool_input(tc))):
            yield event(
                "content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece}
            )
        yield event("content_block_stop", index=index)
        index += 1
    delta = {"stop_reason": _anthropic_stop(r), "stop_sequence": None}
    yield event("message_delta", delta=delta, usage=_anthropic_usage(r, r.output_tokens))
    yield event("message_stop")


def _error_body(api: Api | None, error: ErrorReply) -> dict[str, Any]:
    if error.body is not None:
        return dict(error.body)
    if api is Api.ANTHROPIC_MESSAGES:
        kind = error.type or _ANTHROPIC_ERROR_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}
    kind = error.type or _OPENAI_ERROR_TYPES.get(error.status, "server_error")
    return {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}


def _stream_error(api: Api, error: ErrorReply) -> bytes:
    """An error that arrives inside a stream that had started well (status 200 already sent)."""
    body = _error_body(api, error)
    if api is Api.CHAT_COMPLETIONS:
        return b"data: " + json.dumps(body).encode() + b"\n\n"
    if api is Api.RESPONSES:
        inner = body.get("error", body)
        body = {
            "type": "error",
            "code": inner.get("code") or inner.get("type"),
            "message": inner.get("message"),
        }
        body["param"] = None
    return f"event: error\ndata: {json.dumps(body)}\n\n".encode()


def _models(names: Sequence[str], anthropic: bool) -> dict[str, Any]:
    if anthropic:
        listed = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in names
        ]
        first, last = (names[0], names[-1]) if names else (None, None)
        return {"data": listed, "has_more": False, "first_id": first, "last_id": last}
    data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "otel-llm"} for m in names]
    return {"object": "list", "data": data}


# --- HTTP ---------------------------------------------------------------------------------------------------


class _Aborted(Exception):
    """The reply asked for the connection to be dropped, or the client went away."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams
    disable_nagle_algorithm = True  # small writes must not wait for the client's delayed ACK
    server: _HTTPServer
    server_version = "otel-llm-local"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.app._log(path, None)
        if path in ("/healthz", "/"):
            self._send_json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            self._send_json(200, _models(self.server.app.models, "anthropic-version" in self.headers))
        else:
            self._send_json(404, _error_body(None, ErrorReply(404, f"no route for GET {path}")))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        azure = _AZURE_PATH.match(path)
        api = _PATHS.get(path) or (
            (Api.CHAT_COMPLETIONS if azure.group("op") == "chat/completions" else Api.EMBEDDINGS)
            if azure
            else None
        )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.server.app._log(path, body)
        if api is None:
            self._send_json(404, _error_body(None, ErrorReply(404, f"no route for POST {path}")))
            return
        if not isinstance(body, dict):
            self._send_json(400, _error_body(api, ErrorReply(400, "request body is not a JSON object")))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = _parse_request(api, path, body, headers, dict(parse_qsl(url.query)))
        try:
            self._answer(request)
        except _Aborted:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _answer(self, request: LLMRequest) -> None:
        app = self.server.app
        try:
            answer = app.responder(request)
            reply = Reply(text=answer) if isinstance(answer, str) else answer
        except Exception as exc:
            reply = Reply(error=ErrorReply(500, f"responder failed: {exc!r}", type="server_error"))
        if reply.first_byte_delay_seconds > 0 and app._stopping.wait(reply.first_byte_delay_seconds):
            raise _Aborted
        api = request.api
        id_header = "request-id" if api is Api.ANTHROPIC_MESSAGES else "x-request-id"
        serial = app._next_serial()
        headers = {id_header: f"req_local{serial:08d}", **reply.headers}
        streamed_error = reply.error is not None and reply.error_after_chunks is not None and request.stream
        if reply.error is not None and not streamed_error:
            if reply.error.retry_after_seconds is not None:
                headers["retry-after"] = f"{reply.error.retry_after_seconds:g}"
            self._send_json(reply.error.status, _error_body(api, reply.error), headers)
            return
        if reply.abort_after_chunks is not None and not request.stream:
            raise _Aborted
        if api is Api.EMBEDDINGS:
            self._send_json(200, _embeddings(request, reply), headers)
            return
        resolved = _resolve(request, reply, serial)
        if not request.stream:
            if api is Api.CHAT_COMPLETIONS:
                self._send_json(200, _chat_completion(resolved), headers)
            elif api is Api.RESPONSES:
                self._send_json(200, _responses_object(resolved, request, done=True), headers)
            else:
                self._send_json(200, _anthropic_message(resolved, done=True), headers)
            return
        if api is Api.CHAT_COMPLETIONS:
            options = request.params.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            events = _chat_stream(resolved, include_usage)
        elif api is Api.RESPONSES:
            events = _responses_stream(resolved, request)
        else:
            events = _anthropic_stream(resolved)
        if reply.error is not None and reply.error_after_chunks is not None:
            events = itertools.chain(
                itertools.islice(events, reply.error_after_chunks), [_stream_error(api, reply.error)]
            )
        self._send_stream(events, reply, headers)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _Aborted from exc

    def _head(self, status: int, content_type: str, headers: Mapping[str, str], length: int | None) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('Error',))[0]}",
            f"content-type: {content_type}",
        ]
        lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        # One write for head and body: the cheap path the overhead benchmark measures.
        self._write(self._head(status, "application/json", headers or {}, len(body)) + body)

    def _send_stream(self, events: Iterator[bytes], reply: Reply, headers: Mapping[str, str]) -> None:
        stopping = self.server.app._stopping
        self._write(self._head(200, "text/event-stream; charset=utf-8", headers, None))
        for sent, data in enumerate(events):
            if reply.abort_after_chunks is not None and sent >= reply.abort_after_chunks:
                raise _Aborted
            if sent and reply.chunk_delay_seconds > 0 and stopping.wait(reply.chunk_delay_seconds):
                raise _Aborted
            self._write(b"%x\r\n%s\r\n" % (len(data), data))
        self._write(b"0\r\n\r\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: LLMServer) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.connections_accepted = 0
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (reset, broken pipe) is routine here; anything else is worth printing.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
            self.connections_accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections so that stop() is prompt."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LLMServer:
    """The local OpenAI/Anthropic-compatible server. Start it with ``start()`` or ``with``; port 0 picks a
    free port. ``requests`` logs what was received (bounded by ``max_logged_requests``, oldest dropped)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = DEFAULT_MODELS,
        max_logged_requests: int = 10_000,
    ) -> None:
        self.responder: Responder = responder or echo_responder
        self.models = list(models)
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._log_lock = threading.Lock()
        self._requests: deque[LoggedRequest] = deque(maxlen=max_logged_requests)
        self._serial = itertools.count(1)

    def start(self) -> LLMServer:
        if self._httpd is not None:
            raise RuntimeError("LLMServer is already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="otel-llm-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open streams and delays, and close every socket. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LLMServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return self._address[0]

    @property
    def base_url(self) -> str:
        """``http://host:port``: the Anthropic SDK's and Azure OpenAI's ``base_url``/``azure_endpoint``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far: shows whether a client reuses keep-alive connections."""
        return self._httpd.connections_accepted if self._httpd is not None else 0

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def _log(self, path: str, body: Any) -> None:
        with self._log_lock:
            self._requests.append(LoggedRequest(path, body))

    def _next_serial(self) -> int:
        return next(self._serial)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted; for the examples and manual experiments."""
    parser = argparse.ArgumentParser(
        description="Local OpenAI/Anthropic-compatible LLM server (echo replies)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--first-byte-delay-seconds", type=float, default=0.0)
    parser.add_argument("--chunk-delay-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)

    def responder(request: LLMRequest) -> Reply:
        reply = echo_responder(request)
        return Reply(
            text=reply.text,
            choice_texts=reply.choice_texts,
            first_byte_delay_seconds=args.first_byte_delay_seconds,
            chunk_delay_seconds=args.chunk_delay_seconds,
        )

    with LLMServer(responder, host=args.host, port=args.port) as server:
        print(
            f"serving OpenAI at {server.openai_base_url} and Anthropic at {server.anthropic_base_url}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
