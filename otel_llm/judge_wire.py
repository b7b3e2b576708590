"""The judge's HTTP edge: request bodies and answers of the OpenAI and Anthropic APIs, and a stdlib transport.

`JudgeTransport` is the one-method boundary (`post`); `UrllibTransport` is the default, built on
`urllib.request` so that the judge needs no HTTP library, honours `HTTPS_PROXY`, and never passes through
the `httpx` hooks. Any other transport (an `httpx.Client` with your own TLS settings, a test fake) is
called the same way; the judge wraps every call in OpenTelemetry's `suppress_instrumentation()`, so even a
transport built on an instrumented client produces no spans of its own.

OpenAI-compatible endpoints (OpenAI, Azure OpenAI's v1 API, vLLM, Ollama, LiteLLM, ...) get
`POST {base_url}/chat/completions` with a system and a user message; Anthropic gets
`POST {base_url}/v1/messages`. Both with temperature 0 and a small `max_tokens`; `request_options` is
merged over the body (a `None` value removes a key: reasoning models want `max_completion_tokens` and no
`temperature`).
"""

from __future__ import annotations

import enum
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from otel_llm.version import __version__

__all__ = [
    "HttpReply",
    "JudgeKind",
    "JudgeTransport",
    "UrllibTransport",
    "Usage",
    "WireAnswer",
    "build_request",
    "read_answer",
]

MAX_RESPONSE_BYTES: Final = 1 << 20
_ANTHROPIC_VERSION: Final = "2023-06-01"


class JudgeKind(enum.StrEnum):
    """The wire API of the judge's endpoint; the value is also its `gen_ai.provider.name`."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"

    @property
    def default_base_url(self) -> str:
        return "https://api.anthropic.com" if self is JudgeKind.ANTHROPIC else "https://api.openai.com/v1"


class HttpReply(NamedTuple):
    status: int
    body: bytes


class JudgeTransport(Protocol):
    """Sends one judge request. Runs on an evaluation worker thread and may block for `timeout_seconds`.

    Returns the reply whatever its HTTP status; raises `TimeoutError` when the time is up and `OSError`
    when the endpoint cannot be reached.
    """

    def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_seconds: float
    ) -> HttpReply: ...


class UrllibTransport:
    """The default transport. `timeout_seconds` bounds connecting and each wait for data, and the body is
    read in pieces with the deadline checked between them, so a server that trickles its answer is cut off
    too (at the latest one read timeout after the deadline). Replies are capped at 1 MiB."""

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout_seconds: float) -> HttpReply:
        deadline = time.monotonic() + timeout_seconds
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_seconds) as reply:
                return HttpReply(reply.status, _read(reply, deadline))
        except urllib.error.HTTPError as error:
            error.close()
            return HttpReply(error.code, b"")
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise TimeoutError(str(error.reason)) from error
            if isinstance(error.reason, OSError):
                raise error.reason from error
            raise OSError(f"cannot reach the judge endpoint: {error.reason}") from error


def _read(reply: Any, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("the judge's answer did not arrive in time")
        chunk = reply.read1(65_536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise OSError(f"judge answer larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the GenAI conventions count it: `input_tokens` includes the cached ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True, slots=True)
class WireAnswer:
    """What a judge endpoint answered: the text (`None` when it sent none), the model, the usage."""

    text: str | None
    model: str | None
    usage: Usage | None


def build_request(
    kind: JudgeKind,
    *,
    base_url: str,
    api_key: str | None,
    model: str,
    system: str,
    user: str,
    max_output_tokens: int,
    request_options: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, str], bytes]:
    """(url, headers, body) of one judge request."""
    headers = {"content-type": "application/json", "user-agent": f"otel-llm-judge/{__version__}"}
    body: dict[str, Any] = {"model": model, "max_tokens": max_output_tokens, "temperature": 0}
    if kind is JudgeKind.ANTHROPIC:
        url = base_url.rstrip("/") + "/v1/messages"
        headers["anthropic-version"] = _ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
        body["system"] = system
        body["messages"] = [{"role": "user", "content": user}]
    else:
        url = base_url.rstrip("/") + "/chat/completions"
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        body["messages"] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    for key, value in (request_options or {}).items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return url, headers, json.dumps(body).encode("utf-8")


def read_answer(kind: JudgeKind, body: bytes) -> WireAnswer:
    """The text, model and usage of a 2xx answer; raises `ValueError` when it is not the API's shape."""
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("judge answer is not a JSON object")
    model = document.get("model") if isinstance(document.get("model"), str) else None
    raw_usage = document.get("usage")
    if kind is JudgeKind.ANTHROPIC:
        blocks = document.get("content")
        if not isinstance(blocks, list):
            raise ValueError("Anthropic answer without `content`")
        texts = [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        text = "".join(t for t in texts if isinstance(t, str)) if texts else None
        return WireAnswer(text, model, _anthropic_usage(raw_usage))
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("OpenAI answer without `choices`")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return WireAnswer(content if isinstance(content, str) else None, model, _openai_usage(raw_usage))


def _count(raw: Any, key: str) -> int:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _openai_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict) or "prompt_tokens" not in raw:
        return None
    return Usage(
        input_tokens=_count(raw, "prompt_tokens"),
        output_tokens=_count(raw, "completion_tokens"),
        cache_read_tokens=_count(raw.get("prompt_tokens_details"), "cached_tokens"),
    )


def _anthropic_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict) or "input_tokens" not in raw:
        return None
    cache_read = _count(raw, "cache_read_input_tokens")
    cache_creation = _count(raw, "cache_creation_input_tokens")
    # Anthropic's `input_tokens` leaves the cached ones out; the conventions count them in.
    return Usage(
        input_tokens=_count(raw, "input_tokens") + cache_read + cache_creation,
        output_tokens=_count(raw, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
    )
