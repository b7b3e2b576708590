"""The one safe-guard for the instrumentation's own bugs: they are logged at debug and never reach the app.

Only code that is ours runs under `guard()`. The app's exceptions (HTTP errors, timeouts, errors raised
while the app iterates a stream) are not caught here: the hooks record them on the span and re-raise
them unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

_log = logging.getLogger("otel_llm")

internal_errors = 0
"""How many internal errors were swallowed (for tests and debugging)."""


def swallowed(what: str) -> None:
    """Count and log the internal error being handled; for hot paths that use a plain `try` (a `with
    guard()` costs a generator and a context manager per call)."""
    global internal_errors
    internal_errors += 1
    _log.debug("otel_llm: internal error in %s (ignored)", what, exc_info=True)


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        swallowed(what)
