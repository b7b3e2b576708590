"""Finishing calls off the request path.

What the app must wait for is only what it cannot do without: starting the span (its context goes out with
the request) and reading the clock when the response or the stream ends. Everything else (parsing the
response body or the whole event stream, setting ~20 attributes, recording the metrics, ending the span
with the end time taken on the app's thread, running the evaluation hook) happens on one daemon thread.
The span's timestamps are those of the app's thread, so nothing observable moves.

Bounded: at most `max_pending` finishes wait; past that `submit` runs the work on the caller's thread
(back-pressure, never a loss). `flush()` waits until everything submitted so far is done; it runs at
interpreter exit (before the SDK's own exit flush, since it registers later) and on `uninstrument()`.
The thread never raises: each job runs under the instrumentation's guard.
"""

from __future__ import annotations

import atexit
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from otel_llm.guard import guard

Job = tuple[Callable[..., None], tuple[Any, ...]]


class Finisher:
    """One daemon thread draining a deque of jobs. `submit` may be called from any thread; never blocks
    (except to run a job itself when `max_pending` are already waiting)."""

    def __init__(self, max_pending: int = 10_000) -> None:
        self._jobs: deque[Job] = deque()
        self._max_pending = max_pending
        self._wakeup = threading.Condition(threading.Lock())
        self._submitted = 0
        self._done = 0
        self._thread: threading.Thread | None = None
        self._pid_lock = threading.Lock()
        self.ran_inline = 0
        """Jobs run on the caller's thread because too many were pending."""

    def _ensure_thread(self) -> None:
        with self._pid_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="otel-llm-finisher", daemon=True)
                self._thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if len(self._jobs) >= self._max_pending:
            self.ran_inline += 1
            with guard("finish"):
                fn(*args)
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._ensure_thread()
        with self._wakeup:
            self._submitted += 1
            self._jobs.append((fn, args))
            self._wakeup.notify()

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            with self._wakeup:
                while not jobs:
                    self._wakeup.wait()
            while jobs:
                fn, args = jobs.popleft()
                with guard("finish"):
                    fn(*args)
                with self._wakeup:
                    self._done += 1
                    self._wakeup.notify_all()

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        """Wait until every job submitted before this call has run; `False` on timeout."""
        with self._wakeup:
            target = self._submitted
            if self._done >= target:
                return True
            if self._thread is None or not self._thread.is_alive():
                # No thread to run them (e.g. after fork): run what is left here.
                pending = list(self._jobs)
                self._jobs.clear()
            else:
                return self._wakeup.wait_for(lambda: self._done >= target, timeout_seconds)
        for fn, args in pending:
            with guard("finish"):
                fn(*args)
        with self._wakeup:
            self._done += len(pending)
        return True


finisher = Finisher()
_exit_flush_registered = False


def register_exit_flush() -> None:
    """Flush at interpreter exit. Registered by `instrument()`, after the app's providers exist, so it runs
    before their own exit handlers (atexit is last-in, first-out) and the last spans are still exported."""
    global _exit_flush_registered
    if not _exit_flush_registered:
        atexit.register(finisher.flush)
        _exit_flush_registered = True


def flush(timeout_seconds: float = 5.0) -> bool:
    """Finish every call that has ended so far (spans ended, metrics recorded); `False` on timeout."""
    return finisher.flush(timeout_seconds)
