"""Captured content: the decode-stage half of evaluation in the collector (`content_eval`).

When an app turns content capture on, its calls carry their prompts and answers. This module picks a
sample of those calls while decode walks the request, copies the captured content out of the protobuf into
a small `CapturedCall`, and later (on an evaluator thread) turns that into the `EvaluationInput` the
`otel_llm` evaluators take. It is the only code besides `decode` that reads protobuf, and it runs only when
content evaluation is enabled: with it off, decode never calls it.

Where the content is. Our instrumentation, with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`:

- `true` / `SPAN_ONLY`: JSON strings on the call's span: `gen_ai.input.messages` (the request's messages as
  sent: `{"role", "content"}` with a string or a list of `{"type": "text", "text"}` parts),
  `gen_ai.system_instructions` (Anthropic's `system`), `gen_ai.output.messages`
  (`[{"role": "assistant", "content": ..., "finish_reason": ...}]`);
- `EVENT_ONLY`: the same three attributes on a `gen_ai.client.inference.operation.details` log record in the
  call's span context (with `gen_ai.response.id` and `gen_ai.request.model`);
- `SPAN_AND_EVENT`: both; `content_eval` evaluates each call once, whichever arrives first.

The GenAI semantic conventions' own shape (`{"role", "parts": [{"type": "text", "content"}]}`, as the
official openai-v2 instrumentation writes it) is read too, as JSON strings on spans or as structured values on
the details event, and so is `gen_ai.retrieval.documents` when it is on the call's span (a JSON list of
strings or of objects with a `content` or `text` field).

Retrieved context. `llm_context(retrieved_context=...)` reaches the collector as `gen_ai.retrieval.documents`
when the app captures content; besides it, the evidence for
`groundedness` (and the judge's `faithfulness`) is what the app gave the model besides the question: system
instructions, `system` and `developer` messages, tool results (`tool` messages, Anthropic `tool_result`
parts, semconv `tool_call_response` parts, Responses `function_call_output` items), and
`gen_ai.retrieval.documents`. A RAG app that puts its documents in the system prompt or hands them over as
tool results is judged against them; one that pastes them into the user message has no evidence apart from
the question, and `groundedness` does not judge its calls.

Sampling happens before any content is read: a call is taken when the CRC-32 of its span id falls below the
sample rate (the same calls in every collector and after a restart); a failed call always, with
`always_on_error` (a details event has no status: it is taken by its span id alone unless it carries
`error.type`). Embedding calls are never taken.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.semconv._incubating.attributes.event_attributes import EVENT_NAME
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GEN_AI_RETRIEVAL_DOCUMENTS

from otel_llm import attributes as A
from otel_llm.evaluators import EvaluationInput
from otel_llm_collector.records import CallRecord

__all__ = [
    "CapturedCall",
    "ContentTooLarge",
    "SamplePlan",
    "capture_log_record",
    "capture_span",
    "evaluation_input",
    "sample_point",
]

SAMPLE_SPACE: Final = 1 << 32
"""`sample_point` is uniform over [0, SAMPLE_SPACE)."""
MAX_ATTRIBUTES_READ: Final = 256
"""Attributes looked at per span or log record for content; our instrumentation sets about 25."""
_MAX_DEPTH: Final = 32

_INPUT: Final = A.GEN_AI_INPUT_MESSAGES
_OUTPUT: Final = A.GEN_AI_OUTPUT_MESSAGES
_SYSTEM: Final = A.GEN_AI_SYSTEM_INSTRUCTIONS
_DOCUMENTS: Final = GEN_AI_RETRIEVAL_DOCUMENTS
_CONTENT_KEYS: Final = frozenset({_INPUT, _OUTPUT, _SYSTEM, _DOCUMENTS})
_DETAILS_EVENT: Final = A.GEN_AI_INFERENCE_DETAILS_EVENT
_EMBEDDINGS: Final = "embeddings"
_ZERO_SPAN_ID: Final = bytes(8)
_ZERO_TRACE_ID: Final = bytes(16)
_TEXT_PART_TYPES: Final = frozenset({"text", "input_text", "output_text"})
_EVIDENCE_ROLES: Final = frozenset({"system", "developer", "tool"})


class ContentTooLarge(Exception):
    """The call's captured content exceeds `max_content_chars`; it is skipped and counted."""


_crc32: Final = zlib.crc32


def sample_point(span_id: bytes) -> int:
    """Where a span falls in [0, SAMPLE_SPACE): its CRC-32, uniform over random span ids and cheap."""
    return _crc32(span_id)


def threshold(rate: float) -> int:
    """The sample point below which a call is taken at `rate` (0.0: none, 1.0: all)."""
    return round(rate * SAMPLE_SPACE)


@dataclass(frozen=True, slots=True)
class SamplePlan:
    """Which calls to capture, and for which evaluators; thresholds from `threshold(rate)`."""

    local: int
    """Sampled evaluators run on calls below this point."""
    judge: int
    """Judge evaluators run on calls below this point."""
    every_call: bool
    """Some evaluator (`leak`) runs on every call: every call's content is read."""
    always_on_error: bool
    max_content_chars: int
    capture: int = field(init=False)
    """Calls below this point are captured."""

    def __post_init__(self) -> None:
        capture = SAMPLE_SPACE if self.every_call else max(self.local, self.judge)
        object.__setattr__(self, "capture", capture)


@dataclass(frozen=True, slots=True)
class CapturedCall:
    """One sampled call's captured content, copied out of the protobuf.

    The content fields hold what was captured: a JSON string (span attributes, and events from our
    instrumentation) or an already decoded value (structured event attributes); `None` when absent. They
    are parsed on an evaluator thread, not on the receiver's.
    """

    trace_id: str
    span_id: str
    time_ns: int
    """The call's end (the span's end time, or the details event's time): the evaluations' event time."""
    response_id: str = ""
    model: str = ""
    error_type: str = ""
    input_messages: object = None
    output_messages: object = None
    system_instructions: object = None
    documents: object = None
    local: bool = True
    """Run the sampled evaluators (the `every_call` ones always run)."""
    judged: bool = False
    """Run the judge evaluators."""

    @property
    def has_content(self) -> bool:
        return self.input_messages is not None or self.output_messages is not None


# --- decode stage: protobuf -> CapturedCall -------------------------------------------------------------


def _any_value(value: Any, budget: list[int], depth: int = 0) -> object:
    """A protobuf AnyValue as a Python value; `budget[0]` characters of strings at most."""
    which = value.WhichOneof("value")
    if which == "string_value":
        text: str = value.string_value
        budget[0] -= len(text)
        if budget[0] < 0:
            raise ContentTooLarge
        return text
    if depth >= _MAX_DEPTH:
        return None
    if which == "array_value":
        return [_any_value(item, budget, depth + 1) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value, budget, depth + 1) for kv in value.kvlist_value.values}
    if which == "int_value":
        return int(value.int_value)
    if which == "double_value":
        return float(value.double_value)
    if which == "bool_value":
        return bool(value.bool_value)
    return None


def _content(attributes: Any, max_chars: int) -> dict[str, object]:
    found: dict[str, object] = {}
    budget = [max_chars]
    for index, kv in enumerate(attributes):
        if index >= MAX_ATTRIBUTES_READ:
            break
        if kv.key in _CONTENT_KEYS:
            found[kv.key] = _any_value(kv.value, budget)
    return found


def capture_span(plan: SamplePlan, span: Any, call: CallRecord) -> CapturedCall | None:
    """The sampled call's content from its span; None when the call is not sampled (nothing read).

    Raises `ContentTooLarge`. A sampled call without content gives a `CapturedCall` whose `has_content`
    is False (counted by the caller). Called for every GenAI span: the common way out is the first test.
    """
    if call.error_type and plan.always_on_error:
        point = 0
    else:
        point = _crc32(span.span_id)
        if point >= plan.capture:
            return None
    if call.operation == _EMBEDDINGS:
        return None
    found = _content(span.attributes, plan.max_content_chars)
    return CapturedCall(
        trace_id=call.trace_id,
        span_id=call.span_id,
        time_ns=call.end_time_ns,
        response_id=call.response_id,
        model=call.response_model or call.request_model,
        error_type=call.error_type,
        input_messages=found.get(_INPUT),
        output_messages=found.get(_OUTPUT),
        system_instructions=found.get(_SYSTEM),
        documents=found.get(_DOCUMENTS),
        local=point < plan.local,
        judged=point < plan.judge,
    )


def _event_name(record: Any) -> str:
    name: str = record.event_name
    if name:
        return name
    for index, kv in enumerate(record.attributes):
        if index >= MAX_ATTRIBUTES_READ:
            break
        if kv.key == EVENT_NAME:
            return str(kv.value.string_value)
    return ""


def capture_log_record(plan: SamplePlan, record: Any) -> CapturedCall | None:
    """The sampled call's content from a `gen_ai.client.inference.operation.details` log record.

    None for any other record, a record without span context, or a call not sampled. Raises
    `ContentTooLarge`.
    """
    span_id: bytes = record.span_id
    trace_id: bytes = record.trace_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID or len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return None
    if _event_name(record) != _DETAILS_EVENT:
        return None
    error_type = ""
    response_id = ""
    model = ""
    for index, kv in enumerate(record.attributes):
        if index >= MAX_ATTRIBUTES_READ:
            break
        key = kv.key
        if key == A.ERROR_TYPE:
            error_type = kv.value.string_value
        elif key == A.GEN_AI_RESPONSE_ID:
            response_id = kv.value.string_value
        elif key == A.GEN_AI_RESPONSE_MODEL or (key == A.GEN_AI_REQUEST_MODEL and not model):
            model = kv.value.string_value
    if error_type and plan.always_on_error:
        point = 0
    else:
        point = sample_point(span_id)
        if point >= plan.capture:
            return None
    found = _content(record.attributes, plan.max_content_chars)
    return CapturedCall(
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        time_ns=record.time_unix_nano or record.observed_time_unix_nano,
        response_id=response_id[:256],
        model=model[:256],
        error_type=error_type[:256],
        input_messages=found.get(_INPUT),
        output_messages=found.get(_OUTPUT),
        system_instructions=found.get(_SYSTEM),
        documents=found.get(_DOCUMENTS),
        local=point < plan.local,
        judged=point < plan.judge,
    )


# --- evaluator thread: CapturedCall -> EvaluationInput --------------------------------------------------


def _parsed(value: object) -> object:
    """A captured JSON string decoded; a string that is not JSON is taken as plain text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _text(content: object) -> str:
    """The text of a message's content: a string, one part, or a list of parts (text parts only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        kind = content.get("type", "text")
        if kind in _TEXT_PART_TYPES:
            for field in ("text", "content"):
                text = content.get(field)
                if isinstance(text, str):
                    return text
        return ""
    if isinstance(content, Sequence):
        return "\n".join(text for text in (_text(part) for part in content) if text)
    return ""


def _tool_output(part: Mapping[str, Any]) -> str:
    """The text of a tool result part or item ("" for any other part)."""
    kind = part.get("type")
    if kind == "tool_result":  # Anthropic
        return _text(part.get("content"))
    if kind == "tool_call_response":  # semantic conventions
        response = part.get("response")
        return response if isinstance(response, str) else json.dumps(response, default=str)
    if kind == "function_call_output":  # OpenAI Responses
        return _text(part.get("output"))
    return ""


def _message_body(message: Mapping[str, Any]) -> object:
    return message["parts"] if "parts" in message else message.get("content")


def _input(value: object) -> tuple[list[dict[str, str]], list[str]]:
    """(messages as `{"role", "content"}` with text content, evidence texts) from captured input."""
    parsed = _parsed(value)
    if isinstance(parsed, str):
        return [{"role": "user", "content": parsed}], []
    if not isinstance(parsed, Sequence):
        return [], []
    messages: list[dict[str, str]] = []
    evidence: list[str] = []
    for message in parsed:
        if isinstance(message, str):
            messages.append({"role": "user", "content": message})
            continue
        if not isinstance(message, Mapping):
            continue
        body = _message_body(message)
        parts = body if isinstance(body, Sequence) and not isinstance(body, str) else ()
        for part in (message, *parts):
            if isinstance(part, Mapping):
                tool_output = _tool_output(part)
                if tool_output:
                    evidence.append(tool_output)
        role = message.get("role")
        text = _text(body)
        if not text:
            continue
        if role in _EVIDENCE_ROLES:
            evidence.append(text)
        else:
            messages.append({"role": str(role or "user"), "content": text})
    return messages, evidence


def _output(value: object) -> str:
    parsed = _parsed(value)
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, Sequence):
        for message in parsed:
            text = _text(_message_body(message) if isinstance(message, Mapping) else message)
            if text:
                return text
    if isinstance(parsed, Mapping):
        return _text(_message_body(parsed))
    return ""


def _documents(value: object) -> list[str]:
    parsed = _parsed(value)
    if isinstance(parsed, str):
        return [parsed]
    if not isinstance(parsed, Sequence):
        return []
    texts: list[str] = []
    for document in parsed:
        if isinstance(document, str):
            texts.append(document)
        elif isinstance(document, Mapping):
            for field in ("content", "text", "page_content"):
                text = document.get(field)
                if isinstance(text, str):
                    texts.append(text)
                    break
    return texts


def evaluation_input(call: CapturedCall) -> EvaluationInput:
    """What the `otel_llm` evaluators see of a captured call (see the module docstring for the evidence)."""
    messages, evidence = _input(call.input_messages)
    system = call.system_instructions
    if system is not None:
        text = _text(_parsed(system))
        if text:
            evidence.insert(0, text)
    evidence.extend(_documents(call.documents))
    return EvaluationInput(
        request_messages=messages,
        response_text=_output(call.output_messages),
        context=tuple(text for text in evidence if text.strip()),
        model=call.model or None,
        response_id=call.response_id or None,
        error_type=call.error_type or None,
    )
