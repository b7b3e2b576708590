"""Tool execution spans (`execute_tool {gen_ai.tool.name}`), as a context manager or a decorator.

    with tool_span("get_weather", call_id=call.id) as span:
        result = get_weather(**args)

    @tool("search_docs")
    async def search_docs(query: str) -> list[str]: ...

The span is INTERNAL, a child of whatever is current (usually the agent's step), carries the app's
`llm_context` attributes, and records an exception raised by the tool (ERROR status, `error.type`)
before re-raising it unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otel_llm import attributes as attr
from otel_llm.call import error_type_of
from otel_llm.context import current_context
from otel_llm.telemetry import current as current_telemetry

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def tool_span(
    name: str,
    *,
    call_id: str | None = None,
    description: str | None = None,
    tool_type: str = "function",
) -> Iterator[Span]:
    """A span around one tool execution; yields it so the tool can add attributes."""
    attrs: dict[str, Any] = {
        attr.GEN_AI_OPERATION_NAME: "execute_tool",
        attr.GEN_AI_TOOL_NAME: name,
        attr.GEN_AI_TOOL_TYPE: tool_type,
    }
    if call_id:
        attrs[attr.GEN_AI_TOOL_CALL_ID] = call_id
    if description:
        attrs[attr.GEN_AI_TOOL_DESCRIPTION] = description
    attrs.update(current_context().span_attributes())
    tracer = current_telemetry().tracer
    with tracer.start_as_current_span(
        f"execute_tool {name}",
        kind=SpanKind.INTERNAL,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute(attr.ERROR_TYPE, error_type_of(exc))
            span.set_status(Status(StatusCode.ERROR, str(exc) or error_type_of(exc)))
            raise


def tool(name: str | None = None, *, description: str | None = None) -> Callable[[F], F]:
    """Decorate a sync or async function so each call runs inside a `tool_span`."""

    def decorate(fn: F) -> F:
        tool_name = name or fn.__name__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with tool_span(tool_name, description=description):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with tool_span(tool_name, description=description):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
