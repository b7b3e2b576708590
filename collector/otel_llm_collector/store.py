"""The collector's state store: one SQLite database (stdlib `sqlite3`, WAL journal) in the state dir.

What it holds now: window snapshots (`save_snapshot` / `load_snapshot`) and a small key-value table for
later stages (series baselines, rule state). Each save is one transaction that replaces the previous
snapshot of that name, so a reader (or a restart) sees either the old snapshot or the new one, whole.

Guarantees. The app saves a snapshot every N seconds (`snapshot_interval_seconds` in its config) and once
more on graceful shutdown (SIGTERM/SIGINT). After `save_snapshot` returns, the snapshot survives the process
being killed (SIGKILL, OOM): the WAL commit is in the operating system's hands. It also survives a power
loss or kernel crash when the store was opened with `synchronous="FULL"` (the default here); with
`"NORMAL"` a power loss can roll back to the previous snapshot, never to a corrupt one. So on SIGKILL at most
the last N seconds of window data (what arrived after the last save) are lost, and nothing else: there is
no partially written snapshot to recover from.

Threading: one connection guarded by a lock; calls may come from any thread and block for the duration of
one SQLite transaction (a snapshot of 10,000 series is a few MB of JSON: tens of milliseconds).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Final, Literal

DATABASE_FILE: Final = "otel-llm.sqlite3"
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT PRIMARY KEY,
    saved_at_ns INTEGER NOT NULL,
    data TEXT NOT NULL
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
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema {row[0]}, newer than this collector's")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- snapshots ------------------------------------------------------------------------------------
    def save_snapshot(self, data: dict[str, Any], *, saved_at_ns: int, name: str = "windows") -> None:
        """Replace the snapshot `name` atomically. `data` must be JSON-serialisable."""
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO snapshots (name, saved_at_ns, data) VALUES (?, ?, ?) ON CONFLICT(name) "
                    "DO UPDATE SET saved_at_ns = excluded.saved_at_ns, data = excluded.data",
                    (name, saved_at_ns, text),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def load_snapshot(self, name: str = "windows") -> tuple[int, dict[str, Any]] | None:
        """(saved_at_ns, data) of the last saved snapshot `name`, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT saved_at_ns, data FROM snapshots WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row[1])
        return int(row[0]), data

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
