"""What the instrumentation reads from a request and a response, independent of the provider.

The provider modules (`openai_wire`, `anthropic_wire`) are pure functions from decoded JSON to these
records; `call.py` turns the records into span attributes and metrics. Keeping parsing pure makes it
testable on recorded bodies and keeps I/O out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ToolCall:
    name: str
    call_id: str = ""
    arguments: str = ""


@dataclass(slots=True)
class RequestInfo:
    model: str = ""
    stream: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    """`gen_ai.request.*` attributes (semconv names)."""
    hash_input: Any = None
    """The canonical input (messages, system, tools) that `otel_llm.input.hash` is computed over."""
    system: Any = None
    messages: Any = None
    """Input messages as sent, for opt-in content capture."""


@dataclass(slots=True)
class ResponseInfo:
    response_id: str = ""
    response_model: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    output_texts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int | None = None
    """Including cached tokens, as the GenAI conventions define."""
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_reported: bool = False
    chunks: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    error_type: str = ""
    """Set when the provider signalled an error inside a 200 response (e.g. an `error` stream event)."""


def as_int(value: Any) -> int | None:
    """An int from JSON, refusing bools and non-numbers (providers send `null` for unknowns)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
