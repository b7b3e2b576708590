"""The HTTP-layer hooks: `Client.send` and `AsyncClient.send` of `httpx2` and `httpx`.

Hooking `send` (not the transport) puts the GenAI span around everything the client does for one
request, so an HTTP client span from `opentelemetry-instrumentation-httpx` (which hooks the transport)
nests under it whatever the order of instrumentation, and user-supplied transports are covered too.
The SDKs retry by calling `send` again: each attempt is its own GenAI span, each failed one with its
`error.type`.

When another GenAI instrumentation already has a span current for this call (the official OpenAI
instrumentation, the Anthropic SDK's own tracing, OpenLLMetry, ...), we do not start a second span: the
call would be counted twice. We add our context attributes (feature, prompt, context size, input hash)
to that span instead and emit no span or metrics of our own for the call.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any, Final

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from otel_llm import attributes as attr
from otel_llm.call import LLMCall, parse_body, parse_request, request_model
from otel_llm.config import Settings
from otel_llm.context import current_context
from otel_llm.deferral import can_defer
from otel_llm.endpoints import EndpointMatcher, route_for
from otel_llm.guard import guard, swallowed
from otel_llm.hashing import input_hash
from otel_llm.streams import StreamWatcher, stream_classes
from otel_llm.telemetry import current as current_telemetry

_log = logging.getLogger(__name__)

LIBRARIES = ("httpx2", "httpx")
_SUPPRESS_KEY = "otel_llm.suppress"


class Hooks:
    """Installs and removes the `send` wrappers; holds the settings they read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.matcher = EndpointMatcher(settings.extra_paths)
        self._patched: list[ModuleType] = []

    def install(self) -> None:
        for name in LIBRARIES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            wrapt.wrap_function_wrapper(module, "Client.send", self._send)
            wrapt.wrap_function_wrapper(module, "AsyncClient.send", self._send_async)
            self._patched.append(module)

    def uninstall(self) -> None:
        for module in self._patched:
            unwrap(module.Client, "send")
            unwrap(module.AsyncClient, "send")
        self._patched.clear()

    # --- the wrappers ----------------------------------------------------------------------------
    def _start(self, request: Any, client: Any, wrapped: Any, method: str) -> LLMCall | None:
        """The call for an LLM request, or `None` to pass the request through untouched.

        Runs on every request the app sends: plain `try` rather than `guard()`, one context read.
        """
        api = self.matcher.match(request.method, request.url.raw_path)
        if api is None:
            return None
        try:
            ctx = otel_context.get_current()
            if ctx.get(_SUPPRESS_KEY) or not is_instrumentation_enabled():
                return None
            content = request.content
            model = request_model(content)
            if model is None:
                return None
            llm_ctx = current_context()
            if _foreign_genai_span_active(ctx):
                body = parse_body(content) or {}
                _enrich_foreign_span(ctx, llm_ctx.span_attributes(), parse_request(api, body).hash_input)
                return None
            url = request.url
            route = route_for(api, url.host, url.port, url.raw_path)
            settings = self.settings
            parent = ctx if settings.defer_spans and can_defer(client, wrapped, method) else None
            return LLMCall(current_telemetry(), settings, route, content, model, llm_ctx, parent)
        except Exception:
            swallowed("request")
            return None

    def _send(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        request = args[0] if args else kwargs.get("request")
        call = self._start(request, instance, wrapped, "handle_request")
        if call is None:
            return wrapped(*args, **kwargs)
        # A deferred span does not exist yet; an eager one is current inside send.
        token = None if call.span_pending else otel_context.attach(trace.set_span_in_context(call.span))
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._after(call, response, kwargs.get("stream", False), is_async=False)
        return response

    async def _send_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        request = args[0] if args else kwargs.get("request")
        call = self._start(request, instance, wrapped, "handle_async_request")
        if call is None:
            return await wrapped(*args, **kwargs)
        # A deferred span does not exist yet; an eager one is current inside send.
        token = None if call.span_pending else otel_context.attach(trace.set_span_in_context(call.span))
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._after(call, response, kwargs.get("stream", False), is_async=True)
        return response

    def _after(self, call: LLMCall, response: Any, streamed: bool, *, is_async: bool) -> None:
        if not streamed:
            try:
                call.finish_body(response.status_code, response.content)
            except Exception:
                swallowed("response")
                call.finish_body(getattr(response, "status_code", 0), b"")
            return
        with guard("response"):
            headers = response.headers
            content_type = headers.get("content-type", "")
            encoding = headers.get("content-encoding", "").lower()
            watcher = StreamWatcher(
                call,
                response.status_code,
                event_stream=content_type.startswith("text/event-stream"),
                limit=self.settings.max_stream_buffer_bytes,
            )
            if getattr(response, "is_stream_consumed", False):
                # A body given whole (`content=bytes`): the client read it already and will not stream it.
                watcher.chunk(response.content)
                watcher.finish(aborted=False, encoding="")
                return
            module = importlib.import_module(type(response).__module__.split(".", 1)[0])
            sync_cls, async_cls = stream_classes(module)
            # By the client's side, not the stream's class: `ByteStream` is both a sync and an async
            # stream, and a sync client reading it through the async proxy would never finish the span.
            proxy = async_cls if is_async else sync_cls
            response.stream = proxy(response.stream, watcher, encoding)
            return
        # The guard swallowed an internal error: end the span rather than leak it.
        call.finish_body(getattr(response, "status_code", 0), b"")


_MODEL_CALL_OPERATIONS: Final = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
"""Operations of a span that is itself a model call. `invoke_agent`, `create_agent` and `execute_tool` spans
are parents of model calls, not model calls: a call made inside them gets its own span."""


def _foreign_genai_span_active(ctx: otel_context.Context) -> bool:
    """Whether the current span is another instrumentation's span for this very model call."""
    span = trace.get_current_span(ctx)
    if not span.is_recording():
        return False
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return False
    return attributes.get(attr.GEN_AI_OPERATION_NAME) in _MODEL_CALL_OPERATIONS


def _enrich_foreign_span(
    ctx: otel_context.Context, context_attributes: dict[str, Any], hash_input: Any
) -> None:
    span = trace.get_current_span(ctx)
    for key, value in context_attributes.items():
        span.set_attribute(key, value)
    span.set_attribute(attr.INPUT_HASH, input_hash(hash_input))
    span.set_attribute("otel_llm.enriched", True)


def suppress_key() -> str:
    """The context key that turns the hooks off for a block (used for the judge's own calls)."""
    return _SUPPRESS_KEY
