"""Spans created off the request path look exactly like spans started before the request.

When nothing inside `send` needs the call's span current, the span is created on the finisher thread with
the parent context and the start time captured at the request (`otel_llm.deferral`). These tests make the
same calls both ways and compare what is exported, and check that the span is started before the request
whenever something inside `send` needs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan

import otel_llm
from otel_llm.deferral import can_defer
from tests.conftest import Telemetry, make_telemetry

MESSAGES = [{"role": "user", "content": "What does the Pro plan cost?"}]
BODY = {
    "id": "chatcmpl-42",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "49 dollars."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}
STREAM = (
    b"".join(
        b"data: " + json.dumps(chunk).encode() + b"\n\n"
        for chunk in (
            {
                "id": "chatcmpl-43",
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": "49"}}],
            },
            {
                "id": "chatcmpl-43",
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
            {"id": "chatcmpl-43", "model": "gpt-4o-mini", "choices": [], "usage": BODY["usage"]},
        )
    )
    + b"data: [DONE]\n\n"
)


class Recorder:
    """A transport handler that answers like the API and notes what it saw inside `send`."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.current_span_ids: list[int] = []
        self.seen_at: list[int] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.seen_at.append(time.time_ns())
        self.current_span_ids.append(trace.get_current_span().get_span_context().span_id)
        if self.fail:
            raise httpx2.ConnectError("refused", request=request)
        if json.loads(request.content).get("stream"):
            # An iterator, so the body is streamed through the transport rather than already read.
            pieces = iter([STREAM[:100], STREAM[100:]])
            return httpx2.Response(200, content=pieces, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=BODY)


def _client(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(base_url="https://api.openai.com/v1", api_key="t", max_retries=0, http_client=http)


def _call(client: openai.OpenAI, kind: str) -> None:
    if kind == "stream":
        for _ in client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ):
            pass
    elif kind == "error":
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


@pytest.fixture
def instrumented() -> Iterator[Callable[[bool], Telemetry]]:
    made: list[Telemetry] = []

    def instrument(defer: bool) -> Telemetry:
        t = make_telemetry()
        otel_llm.instrument(
            tracer_provider=t.tracer_provider,
            meter_provider=t.meter_provider,
            logger_provider=t.logger_provider,
            defer_spans=defer,
        )
        made.append(t)
        return t

    yield instrument
    otel_llm.uninstrument()
    for t in made:
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()


def _traced_call(telemetry: Telemetry, recorder: Recorder, kind: str) -> tuple[ReadableSpan, ReadableSpan]:
    app = telemetry.tracer_provider.get_tracer("app")
    with app.start_as_current_span("handle request"):
        _call(_client(recorder), kind)
    [parent] = [s for s in telemetry.finished() if s.name == "handle request"]
    return telemetry.only_call(), parent


TIMINGS = {"gen_ai.response.time_to_first_chunk"}


def _shape(span: ReadableSpan) -> dict[str, Any]:
    """What must not depend on when the span was created."""
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": {k: v for k, v in (span.attributes or {}).items() if k not in TIMINGS},
        "status": (span.status.status_code, span.status.description),
        "events": [(e.name, sorted((e.attributes or {}).keys())) for e in span.events],
    }


def _metrics(telemetry: Telemetry) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name in ("gen_ai.client.token.usage", "gen_ai.client.operation.duration", "otel_llm.client.cost"):
        points = telemetry.metric_points(name)  # durations differ: compare the attributes and counts
        out[name] = sorted(
            (
                tuple(sorted(dict(p.attributes).items())),
                getattr(p, "count", None) or getattr(p, "value", None),
            )
            for p in points
        )
    return out


@pytest.mark.parametrize("kind", ["body", "stream", "error"])
def test_a_deferred_span_is_the_span_an_eager_start_makes(
    instrumented: Callable[[bool], Telemetry], kind: str
) -> None:
    eager = instrumented(False)
    eager_span, _ = _traced_call(eager, Recorder(fail=kind == "error"), kind)
    eager_metrics = _metrics(eager)
    deferred = instrumented(True)
    recorder = Recorder(fail=kind == "error")
    deferred_span, parent = _traced_call(deferred, recorder, kind)

    assert _shape(deferred_span) == _shape(eager_span)
    assert _metrics(deferred) == eager_metrics
    # The deferred path was taken: inside `send` the app's span was still the current one.
    assert recorder.current_span_ids == [parent.context.span_id]
    assert deferred_span.parent is not None
    assert deferred_span.parent.span_id == parent.context.span_id
    assert deferred_span.context.trace_id == parent.context.trace_id
    # Started when the request was, not when the finisher got to it.
    assert deferred_span.start_time is not None
    assert deferred_span.end_time is not None
    assert parent.start_time is not None
    assert parent.end_time is not None
    assert parent.start_time <= deferred_span.start_time <= recorder.seen_at[0] <= deferred_span.end_time
    assert deferred_span.end_time <= parent.end_time


def test_the_eager_path_makes_the_span_current_inside_send(instrumented: Callable[[bool], Telemetry]) -> None:
    telemetry = instrumented(False)
    recorder = Recorder()
    span, _ = _traced_call(telemetry, recorder, "body")
    assert recorder.current_span_ids == [span.context.span_id]


def test_a_deferred_root_span_starts_its_own_trace(instrumented: Callable[[bool], Telemetry]) -> None:
    telemetry = instrumented(True)
    _call(_client(Recorder()), "body")
    span = telemetry.only_call()
    assert span.parent is None
    assert span.context.trace_id != 0


def test_last_call_gives_the_deferred_spans_context_before_any_flush(
    instrumented: Callable[[bool], Telemetry],
) -> None:
    telemetry = instrumented(True)
    _call(_client(Recorder()), "body")
    handle = otel_llm.last_call()
    assert handle is not None
    context = handle.span_context  # read before anything flushed the finisher
    assert context.is_valid
    assert context.span_id == telemetry.only_call().context.span_id
    assert handle.response_id == "chatcmpl-42"


def test_with_httpx_instrumentation_the_http_span_nests_under_ours(
    instrumented: Callable[[bool], Telemetry],
) -> None:
    telemetry = instrumented(True)
    instrumentor = HTTPX2ClientInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    try:
        # A real transport: the instrumentor patches `HTTPTransport`, not the mock one.
        recorder = Recorder()
        http = httpx2.Client(transport=httpx2.MockTransport(recorder))
        HTTPX2ClientInstrumentor.instrument_client(http, tracer_provider=telemetry.tracer_provider)
        client = openai.OpenAI(
            base_url="https://api.openai.com/v1", api_key="t", max_retries=0, http_client=http
        )
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        instrumentor.uninstrument()
    genai = telemetry.only_call()
    [http_span] = [s for s in telemetry.finished() if s.name == "POST"]
    assert http_span.parent is not None
    assert http_span.parent.span_id == genai.context.span_id


# --- what `can_defer` looks at --------------------------------------------------------------------
def _plain() -> httpx2.Client:
    return httpx2.Client(transport=httpx2.MockTransport(Recorder()))


def _send_of(client: Any) -> Any:
    send = type(client).send
    return getattr(send, "__wrapped__", send).__get__(client)


def test_a_plain_client_may_defer() -> None:
    client = _plain()
    assert can_defer(client, _send_of(client), "handle_request")
    assert can_defer(httpx2.Client(), _send_of(httpx2.Client()), "handle_request")


def test_event_hooks_run_inside_send_so_the_span_is_started_first() -> None:
    client = httpx2.Client(transport=httpx2.MockTransport(Recorder()), event_hooks={"request": [print]})
    assert not can_defer(client, _send_of(client), "handle_request")
    client = httpx2.Client(event_hooks={"response": [print]})
    assert not can_defer(client, _send_of(client), "handle_request")


def test_an_instrumented_client_or_transport_does_not_defer() -> None:
    client = httpx2.Client()
    HTTPX2ClientInstrumentor.instrument_client(client)
    try:
        assert not can_defer(client, _send_of(client), "handle_request")
    finally:
        HTTPX2ClientInstrumentor.uninstrument_client(client)
    assert can_defer(client, _send_of(client), "handle_request")

    instrumentor = HTTPX2ClientInstrumentor()
    instrumentor.instrument()
    try:
        client = httpx2.Client()
        assert not can_defer(client, _send_of(client), "handle_request")
        async_client = httpx2.AsyncClient()
        assert not can_defer(async_client, _send_of(async_client), "handle_async_request")
        mounted = httpx2.Client(
            transport=httpx2.MockTransport(Recorder()), mounts={"https://": httpx2.HTTPTransport()}
        )
        assert not can_defer(mounted, _send_of(mounted), "handle_request")
    finally:
        instrumentor.uninstrument()


def test_a_wrapper_inside_ours_on_send_does_not_defer() -> None:
    client = _plain()
    inner = wrapt.FunctionWrapper(
        _send_of(client), lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs)
    )
    assert not can_defer(client, inner, "handle_request")


def test_a_client_we_cannot_read_does_not_defer() -> None:
    class Odd:
        pass

    assert not can_defer(Odd(), None, "handle_request")


@pytest.mark.parametrize("defer", [True, False])
def test_a_sync_client_reading_a_byte_stream_body_gets_its_span(
    instrumented: Callable[[bool], Telemetry], defer: bool
) -> None:
    """`ByteStream` (a body given as bytes) is both a sync and an async stream: the proxy must follow the
    client's side, else a sync client reads it through the async proxy and the span never ends."""
    telemetry = instrumented(defer)

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=STREAM, headers={"content-type": "text/event-stream"})

    _call(_client(answer), "stream")
    span = telemetry.only_call()
    assert span.attributes is not None
    assert span.attributes["gen_ai.response.id"] == "chatcmpl-43"
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
