"""Whether a call's span may be created after the fact, on the finisher thread.

Starting an SDK span and making it current is most of what the instrumentation costs the app per call.
Deferring it (the span is created when the call is finished, with the request's start time and the
parent context captured at the request) is only correct when nothing that runs inside `send` needs our
span to be the current one: an HTTP client span of `opentelemetry-instrumentation-httpx` must nest under
ours, and the `traceparent` it sends must name it. So the span is started before the request, as always,
when any of these holds for the client sending it:

- another wrapper sits inside ours on `send` (an instrumentation that patched it before we did);
- `HTTPXClientInstrumentor.instrument_client` instrumented the client (it marks the client);
- a transport the client may use has a wrapped `handle_request` (the httpx instrumentor's patch of
  `HTTPTransport`, or a per-transport one) or is one of OpenTelemetry's own transport classes;
- the client has request or response event hooks (app code that runs inside `send`).

The checks are attribute reads on every call. What they cannot see (a custom transport that injects the
current span's context itself) needs `OTEL_LLM_DEFER_SPANS=false`. Anything unexpected means "do not defer".
"""

from __future__ import annotations

from typing import Any

import wrapt

# The common base of wrapt's proxies and function wrappers: `BaseObjectProxy` in wrapt 2 (where
# `ObjectProxy` is a subclass that `FunctionWrapper` does not derive from), `ObjectProxy` in wrapt 1.
_PROXY: type[Any] = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)


def _traced(transport: Any, method: str) -> bool:
    if isinstance(getattr(transport, method, None), _PROXY):
        return True
    return type(transport).__module__.startswith("opentelemetry.")


def can_defer(client: Any, wrapped: Any, method: str) -> bool:
    """Whether nothing inside `client.send` can need the call's span current (`method`: the transport's
    `handle_request` or `handle_async_request`)."""
    if isinstance(wrapped, _PROXY) or getattr(client, "_is_instrumented_by_opentelemetry", False):
        return False
    hooks = getattr(client, "_event_hooks", None)
    if hooks is None or hooks.get("request") or hooks.get("response"):
        return False
    transport = getattr(client, "_transport", None)
    if transport is None or _traced(transport, method):
        return False
    mounts = getattr(client, "_mounts", None)
    if mounts is None:
        return False
    return not any(mounted is not None and _traced(mounted, method) for mounted in mounts.values())
