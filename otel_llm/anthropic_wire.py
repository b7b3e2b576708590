"""Anthropic Messages wire format to request and response records.

Anthropic reports `input_tokens` without the cached part; the GenAI conventions define
`gen_ai.usage.input_tokens` as all input tokens, so the total is input + cache read + cache creation.
In a stream, `message_start` carries the input usage and `message_delta` the cumulative output usage
(newer API versions may repeat the input figures there; the last value seen wins).
"""

from __future__ import annotations

from typing import Any

from otel_llm import attributes as attr
from otel_llm.wire import RequestInfo, ResponseInfo, ToolCall, as_dict, as_int, as_list, as_str

_PARAMS: tuple[tuple[str, str], ...] = (
    ("temperature", attr.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", attr.GEN_AI_REQUEST_TOP_P),
    ("top_k", attr.GEN_AI_REQUEST_TOP_K),
)


def messages_request(body: dict[str, Any]) -> RequestInfo:
    attrs: dict[str, Any] = {}
    for key, name in _PARAMS:
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[name] = value
    max_tokens = as_int(body.get("max_tokens"))
    if max_tokens is not None:
        attrs[attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        attrs[attr.GEN_AI_REQUEST_STOP_SEQUENCES] = [s for s in stops if isinstance(s, str)]
    return RequestInfo(
        model=as_str(body.get("model")),
        stream=body.get("stream") is True,
        attributes=attrs,
        hash_input={
            "system": body.get("system"),
            "messages": body.get("messages"),
            "tools": body.get("tools"),
        },
        system=body.get("system"),
        messages=body.get("messages"),
    )


class _Usage:
    __slots__ = ("cache_creation", "cache_read", "input", "output", "seen")

    def __init__(self) -> None:
        self.input: int | None = None
        self.output: int | None = None
        self.cache_read: int | None = None
        self.cache_creation: int | None = None
        self.seen = False

    def update(self, usage: dict[str, Any]) -> None:
        if not usage:
            return
        self.seen = True
        for key, slot in (
            ("input_tokens", "input"),
            ("output_tokens", "output"),
            ("cache_read_input_tokens", "cache_read"),
            ("cache_creation_input_tokens", "cache_creation"),
        ):
            value = as_int(usage.get(key))
            if value is not None:
                setattr(self, slot, value)

    def apply(self, info: ResponseInfo) -> None:
        if not self.seen:
            return
        info.usage_reported = True
        info.cache_read_tokens = self.cache_read
        info.cache_creation_tokens = self.cache_creation
        if self.input is not None:
            info.input_tokens = self.input + (self.cache_read or 0) + (self.cache_creation or 0)
        info.output_tokens = self.output


def messages_response(body: dict[str, Any]) -> ResponseInfo:
    info = ResponseInfo(response_id=as_str(body.get("id")), response_model=as_str(body.get("model")))
    texts: list[str] = []
    for block in as_list(body.get("content")):
        block = as_dict(block)
        if block.get("type") == "text":
            texts.append(as_str(block.get("text")))
        elif block.get("type") == "tool_use":
            info.tool_calls.append(ToolCall(as_str(block.get("name")), as_str(block.get("id"))))
    info.output_texts = ["".join(texts)]
    reason = as_str(body.get("stop_reason"))
    if reason:
        info.finish_reasons = [reason]
    usage = _Usage()
    usage.update(as_dict(body.get("usage")))
    usage.apply(info)
    return info


def messages_stream(events: list[dict[str, Any]]) -> ResponseInfo:
    info = ResponseInfo(chunks=len(events))
    usage = _Usage()
    texts: list[str] = []
    tools: dict[int, ToolCall] = {}
    for event in events:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = as_dict(event.get("delta"))
            if delta.get("type") == "text_delta":
                texts.append(as_str(delta.get("text")))
            elif delta.get("type") == "input_json_delta":
                tool = tools.get(as_int(event.get("index")) or 0)
                if tool is not None:
                    tool.arguments += as_str(delta.get("partial_json"))
        elif kind == "content_block_start":
            block = as_dict(event.get("content_block"))
            if block.get("type") == "tool_use":
                tools[as_int(event.get("index")) or 0] = ToolCall(
                    as_str(block.get("name")), as_str(block.get("id"))
                )
        elif kind == "message_start":
            message = as_dict(event.get("message"))
            info.response_id = as_str(message.get("id"))
            info.response_model = as_str(message.get("model"))
            usage.update(as_dict(message.get("usage")))
        elif kind == "message_delta":
            reason = as_dict(event.get("delta")).get("stop_reason")
            if isinstance(reason, str):
                info.finish_reasons = [reason]
            usage.update(as_dict(event.get("usage")))
        elif kind == "error":
            info.error_type = as_str(as_dict(event.get("error")).get("type")) or "stream_error"
    info.output_texts = ["".join(texts)]
    info.tool_calls = [tools[i] for i in sorted(tools)]
    usage.apply(info)
    return info
