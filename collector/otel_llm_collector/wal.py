"""A write-ahead log of accepted requests, so that what was acknowledged survives a SIGKILL.

The window snapshot is taken every ``snapshot_interval_seconds``; what arrives in between lives only in
memory. To keep the promise that acknowledged data is not lost, the ingest queue appends each accepted
request that carries GenAI records (its protobuf bytes, unchanged) to this log *before* acknowledging it,
and a restart replays the records newer than the snapshot through decode into the restored windows.

Cost: one unbuffered ``write`` per accepted request, handing the bytes to the kernel (about 0.1 ms for a
512-span request, against ~18 ms to decode it), so the log survives the process being killed. It does not
``fsync``: a power loss or kernel crash can lose the tail, which the snapshot's own guarantee then bounds.
Requests without GenAI records are not logged (they do not change the windows).

Layout: segment files ``wal-<first sequence>.log`` in one directory; a record is ``seq`` (8 bytes),
``signal`` (1 byte), ``length`` (4 bytes), then the payload. A new segment starts at every snapshot, and a
segment is deleted once a saved snapshot covers all of its records. A torn record at the end of a segment
(killed mid-write) is ignored on replay.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["WriteAheadLog"]

_logger = logging.getLogger(__name__)
_HEADER = struct.Struct("<QBI")
_PREFIX = "wal-"
_SUFFIX = ".log"


def _segment_start(path: Path) -> int:
    return int(path.name[len(_PREFIX) : -len(_SUFFIX)])


class WriteAheadLog:
    """Segments of appended records. Not thread-safe: the ingest queue serialises calls under its lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"), key=_segment_start)
        self.last_seq = self._scan_last_seq()
        self._file: io.FileIO | None = None
        self._open_segment()

    def _scan_last_seq(self) -> int:
        last = 0
        for path in self._segments:
            last = max(last, _segment_start(path) - 1)
            for seq, _, _ in self._records(path):
                last = seq
        return last

    def _open_segment(self) -> None:
        path = self.directory / f"{_PREFIX}{self.last_seq + 1:020d}{_SUFFIX}"
        self._file = io.FileIO(path, "ab")  # unbuffered: each append reaches the kernel before the ack
        self._segments.append(path)

    def append(self, signal: int, payload: bytes) -> int:
        """Write one record; returns its sequence number. Raises OSError when the disk refuses it."""
        seq = self.last_seq + 1
        record = _HEADER.pack(seq, signal, len(payload)) + payload
        assert self._file is not None, "the log is closed"
        written = self._file.write(record)
        if written != len(record):
            raise OSError(f"short write to the write-ahead log ({written} of {len(record)} bytes)")
        self.last_seq = seq
        return seq

    def rotate(self) -> None:
        """Start a new segment (at a snapshot), so older ones can be deleted once the snapshot is saved.

        A segment that is still empty is kept: the next one would have the same name.
        """
        if _segment_start(self._segments[-1]) > self.last_seq:
            return
        self._close_file()
        self._open_segment()

    def truncate_through(self, seq: int) -> int:
        """Delete the segments whose records all have sequence numbers up to ``seq``; returns how many."""
        removed = 0
        while len(self._segments) > 1 and _segment_start(self._segments[1]) <= seq + 1:
            path = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed += 1
        return removed

    def replay(self, after_seq: int) -> Iterator[tuple[int, int, bytes]]:
        """Yield ``(seq, signal, payload)`` for every record newer than ``after_seq``, in order."""
        for path in list(self._segments):
            for record in self._records(path):
                if record[0] > after_seq:
                    yield record

    @staticmethod
    def _records(path: Path) -> Iterator[tuple[int, int, bytes]]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _HEADER.size <= len(data):
            seq, signal, length = _HEADER.unpack_from(data, offset)
            start = offset + _HEADER.size
            if start + length > len(data):
                _logger.warning("ignoring a torn record at the end of %s", path)
                return
            yield seq, signal, data[start : start + length]
            offset = start + length

    def size_bytes(self) -> int:
        total = 0
        for path in self._segments:
            with contextlib.suppress(FileNotFoundError):
                total += os.path.getsize(path)
        return total

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_file()
