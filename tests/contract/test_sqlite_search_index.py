"""SQLite's full-text index, fed in bulk up to a watermark (adapters/sql/search_index.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine

from chatsphere.adapters.sql.search_index import CATCH_UP_ROWS
from chatsphere.adapters.sql.store import _MIGRATIONS, SqlStore
from chatsphere.ports.store import DeleteMessage, EditMessage
from tests.contract.test_store_contract import Chat, now

#: No timer round during a test unless it asks for one.
NEVER = 3600.0


def beside_writer(store: SqlStore) -> Connection:
    """A connection of the test's own: the writer keeps its connection checked out."""
    assert store._sync_reads is not None
    return store._sync_reads.connect()


def watermark(store: SqlStore) -> int:
    with beside_writer(store) as conn:
        return int(conn.exec_driver_sql("SELECT indexed_pk FROM messages_fts_state").scalar_one())


def top_pk(store: SqlStore) -> int:
    with beside_writer(store) as conn:
        return int(conn.exec_driver_sql("SELECT coalesce(max(pk), 0) FROM messages").scalar_one())


def assert_index_matches_messages(store: SqlStore) -> None:
    """FTS5's own check: with rank 1 it compares the index with the content table."""
    with beside_writer(store) as conn, conn.begin():
        conn.exec_driver_sql(
            "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)"
        )


async def found(store: SqlStore, room_id: str, word: str) -> list[str]:
    return [m.id for m in await store.search(room_id, word, 50)]


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'search.db'}", checkpoint_interval=NEVER)
    await store.open()
    try:
        yield Chat(store)
    finally:
        await store.close()


async def test_a_few_messages_wait_for_the_index_but_a_search_sees_them(chat: Chat) -> None:
    room = await chat.room()
    posted = [await chat.post(room.id, "alice", f"kiwi number {i}") for i in range(5)]
    # Five small commits wrote no index segment of their own...
    assert watermark(chat.store) == 0
    # ...and the search indexes them first.
    assert sorted(await found(chat.store, room.id, "kiwi")) == sorted(m.id for m in posted)
    assert watermark(chat.store) == top_pk(chat.store)
    assert_index_matches_messages(chat.store)


async def test_a_group_commit_indexes_once_enough_messages_wait(chat: Chat) -> None:
    room = await chat.room()
    await asyncio.gather(
        *(chat.post(room.id, "alice", f"mango {i}") for i in range(CATCH_UP_ROWS + 50))
    )
    await chat.post(room.id, "alice", "one more commit, after the threshold")
    assert watermark(chat.store) >= CATCH_UP_ROWS  # no search, no timer: the commit path did it
    assert len(await found(chat.store, room.id, "mango")) == 50  # the search's limit
    assert_index_matches_messages(chat.store)


async def test_edits_and_deletions_stay_exact_on_both_sides_of_the_watermark(
    chat: Chat,
) -> None:
    room = await chat.room()
    indexed_edit = await chat.post(room.id, "alice", "apple pie")
    indexed_delete = await chat.post(room.id, "alice", "banana split")
    await found(chat.store, room.id, "anything")  # both now below the watermark
    waiting_edit = await chat.post(room.id, "alice", "cherry tart")
    waiting_delete = await chat.post(room.id, "alice", "damson jam")
    assert watermark(chat.store) < top_pk(chat.store)

    for message, text in ((indexed_edit, "elderberry pie"), (waiting_edit, "fig tart")):
        await chat.store.commit(
            EditMessage(room.id, message.id, "alice", {"text": text}, (), now())
        )
    for message in (indexed_delete, waiting_delete):
        await chat.store.commit(DeleteMessage(room.id, message.id, "alice", now()))

    for gone in ("apple", "banana", "cherry", "damson"):
        assert await found(chat.store, room.id, gone) == [], gone
    assert await found(chat.store, room.id, "elderberry") == [indexed_edit.id]
    assert await found(chat.store, room.id, "fig") == [waiting_edit.id]
    assert sorted(
        await found(chat.store, room.id, "pie") + await found(chat.store, room.id, "tart")
    ) == sorted([indexed_edit.id, waiting_edit.id])
    assert_index_matches_messages(chat.store)


async def test_light_traffic_is_indexed_by_the_timer(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'timer.db'}", checkpoint_interval=0.05)
    await store.open()
    try:
        chat = Chat(store)
        room = await chat.room()
        await chat.post(room.id, "alice", "quiet afternoon")
        async with asyncio.timeout(10):
            while watermark(store) < top_pk(store):
                await asyncio.sleep(0.05)
        assert store._search_index is not None and store._search_index.pending == 0
        assert_index_matches_messages(store)
    finally:
        await store.close()


async def test_a_restart_finds_the_messages_the_index_had_not_reached(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    first = SqlStore(url, checkpoint_interval=NEVER)
    await first.open()
    chat = Chat(first)
    room = await chat.room()
    posted = [await chat.post(room.id, "alice", f"lychee {i}") for i in range(3)]
    assert first._search_index is not None
    first._search_index.indexed(first._search_index.pending)  # as if it stopped before indexing
    await first.close()
    assert watermark_of(tmp_path / "restart.db") == 0

    second = SqlStore(url, checkpoint_interval=0.05)
    await second.open()
    try:
        assert second._search_index is not None
        assert second._search_index.pending == 3  # measured at start
        assert sorted(await found(second, room.id, "lychee")) == sorted(m.id for m in posted)
        assert_index_matches_messages(second)
    finally:
        await second.close()


def watermark_of(path: Path) -> int:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql("SELECT indexed_pk FROM messages_fts_state").scalar_one()
            )
    finally:
        engine.dispose()


async def test_the_migration_keeps_indexed_messages_searchable_and_editable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "upgrade.db"
    # A database as revision 0002 left it: every insert indexed by a trigger.
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.exec_driver_sql(
            "INSERT INTO rooms (id, type, name, created_by, is_private, settings, metadata, "
            "created_at, last_seq, member_count) "
            "VALUES ('r1', 'public_room', 'r', 'alice', 0, '{}', '{}', 0, 2, 1)"
        )
        for seq, (message_id, words) in enumerate((("m1", "olive oil"), ("m2", "plum jam")), 1):
            conn.exec_driver_sql(
                "INSERT INTO messages (id, room_id, seq, sender_id, type, content, search_text, "
                "metadata, reply_count, mentions, status, created_at) "
                "VALUES (?, 'r1', ?, 'alice', 'text', '{}', ?, '{}', 0, '[]', 'sent', 0)",
                (message_id, seq, words),
            )
    engine.dispose()

    store = SqlStore(f"sqlite+aiosqlite:///{path}", checkpoint_interval=NEVER)
    await store.open()  # upgrades to head
    try:
        assert watermark(store) == top_pk(store) == 2
        assert await found(store, "r1", "olive") == ["m1"]
        with beside_writer(store) as conn, conn.begin():  # an indexed row's text changes
            conn.exec_driver_sql("UPDATE messages SET search_text = 'quince jam' WHERE id = 'm1'")
        assert await found(store, "r1", "olive") == []
        assert sorted(await found(store, "r1", "jam")) == ["m1", "m2"]
        assert_index_matches_messages(store)
    finally:
        await store.close()
