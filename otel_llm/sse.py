"""Server-sent events, parsed once when the stream ends.

The instrumented stream only appends each raw chunk to a list (the per-chunk cost is one `list.append`);
the whole body is parsed here when the stream is exhausted or closed. The common case, every event a
single `data:` line of JSON, is parsed with one `json.loads` over all events joined into a JSON array;
anything unusual (multi-line data, comments, retry fields, a malformed event) falls back to the
line-by-line parser of the SSE specification.
"""

from __future__ import annotations

import json
import re
from typing import Any

_EVENT_LINE = re.compile(rb"^(?:event|id|retry):[^\n]*\n", re.MULTILINE)
_DONE = b"[DONE]"


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The JSON objects carried by the `data:` fields of an SSE body, in order (`[DONE]` dropped)."""
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    fast = _parse_fast(body)
    if fast is not None:
        return fast
    return _parse_slow(body)


def _parse_fast(body: bytes) -> list[dict[str, Any]] | None:
    stripped = _EVENT_LINE.sub(b"", body).strip()
    if not stripped:
        return []
    if not stripped.startswith(b"data:"):
        return None
    parts = stripped[5:].split(b"\n\ndata:")
    payloads = [p for p in parts if p.strip() != _DONE]
    if not payloads:
        return []
    joined = b"[" + b",".join(payloads) + b"]"
    try:
        decoded: list[Any] = json.loads(joined)
    except ValueError:
        return None
    if len(decoded) != len(payloads) or not all(isinstance(item, dict) for item in decoded):
        return None
    return decoded


def _parse_slow(body: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    data_lines: list[bytes] = []

    def dispatch() -> None:
        if not data_lines:
            return
        payload = b"\n".join(data_lines)
        data_lines.clear()
        if payload.strip() == _DONE:
            return
        try:
            value = json.loads(payload)
        except ValueError:
            return
        if isinstance(value, dict):
            events.append(value)

    for line in body.split(b"\n"):
        if not line:
            dispatch()
        elif line.startswith(b":"):
            continue
        elif line.startswith(b"data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(b" ") else value)
    dispatch()
    return events
