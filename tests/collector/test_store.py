"""The state store: atomic snapshots (a header, then rows) that survive SIGKILL, and the key-value table."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import otel_llm_collector.store as store_module
import pytest
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.records import CallRecord, SeriesKey
from otel_llm_collector.store import DATABASE_FILE, SCHEMA_VERSION, StateStore
from otel_llm_collector.testing import SECOND_NS, T0_NS
from otel_llm_collector.windows import SNAPSHOT_SERIES, WINDOW_NAMES, WindowEngine
from window_support import assert_same_state, varied_engine, version_1_snapshot

KEY = SeriesKey("svc", "feat", "p", "v1", "m")


def _save(store: StateStore, engine: WindowEngine, *, saved_at_ns: int) -> None:
    """What the app does: the header as one row, the series in rows of their own."""
    data = engine.snapshot()
    rows = data.pop(SNAPSHOT_SERIES)
    store.save_snapshot(data, saved_at_ns=saved_at_ns, rows=rows)


def _load(store: StateStore) -> WindowEngine:
    loaded = store.load_snapshot()
    assert loaded is not None
    return WindowEngine.restore(loaded[1], rows=store.load_snapshot_rows())


def _row_count(store: StateStore) -> int:
    return int(store._conn.execute("SELECT COUNT(*) FROM snapshot_rows").fetchone()[0])


def test_snapshot_round_trip(tmp_path: Path) -> None:
    engine = WindowEngine()
    calls = tuple(
        CallRecord(
            series=KEY,
            end_time_ns=T0_NS + i * SECOND_NS,
            duration_s=0.1 * i,
            trace_id="a" * 32,
            span_id=f"{i + 1:016x}",
        )
        for i in range(50)
    )
    engine.apply(DecodeResult(calls=calls))
    with StateStore(tmp_path) as store:
        assert store.load_snapshot() is None
        assert list(store.load_snapshot_rows()) == []
        _save(store, engine, saved_at_ns=T0_NS)
    with StateStore(tmp_path) as store:
        loaded = store.load_snapshot()
        restored = _load(store)
    assert loaded is not None
    assert loaded[0] == T0_NS
    for name in WINDOW_NAMES:
        assert restored.window(KEY, name) == engine.window(KEY, name)


def test_streamed_rows_at_many_series_restore_what_the_single_document_did(tmp_path: Path) -> None:
    engine = varied_engine(2_000)
    rows = len(engine.snapshot()[SNAPSHOT_SERIES])
    assert rows > 1
    with StateStore(tmp_path) as store:
        _save(store, engine, saved_at_ns=T0_NS)
        store.save_snapshot(version_1_snapshot(engine), saved_at_ns=T0_NS, name="legacy")
    with StateStore(tmp_path) as store:
        assert _row_count(store) == rows
        streamed = _load(store)
        legacy = store.load_snapshot("legacy")
    assert legacy is not None
    from_document = WindowEngine.restore(legacy[1])
    assert len(streamed) == 2_000
    assert_same_state(streamed, from_document)
    assert_same_state(streamed, engine)


def test_a_later_save_replaces_the_earlier_one(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.save_snapshot({"n": 1}, saved_at_ns=1, rows=[b"a", b"b", b"c"])
        store.save_snapshot({"n": 2}, saved_at_ns=2, rows=[b"d"])
        store.save_snapshot({"other": True}, saved_at_ns=3, name="baselines", rows=[b"x", b"y"])
        assert store.load_snapshot() == (2, {"n": 2})
        assert list(store.load_snapshot_rows()) == [b"d"]
        assert store.load_snapshot("baselines") == (3, {"other": True})
        assert list(store.load_snapshot_rows("baselines")) == [b"x", b"y"]
        assert _row_count(store) == 3  # the replaced rows are gone


def _producer_fails() -> Iterator[bytes]:
    yield b"new-1"
    yield b"new-2"
    raise OSError("encoding failed")


def _sqlite_refuses() -> Iterator[Any]:
    yield b"new-1"
    yield None  # violates NOT NULL in the middle of the insert


@pytest.mark.parametrize("rows", [_producer_fails, _sqlite_refuses])
def test_a_failure_while_the_rows_are_written_leaves_the_previous_snapshot_whole(
    tmp_path: Path, rows: Callable[[], Iterator[bytes]]
) -> None:
    old_rows = [f"old-{i}".encode() for i in range(600)]
    with StateStore(tmp_path) as store:
        store.save_snapshot({"n": 1}, saved_at_ns=1, rows=old_rows)
        with pytest.raises((OSError, sqlite3.IntegrityError)):
            store.save_snapshot({"n": 2}, saved_at_ns=2, rows=rows())
        assert store.load_snapshot() == (1, {"n": 1})
        assert list(store.load_snapshot_rows()) == old_rows
    with StateStore(tmp_path) as store:  # and on disk
        assert store.load_snapshot() == (1, {"n": 1})
        assert list(store.load_snapshot_rows()) == old_rows
        store.save_snapshot({"n": 3}, saved_at_ns=3, rows=[b"next"])
        assert list(store.load_snapshot_rows()) == [b"next"]


def test_reading_rows_refuses_to_mix_two_snapshots(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.save_snapshot({"n": 1}, saved_at_ns=1, rows=[b"1"] * 600)
        reading = store.load_snapshot_rows()
        assert next(reading) == b"1"
        store.save_snapshot({"n": 2}, saved_at_ns=2, rows=[b"2"] * 600)
        with pytest.raises(RuntimeError, match="replaced"):
            list(reading)
        assert list(store.load_snapshot_rows()) == [b"2"] * 600


def test_a_version_1_database_is_upgraded_and_its_snapshot_still_restores(tmp_path: Path) -> None:
    engine = varied_engine(30)
    legacy = sqlite3.connect(tmp_path / DATABASE_FILE)
    legacy.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE snapshots (name TEXT PRIMARY KEY, saved_at_ns INTEGER NOT NULL, data TEXT NOT NULL);
        CREATE TABLE kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                         updated_ns INTEGER NOT NULL, PRIMARY KEY (namespace, key));
        INSERT INTO meta (key, value) VALUES ('schema_version', '1');
        """
    )
    legacy.execute(
        "INSERT INTO snapshots (name, saved_at_ns, data) VALUES ('windows', ?, ?)",
        (T0_NS, json.dumps(version_1_snapshot(engine))),
    )
    legacy.execute("INSERT INTO kv VALUES ('baselines', 'a', '1.5', 1)")
    legacy.commit()
    legacy.close()
    with StateStore(tmp_path) as store:
        version = store._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert_same_state(_load(store), engine)
        assert store.get("baselines", "a") == 1.5
        _save(store, engine, saved_at_ns=T0_NS + 1)
    with StateStore(tmp_path) as store:
        assert_same_state(_load(store), engine)


def test_a_database_of_a_newer_collector_is_refused(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store._conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="newer"):
        StateStore(tmp_path)


def test_key_value_table(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.put("baselines", "a", {"mean": 1.5}, updated_ns=1)
        store.put("baselines", "a", {"mean": 2.5}, updated_ns=2)
        store.put("baselines", "b", [1, 2], updated_ns=3)
        store.put("other", "a", "x", updated_ns=4)
        assert store.get("baselines", "a") == {"mean": 2.5}
        assert store.items("baselines") == {"a": {"mean": 2.5}, "b": [1, 2]}
        store.delete("baselines", "a")
        assert store.get("baselines", "a") is None
        assert store.get("other", "a") == "x"


def test_database_uses_the_write_ahead_log(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert (tmp_path / DATABASE_FILE).exists()


def test_sigkill_during_repeated_saves_never_corrupts_the_snapshot(tmp_path: Path) -> None:
    """A child saves snapshots of 200 rows in a loop; it is killed mid-stream; the store still opens and holds
    one whole snapshot, the last one committed: its header and every one of its rows."""
    script = textwrap.dedent(
        f"""
        from otel_llm_collector.store import StateStore
        store = StateStore({str(tmp_path)!r})
        i = 0
        while True:
            i += 1
            rows = (f"{{i}}:{{j}}:".encode() + b"x" * 4_000 for j in range(200))
            store.save_snapshot({{"i": i}}, saved_at_ns=i, rows=rows)
            if i == 3:
                print("ready", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with StateStore(tmp_path) as store:
        loaded = store.load_snapshot()
        rows = list(store.load_snapshot_rows())
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert loaded is not None
    saved_at, data = loaded
    assert saved_at == data["i"] >= 3
    assert rows == [f"{data['i']}:{j}:".encode() + b"x" * 4_000 for j in range(200)]


def test_public_api_is_pinned() -> None:
    assert sorted(store_module.__all__) == ["DATABASE_FILE", "StateStore"]
