"""Replay recorded OpenAI and Anthropic traffic (VCR.py cassettes) from a local HTTP server.

The cassettes live outside the repository, in ``<repo root>/../shared/data/cassettes/{openai,anthropic}``, and
are read in place. Serving them over real HTTP (rather than patching a transport) lets the real SDKs and the
instrumentation's httpx hooks see exactly the recorded bytes: status, content type, gzip-encoded JSON, and
server-sent events delivered one event per flush::

    cassette = load_cassette("openai", "test_chat_completion_streaming")
    with CassetteServer(cassette) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...
    server.assert_all_played()

Requests are matched in recorded order by method and path (host and query ignored). A request with no
recorded counterpart gets a 418 whose JSON body says so, and is kept in ``unmatched``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

__all__ = [
    "CASSETTES_DIR",
    "Cassette",
    "CassetteServer",
    "Interaction",
    "all_cassette_paths",
    "cassette_path",
    "load_cassette",
    "require_cassettes_dir",
]

CASSETTES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cassettes"
PROVIDERS = ("openai", "anthropic")

# Headers the replay computes itself (framing, encoding) or that would only add state to the client.
_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "set-cookie"})
_GZIP_MAGIC = b"\x1f\x8b"
_SSE_EVENT_END = re.compile(rb"(?<=\n\n)|(?<=\r\n\r\n)")


@dataclass(frozen=True)
class Interaction:
    """One recorded request/response pair. ``body`` is the response body as recorded (maybe gzip)."""

    method: str
    uri: str
    request_body: bytes
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def is_sse(self) -> bool:
        return (self.header("content-type") or "").startswith("text/event-stream")

    @property
    def is_gzip(self) -> bool:
        return self.body[:2] == _GZIP_MAGIC

    @property
    def decoded_body(self) -> bytes:
        """The body as the SDK sees it after content decoding."""
        return gzip.decompress(self.body) if self.is_gzip else self.body

    def request_json(self) -> Any:
        return json.loads(self.request_body) if self.request_body else None

    def response_json(self) -> Any:
        return json.loads(self.decoded_body)


@dataclass(frozen=True)
class Cassette:
    name: str
    provider: str
    path: Path
    interactions: tuple[Interaction, ...]


def require_cassettes_dir() -> Path:
    """The cassettes directory, or skip the calling test with a reason that names the missing path."""
    if not CASSETTES_DIR.is_dir():
        pytest.skip(f"recorded cassettes not found at {CASSETTES_DIR}")
    return CASSETTES_DIR


def cassette_path(provider: str, name: str) -> Path:
    """The file for ``name`` (with or without ``.yaml``); skips the test when the cassettes are absent."""
    filename = name if name.endswith(".yaml") else f"{name}.yaml"
    return require_cassettes_dir() / provider / filename


def all_cassette_paths() -> list[Path]:
    """Every cassette file, sorted; empty when the directory is absent (so parametrisation still works)."""
    if not CASSETTES_DIR.is_dir():
        return []
    return sorted(p for provider in PROVIDERS for p in (CASSETTES_DIR / provider).glob("*.yaml"))


def load_cassette(provider_or_path: str | Path, name: str | None = None) -> Cassette:
    """Load ``load_cassette("openai", "test_chat_completion_streaming")`` or ``load_cassette(path)``."""
    path = cassette_path(str(provider_or_path), name) if name is not None else Path(provider_or_path)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as f:
        document = yaml.load(f, Loader=loader)
    raw = document.get("interactions") if isinstance(document, Mapping) else None
    if not isinstance(raw, list):
        raise ValueError(f"{path}: not a VCR cassette (no 'interactions' list)")
    interactions = tuple(_interaction(path, i, item) for i, item in enumerate(raw))
    return Cassette(name=path.stem, provider=path.parent.name, path=path, interactions=interactions)


def _body_bytes(body: Any) -> bytes:
    """A VCR body: a string, ``!!binary`` bytes, ``{string: ...}``, ``{base64_string: ...}`` or structured."""
    if isinstance(body, Mapping):
        if "string" in body:
            return _body_bytes(body["string"])
        if "base64_string" in body:
            return base64.b64decode(body["base64_string"])
        return json.dumps(body).encode()
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        return ()
    pairs: list[tuple[str, str]] = []
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        pairs += [(str(key), str(v)) for v in values]
    return tuple(pairs)


def _interaction(path: Path, index: int, item: Any) -> Interaction:
    try:
        request, response = item["request"], item["response"]
        status = response["status"]
        return Interaction(
            method=str(request["method"]).upper(),
            uri=str(request["uri"]),
            request_body=_body_bytes(request.get("body")),
            status=int(status["code"] if isinstance(status, Mapping) else status),
            headers=_headers(response.get("headers")),
            body=_body_bytes(response.get("body")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: interaction {index} is malformed: {exc!r}") from exc


def _sse_events(body: bytes) -> Iterator[bytes]:
    """Split a recorded event stream at event boundaries; the pieces join back to the exact bytes."""
    yield from (piece for piece in _SSE_EVENT_END.split(body) if piece)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ReplayHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._replay()

    def do_POST(self) -> None:
        self._replay()

    def do_DELETE(self) -> None:
        self._replay()

    def _replay(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        interaction = self.server.owner._take(self.command, path, body)
        if interaction is None:
            message = f"no recorded interaction left for {self.command} {path}"
            payload = json.dumps({"error": {"message": message, "type": "cassette_mismatch"}}).encode()
            self._send(418, [("content-type", "application/json")], payload)
            return
        headers = [(k, v) for k, v in interaction.headers if k.lower() not in _NOT_FORWARDED]
        headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
        accepts_gzip = "gzip" in (self.headers.get("accept-encoding") or "")
        if interaction.is_gzip and accepts_gzip and not interaction.is_sse:
            # Forward the recorded compressed bytes: hooks below the SDK must cope with encoded bodies.
            self._send(interaction.status, [*headers, ("content-encoding", "gzip")], interaction.body)
        elif interaction.is_sse:
            self._stream(interaction.status, headers, _sse_events(interaction.decoded_body))
        else:
            self._send(interaction.status, headers, interaction.decoded_body)

    def _head(self, status: int, headers: Iterable[tuple[str, str]], length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('Status',))[0]}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(self._head(status, headers, len(body)) + body)

    def _stream(self, status: int, headers: list[tuple[str, str]], events: Iterator[bytes]) -> None:
        try:
            self.wfile.write(self._head(status, headers, None))
            for event in events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True


class _ReplayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: CassetteServer) -> None:
        self.owner = owner
        self.open_sockets: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is routine
            super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.open_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)


class CassetteServer:
    """Serves a cassette's interactions on 127.0.0.1 (free port). ``url`` is the Anthropic SDK's
    ``base_url``; ``base_url`` (``url + "/v1"``) is the OpenAI SDK's."""

    def __init__(self, cassette: Cassette | Iterable[Interaction]) -> None:
        self.interactions = cassette.interactions if isinstance(cassette, Cassette) else tuple(cassette)
        self._played = [False] * len(self.interactions)
        self._lock = threading.Lock()
        self.received: list[tuple[str, str, bytes]] = []
        self.unmatched: list[tuple[str, str]] = []
        self._httpd: _ReplayHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _take(self, method: str, path: str, body: bytes) -> Interaction | None:
        with self._lock:
            self.received.append((method, path, body))
            for i, interaction in enumerate(self.interactions):
                if not self._played[i] and interaction.method == method and interaction.path == path:
                    self._played[i] = True
                    return interaction
            self.unmatched.append((method, path))
            return None

    @property
    def remaining(self) -> list[Interaction]:
        with self._lock:
            return [x for x, played in zip(self.interactions, self._played) if not played]

    def assert_all_played(self) -> None:
        assert not self.unmatched, f"requests without a recorded interaction: {self.unmatched}"
        left = [f"{x.method} {x.path}" for x in self.remaining]
        assert not left, f"recorded interactions never requested: {left}"

    def start(self) -> CassetteServer:
        if self._httpd is not None:
            raise RuntimeError("CassetteServer is already started")
        self._httpd = _ReplayHTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="cassette-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with httpd.open_lock:
            sockets = list(httpd.open_sockets)
        for sock in sockets:  # unblock handler threads idling on keep-alive connections
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> CassetteServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("CassetteServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"
