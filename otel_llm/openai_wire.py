"""OpenAI wire format (Chat Completions, Responses, Embeddings) to request and response records.

Also used for every OpenAI-compatible server (Azure OpenAI, vLLM, Ollama, LiteLLM, ...), so every field
is optional and type-checked: a server that omits or mistypes a field yields no attribute, never an error.
"""

from __future__ import annotations

from typing import Any

from otel_llm import attributes as attr
from otel_llm.wire import RequestInfo, ResponseInfo, ToolCall, as_dict, as_int, as_list, as_str

_CHAT_PARAMS: tuple[tuple[str, str], ...] = (
    ("temperature", attr.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", attr.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", attr.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", attr.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("seed", attr.GEN_AI_REQUEST_SEED),
)


def _number_params(body: dict[str, Any], table: tuple[tuple[str, str], ...], out: dict[str, Any]) -> None:
    for key, name in table:
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value


def chat_request(body: dict[str, Any]) -> RequestInfo:
    attrs: dict[str, Any] = {}
    _number_params(body, _CHAT_PARAMS, attrs)
    max_tokens = as_int(body.get("max_completion_tokens", body.get("max_tokens")))
    if max_tokens is not None:
        attrs[attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    n = as_int(body.get("n"))
    if n is not None and n != 1:
        attrs[attr.GEN_AI_REQUEST_CHOICE_COUNT] = n
    stop = body.get("stop")
    if isinstance(stop, str):
        attrs[attr.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list) and stop:
        attrs[attr.GEN_AI_REQUEST_STOP_SEQUENCES] = [s for s in stop if isinstance(s, str)]
    response_format = as_str(as_dict(body.get("response_format")).get("type"))
    if response_format in ("json_object", "json_schema"):
        attrs[attr.GEN_AI_OUTPUT_TYPE] = "json"
    elif response_format == "text":
        attrs[attr.GEN_AI_OUTPUT_TYPE] = "text"
    stream = body.get("stream") is True
    messages = body.get("messages")
    return RequestInfo(
        model=as_str(body.get("model")),
        stream=stream,
        attributes=attrs,
        hash_input={"messages": messages, "tools": body.get("tools")},
        messages=messages,
    )


def responses_request(body: dict[str, Any]) -> RequestInfo:
    attrs: dict[str, Any] = {}
    _number_params(body, _CHAT_PARAMS[:2], attrs)
    max_tokens = as_int(body.get("max_output_tokens"))
    if max_tokens is not None:
        attrs[attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    return RequestInfo(
        model=as_str(body.get("model")),
        stream=body.get("stream") is True,
        attributes=attrs,
        hash_input={"instructions": body.get("instructions"), "input": body.get("input")},
        system=body.get("instructions"),
        messages=body.get("input"),
    )


def embeddings_request(body: dict[str, Any]) -> RequestInfo:
    attrs: dict[str, Any] = {}
    encoding = body.get("encoding_format")
    if isinstance(encoding, str):
        attrs[attr.GEN_AI_REQUEST_ENCODING_FORMATS] = [encoding]
    dimensions = as_int(body.get("dimensions"))
    if dimensions is not None:
        attrs[attr.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
    return RequestInfo(
        model=as_str(body.get("model")), attributes=attrs, hash_input={"input": body.get("input")}
    )


def _chat_usage(info: ResponseInfo, usage: dict[str, Any]) -> None:
    if not usage:
        return
    info.usage_reported = True
    info.input_tokens = as_int(usage.get("prompt_tokens"))
    info.output_tokens = as_int(usage.get("completion_tokens"))
    info.cache_read_tokens = as_int(as_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
    info.reasoning_tokens = as_int(as_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))


def _common(info: ResponseInfo, body: dict[str, Any]) -> None:
    info.response_id = info.response_id or as_str(body.get("id"))
    info.response_model = info.response_model or as_str(body.get("model"))
    fingerprint = body.get("system_fingerprint")
    if isinstance(fingerprint, str):
        info.attributes["gen_ai.openai.response.system_fingerprint"] = fingerprint
    tier = body.get("service_tier")
    if isinstance(tier, str):
        info.attributes["gen_ai.openai.response.service_tier"] = tier


def chat_response(body: dict[str, Any]) -> ResponseInfo:
    info = ResponseInfo()
    _common(info, body)
    for choice in as_list(body.get("choices")):
        choice = as_dict(choice)
        info.finish_reasons.append(as_str(choice.get("finish_reason")) or "error")
        message = as_dict(choice.get("message"))
        content = message.get("content")
        info.output_texts.append(content if isinstance(content, str) else "")
        for call in as_list(message.get("tool_calls")):
            call = as_dict(call)
            function = as_dict(call.get("function"))
            info.tool_calls.append(
                ToolCall(
                    as_str(function.get("name")), as_str(call.get("id")), as_str(function.get("arguments"))
                )
            )
    _chat_usage(info, as_dict(body.get("usage")))
    return info


def chat_stream(events: list[dict[str, Any]]) -> ResponseInfo:
    """Assemble a streamed chat completion: text per choice, tool calls from deltas, final usage."""
    info = ResponseInfo(chunks=len(events))
    texts: dict[int, list[str]] = {}
    finish: dict[int, str] = {}
    tools: dict[tuple[int, int], ToolCall] = {}
    for event in events:
        if not info.response_id:
            _common(info, event)
        for choice in as_list(event.get("choices")):
            choice = as_dict(choice)
            index = as_int(choice.get("index")) or 0
            delta = as_dict(choice.get("delta"))
            content = delta.get("content")
            if isinstance(content, str):
                texts.setdefault(index, []).append(content)
            for call in as_list(delta.get("tool_calls")):
                call = as_dict(call)
                key = (index, as_int(call.get("index")) or 0)
                function = as_dict(call.get("function"))
                tool = tools.get(key)
                if tool is None:
                    tool = tools[key] = ToolCall(as_str(function.get("name")), as_str(call.get("id")))
                elif not tool.name:
                    tool.name = as_str(function.get("name"))
                tool.arguments += as_str(function.get("arguments"))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                finish[index] = reason
        usage = event.get("usage")
        if isinstance(usage, dict):
            _chat_usage(info, usage)
        if isinstance(event.get("error"), dict):
            info.error_type = as_str(event["error"].get("type")) or "stream_error"
    indexes = sorted(set(texts) | set(finish))
    info.output_texts = ["".join(texts.get(i, ())) for i in indexes]
    info.finish_reasons = [finish.get(i, "") for i in indexes if i in finish]
    info.tool_calls = [tools[key] for key in sorted(tools)]
    return info


def _responses_output(info: ResponseInfo, response: dict[str, Any]) -> None:
    _common(info, response)
    texts: list[str] = []
    for item in as_list(response.get("output")):
        item = as_dict(item)
        kind = item.get("type")
        if kind == "message":
            for part in as_list(item.get("content")):
                part = as_dict(part)
                if part.get("type") == "output_text":
                    texts.append(as_str(part.get("text")))
        elif kind == "function_call":
            info.tool_calls.append(
                ToolCall(as_str(item.get("name")), as_str(item.get("call_id")), as_str(item.get("arguments")))
            )
    info.output_texts = ["".join(texts)]
    status = as_str(response.get("status"))
    reason = as_str(as_dict(response.get("incomplete_details")).get("reason"))
    if reason:
        info.finish_reasons = [reason]
    elif info.tool_calls:
        info.finish_reasons = ["tool_calls"]
    elif status == "completed":
        info.finish_reasons = ["stop"]
    elif status:
        info.finish_reasons = [status]
    if status == "failed":
        info.error_type = as_str(as_dict(response.get("error")).get("code")) or "response_failed"
    usage = as_dict(response.get("usage"))
    if usage:
        info.usage_reported = True
        info.input_tokens = as_int(usage.get("input_tokens"))
        info.output_tokens = as_int(usage.get("output_tokens"))
        info.cache_read_tokens = as_int(as_dict(usage.get("input_tokens_details")).get("cached_tokens"))
        info.reasoning_tokens = as_int(as_dict(usage.get("output_tokens_details")).get("reasoning_tokens"))


def responses_response(body: dict[str, Any]) -> ResponseInfo:
    info = ResponseInfo()
    _responses_output(info, body)
    return info


_TERMINAL_RESPONSE_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_stream(events: list[dict[str, Any]]) -> ResponseInfo:
    """A streamed Responses call: the terminal event carries the whole response, usage included."""
    info = ResponseInfo(chunks=len(events))
    deltas: list[str] = []
    final: dict[str, Any] | None = None
    for event in events:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            deltas.append(as_str(event.get("delta")))
        elif kind in _TERMINAL_RESPONSE_EVENTS:
            final = as_dict(event.get("response"))
        elif kind == "response.created" and not info.response_id:
            _common(info, as_dict(event.get("response")))
        elif kind == "error":
            info.error_type = as_str(event.get("code")) or "stream_error"
    if final is not None:
        error_type = info.error_type
        _responses_output(info, final)
        info.error_type = info.error_type or error_type
    if not info.output_texts or not info.output_texts[0]:
        info.output_texts = ["".join(deltas)]
    return info


def embeddings_response(body: dict[str, Any]) -> ResponseInfo:
    info = ResponseInfo()
    info.response_model = as_str(body.get("model"))
    data = as_list(body.get("data"))
    if data:
        vector = as_dict(data[0]).get("embedding")
        if isinstance(vector, list):
            info.attributes[attr.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(vector)
    usage = as_dict(body.get("usage"))
    if usage:
        info.usage_reported = True
        info.input_tokens = as_int(usage.get("prompt_tokens"))
    return info
