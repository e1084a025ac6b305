"""SQLite's full-text index: its own file, fed by its own thread (adapters/sql/search_index.py)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from chatsphere.adapters.sql.search_index import SearchIndex, search_index_path
from chatsphere.adapters.sql.store import SqlStore, alembic_config
from chatsphere.domain.messages import Message
from chatsphere.ports.store import DeleteMessage, EditMessage
from tests.contract.test_store_contract import Chat, now

#: No timer round during a test unless it asks for one.
NEVER = 3600.0
FTS_TABLES_IN_MESSAGES_FILE = "SELECT name FROM src.sqlite_master WHERE name LIKE '%fts%'"


def index_of(store: SqlStore) -> SearchIndex:
    assert store._search_index is not None
    return store._search_index


def read_index(store_or_path: SqlStore | Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` on a connection of the test's own to the index file, messages attached."""
    database = (
        store_or_path if isinstance(store_or_path, Path) else index_of(store_or_path).database
    )
    conn = sqlite3.connect(search_index_path(database))
    try:
        conn.execute("ATTACH DATABASE ? AS src", (str(database),))
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def watermark(store: SqlStore | Path) -> int:
    [(indexed,)] = read_index(store, "SELECT indexed_pk FROM search_state")
    return int(str(indexed))


def top_pk(store: SqlStore) -> int:
    [(top,)] = read_index(store, "SELECT coalesce(max(pk), 0) FROM src.messages")
    return int(str(top))


def assert_index_matches_messages(store: SqlStore) -> None:
    """Every message up to the watermark is indexed with its current text, and no other."""
    indexed = read_index(store, "SELECT rowid, search_text FROM messages_fts ORDER BY rowid")
    stored = read_index(
        store,
        "SELECT pk, search_text FROM src.messages "
        "WHERE pk <= (SELECT indexed_pk FROM search_state) ORDER BY pk",
    )
    assert indexed == stored
    # FTS5's own check of its index against the text it holds.
    read_index(store, "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")


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


async def test_commits_leave_the_index_alone_and_a_search_sees_every_message(
    chat: Chat, tmp_path: Path
) -> None:
    room = await chat.room()
    posted = await asyncio.gather(*(chat.post(room.id, "alice", f"kiwi {i}") for i in range(300)))
    assert index_of(chat.store).path == tmp_path / "search.db-search"
    # No group commit indexed anything, and the messages file holds no index.
    assert watermark(chat.store) == 0
    assert read_index(chat.store, FTS_TABLES_IN_MESSAGES_FILE) == []
    # The search indexes what was committed before it first.
    hits = await found(chat.store, room.id, "kiwi")
    assert hits == [m.id for m in sorted(posted, key=lambda m: m.seq, reverse=True)][:50]
    assert watermark(chat.store) == top_pk(chat.store)
    assert_index_matches_messages(chat.store)


async def statements_of(index: SearchIndex, search: Awaitable[object]) -> list[str]:
    """The SQL the indexer's connection ran while ``search`` was awaited."""
    ran: list[str] = []
    await index._run(lambda: index._connection().set_trace_callback(ran.append))
    try:
        await search
    finally:
        await index._run(lambda: index._connection().set_trace_callback(None))
    return ran


def newest_first(messages: list[Message], word: str, limit: int = 50) -> list[str]:
    hits = [m for m in messages if word in (m.content.get("text") or "").split()]
    return [m.id for m in sorted(hits, key=lambda m: m.seq, reverse=True)][:limit]


@pytest.mark.parametrize("window", [1, 7, 10_000])
async def test_a_search_finds_the_rooms_newest_matches_whatever_the_window(
    chat: Chat, window: int
) -> None:
    index_of(chat.store)._newest_window = window
    rooms = [await chat.room() for _ in range(3)]
    words = ("plum", "pear", "fig")
    # Rooms posting in turn and together (sharing group commits), each word in every
    # room or in some; one room stops early, so its matches end up far from the newest.
    posted = list(
        await asyncio.gather(
            *(
                chat.post(rooms[i % 3].id, "alice", f"{words[i % 3]} {words[i % 2]} {i}")
                for i in range(120)
            )
        )
    )
    posted += [await chat.post(rooms[1].id, "bob", f"plum late {i}") for i in range(60)]
    for room in rooms:
        mine = [m for m in posted if m.room_id == room.id]
        for word in words:
            for limit in (1, 5, 50):
                got = [m.id for m in await chat.store.search(room.id, word, limit)]
                assert got == newest_first(mine, word, limit), (room.id, word, limit)


async def test_a_search_gathers_every_match_only_when_the_newest_fall_short(chat: Chat) -> None:
    index = index_of(chat.store)
    index._newest_window = 20
    quiet, busy = await chat.room(), await chat.room()
    early = [await chat.post(quiet.id, "alice", f"kiwi {i}") for i in range(5)]
    later = [await chat.post(busy.id, "bob", f"kiwi {i}") for i in range(40)]
    await index.catch_up()

    # The busy room's newest ten are among the newest twenty matches: one statement.
    ran = await statements_of(index, chat.store.search(busy.id, "kiwi", 10))
    assert sum("MATCH" in sql for sql in ran) == 1, ran
    assert [m.id for m in await chat.store.search(busy.id, "kiwi", 10)] == newest_first(
        later, "kiwi", 10
    )
    # The quiet room's matches are older than every one of those: gathered in full.
    ran = await statements_of(index, chat.store.search(quiet.id, "kiwi", 3))
    assert sum("MATCH" in sql for sql in ran) == 2, ran
    assert [m.id for m in await chat.store.search(quiet.id, "kiwi", 3)] == newest_first(
        early, "kiwi", 3
    )


async def test_within_a_room_pk_order_is_seq_order(chat: Chat) -> None:
    """What the search's newest-first scan relies on, across shared group commits."""
    rooms = [await chat.room() for _ in range(4)]
    await asyncio.gather(*(chat.post(rooms[i % 4].id, "alice", f"lime {i}") for i in range(400)))
    rows = read_index(chat.store, "SELECT room_id, seq, pk FROM src.messages ORDER BY pk")
    assert len(rows) == 400
    for room in rooms:
        seqs = [seq for room_id, seq, _pk in rows if room_id == room.id]
        assert seqs == sorted(seqs) and len(seqs) == 100


async def test_an_index_write_holds_neither_the_writer_nor_the_wal(chat: Chat) -> None:
    room = await chat.room()
    index = index_of(chat.store)
    writing, release = threading.Event(), threading.Event()

    def write_slowly() -> None:  # an index write, however long, in the indexer's thread
        with index._transaction() as tx:
            tx.execute("INSERT INTO messages_fts(rowid, search_text) VALUES (-1, 'held')")
            writing.set()
            release.wait(10)
            tx.execute("DELETE FROM messages_fts WHERE rowid = -1")

    loop = asyncio.get_running_loop()
    held = loop.run_in_executor(index._executor, write_slowly)
    try:
        assert await loop.run_in_executor(None, writing.wait, 10)
        async with asyncio.timeout(10):  # sends are not held up behind it...
            posted = [await chat.post(room.id, "alice", f"grape {i}") for i in range(20)]
        # ...and it holds no snapshot of the messages file, so a checkpoint copies the
        # whole WAL (with one, the frames committed since it began would stay behind).
        checkpointer = sqlite3.connect(index.database)
        try:
            busy, frames, copied = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            checkpointer.close()
        assert frames > 0 and copied == frames, (busy, frames, copied)
    finally:
        release.set()
        await held
    assert sorted(await found(chat.store, room.id, "grape")) == sorted(m.id for m in posted)


async def test_a_catch_up_larger_than_a_chunk_goes_in_several_transactions(chat: Chat) -> None:
    index = index_of(chat.store)
    index._chunk = 7
    room = await chat.room()
    posted = [await chat.post(room.id, "alice", f"papaya {i}") for i in range(30)]
    assert await index.catch_up(2) == 14  # a maintenance round's bounded share
    assert watermark(chat.store) == 14
    assert await index.catch_up() == top_pk(chat.store) - 14
    assert sorted(await found(chat.store, room.id, "papaya")) == sorted(m.id for m in posted)
    assert_index_matches_messages(chat.store)


async def test_edits_and_deletions_stay_exact_on_both_sides_of_the_watermark(
    chat: Chat,
) -> None:
    room = await chat.room()
    indexed_edit = await chat.post(room.id, "alice", "apple pie")
    indexed_delete = await chat.post(room.id, "alice", "banana split")
    await index_of(chat.store).catch_up()  # both now below the watermark
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


async def test_the_timer_indexes_light_traffic_and_prunes_the_change_log(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'timer.db'}", checkpoint_interval=0.05)
    await store.open()
    try:
        chat = Chat(store)
        room = await chat.room()
        message = await chat.post(room.id, "alice", "quiet afternoon")
        async with asyncio.timeout(10):
            while watermark(store) < top_pk(store):
                await asyncio.sleep(0.05)
        await store.commit(EditMessage(room.id, message.id, "alice", {"text": "calm"}, (), now()))
        assert read_index(store, "SELECT count(*) FROM src.search_changes") == [(1,)]
        async with asyncio.timeout(10):
            while read_index(store, "SELECT count(*) FROM src.search_changes") != [(0,)]:
                await asyncio.sleep(0.05)
        assert read_index(store, "SELECT search_text FROM messages_fts") == [("calm",)]
        assert_index_matches_messages(store)
    finally:
        await store.close()


async def reopened_finds(url: str, room_id: str, word: str) -> tuple[list[str], int]:
    """What a search for ``word`` finds after a start, and whether the index was rebuilt."""
    store = SqlStore(url, checkpoint_interval=NEVER)
    await store.open()
    try:
        hits = sorted(await found(store, room_id, word))
        assert_index_matches_messages(store)
        return hits, index_of(store).rebuilds
    finally:
        await store.close()


async def posted_and_closed(url: str, word: str) -> tuple[str, list[str]]:
    store = SqlStore(url, checkpoint_interval=NEVER)
    await store.open()
    try:
        chat = Chat(store)
        room = await chat.room()
        posted = [await chat.post(room.id, "alice", f"{word} {i}") for i in range(3)]
        assert index_of(store).rebuilds == 1  # its first start
    finally:
        await store.close()  # which indexes what waits
    return room.id, sorted(m.id for m in posted)


async def test_a_restart_finds_the_messages_the_index_had_not_reached(tmp_path: Path) -> None:
    path = tmp_path / "restart.db"
    room_id, posted = await posted_and_closed(f"sqlite+aiosqlite:///{path}", "lychee")
    assert watermark(path) > 0
    # As if the node had stopped before indexing them.
    conn = sqlite3.connect(search_index_path(path))
    with conn:
        conn.execute("DELETE FROM messages_fts")
        conn.execute("UPDATE search_state SET indexed_pk = 0")
    conn.close()
    assert await reopened_finds(f"sqlite+aiosqlite:///{path}", room_id, "lychee") == (posted, 0)


@pytest.mark.parametrize("damage", ["deleted", "garbage", "foreign", "ahead", "lost changes"])
async def test_an_unusable_index_file_is_rebuilt_from_the_messages(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "rebuild.db"
    room_id, posted = await posted_and_closed(f"sqlite+aiosqlite:///{path}", "mango")
    index_file = search_index_path(path)
    for stale in (Path(f"{index_file}-wal"), Path(f"{index_file}-shm")):
        stale.unlink(missing_ok=True)
    if damage == "deleted":
        index_file.unlink()
    elif damage == "garbage":
        index_file.write_bytes(b"not a database " * 1_000)
    elif damage == "foreign":  # the index of another database, whose messages mention mangoes
        other = tmp_path / "other.db"
        await posted_and_closed(f"sqlite+aiosqlite:///{other}", "mango")
        shutil.copy(search_index_path(other), index_file)
    elif damage == "ahead":  # an index of this database's future (the database restored)
        edit_index(index_file, "UPDATE search_state SET indexed_pk = 1000000")
    else:  # it lost its last rounds after the change log was pruned past them
        edit_index(index_file, "UPDATE search_state SET change_seq = 0")
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("UPDATE messages SET search_text = 'mango edited' WHERE pk = 2")
            conn.execute("DELETE FROM search_changes")  # pruned, as after it was indexed
        conn.close()
    assert await reopened_finds(f"sqlite+aiosqlite:///{path}", room_id, "mango") == (posted, 1)


def edit_index(index_file: Path, sql: str) -> None:
    conn = sqlite3.connect(index_file)
    with conn:
        conn.execute(sql)
    conn.close()


async def test_a_busy_index_file_is_left_alone_not_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    room_id, posted = await posted_and_closed(f"sqlite+aiosqlite:///{path}", "melon")
    holder = sqlite3.connect(search_index_path(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing the index, say
    try:
        index = SearchIndex(path, busy_timeout=0.2)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await index.open()
        assert index._executor._shutdown  # its thread is stopped
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # The file and everything in it survived.
    assert watermark(path) > 0
    assert await reopened_finds(f"sqlite+aiosqlite:///{path}", room_id, "melon") == (posted, 0)


def migrate(path: Path, revision: str, *, down: bool = False) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            (command.downgrade if down else command.upgrade)(alembic_config(conn), revision)
    finally:
        engine.dispose()


async def test_the_migration_moves_the_index_out_and_back(tmp_path: Path) -> None:
    path = tmp_path / "upgrade.db"
    migrate(path, "0006")  # the index inside the database, up to its watermark
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO rooms (id, type, name, created_by, is_private, settings, metadata, "
            "created_at, last_seq, member_count) "
            "VALUES ('r1', 'public_room', 'r', 'alice', 0, '{}', '{}', 0, 2, 1)"
        )
        for seq, (message_id, words) in enumerate((("m1", "olive oil"), ("m2", "plum jam")), 1):
            conn.execute(
                "INSERT INTO messages (id, room_id, seq, sender_id, type, content, search_text, "
                "metadata, reply_count, mentions, status, created_at) "
                "VALUES (?, 'r1', ?, 'alice', 'text', '{}', ?, '{}', 0, '[]', 'sent', 0)",
                (message_id, seq, words),
            )
    conn.close()

    url = f"sqlite+aiosqlite:///{path}"
    store = SqlStore(url, checkpoint_interval=NEVER)
    await store.open()  # upgrades to head
    try:
        assert read_index(store, FTS_TABLES_IN_MESSAGES_FILE) == []
        assert await found(store, "r1", "olive") == ["m1"]
        with store._sync_reads.connect() as db, db.begin():  # type: ignore[union-attr]
            db.exec_driver_sql("UPDATE messages SET search_text = 'quince jam' WHERE id = 'm1'")
        assert await found(store, "r1", "olive") == []
        assert sorted(await found(store, "r1", "jam")) == ["m1", "m2"]
        assert_index_matches_messages(store)
    finally:
        await store.close()

    # Back down: revision 0006's index is rebuilt inside the database, and complete.
    migrate(path, "0006", down=True)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT indexed_pk FROM messages_fts_state").fetchall() == [(2,)]
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
        hits = conn.execute(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'jam' ORDER BY rowid"
        ).fetchall()
        assert hits == [(1,), (2,)]
    finally:
        conn.close()


async def test_two_stores_on_one_database_share_the_index_without_indexing_twice(
    tmp_path: Path,
) -> None:
    # Not a supported deployment, but a mistake an operator can make: neither store may
    # index a message the other already indexed (FTS5 would refuse the duplicate rowid).
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first = SqlStore(url, checkpoint_interval=NEVER)
    second = SqlStore(url, checkpoint_interval=NEVER)
    await first.open()
    await second.open()
    try:
        chat = Chat(first)
        room = await chat.room()
        posted = [await chat.post(room.id, "alice", f"quince {i}") for i in range(3)]
        assert sorted(await found(first, room.id, "quince")) == sorted(m.id for m in posted)
        more = [await chat.post(room.id, "alice", f"quince more {i}") for i in range(2)]
        expected = sorted(m.id for m in posted + more)
        assert sorted(await found(second, room.id, "quince")) == expected
        assert sorted(await found(first, room.id, "quince")) == expected
        assert_index_matches_messages(first)
    finally:
        await second.close()
        await first.close()
