"""One instrumented LLM call: from the parsed request to the ended span and recorded metrics.

`LLMCall` is created by the HTTP hooks once a request is recognised, finished exactly once (by the
response, the end of its stream, or an exception), and never raises into the app: every step that is
ours runs under `guard()`, while the app's own exceptions are recorded and re-raised by the hooks.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanContext, SpanKind, Status, StatusCode

from otel_llm import anthropic_wire, chat_stream_fast, openai_wire
from otel_llm import attributes as attr
from otel_llm.config import Settings
from otel_llm.context import EMPTY_CONTEXT as _NO_CONTEXT
from otel_llm.context import LLMContext
from otel_llm.control import applied_switches
from otel_llm.cost import cost_usd
from otel_llm.endpoints import ApiKind, Route
from otel_llm.finisher import finisher
from otel_llm.guard import guard, swallowed
from otel_llm.hashing import input_hash, output_hash
from otel_llm.redaction import redact
from otel_llm.sse import parse_events
from otel_llm.telemetry import Telemetry
from otel_llm.wire import RequestInfo, ResponseInfo

_log = logging.getLogger(__name__)

_REQUEST_PARSERS: dict[ApiKind, Callable[[dict[str, Any]], RequestInfo]] = {
    "openai.chat": openai_wire.chat_request,
    "openai.responses": openai_wire.responses_request,
    "openai.embeddings": openai_wire.embeddings_request,
    "anthropic.messages": anthropic_wire.messages_request,
}
_RESPONSE_PARSERS: dict[ApiKind, Callable[[dict[str, Any]], ResponseInfo]] = {
    "openai.chat": openai_wire.chat_response,
    "openai.responses": openai_wire.responses_response,
    "openai.embeddings": openai_wire.embeddings_response,
    "anthropic.messages": anthropic_wire.messages_response,
}
_STREAM_PARSERS: dict[ApiKind, Callable[[list[dict[str, Any]]], ResponseInfo]] = {
    "openai.chat": openai_wire.chat_stream,
    "openai.responses": openai_wire.responses_stream,
    "anthropic.messages": anthropic_wire.messages_stream,
}


class CallHandle:
    """What an app keeps to score a call later (e.g. a user's thumbs-up minutes after the answer).

    Made on the app's thread when the call ends. The span (when it is created off the request path, see
    `otel_llm.deferral`) and the response id are made on the finisher thread, so reading them may wait (at
    most a second) for that call to be finished.
    """

    __slots__ = ("_call",)

    def __init__(self, call: LLMCall) -> None:
        self._call = call

    @property
    def span_context(self) -> SpanContext:
        if self._call.span_pending:
            finisher.flush(1.0)
        return self._call.span.get_span_context()

    @property
    def response_id(self) -> str:
        if not self._call.completed:
            finisher.flush(1.0)
        return self._call.response_id

    @property
    def model(self) -> str:
        if not self._call.completed:
            finisher.flush(1.0)
        return self._call.response_model or self._call.request.model


_last_call: ContextVar[CallHandle | None] = ContextVar("otel_llm_last_call", default=None)


def last_call() -> CallHandle | None:
    """The most recent LLM call finished in this context (thread or task), or `None`."""
    return _last_call.get()


# A hook the evaluation worker installs: called with the finished call's data, off nothing (must be cheap).
CompletionHook = Callable[["LLMCall", ResponseInfo | None], None]
_completion_hooks: list[CompletionHook] = []


def add_completion_hook(hook: CompletionHook) -> None:
    _completion_hooks.append(hook)


def remove_completion_hook(hook: CompletionHook) -> None:
    if hook in _completion_hooks:
        _completion_hooks.remove(hook)


_MetricAttributes = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
_metric_attribute_cache: dict[tuple[Route, str, str, str], _MetricAttributes] = {}
_METRIC_CACHE_LIMIT = 4096


def _metric_attributes(
    route: Route, request_model: str, response_model: str, error_type: str
) -> _MetricAttributes:
    """The metric attribute sets of a call (all, input tokens, output tokens), built once per combination."""
    key = (route, request_model, response_model, error_type)
    cached = _metric_attribute_cache.get(key)
    if cached is not None:
        return cached
    base: dict[str, Any] = {
        attr.GEN_AI_OPERATION_NAME: route.operation,
        attr.GEN_AI_PROVIDER_NAME: route.provider,
        attr.SERVER_ADDRESS: route.server_address,
    }
    if route.server_port is not None:
        base[attr.SERVER_PORT] = route.server_port
    if request_model:
        base[attr.GEN_AI_REQUEST_MODEL] = request_model
    if response_model:
        base[attr.GEN_AI_RESPONSE_MODEL] = response_model
    if error_type:
        base[attr.ERROR_TYPE] = error_type
    value = (base, {**base, "gen_ai.token.type": "input"}, {**base, "gen_ai.token.type": "output"})
    if len(_metric_attribute_cache) >= _METRIC_CACHE_LIMIT:
        _metric_attribute_cache.clear()
    _metric_attribute_cache[key] = value
    return value


def parse_body(content: bytes) -> dict[str, Any] | None:
    """The request body, or `None` if it is not a JSON object."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def request_model(content: bytes) -> str | None:
    """The request's model, read without parsing the whole body (a RAG prompt can be tens of kilobytes).

    The cheap reading is used only when the body has exactly one `"model": "..."` pair and looks like a
    JSON object; otherwise (a tool schema with a `model` property, say) the body is parsed. `None`: the
    body is not a JSON object, and the request is not traced.
    """
    stripped = content.lstrip()
    if not stripped.startswith(b"{"):
        return None
    found: list[bytes] = _MODEL.findall(content)
    if len(found) == 1 and b"\\" not in found[0]:
        try:
            return found[0].decode()
        except UnicodeDecodeError:
            pass
    body = parse_body(content)
    if body is None:
        return None
    model = body.get("model")
    return model if isinstance(model, str) else ""


def parse_request(api: ApiKind, body: dict[str, Any]) -> RequestInfo:
    return _REQUEST_PARSERS[api](body)


_END_MARKERS: dict[ApiKind, tuple[bytes, ...]] = {
    "openai.chat": (b"[DONE]",),
    "openai.responses": (b'"response.completed"', b'"response.incomplete"', b'"response.failed"'),
    "anthropic.messages": (b'"message_stop"',),
}


def _stream_complete(api: ApiKind, body: bytes) -> bool:
    tail = body[-4096:]
    return any(marker in tail for marker in _END_MARKERS.get(api, ()))


def error_type_of(exc: BaseException) -> str:
    """`httpx2.ReadTimeout`-style names: the top-level package and the class, stable across versions."""
    cls = type(exc)
    package = cls.__module__.split(".", 1)[0]
    return cls.__qualname__ if package == "builtins" else f"{package}.{cls.__qualname__}"


class LLMCall:
    """The state of one call between request and response."""

    __slots__ = (
        "_finished",
        "completed",
        "content",
        "context",
        "error_type",
        "parent",
        "request",
        "response_id",
        "response_model",
        "route",
        "settings",
        "span",
        "span_pending",
        "start",
        "start_ns",
        "switches",
        "telemetry",
        "time_to_first_chunk",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        settings: Settings,
        route: Route,
        content: bytes,
        model: str,
        context: LLMContext,
        parent: Context | None = None,
    ) -> None:
        """`parent`: the context captured at the request, to create the span later on the finisher thread
        (with this moment as its start time); `None`: start the span now, in the current context."""
        self.telemetry = telemetry
        self.settings = settings
        self.route = route
        self.content = content
        # Only what samplers may look at is set at start (the conventions' sampling-relevant attributes);
        # the request body is parsed, and the rest set, on the finisher thread.
        self.request = RequestInfo(model=model)
        self.context = context
        self.time_to_first_chunk: float | None = None
        self.error_type = ""
        self.response_id = ""
        self.response_model = ""
        self.completed = False
        self._finished = False
        self.switches = applied_switches()
        self.parent = parent
        if parent is None:
            self.span_pending = False
            self.start_ns = 0
            self.span: Span = self._start_span(None, None)
        else:
            self.span_pending = True
            self.span = INVALID_SPAN
            self.start_ns = time.time_ns()
        self.start = time.perf_counter()

    def _start_span(self, parent: Context | None, start_ns: int | None) -> Span:
        route = self.route
        attrs: dict[str, Any] = {
            attr.GEN_AI_OPERATION_NAME: route.operation,
            attr.GEN_AI_PROVIDER_NAME: route.provider,
            attr.SERVER_ADDRESS: route.server_address,
        }
        if route.server_port is not None:
            attrs[attr.SERVER_PORT] = route.server_port
        if self.switches:
            attrs[attr.KILL_SWITCH] = list(self.switches)
        name = route.operation
        if self.request.model:
            attrs[attr.GEN_AI_REQUEST_MODEL] = self.request.model
            name = f"{route.operation} {self.request.model}"
        return self.telemetry.tracer.start_span(
            name, context=parent, kind=SpanKind.CLIENT, attributes=attrs, start_time=start_ns
        )

    def _open_span(self) -> None:
        """Create the deferred span (on the finisher), in the captured parent context, started at the
        request's time. If that fails, the call is still finished, with a non-recording span."""
        if not self.span_pending:
            return
        try:
            self.span = self._start_span(self.parent, self.start_ns)
        except Exception:
            swallowed("span start")
        finally:
            self.parent = None
            self.span_pending = False

    def _parse_request(self) -> RequestInfo:
        body = parse_body(self.content)
        if body is None:
            return RequestInfo(model=self.request.model)
        return _REQUEST_PARSERS[self.route.api](body)

    def _request_attributes(self) -> dict[str, Any]:
        """Parse the request (on the finisher) and return the attributes it contributes."""
        request = self.request = self._parse_request()
        out: dict[str, Any] = {attr.API: self.route.api}
        if request.stream:
            out[attr.GEN_AI_REQUEST_STREAM] = True
        out.update(request.attributes)
        if self.context is not _NO_CONTEXT:
            out.update(self.context.span_attributes())
        out[attr.INPUT_HASH] = input_hash(request.hash_input)
        return out

    # --- finishing: the clock is read here, on the app's thread; the rest runs on the finisher --------
    def finish_body(self, status_code: int, body: bytes) -> None:
        """A complete (non-streamed) response body."""
        if self._claim():
            finisher.submit(self._complete_body, status_code, body, self._stop_clock())

    def finish_stream(self, status_code: int, body: bytes, *, aborted: bool, truncated: bool) -> None:
        """A streamed body, whole or cut short (`aborted` when the app closed it before its end)."""
        if self._claim():
            finisher.submit(self._complete_stream, status_code, body, aborted, truncated, self._stop_clock())

    def finish_chunks(
        self,
        status_code: int,
        chunks: list[bytes],
        encoding: str,
        *,
        event_stream: bool,
        aborted: bool,
        truncated: bool,
    ) -> None:
        """A streamed response as the raw pieces read; joining and decoding them is deferred too."""
        if self._claim():
            finisher.submit(
                self._complete_chunks,
                status_code,
                chunks,
                encoding,
                event_stream,
                aborted,
                truncated,
                self._stop_clock(),
            )

    def fail(self, exc: BaseException) -> None:
        """The request or the stream raised: record it; the hooks re-raise it unchanged."""
        if self._claim():
            finisher.submit(self._complete_failure, exc, self._stop_clock())

    def _stop_clock(self) -> tuple[int, float]:
        end = (time.time_ns(), time.perf_counter() - self.start)
        _last_call.set(CallHandle(self))
        return end

    def _complete_body(self, status_code: int, body: bytes, clock: tuple[int, float]) -> None:
        self._open_span()
        info = None
        if status_code < 400:
            with guard("response parse"):
                info = self._parse_json(body)
        self._end(clock, status_code, info, error_type=str(status_code) if status_code >= 400 else "")

    def _complete_chunks(
        self,
        status_code: int,
        chunks: list[bytes],
        encoding: str,
        event_stream: bool,
        aborted: bool,
        truncated: bool,
        clock: tuple[int, float],
    ) -> None:
        from otel_llm.streams import decode_body

        self._open_span()
        body = decode_body(b"".join(chunks), encoding)
        if event_stream:
            self._complete_stream(status_code, body, aborted, truncated, clock)
        else:
            self._complete_body(status_code, body, clock)

    def _complete_stream(
        self, status_code: int, body: bytes, aborted: bool, truncated: bool, clock: tuple[int, float]
    ) -> None:
        self._open_span()
        info = None
        with guard("stream parse"):
            if status_code < 400:
                if self.route.api == "openai.chat":
                    info = chat_stream_fast.read(body)
                if info is None:
                    parser = _STREAM_PARSERS.get(self.route.api)
                    info = parser(parse_events(body)) if parser else self._parse_json(body)
            # SDKs close the response once they see the end marker, before the transport's own
            # end of body: a stream is only cut short if the protocol's end marker never came.
            if aborted and not _stream_complete(self.route.api, body):
                self.span.set_attribute(attr.STREAM_ABORTED, True)
            if truncated:
                self.span.set_attribute("otel_llm.stream.truncated", True)
        self._end(clock, status_code, info, error_type=str(status_code) if status_code >= 400 else "")

    def _complete_failure(self, exc: BaseException, clock: tuple[int, float]) -> None:
        self._open_span()
        with guard("failure"):
            self.span.record_exception(exc, timestamp=clock[0])
        self._end(clock, None, None, error_type=error_type_of(exc), description=str(exc) or None)

    def _claim(self) -> bool:
        if self._finished:
            return False
        self._finished = True
        return True

    def _parse_json(self, body: bytes) -> ResponseInfo | None:
        try:
            decoded = json.loads(body)
        except ValueError:
            return None
        if not isinstance(decoded, dict):
            return None
        return _RESPONSE_PARSERS[self.route.api](decoded)

    def _end(
        self,
        clock: tuple[int, float],
        status_code: int | None,
        info: ResponseInfo | None,
        *,
        error_type: str,
        description: str | None = None,
    ) -> None:
        end_ns, duration = clock
        try:
            with guard("end"):
                self._finish_attributes(duration, status_code, info, error_type, description)
        finally:
            if info is not None:
                self.response_id = info.response_id
                self.response_model = info.response_model
            self.span.end(end_time=end_ns)
            self.completed = True
        with guard("completion hooks"):
            for hook in _completion_hooks:
                hook(self, info)

    def _finish_attributes(
        self,
        duration: float,
        status_code: int | None,
        info: ResponseInfo | None,
        error_type: str,
        description: str | None,
    ) -> None:
        span = self.span
        if span.is_recording():
            span.set_attributes(self._request_attributes())
            if self.settings.capture_content:
                with guard("input content"):
                    self._capture_input()
        else:
            self.request = self._parse_request()
        if info is not None and info.error_type and not error_type:
            error_type = info.error_type
        if status_code is not None:
            span.set_attribute("http.response.status_code", status_code)
        cost = None
        if info is not None:
            cost = self._record_response(info)
        self.error_type = error_type
        if error_type:
            span.set_attribute(attr.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, description or error_type))
        self._record_metrics(duration, info, error_type, cost)

    def _record_response(self, info: ResponseInfo) -> float | None:
        span = self.span
        recording = span.is_recording()
        cost = None
        if info.usage_reported and info.input_tokens is not None:
            cost = cost_usd(
                info.response_model or self.request.model,
                self.route.provider,
                input_tokens=info.input_tokens,
                output_tokens=info.output_tokens or 0,
                cache_read_tokens=info.cache_read_tokens or 0,
                cache_creation_tokens=info.cache_creation_tokens or 0,
            )
        if recording:
            # One `set_attributes` call: the SDK takes its lock once instead of per attribute.
            out: dict[str, Any] = {attr.USAGE_REPORTED: info.usage_reported}
            if info.response_id:
                out[attr.GEN_AI_RESPONSE_ID] = info.response_id
            if info.response_model:
                out[attr.GEN_AI_RESPONSE_MODEL] = info.response_model
            if info.finish_reasons:
                out[attr.GEN_AI_RESPONSE_FINISH_REASONS] = info.finish_reasons
            if info.input_tokens is not None:
                out[attr.GEN_AI_USAGE_INPUT_TOKENS] = info.input_tokens
            if info.output_tokens is not None:
                out[attr.GEN_AI_USAGE_OUTPUT_TOKENS] = info.output_tokens
            if info.cache_read_tokens is not None:
                out[attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = info.cache_read_tokens
            if info.cache_creation_tokens is not None:
                name = (
                    attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
                    if self.settings.latest_semconv
                    else attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
                )
                out[name] = info.cache_creation_tokens
            if info.reasoning_tokens is not None:
                out[attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = info.reasoning_tokens
            if self.request.stream or info.chunks:
                out[attr.STREAM_CHUNKS] = info.chunks
            if self.time_to_first_chunk is not None:
                out[attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = self.time_to_first_chunk
            if info.tool_calls:
                out[attr.TOOL_CALL_COUNT] = len(info.tool_calls)
                out[attr.TOOL_CALL_NAMES] = [call.name for call in info.tool_calls]
            if any(info.output_texts):
                out[attr.OUTPUT_HASH] = output_hash(info.output_texts)
            if cost is not None:
                out[attr.COST_USD] = cost
            out.update(info.attributes)
            span.set_attributes(out)
            if self.settings.capture_content:
                self._capture_output(info)
        if self.settings.capture_content_events:
            with guard("content event"):
                self._emit_details_event(info)
        return cost

    def _record_metrics(
        self, duration: float, info: ResponseInfo | None, error_type: str, cost: float | None
    ) -> None:
        response_model = info.response_model if info is not None else ""
        metric_attrs, input_attrs, output_attrs = _metric_attributes(
            self.route, self.request.model, response_model, error_type
        )
        telemetry = self.telemetry
        telemetry.operation_duration.record(duration, metric_attrs)
        if self.time_to_first_chunk is not None:
            telemetry.time_to_first_chunk.record(self.time_to_first_chunk, metric_attrs)
        if info is not None and info.usage_reported:
            if info.input_tokens is not None:
                telemetry.token_usage.record(info.input_tokens, input_attrs)
            if info.output_tokens is not None:
                telemetry.token_usage.record(info.output_tokens, output_attrs)
        if cost is not None:
            telemetry.cost.add(cost, metric_attrs)

    # --- opt-in content ----------------------------------------------------------------------------
    def _text(self, value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return redact(text) if self.settings.redact_content else text

    def _capture_input(self) -> None:
        if self.request.messages is not None:
            self.span.set_attribute(attr.GEN_AI_INPUT_MESSAGES, self._text(self.request.messages))
        if self.request.system is not None:
            self.span.set_attribute(attr.GEN_AI_SYSTEM_INSTRUCTIONS, self._text(self.request.system))
        if self.context.retrieved_context:
            documents = self._text(list(self.context.retrieved_context))
            self.span.set_attribute(attr.GEN_AI_RETRIEVAL_DOCUMENTS, documents)

    def _output_messages(self, info: ResponseInfo) -> list[dict[str, Any]]:
        return [
            {"role": "assistant", "content": text, "finish_reason": reason}
            for text, reason in zip(info.output_texts, info.finish_reasons or [""] * len(info.output_texts))
        ]

    def _capture_output(self, info: ResponseInfo) -> None:
        messages = self._output_messages(info)
        if messages:
            self.span.set_attribute(attr.GEN_AI_OUTPUT_MESSAGES, self._text(messages))

    def _emit_details_event(self, info: ResponseInfo) -> None:
        """The content as the `gen_ai.client.inference.operation.details` event, in the span's context."""
        attributes: dict[str, Any] = {
            attr.GEN_AI_OPERATION_NAME: self.route.operation,
            attr.GEN_AI_REQUEST_MODEL: self.request.model,
        }
        if info.response_id:
            attributes[attr.GEN_AI_RESPONSE_ID] = info.response_id
        if self.request.messages is not None:
            attributes[attr.GEN_AI_INPUT_MESSAGES] = self._text(self.request.messages)
        if self.request.system is not None:
            attributes[attr.GEN_AI_SYSTEM_INSTRUCTIONS] = self._text(self.request.system)
        if self.context.retrieved_context:
            attributes[attr.GEN_AI_RETRIEVAL_DOCUMENTS] = self._text(list(self.context.retrieved_context))
        attributes[attr.GEN_AI_OUTPUT_MESSAGES] = self._text(self._output_messages(info))
        self.telemetry.logger.emit(
            context=trace.set_span_in_context(self.span),
            event_name=attr.GEN_AI_INFERENCE_DETAILS_EVENT,
            attributes=attributes,
        )
