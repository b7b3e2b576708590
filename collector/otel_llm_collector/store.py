"""The collector's state store: one SQLite database (stdlib `sqlite3`, WAL journal) in the state dir.

What it holds now: window snapshots (`save_snapshot` / `load_snapshot` / `load_snapshot_rows`) and a small
key-value table for later stages (series baselines, rule state).

A snapshot is a header (a JSON document: clocks, counters, rule state) plus any number of rows (bytes; the
window engine gives compressed rows of about a megabyte of series each). The header is one row of
``snapshots``; the rows go to ``snapshot_rows`` under the header's generation number. A save is one
transaction that deletes the previous rows of that name, streams the new rows in (`executemany` over an
iterator, so the caller never needs one big document in memory) and points the header at the new
generation; a reader, or a restart, therefore sees either the old snapshot or the new one, whole. An
exception while the rows are produced or written rolls the transaction back and leaves the previous
snapshot as it was. `load_snapshot_rows` streams the rows back in chunks and refuses to mix generations.

Guarantees. The app saves a snapshot every N seconds (`snapshot_interval_seconds` in its config) and once
more on graceful shutdown (SIGTERM/SIGINT). After `save_snapshot` returns, the snapshot survives the process
being killed (SIGKILL, OOM): the WAL commit is in the operating system's hands. It also survives a power
loss or kernel crash when the store was opened with `synchronous="FULL"` (the default here); with
`"NORMAL"` a power loss can roll back to the previous snapshot, never to a corrupt one. So on SIGKILL at most
the last N seconds of window data (what arrived after the last save) are lost, and nothing else: there is
no partially written snapshot to recover from.

Threading: one connection guarded by a lock; calls may come from any thread and block for the duration of
one SQLite transaction (saving the rows of 10,000 busy series, about 3 MB, takes a fraction of a second).
Schema version 2 added the rows; a version 1 database is upgraded in place when opened, and its snapshot
(one JSON document with everything) still loads through `load_snapshot`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

DATABASE_FILE: Final = "otel-llm.sqlite3"
SCHEMA_VERSION: Final = 2
_ROWS_PER_READ: Final = 256

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT PRIMARY KEY,
    saved_at_ns INTEGER NOT NULL,
    data TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    row_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshot_rows (
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (name, generation, seq)
);
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""


class StateStore:
    """Window snapshots and key-value state in `<state_dir>/otel-llm.sqlite3`."""

    def __init__(self, state_dir: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = Path(state_dir) / DATABASE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._create_or_upgrade_schema()
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._conn.close()
                raise
            self._conn.execute("COMMIT")

    def _create_or_upgrade_schema(self) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema {row[0]}, newer than this collector's")
        columns = {info[1] for info in self._conn.execute("PRAGMA table_info(snapshots)")}
        for column in ("generation", "row_count"):  # absent in a version 1 database
            if column not in columns:
                self._conn.execute(f"ALTER TABLE snapshots ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- snapshots ------------------------------------------------------------------------------------
    def save_snapshot(
        self, data: dict[str, Any], *, saved_at_ns: int, name: str = "windows", rows: Iterable[bytes] = ()
    ) -> None:
        """Replace the snapshot `name` atomically: header `data` (JSON-serialisable) and `rows`, in order.

        `rows` is consumed once, inside the transaction; if it raises, nothing changes and the exception
        propagates.
        """
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        count = 0

        def numbered(generation: int) -> Iterator[tuple[str, int, int, bytes]]:
            nonlocal count
            for row in rows:
                count += 1
                yield name, generation, count, row

        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._conn.execute(
                    "SELECT generation FROM snapshots WHERE name = ?", (name,)
                ).fetchone()
                generation = (current[0] if current is not None else 0) + 1
                self._conn.execute("DELETE FROM snapshot_rows WHERE name = ?", (name,))
                self._conn.executemany(
                    "INSERT INTO snapshot_rows (name, generation, seq, data) VALUES (?, ?, ?, ?)",
                    numbered(generation),
                )
                self._conn.execute(
                    "INSERT INTO snapshots (name, saved_at_ns, data, generation, row_count) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "saved_at_ns = excluded.saved_at_ns, data = excluded.data, "
                    "generation = excluded.generation, row_count = excluded.row_count",
                    (name, saved_at_ns, text, generation, count),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def load_snapshot(self, name: str = "windows") -> tuple[int, dict[str, Any]] | None:
        """(saved_at_ns, header) of the last saved snapshot `name`, or None (rows: `load_snapshot_rows`)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT saved_at_ns, data FROM snapshots WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row[1])
        return int(row[0]), data

    def load_snapshot_rows(self, name: str = "windows") -> Iterator[bytes]:
        """The rows of the snapshot `name` saved last (none when there is none), read a chunk at a time.

        The snapshot is chosen when this is called; the iterator raises `RuntimeError` if a save replaces it
        before every row was read, rather than mixing two snapshots.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT generation, row_count FROM snapshots WHERE name = ?", (name,)
            ).fetchone()
        generation, count = (int(row[0]), int(row[1])) if row is not None else (0, 0)
        return self._rows(name, generation, count)

    def _rows(self, name: str, generation: int, count: int) -> Iterator[bytes]:
        seq = read = 0
        while read < count:
            with self._lock:
                chunk = self._conn.execute(
                    "SELECT seq, data FROM snapshot_rows WHERE name = ? AND generation = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (name, generation, seq, _ROWS_PER_READ),
                ).fetchall()
            if not chunk:
                raise RuntimeError(
                    f"snapshot {name!r} was replaced while its rows were read ({read} of {count} read)"
                )
            for _, data in chunk:
                yield bytes(data)
            read += len(chunk)
            seq = chunk[-1][0]

    # --- key-value ------------------------------------------------------------------------------------
    def put(self, namespace: str, key: str, value: Any, *, updated_ns: int) -> None:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self._conn.execute(
                "INSERT INTO kv (namespace, key, value, updated_ns) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(namespace, key) "
                "DO UPDATE SET value = excluded.value, updated_ns = excluded.updated_ns",
                (namespace, key, text, updated_ns),
            )

    def get(self, namespace: str, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def items(self, namespace: str) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM kv WHERE namespace = ?", (namespace,)
            ).fetchall()
        return {str(k): json.loads(v) for k, v in rows}

    def delete(self, namespace: str, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))


__all__ = ["DATABASE_FILE", "StateStore"]
