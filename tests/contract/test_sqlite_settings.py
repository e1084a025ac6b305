"""SQLite connection settings the store relies on for durability and speed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from chatsphere.adapters.sql.background import BACKGROUND_NICENESS
from chatsphere.adapters.sql.store import SqlStore
from tests.contract.test_store_contract import Chat


@asynccontextmanager
async def opened_store(url: str, **options: Any) -> AsyncIterator[SqlStore]:
    """A store on ``url``, open for the block and closed after it."""
    store = SqlStore(url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_writer_and_readers_are_configured_as_the_store_needs(tmp_path: Path) -> None:
    async with opened_store(f"sqlite+aiosqlite:///{tmp_path / 'settings.db'}") as store:

        def writer_pragmas() -> dict[str, object]:
            with store._write_transaction() as writer:
                return {
                    name: writer.execute(text(f"PRAGMA {name}")).scalar()
                    for name in (
                        "journal_mode",
                        "synchronous",
                        "cache_size",
                        "busy_timeout",
                        "wal_autocheckpoint",
                    )
                }

        pragmas = await store._in_writer(writer_pragmas)
        # WAL with synchronous=FULL (2): durable before ack. The writer caches 32 MiB.
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,
            "cache_size": -32_768,
            "busy_timeout": 30_000,
            # Checkpoints run in the background; the writer only past a ~200 MiB WAL.
            "wal_autocheckpoint": 50_000,
        }
        assert store._sync_reads is not None
        with store._sync_reads.connect() as reader:
            assert reader.execute(text("PRAGMA cache_size")).scalar() == -2_000
            assert reader.execute(text("PRAGMA journal_mode")).scalar() == "wal"


async def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    async with opened_store(f"sqlite+aiosqlite:///{path}", checkpoint_interval=0.05) as store:
        chat = Chat(store)
        room = await chat.room()
        await asyncio.gather(
            *(chat.post(room.id, "alice", f"m{i} {'x' * 300}") for i in range(300))
        )
        assert Path(f"{path}-wal").stat().st_size > 256 * 1024
        # Committed pages live in the WAL until a checkpoint copies them into the
        # database file; the writer alone would not before 50,000 pages (~200 MiB).
        async with asyncio.timeout(10):
            while path.stat().st_size < 256 * 1024:
                await asyncio.sleep(0.05)


async def test_a_busy_writer_still_gets_its_wal_started_over(tmp_path: Path) -> None:
    # Senders that never let the writer idle: a checkpoint beside it never copies every
    # frame before the next commit lands, so only the restart step lets the WAL start
    # over. Without it this WAL grows by every commit's pages (~8 KiB per send here, so
    # ~50 MiB over the sends below).
    path = tmp_path / "restart.db"
    async with opened_store(
        f"sqlite+aiosqlite:///{path}", checkpoint_interval=0.02, wal_restart_frames=64
    ) as store:
        chat = Chat(store)
        senders_ids = [f"user{i}" for i in range(20)]
        room = await chat.room(joined=senders_ids)
        stop = asyncio.Event()
        posted = 0

        async def sender(name: str) -> None:
            nonlocal posted
            while not stop.is_set():
                await chat.post(room.id, name, "x" * 200)
                posted += 1

        senders = [asyncio.create_task(sender(name)) for name in senders_ids]
        wal = Path(f"{path}-wal")
        largest = 0
        try:
            async with asyncio.timeout(60):
                while posted < 6_000 or store.wal_restarts < 3:
                    largest = max(largest, wal.stat().st_size)
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.gather(*senders)
        largest = max(largest, wal.stat().st_size)
        # A frame is a 4 KiB page plus its header; the group commits wrote several times
        # this many frames in all, so the WAL was reused from its start, not grown. (The
        # bound leaves room for a checkpoint thread starved of CPU by a busy machine.)
        assert largest < 4_096 * 4_120, f"WAL grew to {largest} bytes over {posted} sends"
        assert store.write_stats[1] >= posted


async def test_checkpoints_and_indexing_run_at_a_lower_priority_than_the_node(
    tmp_path: Path,
) -> None:
    # The event loop and the writer must preempt the checkpoint's page copying and the
    # full-text index's merging.
    async with opened_store(f"sqlite+aiosqlite:///{tmp_path / 'nice.db'}") as store:
        assert store._checkpoint_executor is not None
        assert store._search_index is not None

        def niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        loop = asyncio.get_running_loop()
        checkpoint_niceness = await loop.run_in_executor(store._checkpoint_executor, niceness)
        assert checkpoint_niceness == min(niceness() + BACKGROUND_NICENESS, 19)
        assert await store._search_index._run(niceness) == checkpoint_niceness
        assert await store._in_writer(niceness) == niceness()


async def test_a_finishing_checkpoint_that_fails_leaves_no_broken_writer(tmp_path: Path) -> None:
    async with opened_store(f"sqlite+aiosqlite:///{tmp_path / 'finish.db'}") as store:
        chat = Chat(store)
        room = await chat.room()
        first = await chat.post(room.id, "alice", "before")
        assert await store._in_writer(store._finish_checkpoint)  # nothing in the way

        def break_the_connection() -> None:
            conn = store._write_conn
            assert conn is not None
            conn.connection.dbapi_connection.close()  # type: ignore[union-attr]

        await store._in_writer(break_the_connection)
        with pytest.raises(sqlite3.ProgrammingError):
            await store._in_writer(store._finish_checkpoint)
        assert store._write_conn is None
        after = await chat.post(room.id, "bob", "after")
        assert after.seq == first.seq + 1
