"""The state store: atomic snapshots that survive SIGKILL, and the key-value table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import otel_llm_collector.store as store_module
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.records import CallRecord, SeriesKey
from otel_llm_collector.store import DATABASE_FILE, StateStore
from otel_llm_collector.testing import SECOND_NS, T0_NS
from otel_llm_collector.windows import WINDOW_NAMES, WindowEngine

KEY = SeriesKey("svc", "feat", "p", "v1", "m")


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
        store.save_snapshot(engine.snapshot(), saved_at_ns=T0_NS)
    with StateStore(tmp_path) as store:
        loaded = store.load_snapshot()
    assert loaded is not None
    saved_at, data = loaded
    assert saved_at == T0_NS
    restored = WindowEngine.restore(data)
    for name in WINDOW_NAMES:
        assert restored.window(KEY, name) == engine.window(KEY, name)


def test_a_later_save_replaces_the_earlier_one(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.save_snapshot({"n": 1}, saved_at_ns=1)
        store.save_snapshot({"n": 2}, saved_at_ns=2)
        store.save_snapshot({"other": True}, saved_at_ns=3, name="baselines")
        assert store.load_snapshot() == (2, {"n": 2})
        assert store.load_snapshot("baselines") == (3, {"other": True})


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
    """A child saves growing snapshots in a loop; it is killed mid-stream; the store still opens and holds
    one whole snapshot, the last one committed."""
    script = textwrap.dedent(
        f"""
        import sys
        from otel_llm_collector.store import StateStore
        store = StateStore({str(tmp_path)!r})
        payload = {{"blob": "x" * 200_000}}
        i = 0
        while True:
            i += 1
            store.save_snapshot({{**payload, "i": i}}, saved_at_ns=i)
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
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert loaded is not None
    saved_at, data = loaded
    assert saved_at == data["i"] >= 3
    assert len(data["blob"]) == 200_000
    json.dumps(data)


def test_public_api_is_pinned() -> None:
    assert sorted(store_module.__all__) == ["DATABASE_FILE", "StateStore"]
