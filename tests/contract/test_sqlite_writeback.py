"""The database file is written back piece by piece after each checkpoint pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatsphere.adapters.sql import writeback
from chatsphere.adapters.sql.writeback import MAX_PIECES, PIECE_BYTES, write_back_gradually
from tests.contract.test_sqlite_settings import opened_store

MiB = 1 << 20


def sectors_written(path: Path) -> int | None:
    """Sectors written so far to the block device holding ``path``, or None if unknown."""
    dev = path.stat().st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if not stat.exists():
        return None
    return int(stat.read_text().split()[6])


@pytest.mark.skipif(writeback._sync_file_range is None, reason="no sync_file_range here")
def test_dirty_pages_reach_the_disk_without_an_fsync(tmp_path: Path) -> None:
    path = tmp_path / "dirty.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, os.urandom(8 * MiB))  # dirty in the page cache, nothing written yet
        before = sectors_written(path)
        if before is None:
            pytest.skip("the file is on no block device whose writes can be counted")
        assert write_back_gradually(fd) is True
        after = sectors_written(path)
        assert after is not None and (after - before) * 512 >= 8 * MiB
    finally:
        os.close(fd)
    assert path.stat().st_size == 8 * MiB


def test_the_whole_file_goes_in_order_in_pieces_each_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, int]] = []

    def record(fd: int, offset: int, nbytes: int, flags: int) -> int:
        calls.append((offset, nbytes, flags))
        return 0

    monkeypatch.setattr(writeback, "_sync_file_range", record)
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    for path, size in ((small, 5 * MiB + 10), (large, 3 * 1024 * MiB)):
        with path.open("wb") as f:
            f.truncate(size)  # sparse: only the size matters here
    with small.open("rb") as f:
        assert write_back_gradually(f.fileno()) is True
    assert [offset for offset, _, _ in calls] == [n * PIECE_BYTES for n in range(6)]
    assert {nbytes for _, nbytes, _ in calls} == {PIECE_BYTES}
    assert {flags for _, _, flags in calls} == {1 | 2 | 4}  # wait before, write, wait after
    calls.clear()
    with large.open("rb") as f:
        write_back_gradually(f.fileno())
    assert len(calls) == MAX_PIECES  # a bigger file: bigger pieces, not more calls
    assert calls[-1][0] + calls[-1][1] >= 3 * 1024 * MiB


def test_without_sync_file_range_the_caller_syncs_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writeback, "_sync_file_range", None)
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    with path.open("rb") as f:
        assert write_back_gradually(f.fileno()) is False


async def test_each_checkpoint_pass_writes_the_database_back_before_its_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatsphere.adapters.sql import store as store_module

    order: list[str] = []
    real_fdatasync = store_module._fdatasync
    monkeypatch.setattr(store_module, "write_back_gradually", lambda fd: order.append("pieces"))
    monkeypatch.setattr(
        store_module, "_fdatasync", lambda fd: (order.append("sync"), real_fdatasync(fd))
    )
    async with opened_store(f"sqlite+aiosqlite:///{tmp_path / 'wb.db'}") as store:
        store._checkpoint()
    assert order[:2] == ["pieces", "sync"]
