"""A tiny HTTP route table: ``(method, path) -> handler``, with JSON errors for everything else.

Handlers are plain functions of a `Request` returning a `Response`, with no server object in sight, so
they are tested by calling them and later stages add routes (``router.add("GET", "/api/v1/alerts",
list_alerts)``) without touching the server. A handler raises `HttpError` for an expected failure (bad
query parameter, missing body); any other exception is a bug: logged, answered 500.

Unknown path: 404. Known path, other method: 405 with an ``Allow`` header. Paths match exactly (no
patterns): the API is small, and exact matching keeps the table obvious.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Handler", "HttpError", "Request", "Response", "Router", "error_response"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header names in lower case."""
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def query_value(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(status, body, "application/json", headers)

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode(), content_type)


class HttpError(Exception):
    """An expected failure a handler reports to the client as ``status`` with a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response.json(status, {"error": message, "status": status}, headers)


Handler = Callable[[Request], Response]


class Router:
    """Exact-path routes per method."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        methods = self._routes.setdefault(path, {})
        if method.upper() in methods:
            raise ValueError(f"route {method.upper()} {path} is already registered")
        methods[method.upper()] = handler

    def routes(self) -> list[tuple[str, str]]:
        return sorted((method, path) for path, methods in self._routes.items() for method in methods)

    def dispatch(self, request: Request) -> Response:
        methods = self._routes.get(request.path)
        if methods is None:
            return error_response(404, f"no route for {request.path}")
        handler = methods.get(request.method)
        if handler is None and request.method == "HEAD":
            handler = methods.get("GET")
        if handler is None:
            allow = ", ".join(sorted(methods))
            return error_response(405, f"{request.method} not allowed on {request.path}", (("Allow", allow),))
        try:
            return handler(request)
        except HttpError as exc:
            return error_response(exc.status, exc.message)
        except Exception:
            _logger.exception("handler for %s %s failed", request.method, request.path)
            return error_response(500, "internal error")
