"""Byte-stream proxies that let the app read a response exactly as before while we watch it.

The proxy replaces `response.stream`. Per chunk it does one `list.append` (and takes one clock reading
for the first chunk only); when the stream ends (exhausted, closed early by the app, or failed) the pieces
are handed to the finisher thread, which joins, decodes and parses them off the request path.
The app sees the same bytes, in the same pieces, with the same exceptions.

`httpx` and `httpx2` each check `isinstance(response.stream, SyncByteStream)`, so the proxy classes are
made per library by `stream_classes()`.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Iterator
from functools import cache
from types import ModuleType
from typing import Any

from otel_llm.call import LLMCall
from otel_llm.guard import guard


class StreamWatcher:
    """What the proxies share: the buffer, the first-chunk clock and the single finish."""

    __slots__ = ("buffer", "call", "done", "event_stream", "limit", "size", "status_code", "truncated")

    def __init__(self, call: LLMCall, status_code: int, event_stream: bool, limit: int) -> None:
        self.call = call
        self.status_code = status_code
        self.event_stream = event_stream
        self.buffer: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.truncated = False
        self.done = False

    def chunk(self, data: bytes) -> None:
        if not self.buffer and self.call.time_to_first_chunk is None:
            self.call.time_to_first_chunk = time.perf_counter() - self.call.start
        if self.size < self.limit:
            self.buffer.append(data)
            self.size += len(data)
        else:
            self.truncated = True

    def finish(self, *, aborted: bool, encoding: str) -> None:
        if self.done:
            return
        self.done = True
        with guard("stream finish"):
            self.call.finish_chunks(
                self.status_code,
                self.buffer,
                encoding,
                event_stream=self.event_stream,
                aborted=aborted,
                truncated=self.truncated,
            )

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self.done = True
            self.call.fail(exc)


def decode_body(body: bytes, encoding: str) -> bytes:
    """Undo gzip/deflate (raw stream bytes are still encoded); other encodings are left as they are."""
    if not body or encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompressobj(47).decompress(body)
        except zlib.error:
            return body
    return body


@cache
def stream_classes(module: ModuleType) -> tuple[type[Any], type[Any]]:
    """Proxy classes deriving from `module.SyncByteStream` and `module.AsyncByteStream`."""

    class WatchedSyncStream(module.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, watcher: StreamWatcher, encoding: str) -> None:
            self._inner = inner
            self._watcher = watcher
            self._encoding = encoding
            self._exhausted = False

        def __iter__(self) -> Iterator[bytes]:
            watcher = self._watcher
            try:
                for part in self._inner:
                    watcher.chunk(part)
                    yield part
            except GeneratorExit:
                raise
            except BaseException as exc:
                watcher.fail(exc)
                raise
            self._exhausted = True
            watcher.finish(aborted=False, encoding=self._encoding)

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._watcher.finish(aborted=not self._exhausted, encoding=self._encoding)

    class WatchedAsyncStream(module.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, watcher: StreamWatcher, encoding: str) -> None:
            self._inner = inner
            self._watcher = watcher
            self._encoding = encoding
            self._exhausted = False

        async def __aiter__(self) -> AsyncIterator[bytes]:
            watcher = self._watcher
            try:
                async for part in self._inner:
                    watcher.chunk(part)
                    yield part
            except GeneratorExit:
                raise
            except BaseException as exc:
                watcher.fail(exc)
                raise
            self._exhausted = True
            watcher.finish(aborted=False, encoding=self._encoding)

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._watcher.finish(aborted=not self._exhausted, encoding=self._encoding)

    return WatchedSyncStream, WatchedAsyncStream
