"""The write-ahead log: records come back in order after a reopen, segments go once a snapshot covers them."""

from __future__ import annotations

from pathlib import Path

from otel_llm_collector.wal import WriteAheadLog


def test_records_survive_reopen_in_order(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    assert [wal.append(1, b"a"), wal.append(2, b"bb"), wal.append(1, b"")] == [1, 2, 3]
    wal.close()  # a SIGKILL leaves the same bytes: every append was an unbuffered write
    reopened = WriteAheadLog(tmp_path)
    assert list(reopened.replay(0)) == [(1, 1, b"a"), (2, 2, b"bb"), (3, 1, b"")]
    assert list(reopened.replay(2)) == [(3, 1, b"")]
    assert reopened.append(1, b"c") == 4
    reopened.close()


def test_segments_are_deleted_only_when_covered(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append(1, b"1")
    wal.append(1, b"2")
    wal.rotate()  # snapshot taken after record 1 was applied; record 2 still queued
    wal.append(1, b"3")
    assert wal.truncate_through(1) == 0  # the first segment still holds record 2
    assert [seq for seq, _, _ in wal.replay(0)] == [1, 2, 3]
    wal.rotate()
    assert wal.truncate_through(3) == 2
    assert list(wal.replay(0)) == []
    assert len(list(tmp_path.glob("wal-*.log"))) == 1  # the open segment stays
    wal.close()


def test_torn_tail_is_ignored(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append(1, b"whole")
    wal.append(1, b"torn record")
    wal.close()
    segment = next(tmp_path.glob("wal-*.log"))
    segment.write_bytes(segment.read_bytes()[:-4])
    reopened = WriteAheadLog(tmp_path)
    assert list(reopened.replay(0)) == [(1, 1, b"whole")]
    assert reopened.append(1, b"next") == 2
    reopened.close()


def test_empty_directory_starts_at_one(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "fresh")
    assert wal.last_seq == 0
    assert wal.append(2, b"x") == 1
    assert wal.size_bytes() > 1
    wal.close()


def test_rotating_an_empty_segment_keeps_it(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.rotate()
    wal.rotate()
    assert wal.truncate_through(0) == 0
    wal.append(1, b"kept")
    wal.rotate()
    wal.rotate()
    assert wal.truncate_through(0) == 0
    assert list(wal.replay(0)) == [(1, 1, b"kept")]
    assert len(list(tmp_path.glob("wal-*.log"))) == 2
    wal.close()
