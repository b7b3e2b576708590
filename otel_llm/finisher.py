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

from otel_llm.guard import swallowed

Job = tuple[Callable[..., None], tuple[Any, ...]]


class Finisher:
    """One daemon thread draining a deque of jobs. `submit` may be called from any thread; never blocks
    (except to run a job itself when `max_pending` are already waiting).

    `submit` is a `deque.append`: the thread is only woken (a lock and a notify) when it sleeps idle.
    Once woken it drains the queue, then dozes `batch_seconds` before draining again, so under load the
    app's thread hands the GIL to it once per batch instead of once per call; with nothing queued after
    a doze it goes back to sleeping idle. `flush()` cuts a doze short.
    """

    def __init__(self, max_pending: int = 10_000, batch_seconds: float = 0.01) -> None:
        self._jobs: deque[Job] = deque()
        self._max_pending = max_pending
        self._batch_seconds = batch_seconds
        self._wakeup = threading.Condition(threading.Lock())
        self._idle = False
        """Set (under the lock) only while the thread waits with nothing queued and nothing running."""
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.ran_inline = 0
        """Jobs run on the caller's thread because too many were pending."""

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._idle = False
                self._thread = threading.Thread(target=self._run, name="otel-llm-finisher", daemon=True)
                self._thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        jobs = self._jobs
        if len(jobs) >= self._max_pending:
            self.ran_inline += 1
            _run_job(fn, args)
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._ensure_thread()
        jobs.append((fn, args))
        # The thread sets `_idle` before its last look at the queue, and we read it after appending:
        # whichever runs second sees the other, so a wakeup is never lost.
        if self._idle:
            with self._wakeup:
                self._wakeup.notify()

    def _run(self) -> None:
        jobs = self._jobs
        wakeup = self._wakeup
        while True:
            with wakeup:
                self._idle = True
                while not jobs:
                    wakeup.wait()
                self._idle = False
            while jobs:
                while jobs:
                    fn, args = jobs.popleft()
                    _run_job(fn, args)
                with wakeup:
                    wakeup.wait(self._batch_seconds)

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        """Wait until every job submitted before this call has run; `False` on timeout."""
        jobs = self._jobs
        if not jobs and self._idle:
            return True
        thread = self._thread
        if thread is None or not thread.is_alive():
            # No thread to run them (e.g. after fork): run what is left here.
            while jobs:
                try:
                    fn, args = jobs.popleft()
                except IndexError:
                    break
                _run_job(fn, args)
            return True
        # The queue is first in, first out with one consumer: once the marker has run, so has all before it.
        done = threading.Event()
        jobs.append((_set_event, (done,)))
        with self._wakeup:
            self._wakeup.notify()
        return done.wait(timeout_seconds)


def _run_job(fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception:
        swallowed("finish")


def _set_event(event: threading.Event) -> None:
    event.set()


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
