"""Fakes for notification targets, shipped with the package so that tests and examples use the same ones.

- `RecordingReceiver`: a real HTTP server on ``127.0.0.1`` and an ephemeral port that records every
  request and answers from a script: a 429 with ``Retry-After``, a 500, a slow 200, then the default::

      with RecordingReceiver() as receiver:
          receiver.script(Reply(429, headers={"Retry-After": "7"}), Reply(500), Reply(200, delay_seconds=2))
          notifier = SlackNotifier(url=receiver.url + "/slack")
          ...
          [request] = receiver.wait_for(1)
          request.json()["text"]

  A request is recorded when it arrives (so a test can see an attempt still in flight); ``replied_status``
  is filled in once the reply was written, and stays None when the client went away first.
- `RecordingNotifier`: an in-process `notify.Notifier` that records notifications and returns scripted
  `DeliveryResult` values, for outbox tests that need no sockets.

Threading: both are safe to use from any thread; `RecordingReceiver.close` interrupts slow replies, stops
the server and joins its thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from otel_llm_collector.notify import DeliveryResult, Notification

__all__ = ["RecordedRequest", "RecordingNotifier", "RecordingReceiver", "Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b"{}"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    """Wait this long before answering (interrupted when the receiver closes)."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes
    replied_status: int | None = None
    """The status written back; None while in flight or when the client disconnected first."""

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingReceiver:
    """A scripted HTTP receiver on an ephemeral loopback port (see the module docs)."""

    def __init__(self, *, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self._lock = threading.Condition()
        self._script: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingReceiver:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="recording-receiver"
            )
            self._thread.daemon = True
            self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> RecordingReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order; after them, `default` answers."""
        with self._lock:
            self._script.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for(
        self, count: int, *, timeout_seconds: float = 10.0, path: str | None = None
    ) -> list[RecordedRequest]:
        """The first ``count`` requests (to ``path`` when given); raise TimeoutError if they do not arrive."""
        deadline = time.monotonic() + timeout_seconds
        with self._lock:
            while True:
                matching = [r for r in self._requests if path is None or r.path == path]
                if len(matching) >= count:
                    return matching[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} requests, got {len(matching)}")
                self._lock.wait(remaining)

    def _record(self, request: RecordedRequest) -> tuple[int, Reply]:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()
            reply = self._script.popleft() if self._script else self.default
            return len(self._requests) - 1, reply

    def _replied(self, index: int, status: int) -> None:
        with self._lock:
            self._requests[index] = replace(self._requests[index], replied_status=status)
            self._lock.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                index, reply = receiver._record(RecordedRequest(self.command, self.path, headers, body))
                if reply.delay_seconds and receiver._closing.wait(reply.delay_seconds):
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    self.wfile.flush()
                except OSError:
                    return
                receiver._replied(index, reply.status)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: tests read `requests` instead of stderr."""

        return Handler


class RecordingNotifier:
    """An in-process notifier: records what it is given, answers from a script (default: ok)."""

    def __init__(self, *results: DeliveryResult) -> None:
        self._lock = threading.Lock()
        self._script: deque[DeliveryResult] = deque(results)
        self.sent: list[Notification] = []

    def script(self, *results: DeliveryResult) -> None:
        with self._lock:
            self._script.extend(results)

    def send(self, notification: Notification) -> DeliveryResult:
        with self._lock:
            self.sent.append(notification)
            return self._script.popleft() if self._script else DeliveryResult.ok()
