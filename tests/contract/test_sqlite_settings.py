"""SQLite connection settings the store relies on for durability and speed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from chatsphere.adapters.sql.store import SqlStore


async def test_writer_and_readers_are_configured_as_the_store_needs(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'settings.db'}")
    await store.open()
    try:
        with store._sync_engine.connect() as writer:
            pragmas = {
                name: writer.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "cache_size", "busy_timeout")
            }
        # WAL with synchronous=FULL (2): durable before ack. The writer caches 32 MiB.
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,
            "cache_size": -32_768,
            "busy_timeout": 30_000,
        }
        assert store._sync_reads is not None
        with store._sync_reads.connect() as reader:
            assert reader.execute(text("PRAGMA cache_size")).scalar() == -2_000
            assert reader.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        await store.close()
