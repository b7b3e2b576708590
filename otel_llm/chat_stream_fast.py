"""A fast reading of the most common stream: an OpenAI chat completion, one choice, no tool calls.

Parsing every chunk as JSON costs a few microseconds per chunk even in one `json.loads`; but of the
hundreds of chunks of a streamed answer only the first (id, model), the last few (finish reason, usage)
and the content deltas matter. Here the content strings are cut out of the body with one regular
expression and decoded together in one `json.loads`; only the first and last three events are parsed
whole. Anything unusual (several choices, tool calls, refusals, an error event, a content string the
expression cannot take) returns `None`, and the caller uses the full parser, which tests hold this to.
"""

from __future__ import annotations

import json
import re
from typing import Any

from otel_llm.openai_wire import chat_stream
from otel_llm.wire import ResponseInfo

_CONTENT = re.compile(rb'"delta":\s*\{(?:"role":\s*"assistant",\s*)?"content":\s*"((?:[^"\\]|\\.)*)"')
_CONTENT_KEY = re.compile(rb'"content"\s*:')
_UNUSUAL = (b'"tool_calls"', b'"index":1', b'"index": 1', b'"refusal":"', b'"refusal": "', b'"error"')
_EVENT_SEPARATOR = b"\n\ndata: "


def read(body: bytes) -> ResponseInfo | None:
    """The stream's record, or None when the body is not the simple shape (use the full parser)."""
    if not body.startswith(b"data: ") or b"\r" in body or any(marker in body for marker in _UNUSUAL):
        return None
    events = body[6:].split(_EVENT_SEPARATOR)
    if events and events[-1].strip() == b"[DONE]":
        events.pop()
    if len(events) < 4:
        return None
    try:
        head: list[dict[str, Any]] = [json.loads(events[0])]
        tail: list[dict[str, Any]] = [json.loads(e) for e in events[-3:]]
    except ValueError:
        return None
    pieces = _CONTENT.findall(body)
    if len(pieces) != len(_CONTENT_KEY.findall(body)):
        return None  # a delta in a shape the expression does not take: never guess
    try:
        texts: list[str] = json.loads(b'["' + b'","'.join(pieces) + b'"]') if pieces else []
    except ValueError:
        return None
    # The head and tail events carry what `chat_stream` needs besides the text; their content is
    # dropped here so that it is not counted twice.
    for event in (*head, *tail):
        for choice in event.get("choices") or ():
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                choice["delta"].pop("content", None)
    info = chat_stream([*head, *tail])
    info.chunks = len(events)
    info.output_texts = ["".join(texts)]
    return info
