"""The HTTP server under the OTLP/HTTP receiver and the admin endpoints: stdlib, a thread per connection.

``http.server.ThreadingHTTPServer`` needs no dependency, speaks HTTP/1.1 keep-alive (which the OTLP
exporters use), and its thread-per-connection model suits a handful of long-lived exporter connections
and scrapers; the bulk of high-rate traffic is expected on gRPC. The server reads the body (with a hard
cap, ``Content-Length`` or chunked), builds a `Request` and hands it to a `Router`; it knows nothing about
OTLP.

A body over the cap is never kept: the answer is 413 (through ``on_too_large``, so the OTLP receiver can
answer in the request's content type). A ``Content-Length`` body up to `_DISCARD_LIMIT_BYTES` is read
and thrown away in small chunks first, because a client still writing its body when the server closes
sees a connection reset instead of the 413; anything larger (or chunked) closes the connection at once.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from otel_llm_collector.config import parse_endpoint
from otel_llm_collector.router import Request, Response, Router, error_response

__all__ = ["HttpServer"]

_logger = logging.getLogger(__name__)
_DISCARD_LIMIT_BYTES = 256 * 1024 * 1024


class _BodyTooLarge(Exception):
    def __init__(self, length: int | None = None) -> None:
        super().__init__()
        self.length = length
        """The declared ``Content-Length``; None for a chunked body."""


class _BadBody(Exception):
    pass


def _too_large_default(request: Request) -> Response:
    return error_response(413, "request body too large")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    reuse_port = False

    def server_bind(self) -> None:
        if self.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class HttpServer:
    """Serves a `Router` on ``endpoint`` from a background thread until `stop`."""

    def __init__(
        self,
        router: Router,
        *,
        endpoint: str,
        max_body_bytes: int,
        reuse_port: bool = False,
        on_too_large: Callable[[Request], Response] = _too_large_default,
        idle_timeout_seconds: float = 60.0,
        name: str = "http",
    ) -> None:
        host, port = parse_endpoint(endpoint)
        handler_class = _make_handler(router, max_body_bytes, on_too_large, idle_timeout_seconds)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_BoundServer", (_Server,), {"address_family": family, "reuse_port": reuse_port})
        self._server: ThreadingHTTPServer = server_class((host, port), handler_class)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{name}-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting; requests in flight finish on their own threads."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    read_line = rfile.readline
    read = rfile.read
    parts: list[bytes] = []
    total = 0
    while True:
        line = read_line(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadBody("malformed chunked encoding") from None
        if size == 0:
            while read_line(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        total += size
        if total > limit:
            raise _BodyTooLarge
        parts.append(read(size))
        read_line(1024)


def _make_handler(
    router: Router,
    max_body_bytes: int,
    on_too_large: Callable[[Request], Response],
    idle_timeout_seconds: float,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = idle_timeout_seconds
        server_version = "otel-llm"

        def log_message(self, format: str, *args: object) -> None:
            _logger.debug("%s - " + format, self.address_string(), *args)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            headers = {name.lower(): value for name, value in self.headers.items()}
            head = Request(self.command, url.path, parse_qs(url.query), headers)
            try:
                body = self._read_body(headers)
            except _BodyTooLarge as exc:
                if not self._discard(exc.length):
                    self.close_connection = True
                self._send(on_too_large(head))
                return
            except _BadBody as exc:
                self.close_connection = True
                self._send(error_response(400, str(exc)))
                return
            request = Request(head.method, head.path, head.query, head.headers, body)
            self._send(router.dispatch(request))

        def _read_body(self, headers: dict[str, str]) -> bytes:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return _read_chunked(self.rfile, max_body_bytes)
            length_text = headers.get("content-length", "0").strip() or "0"
            if not length_text.isdigit():
                raise _BadBody("invalid Content-Length")
            length = int(length_text)
            if length > max_body_bytes:
                raise _BodyTooLarge(length)
            body = self.rfile.read(length) if length else b""
            if len(body) != length:
                raise _BadBody("body shorter than Content-Length")
            return body

        def _discard(self, length: int | None) -> bool:
            """Read and drop an oversized body so the connection survives; False when it is too big."""
            if length is None or length > _DISCARD_LIMIT_BYTES:
                return False
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    return False
                left -= len(chunk)
            return True

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    return Handler
