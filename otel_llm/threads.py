"""Context that follows work into `ThreadPoolExecutor` threads, as it follows asyncio tasks.

`asyncio` copies the caller's `contextvars` into every task; `ThreadPoolExecutor.submit` does not, so a
function submitted from inside `llm_context(...)` (or a traced request) would lose both our context and
the current OpenTelemetry span. The instrumentor wraps `submit` to run the function in a copy of the
submitter's context (one `copy_context()`, O(1)). Turn it off with `OTEL_LLM_THREAD_CONTEXT=false`.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap

_installed = False


def _submit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not args:
        return wrapped(*args, **kwargs)
    fn, *rest = args
    ctx = contextvars.copy_context()
    return wrapped(ctx.run, fn, *rest, **kwargs)


def install() -> None:
    global _installed
    if not _installed:
        wrapt.wrap_function_wrapper(ThreadPoolExecutor, "submit", _submit)
        _installed = True


def uninstall() -> None:
    global _installed
    if _installed:
        unwrap(ThreadPoolExecutor, "submit")
        _installed = False
