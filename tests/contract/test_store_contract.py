"""The Store contract, run against every SQL backend (SQLite and PostgreSQL).

``database_url`` is parametrized in tests/conftest.py; a behaviour that differs
between backends is a bug. The store is used directly, as the services use it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from alembic import command
from psycopg.pq import TransactionStatus
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import create_async_engine

from chatsphere.adapters.sql.bulk import BulkStatements
from chatsphere.adapters.sql.pipelined import PipelinedCommitter
from chatsphere.adapters.sql.store import SqlStore, alembic_config
from chatsphere.domain.events import EventType, RoomEvent
from chatsphere.domain.messages import Message, MessageStatus, MessageType, Reaction, mentions_in
from chatsphere.domain.rooms import (
    DEFAULT_SETTINGS,
    Member,
    MembershipState,
    Role,
    Room,
    RoomType,
    dm_key,
)
from chatsphere.errors import ChatError, ErrorCode
from chatsphere.ids import new_id
from chatsphere.ports.store import (
    AddMember,
    AddReaction,
    ChangeRole,
    DeleteMessage,
    EditMessage,
    PostMessage,
    RemoveMember,
    RemoveReaction,
    Store,
    UpdateRoom,
    WriteCommand,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
_ticks = itertools.count()


def now() -> datetime:
    """Distinct, increasing, millisecond-exact times."""
    return T0 + timedelta(milliseconds=next(_ticks))


class Chat:
    """The store plus the committed-event log its commit listener saw."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.committed: list[RoomEvent] = []
        store.set_commit_listener(self.committed.extend)

    async def room(
        self,
        kind: RoomType = RoomType.PUBLIC_ROOM,
        joined: Sequence[str] = ("alice", "bob"),
        invited: Sequence[str] = (),
        key: str | None = None,
        **settings: Any,
    ) -> Room:
        at = now()
        room = Room(
            id=new_id(),
            type=kind,
            name=f"{kind.value} room",
            description=None,
            created_by=joined[0],
            settings=DEFAULT_SETTINGS[kind].merged(settings),
            metadata={},
            created_at=at,
        )
        members = [
            Member(room.id, user, Role.OWNER if i == 0 else Role.MEMBER, MembershipState.JOINED, at)
            for i, user in enumerate(joined)
        ] + [
            Member(room.id, user, Role.MEMBER, MembershipState.INVITED, at, invited_by=joined[0])
            for user in invited
        ]
        event = await self.store.create_room(room, members, key)
        assert (event.seq, event.type) == (1, EventType.ROOM_CREATED)
        return room

    def draft(
        self,
        room_id: str,
        sender: str,
        text: str,
        *,
        client_id: str | None = None,
        reply_to: str | None = None,
    ) -> Message:
        content = {"text": text}
        return Message(
            id=new_id(),
            room_id=room_id,
            sender_id=sender,
            type=MessageType.TEXT,
            content=content,
            created_at=now(),
            mentions=mentions_in(content),
            client_message_id=client_id,
            reply_to=reply_to,
        )

    async def post(self, room_id: str, sender: str, text: str, **kwargs: Any) -> Message:
        draft = self.draft(room_id, sender, text, **kwargs)
        event = await self.store.commit(PostMessage(draft))
        assert event is not None and event.type is EventType.NEW_MESSAGE
        return replace(draft, seq=event.seq)

    async def last_seq(self, room_id: str) -> int:
        room = await self.store.get_room(room_id)
        assert room is not None
        return room.last_seq

    async def seqs(self, room_id: str) -> list[int]:
        return [e.seq for e in await self.store.events_after(room_id, 0, 100_000)]

    async def frames_text(self, room_id: str) -> bytes:
        return b"\n".join(e.frame for e in await self.store.events_after(room_id, 0, 100_000))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    instance = SqlStore(database_url)
    await instance.open()
    yield instance
    await instance.close()


@pytest.fixture
def chat(store: SqlStore) -> Chat:
    return Chat(store)


async def refused(code: ErrorCode, command: WriteCommand, store: Store) -> ChatError:
    with pytest.raises(ChatError) as info:
        await store.commit(command)
    assert info.value.code is code, info.value
    return info.value


def _sql_store_is_a_store(store: SqlStore) -> Store:
    return store  # checked by mypy: SqlStore satisfies the Store protocol


def test_sql_store_has_every_store_method() -> None:
    for name in dir(Store):
        if not name.startswith("_"):
            assert callable(getattr(SqlStore, name)), name


async def test_ping(store: SqlStore) -> None:
    assert await store.ping() is True


# -- rooms -----------------------------------------------------------------------------


async def test_create_room_stores_room_members_and_event_one(chat: Chat) -> None:
    room = await chat.room(RoomType.GROUP_CHAT, joined=("alice", "bob"), invited=("carol",))
    stored = await chat.store.get_room(room.id)
    assert stored is not None
    assert (stored.name, stored.type, stored.created_by) == (room.name, room.type, "alice")
    assert stored.settings == room.settings
    assert stored.created_at == room.created_at
    assert (stored.last_seq, stored.member_count) == (1, 2)
    members = {m.user_id: m for m in await chat.store.list_members(room.id)}
    assert members["alice"].role is Role.OWNER
    assert members["carol"].state is MembershipState.INVITED
    assert members["carol"].invited_by == "alice"
    [created] = await chat.store.events_after(room.id, 0, 10)
    assert created.seq == 1 and created.type == "room_created"
    data = orjson.loads(created.frame)["data"]
    assert data["room"]["memberCount"] == 2
    assert {m["userId"] for m in data["members"]} == {"alice", "bob", "carol"}


async def test_unknown_things_are_none(chat: Chat) -> None:
    assert await chat.store.get_room("nope") is None
    assert await chat.store.get_member("nope", "alice") is None
    assert await chat.store.get_message("nope") is None
    assert await chat.store.find_dm("nope") is None
    assert await chat.store.events_after("nope", 0, 10) == []
    assert await chat.store.unread_count("nope", "alice") == (0, 0)


async def test_dm_key_is_unique(chat: Chat) -> None:
    key = dm_key("alice", "bob")
    first = await chat.room(RoomType.DIRECT_MESSAGE, joined=("alice", "bob"), key=key)
    with pytest.raises(ChatError) as info:
        await chat.room(RoomType.DIRECT_MESSAGE, joined=("bob", "alice"), key=key)
    assert info.value.code is ErrorCode.CONFLICT
    found = await chat.store.find_dm(dm_key("bob", "alice"))
    assert found is not None and found.id == first.id
    # a failed create leaves nothing behind
    assert len(await chat.store.list_user_rooms("bob")) == 1


async def test_creating_the_same_room_id_twice_is_a_conflict(chat: Chat) -> None:
    room = await chat.room()
    with pytest.raises(ChatError) as info:
        await chat.store.create_room(room, [], None)
    assert info.value.code is ErrorCode.CONFLICT


async def test_public_directory(chat: Chat) -> None:
    hundred = await chat.room(RoomType.PUBLIC_ROOM, joined=("a", "b", "c"))
    await chat.store.commit(UpdateRoom(hundred.id, "a", now(), name="100% real_talk"))
    thousand = await chat.room(RoomType.PUBLIC_ROOM, joined=("a",))
    await chat.store.commit(UpdateRoom(thousand.id, "a", now(), name="1000 realXtalk"))
    await chat.room(RoomType.GROUP_CHAT, joined=("a",))  # private: never listed
    listed = await chat.store.list_public_rooms(10, 0, None)
    assert [r.id for r in listed] == [hundred.id, thousand.id]  # biggest first
    assert [r.id for r in await chat.store.list_public_rooms(10, 0, "100%")] == [hundred.id]
    assert [r.id for r in await chat.store.list_public_rooms(10, 0, "l_t")] == [hundred.id]
    assert [r.id for r in await chat.store.list_public_rooms(10, 0, "REAL")] == [
        hundred.id,
        thousand.id,
    ]
    assert [r.id for r in await chat.store.list_public_rooms(1, 1, None)] == [thousand.id]


# -- sequence numbers ------------------------------------------------------------------


async def test_seq_is_gap_free_and_unique_under_concurrent_commits(chat: Chat) -> None:
    rooms = [await chat.room() for _ in range(3)]
    per_room = 100
    drafts = [
        chat.draft(rooms[i % 3].id, ("alice", "bob")[i % 2], f"message {i}")
        for i in range(per_room * 3)
    ]
    events = await asyncio.gather(*(chat.store.commit(PostMessage(d)) for d in drafts))
    for room in rooms:
        mine = [e for e in events if e is not None and e.room_id == room.id]
        assert sorted(e.seq for e in mine) == list(range(2, per_room + 2))
        assert await chat.seqs(room.id) == list(range(1, per_room + 2))
        assert await chat.last_seq(room.id) == per_room + 1
        history = await chat.store.history(room.id, None, None, 1000)
        assert [m.seq for m in history] == list(range(2, per_room + 2))
    # each message is stored with the seq its event carried
    for draft, event in zip(drafts, events, strict=True):
        assert event is not None
        stored = await chat.store.get_message(draft.id)
        assert stored is not None and stored.seq == event.seq


async def test_seq_is_gap_free_with_two_stores_on_one_database(
    database_url: str, chat: Chat
) -> None:
    # Two nodes sharing a database must not reuse or skip numbers either.
    room = await chat.room()
    other = SqlStore(database_url)
    await other.open()
    try:
        drafts = [chat.draft(room.id, "alice", f"m{i}") for i in range(120)]
        stores = [chat.store, other]
        await asyncio.gather(*(stores[i % 2].commit(PostMessage(d)) for i, d in enumerate(drafts)))
    finally:
        await other.close()
    assert await chat.seqs(room.id) == list(range(1, 122))
    assert await chat.last_seq(room.id) == 121


async def test_a_counter_another_node_moved_is_read_again_not_reused(
    database_url: str, chat: Chat
) -> None:
    # A node numbers a batch of posts from the counters it committed last. Here another
    # node logs an event this one never saw (a reaction: a room_events row, which no
    # unique key shares with messages), so the counter this node knows is stale: its
    # guarded write must fail and the post be numbered after the other node's event.
    room = await chat.room()
    first = await chat.post(room.id, "alice", "numbered from the stored counter")
    assert first.seq == 2
    other = SqlStore(database_url)
    await other.open()
    try:
        reacted = await other.commit(AddReaction(room.id, first.id, "bob", "🔥", now()))
        assert reacted is not None and reacted.seq == 3
        second = await chat.post(room.id, "alice", "numbered after the other node's event")
        # …and the room, which another node writes to, takes the long path for a while.
        assert chat.store._applier.counters.known([room.id]) is None
        third = await chat.post(room.id, "alice", "and the one after it")
    finally:
        await other.close()
    assert (second.seq, third.seq) == (4, 5)
    assert await chat.seqs(room.id) == [1, 2, 3, 4, 5]
    assert await chat.last_seq(room.id) == 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_node_that_wrote_a_room_last_numbers_posts_without_reading_its_counter(
    chat: Chat,
) -> None:
    # What the writer's connection executes, traced by SQLite itself.
    executed: list[str] = []

    def trace(callback: Any) -> None:
        dbapi = chat.store._writer_connection().connection.dbapi_connection
        dbapi.set_trace_callback(callback)  # type: ignore[union-attr]

    room = await chat.room()
    await chat.store._in_writer(lambda: trace(executed.append))
    try:
        await chat.post(room.id, "alice", "the first post reads the counter", client_id="c-1")
        first, executed[:] = list(executed), []
        posted = await chat.post(room.id, "alice", "the second does not", client_id="c-2")
        second = list(executed)
        # A retried client id is refused by its unique key; the batch runs again the
        # long way to report it, but the counters the node knows are still right.
        with pytest.raises(ChatError) as refused:
            await chat.post(room.id, "alice", "a retry", client_id="c-1")
        executed[:] = []
        after = await chat.post(room.id, "alice", "still numbered from what it knows")
        third = list(executed)
    finally:
        await chat.store._in_writer(lambda: trace(None))
    assert any("SELECT id, last_seq" in sql for sql in first), first
    assert not any("last_seq, member_count" in sql for sql in second), second
    assert any("CASE WHEN last_seq = 2 AND" in sql and "THEN 3 END" in sql for sql in second), (
        second
    )
    assert refused.value.code is ErrorCode.CONFLICT
    assert not any("last_seq, member_count" in sql for sql in third), third
    assert (posted.seq, after.seq) == (3, 4)


async def test_events_after_is_ordered_and_limited(chat: Chat) -> None:
    room = await chat.room()
    posted = [await chat.post(room.id, "alice", f"m{i}") for i in range(6)]
    assert [e.seq for e in await chat.store.events_after(room.id, 0, 3)] == [1, 2, 3]
    page = await chat.store.events_after(room.id, 3, 2)
    assert [e.seq for e in page] == [4, 5]
    assert [e.seq for e in await chat.store.events_after(room.id, 7, 100)] == []
    for event in await chat.store.events_after(room.id, 1, 100):
        frame = orjson.loads(event.frame)
        assert set(frame) == {"type", "roomId", "seq", "data"}
        assert (frame["type"], frame["roomId"], frame["seq"]) == (
            "new_message",
            room.id,
            event.seq,
        )
        assert frame["data"]["id"] == posted[event.seq - 2].id
        assert frame["data"]["seq"] == event.seq


READS: dict[str, Any] = {
    "get_room": lambda s, r, m: s.get_room(r.id),
    "get_member": lambda s, r, m: s.get_member(r.id, "alice"),
    "user_room_ids": lambda s, r, m: s.user_room_ids("alice"),
    "list_user_rooms": lambda s, r, m: s.list_user_rooms("alice"),
    "list_members": lambda s, r, m: s.list_members(r.id),
    "list_public_rooms": lambda s, r, m: s.list_public_rooms(10, 0, None),
    "get_message": lambda s, r, m: s.get_message(m.id),
    "find_by_client_id": lambda s, r, m: s.find_by_client_id(r.id, "alice", "c-1"),
    "history": lambda s, r, m: s.history(r.id, before=None, after=None, limit=10),
    "thread": lambda s, r, m: s.thread(m.id, 10),
    "search": lambda s, r, m: s.search(r.id, "hello", 10),
    "edit_history": lambda s, r, m: s.edit_history(m.id),
    "events_after": lambda s, r, m: s.events_after(r.id, 0, 10),
    "unread_count": lambda s, r, m: s.unread_count(r.id, "bob"),
}


@pytest.mark.parametrize("read", list(READS))
async def test_a_read_leaves_little_for_the_cycle_collector(chat: Chat, read: str) -> None:
    """Reads run on every join, resume and history page. A Core statement built per read
    is a graph of reference cycles: the resume query left ~620 objects to the collector
    each time, and a thousand joins made 60-100 ms collections."""
    room = await chat.room()
    message = await chat.post(room.id, "alice", "hello")
    call = READS[read]
    await call(chat.store, room, message)  # pools, caches and compiled SQL now warm
    reads = 20
    gc.collect()
    gc.disable()
    try:
        for _ in range(reads):
            await call(chat.store, room, message)
        garbage = gc.collect()
    finally:
        gc.enable()
    # Today 0-18 per read (reactions and search build small cycles); 620 was the resume's.
    assert garbage / reads < 40, f"{garbage / reads:.0f} objects in cycles per read"


async def test_replayed_frames_are_the_committed_bytes(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", 'héllo 👋 "quoted"')
    await chat.store.commit(AddReaction(room.id, message.id, "bob", "🔥", now()))
    await chat.store.commit(
        EditMessage(room.id, message.id, "alice", {"text": "edited"}, (), now())
    )
    stored = {e.seq: e.frame for e in await chat.store.events_after(room.id, 0, 100)}
    assert len(chat.committed) == 3
    for event in chat.committed:
        assert stored[event.seq] == event.frame


async def test_a_message_is_logged_once_and_replayed_as_committed(chat: Chat) -> None:
    # A post is its messages row alone: no room_events copy of its content. The replay
    # rebuilds the committed frame from the row, through edits, reactions and replies.
    room = await chat.room(joined=("alice", "bob", "carol"))
    root = await chat.post(room.id, "alice", "first words @bob", client_id="c-1")
    await chat.post(room.id, "bob", "a reply", reply_to=root.id)
    await chat.store.commit(AddReaction(room.id, root.id, "carol", "🎉", now()))
    for text in ("second words @carol", "third words"):
        await chat.store.commit(EditMessage(room.id, root.id, "alice", {"text": text}, (), now()))
    await chat.store.commit(
        AddMember(Member(room.id, "dave", Role.MEMBER, MembershipState.JOINED, now()), "alice")
    )
    stored = {e.seq: e for e in await chat.store.events_after(room.id, 0, 100)}
    assert [stored[e.seq].frame for e in chat.committed] == [e.frame for e in chat.committed]
    assert [e.type for e in chat.committed] == [
        "new_message",
        "new_message",
        "reaction_added",
        "message_edited",
        "message_edited",
        "user_joined",
    ]
    replayed_root = orjson.loads(stored[2].frame)["data"]
    assert replayed_root["content"] == {"text": "first words @bob"}
    assert (replayed_root["mentions"], replayed_root["replyCount"]) == (["bob"], 0)
    ((copies,),) = await driver_rows(
        chat.store, ("SELECT count(*) FROM room_events WHERE type = 'new_message'", ())
    )
    assert copies == (0,)


async def test_an_upgrade_drops_the_copies_older_nodes_logged(database_url: str) -> None:
    # Before migration 0006 a post also wrote its data to room_events. Such a database
    # is upgraded on open, and resume then finds each message once, with the same bytes.
    store = SqlStore(database_url)
    await store.open()
    chat = Chat(store)
    try:
        room = await chat.room()
        await chat.post(room.id, "alice", "from an older node")
        [posted] = [e for e in chat.committed if e.type is EventType.NEW_MESSAGE]
        marks = ", ".join(["?" if store.dialect == "sqlite" else "%s"] * 7)
        data = orjson.dumps(posted.data).decode()
        legacy_row = (room.id, posted.seq, "new_message", data, "alice", posted.message_id, 0)
        await driver_rows(
            store,
            (
                "INSERT INTO room_events (room_id, seq, type, data, actor_id, message_id, "
                f"created_at) VALUES ({marks})",
                legacy_row,
            ),
        )
        await downgrade_to(store, "0006")  # 0006 changed rows only, so this schema is 0005's
        await driver_rows(store, ("UPDATE alembic_version SET version_num = '0005'", ()))
    finally:
        await store.close()
    reopened = SqlStore(database_url)
    await reopened.open()
    try:
        replayed = await reopened.events_after(room.id, 0, 10)
        assert [e.seq for e in replayed] == [1, posted.seq]
        assert replayed[1].frame == posted.frame
        ((version,),) = await driver_rows(reopened, ("SELECT version_num FROM alembic_version", ()))
        assert version != ("0005",)
    finally:
        await reopened.close()


async def test_the_log_pages_across_messages_and_other_events(chat: Chat) -> None:
    room = await chat.room()
    kinds = []
    for n in range(5):
        message = await chat.post(room.id, "alice", f"m{n}")
        await chat.store.commit(AddReaction(room.id, message.id, "bob", "👍", now()))
        kinds += ["new_message", "reaction_added"]
    seen = []
    after = 0
    while page := await chat.store.events_after(room.id, after, 3):
        assert len(page) <= 3
        seen += page
        after = page[-1].seq
    assert [e.seq for e in seen] == list(range(1, 12))
    assert [e.type for e in seen] == ["room_created", *kinds]


async def test_a_deleted_message_replays_without_its_content(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", "private @bob")
    [posted] = [e for e in chat.committed if e.type is EventType.NEW_MESSAGE]
    await chat.store.commit(DeleteMessage(room.id, message.id, "alice", now()))
    [replayed] = [e for e in await chat.store.events_after(room.id, 0, 10) if e.seq == posted.seq]
    expected = dict(
        posted.data,
        content={},
        metadata={},
        status=MessageStatus.DELETED.value,
        mentions=[],
        reactions=[],
    )
    assert orjson.loads(replayed.frame)["data"] == expected
    assert b"private" not in replayed.frame


async def test_commit_listener_sees_each_event_once_in_seq_order(chat: Chat) -> None:
    rooms = [await chat.room() for _ in range(2)]
    drafts = [chat.draft(rooms[i % 2].id, "alice", f"m{i}") for i in range(40)]
    await asyncio.gather(*(chat.store.commit(PostMessage(d)) for d in drafts))
    for room in rooms:
        seen = [e.seq for e in chat.committed if e.room_id == room.id]
        assert seen == list(range(2, 22))


async def test_a_failing_listener_does_not_undo_the_commit(chat: Chat) -> None:
    room = await chat.room()

    def broken(events: Sequence[RoomEvent]) -> None:
        raise RuntimeError("fan-out exploded")

    chat.store.set_commit_listener(broken)
    message = await chat.post(room.id, "alice", "still durable")
    assert await chat.store.get_message(message.id) is not None
    assert await chat.seqs(room.id) == [1, 2]


async def test_refused_commands_in_a_batch_consume_no_seq(chat: Chat) -> None:
    room = await chat.room()
    gone = await chat.post(room.id, "alice", "to be deleted")
    await chat.store.commit(DeleteMessage(room.id, gone.id, "alice", now()))
    commands: list[WriteCommand] = [
        PostMessage(chat.draft(room.id, "alice", "a")),
        EditMessage(room.id, gone.id, "alice", {"text": "zombie"}, (), now()),
        PostMessage(chat.draft(room.id, "bob", "b")),
        AddReaction(room.id, gone.id, "bob", "👍", now()),
        EditMessage(room.id, "no-such-message", "alice", {"text": "?"}, (), now()),
        ChangeRole(room.id, "stranger", Role.MODERATOR, "alice", now()),
        PostMessage(chat.draft("no-such-room", "alice", "lost")),
        PostMessage(chat.draft(room.id, "alice", "c")),
    ]
    batches_before = chat.store.write_stats[0]
    results = await asyncio.gather(
        *(chat.store.commit(c) for c in commands), return_exceptions=True
    )
    assert chat.store.write_stats[0] - batches_before == 1  # all in one transaction
    codes = [r.code if isinstance(r, ChatError) else None for r in results]
    assert codes == [
        None,
        ErrorCode.MESSAGE_DELETED,
        None,
        ErrorCode.MESSAGE_DELETED,
        ErrorCode.MESSAGE_NOT_FOUND,
        ErrorCode.NOT_A_MEMBER,
        ErrorCode.ROOM_NOT_FOUND,
        None,
    ]
    assert await chat.seqs(room.id) == [1, 2, 3, 4, 5, 6]
    assert [r.seq for r in results if isinstance(r, RoomEvent)] == [4, 5, 6]


# -- idempotent sends ------------------------------------------------------------------


async def test_a_repeated_client_message_id_is_a_conflict_and_changes_nothing(
    chat: Chat,
) -> None:
    room = await chat.room()
    original = await chat.post(room.id, "alice", "first", client_id="c-1")
    retry = chat.draft(room.id, "alice", "second try", client_id="c-1")
    await refused(ErrorCode.CONFLICT, PostMessage(retry), chat.store)
    stored = await chat.store.find_by_client_id(room.id, "alice", "c-1")
    assert stored is not None
    assert (stored.id, stored.content, stored.seq) == (original.id, {"text": "first"}, 2)
    assert await chat.store.get_message(retry.id) is None
    assert await chat.last_seq(room.id) == 2
    after = await chat.post(room.id, "alice", "next")
    assert after.seq == 3  # no number was burnt by the refused retry


async def test_the_same_client_message_id_from_another_sender_or_room_is_fine(
    chat: Chat,
) -> None:
    room, other_room = await chat.room(), await chat.room()
    await chat.post(room.id, "alice", "a", client_id="c-1")
    bob = await chat.post(room.id, "bob", "b", client_id="c-1")
    elsewhere = await chat.post(other_room.id, "alice", "c", client_id="c-1")
    assert (bob.seq, elsewhere.seq) == (3, 2)
    found = await chat.store.find_by_client_id(room.id, "bob", "c-1")
    assert found is not None and found.id == bob.id
    assert await chat.store.find_by_client_id(room.id, "carol", "c-1") is None


async def driver_rows(store: SqlStore, *statements: tuple[str, Any]) -> list[list[Any]]:
    """Rows of each (sql, params) run on the driver's cursor, in the writer's connection."""

    def run() -> list[list[Any]]:
        with store._write_transaction() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                results = []
                for sql, params in statements:
                    cursor.execute(sql, params)
                    results.append(list(cursor.fetchall()) if cursor.description else [])
                return results
            finally:
                cursor.close()

    return await store._in_writer(run)


async def downgrade_to(store: SqlStore, revision: str) -> None:
    """Run the migrations down to ``revision`` in the writer's connection."""

    def run() -> None:
        with store._write_transaction() as conn:
            command.downgrade(alembic_config(conn), revision)

    await store._in_writer(run)


async def query_plan(store: SqlStore, sql: str, params: Any) -> str:
    """The plan of ``sql``; on PostgreSQL as if tables were large (no sequential scans),
    since an empty table has no statistics: it judges whether the shape allows a seek."""
    if store.dialect == "sqlite":
        (rows,) = await driver_rows(store, ("EXPLAIN QUERY PLAN " + sql, params))
        return " ".join(str(row[-1]) for row in rows)
    _, rows = await driver_rows(
        store, ("SET LOCAL enable_seqscan = off", None), ("EXPLAIN " + sql, params)
    )
    return " ".join(row[0] for row in rows)


async def test_the_batch_finds_stored_client_ids_by_seeking_the_unique_key(chat: Chat) -> None:
    # Run once per group commit: a scan here grows with every message ever stored.
    statements = BulkStatements(chat.store.dialect)
    sql, params = statements._stored_keys([("r1", "alice", "c-1"), ("r2", "bob", "c-2")])
    plan = await query_plan(chat.store, sql, params)
    if chat.store.dialect == "sqlite":
        assert "SEARCH m USING COVERING INDEX sqlite_autoindex_messages_2" in plan, plan
    else:
        assert "Index Cond: ((room_id)::text = (k.r)::text" in plan, plan


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_probes_the_unique_key_for_a_full_batch_of_a_growing_table(
    chat: Chat,
) -> None:
    # Without statistics, a plain join of 200 keys against a few thousand rows was
    # planned as a hash join over a scan of every message: ~10 ms per group commit.
    room = await chat.room()
    grow = (
        "INSERT INTO messages (id, room_id, seq, sender_id, type, content, metadata, "
        "reply_count, mentions, client_message_id, status, created_at) "
        "SELECT 'm-' || g, %s, g, 'alice', 'text', repeat('x', 64), '{}', 0, '[]', "
        "'c-' || g, 'sent', 0 FROM generate_series(1, 6000) AS g"
    )
    await driver_rows(chat.store, (grow, (room.id,)))
    keys = [(room.id, "bob", f"k-{n}") for n in range(200)]
    statements = BulkStatements("postgresql")
    sql, params = statements._stored_keys(keys)
    (rows,) = await driver_rows(chat.store, ("EXPLAIN " + sql, params))
    plan = " ".join(row[0] for row in rows)
    assert "Seq Scan on messages" not in plan, plan
    assert "uq_messages_client_id" in plan, plan
    # …and still answers which keys are stored.
    probe = [(room.id, "alice", "c-17"), (room.id, "alice", "c-x"), (room.id, "bob", "c-18")]
    (stored,) = await driver_rows(chat.store, statements._stored_keys(probe))
    assert [tuple(row) for row in stored] == [(room.id, "alice", "c-17")]


async def pipelined_rows(store: SqlStore, sql: str) -> list[Any]:
    """Rows of ``sql`` on the connection that commits batches of posts from the loop."""
    assert store._pipelined is not None
    conn = await store._pipelined._connection()
    return await (await conn.execute(sql)).fetchall()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_plans_made_for_empty_tables_do_not_outlive_them(chat: Chat) -> None:
    # A plan PostgreSQL settles on after five executions of a prepared statement lasts
    # as long as the connection. The write connections are held, so the lookups whose
    # plan depends on the tables' sizes are never prepared; read sessions re-plan all.
    for n in range(12):  # a first post to a room reads its counter: the writer thread
        await chat.post((await chat.room()).id, "alice", f"first {n}", client_id=f"f-{n}")
    room = await chat.room()
    for n in range(12):  # then numbered from the known counter, from the loop
        await chat.post(room.id, "alice", f"m{n}", client_id=f"c-{n}")
    listing = "SELECT string_agg(statement, ' | ') FROM pg_prepared_statements"
    ((writer,),) = await driver_rows(chat.store, (listing, None))
    ((pipelined,),) = await pipelined_rows(chat.store, listing)
    for prepared in (writer[0], pipelined):
        assert "INSERT INTO messages" in prepared  # the driver does prepare repeated SQL
        assert "FROM rooms" not in prepared and "LATERAL" not in prepared, prepared
        # Nor the counters' writes, a join of the batch's rows with rooms.
        assert "UPDATE rooms" not in prepared, prepared
    async with chat.store._read_engine.connect() as conn:
        reader = (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar()
    assert reader == "force_custom_plan"


async def test_a_thread_is_read_from_the_partial_index_of_replies(chat: Chat) -> None:
    # ix_messages_reply_to holds replies only (migration 0005); the thread query must
    # still be answered from it rather than by a scan of every message.
    sqlite = chat.store.dialect == "sqlite"
    definition_sql = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_messages_reply_to'"
        if sqlite
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_reply_to'"
    )
    ((definition,),) = (await driver_rows(chat.store, (definition_sql, ())))[0]
    assert "reply_to IS NOT NULL" in definition, definition
    placeholder = "?" if sqlite else "%s"
    sql = f"SELECT id FROM messages WHERE reply_to = {placeholder} ORDER BY seq LIMIT 50"
    plan = await query_plan(chat.store, sql, ("m1",))
    assert "ix_messages_reply_to" in plan, plan


async def test_a_writer_connection_that_breaks_is_replaced_and_loses_nothing(
    chat: Chat,
) -> None:
    # The writer thread holds one connection across transactions; a dead one must not
    # stay. A first post to a room runs there (its counter is read) on either database.
    room = await chat.room()

    def break_the_connection() -> None:
        conn = chat.store._write_conn
        assert conn is not None
        conn.connection.dbapi_connection.close()  # type: ignore[union-attr]

    await chat.post(room.id, "alice", "opens the connection")
    fresh = await chat.room()
    await chat.store._in_writer(break_the_connection)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await chat.post(fresh.id, "alice", "lost with the connection")
    after = await chat.post(fresh.id, "bob", "after")
    assert await chat.seqs(fresh.id) == [1, 2] and after.seq == 2  # the failure took no seq
    assert [m.content["text"] for m in await chat.store.history(fresh.id, None, None, 10)] == [
        "after"
    ]


def backend_pid(committer: PipelinedCommitter) -> int:
    """The PostgreSQL process serving the connection that commits from the loop."""
    conn = committer._conn
    assert conn is not None and not conn.closed
    return conn.info.backend_pid


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_pipelined_connection_that_breaks_is_replaced_and_loses_nothing(
    chat: Chat,
) -> None:
    # Posts to a room whose counter this node knows are committed from the loop, on a
    # connection of their own (pipelined.py); if its server process goes away, the batch
    # in flight fails and the next one opens a new connection.
    room = await chat.room()
    first = await chat.post(room.id, "alice", "before")
    known = await chat.post(room.id, "alice", "numbered from the known counter")
    committer = chat.store._pipelined
    assert committer is not None
    pid = backend_pid(committer)
    async with chat.store._read_engine.connect() as conn:
        # With a timeout it returns once the process has exited (PostgreSQL 14+).
        await conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 5000)")
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await chat.post(room.id, "alice", "lost with the connection")
    after = await chat.post(room.id, "bob", "after")
    assert backend_pid(committer) != pid  # a new connection committed it
    assert (first.seq, known.seq, after.seq) == (2, 3, 4)  # the failure took no seq
    # …and it was numbered from the known counter, not refused and read again: the
    # failed batch's numbers were never taken for stored ones.
    assert chat.store._applier.counters.known([room.id]) == {room.id: 4}
    assert await chat.seqs(room.id) == [1, 2, 3, 4]
    assert [m.content["text"] for m in await chat.store.history(room.id, None, None, 10)] == [
        "before",
        "numbered from the known counter",
        "after",
    ]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_pipelined_batch_refused_by_a_stored_client_id_leaves_its_connection_usable(
    chat: Chat,
) -> None:
    # A retried client id makes the unique key refuse the pipelined batch; it is rolled
    # back, reported as a conflict by the long path, and the same connection commits the
    # next batch, again from the known counter (a duplicate holds no room off).
    room = await chat.room()
    await chat.post(room.id, "alice", "one", client_id="c-1")  # reads the counter
    await chat.post(room.id, "alice", "two", client_id="c-2")  # pipelined
    committer = chat.store._pipelined
    assert committer is not None
    pid = backend_pid(committer)
    with pytest.raises(ChatError) as refused:
        await chat.post(room.id, "alice", "one, again", client_id="c-1")
    assert refused.value.code is ErrorCode.CONFLICT
    three = await chat.post(room.id, "alice", "three", client_id="c-3")
    assert three.seq == 4 and await chat.seqs(room.id) == [1, 2, 3, 4]
    assert backend_pid(committer) == pid
    assert chat.store._applier.counters.known([room.id]) == {room.id: 4}
    conn = await committer._connection()
    assert conn.info.transaction_status is TransactionStatus.IDLE


async def test_concurrent_duplicates_store_one_and_fail_none_of_the_others(chat: Chat) -> None:
    room = await chat.room()
    drafts = [chat.draft(room.id, "alice", f"m{i}") for i in range(8)]
    drafts.insert(3, chat.draft(room.id, "alice", "dup A", client_id="same"))
    drafts.insert(6, chat.draft(room.id, "alice", "dup B", client_id="same"))
    results = await asyncio.gather(
        *(chat.store.commit(PostMessage(d)) for d in drafts), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], ChatError) and failures[0].code is ErrorCode.CONFLICT
    assert await chat.seqs(room.id) == list(range(1, 11))


async def test_a_row_breaking_a_unique_key_is_a_conflict_and_spares_its_batch(chat: Chat) -> None:
    # The pre-check covers client ids; a key only the database guards (here the message
    # id, reused) fails the whole batch, which is retried one by one: only the offender
    # is refused, with a conflict rather than the driver's own exception.
    room = await chat.room()
    stored = await chat.post(room.id, "alice", "first")
    again = replace(stored, seq=0)
    await refused(ErrorCode.CONFLICT, PostMessage(again), chat.store)
    neighbours = [chat.draft(room.id, "bob", f"n{i}") for i in range(5)]
    results = await asyncio.gather(
        *(chat.store.commit(PostMessage(d)) for d in [*neighbours[:2], again, *neighbours[2:]]),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], ChatError) and failures[0].code is ErrorCode.CONFLICT
    assert await chat.seqs(room.id) == list(range(1, 8))


# -- edits, deletes, reactions ---------------------------------------------------------


async def test_edit_updates_the_message_and_keeps_its_history(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", "v1")
    first_edit_at, second_edit_at = now(), now()
    event = await chat.store.commit(
        EditMessage(room.id, message.id, "alice", {"text": "v2"}, (), first_edit_at)
    )
    assert event is not None and (event.type, event.seq) == (EventType.MESSAGE_EDITED, 3)
    await chat.store.commit(
        EditMessage(room.id, message.id, "alice", {"text": "v3 @bob"}, ("bob",), second_edit_at)
    )
    stored = await chat.store.get_message(message.id)
    assert stored is not None
    assert stored.content == {"text": "v3 @bob"}
    assert stored.status is MessageStatus.EDITED
    assert stored.updated_at == second_edit_at
    assert stored.mentions == ("bob",)
    assert stored.seq == message.seq  # an edit does not move the message
    edits = await chat.store.edit_history(message.id)
    assert [e.content for e in edits] == [{"text": "v1"}, {"text": "v2"}]
    assert [e.edited_at for e in edits] == [first_edit_at, second_edit_at]
    assert all(e.edited_by == "alice" for e in edits)


async def test_edit_in_the_wrong_room_is_not_found(chat: Chat) -> None:
    room, other = await chat.room(), await chat.room()
    message = await chat.post(room.id, "alice", "v1")
    command = EditMessage(other.id, message.id, "alice", {"text": "x"}, (), now())
    await refused(ErrorCode.MESSAGE_NOT_FOUND, command, chat.store)


async def test_delete_tombstones_and_scrubs_the_event_log(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", "secret original @bob")
    await chat.store.commit(
        EditMessage(room.id, message.id, "alice", {"text": "secret edited"}, (), now())
    )
    await chat.store.commit(AddReaction(room.id, message.id, "bob", "👍", now()))
    assert b"secret" in await chat.frames_text(room.id)

    event = await chat.store.commit(DeleteMessage(room.id, message.id, "bob", now()))
    assert event is not None and event.type is EventType.MESSAGE_DELETED
    assert event.data["deletedBy"] == "bob"

    stored = await chat.store.get_message(message.id)
    assert stored is not None
    assert stored.status is MessageStatus.DELETED and stored.deleted
    assert stored.content == {}
    assert stored.reactions == ()
    assert stored.mentions == ()
    assert await chat.store.edit_history(message.id) == []
    log = await chat.frames_text(room.id)
    assert b"secret" not in log
    assert await chat.seqs(room.id) == [1, 2, 3, 4, 5]  # numbers stay; content goes
    [tombstone] = await chat.store.history(room.id, None, None, 10)
    assert (tombstone.id, tombstone.status, tombstone.content) == (
        message.id,
        MessageStatus.DELETED,
        {},
    )


async def test_an_edit_committed_with_the_delete_is_scrubbed_too(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", "original")
    # Submitted together, so both land in the same write batch.
    batches_before = chat.store.write_stats[0]
    await asyncio.gather(
        chat.store.commit(
            EditMessage(room.id, message.id, "alice", {"text": "edited secret"}, (), now())
        ),
        chat.store.commit(DeleteMessage(room.id, message.id, "alice", now())),
    )
    assert chat.store.write_stats[0] - batches_before == 1
    stored = await chat.store.get_message(message.id)
    assert stored is not None and stored.deleted and stored.content == {}
    log = await chat.frames_text(room.id)
    assert b"secret" not in log
    assert b"original" not in log


async def test_deleting_twice_changes_nothing(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", "bye")
    assert await chat.store.commit(DeleteMessage(room.id, message.id, "alice", now()))
    assert await chat.store.commit(DeleteMessage(room.id, message.id, "alice", now())) is None
    assert await chat.last_seq(room.id) == 3


async def test_one_reaction_per_user_and_emoji(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob", "carol"))
    message = await chat.post(room.id, "alice", "react to me")
    first = await chat.store.commit(AddReaction(room.id, message.id, "bob", "👍", now()))
    assert first is not None and first.type is EventType.REACTION_ADDED
    assert first.data == {"messageId": message.id, "emoji": "👍", "userId": "bob"}
    again = await chat.store.commit(AddReaction(room.id, message.id, "bob", "👍", now()))
    assert again is None
    assert await chat.last_seq(room.id) == 3  # the no-op took no number
    await chat.store.commit(AddReaction(room.id, message.id, "carol", "👍", now()))
    await chat.store.commit(AddReaction(room.id, message.id, "bob", "❤️", now()))
    stored = await chat.store.get_message(message.id)
    assert stored is not None
    assert set(stored.reactions) == {
        Reaction("👍", ("bob", "carol")),
        Reaction("❤️", ("bob",)),
    }

    removed = await chat.store.commit(RemoveReaction(room.id, message.id, "bob", "👍", now()))
    assert removed is not None and removed.type is EventType.REACTION_REMOVED
    assert await chat.store.commit(RemoveReaction(room.id, message.id, "bob", "👍", now())) is None
    stored = await chat.store.get_message(message.id)
    assert stored is not None
    assert set(stored.reactions) == {Reaction("👍", ("carol",)), Reaction("❤️", ("bob",))}
    assert await chat.seqs(room.id) == [1, 2, 3, 4, 5, 6]


async def test_reactions_on_a_deleted_message_are_refused(chat: Chat) -> None:
    room = await chat.room()
    message = await chat.post(room.id, "alice", "x")
    await chat.store.commit(DeleteMessage(room.id, message.id, "alice", now()))
    command = AddReaction(room.id, message.id, "bob", "👍", now())
    await refused(ErrorCode.MESSAGE_DELETED, command, chat.store)


# -- reads: history, threads, search ---------------------------------------------------


async def test_history_cursors(chat: Chat) -> None:
    room = await chat.room()
    for i in range(10):
        await chat.post(room.id, "alice", f"m{i}")  # seq 2..11

    async def seqs(before: int | None, after: int | None, limit: int) -> list[int]:
        return [m.seq for m in await chat.store.history(room.id, before, after, limit)]

    assert await seqs(None, None, 3) == [9, 10, 11]  # newest N, ascending
    assert await seqs(None, 2, 3) == [3, 4, 5]  # oldest N after
    assert await seqs(None, 0, 3) == [2, 3, 4]
    assert await seqs(5, None, 3) == [2, 3, 4]  # newest N before
    assert await seqs(3, None, 5) == [2]
    assert await seqs(None, 11, 5) == []
    assert await seqs(7, 3, 10) == [4, 5, 6]
    assert await seqs(None, None, 100) == list(range(2, 12))


async def test_history_shows_messages_as_they_stand(chat: Chat) -> None:
    room = await chat.room()
    kept = await chat.post(room.id, "alice", "old text")
    gone = await chat.post(room.id, "bob", "regret")
    await chat.store.commit(EditMessage(room.id, kept.id, "alice", {"text": "new text"}, (), now()))
    await chat.store.commit(DeleteMessage(room.id, gone.id, "bob", now()))
    await chat.store.commit(AddReaction(room.id, kept.id, "bob", "👍", now()))
    first, second = await chat.store.history(room.id, None, None, 10)
    assert (first.content, first.status) == ({"text": "new text"}, MessageStatus.EDITED)
    assert first.reactions == (Reaction("👍", ("bob",)),)
    assert (second.content, second.status) == ({}, MessageStatus.DELETED)


async def test_history_is_per_room(chat: Chat) -> None:
    room, other = await chat.room(), await chat.room()
    await chat.post(room.id, "alice", "here")
    await chat.post(other.id, "alice", "there")
    [only] = await chat.store.history(room.id, None, None, 10)
    assert only.content == {"text": "here"}


async def test_threads_and_reply_counts(chat: Chat) -> None:
    room = await chat.room()
    root = await chat.post(room.id, "alice", "root")
    other_root = await chat.post(room.id, "alice", "other root")
    await chat.post(room.id, "bob", "reply 1", reply_to=root.id)
    await chat.post(room.id, "alice", "unrelated")
    await asyncio.gather(
        *(
            chat.store.commit(
                PostMessage(chat.draft(room.id, "bob", f"reply {i}", reply_to=root.id))
            )
            for i in (2, 3)
        )
    )
    replies = await chat.store.thread(root.id, 10)
    assert replies[0].content["text"] == "reply 1"
    assert {m.content["text"] for m in replies} == {"reply 1", "reply 2", "reply 3"}
    assert [m.seq for m in replies] == sorted(m.seq for m in replies)
    assert all(m.reply_to == root.id for m in replies)
    assert len(await chat.store.thread(root.id, 2)) == 2
    stored_root = await chat.store.get_message(root.id)
    assert stored_root is not None and stored_root.reply_count == 3
    stored_other = await chat.store.get_message(other_root.id)
    assert stored_other is not None and stored_other.reply_count == 0
    assert await chat.store.thread(other_root.id, 10) == []


async def test_search_finds_words_in_the_room(chat: Chat) -> None:
    room, other = await chat.room(), await chat.room()
    fox = await chat.post(room.id, "alice", "the quick brown fox")
    await chat.post(room.id, "alice", "a lazy dog sleeps")
    thinking = await chat.post(room.id, "bob", "Quick thinking!")
    await chat.post(other.id, "alice", "quick elsewhere")

    async def found(query: str) -> list[str]:
        return [m.id for m in await chat.store.search(room.id, query, 10)]

    assert await found("quick") == [thinking.id, fox.id]  # newest first
    assert await found("QUICK") == [thinking.id, fox.id]
    assert await found("brown fox") == [fox.id]
    assert await found("fox brown") == [fox.id]
    assert await found("cat") == []
    assert len(await chat.store.search(room.id, "quick", 1)) == 1


async def test_search_folds_case_accents_and_punctuation_alike_everywhere(chat: Chat) -> None:
    room = await chat.room()
    cafe = await chat.post(room.id, "alice", "Café au lait at the ÉCOLE")
    hyphen = await chat.post(room.id, "alice", "a well-known fact")
    spaced = await chat.post(room.id, "alice", "well known too")
    street = await chat.post(room.id, "alice", "Hauptstraße 5")
    mail = await chat.post(room.id, "alice", "write to fan@example.com")

    async def found(query: str) -> set[str]:
        return {m.id for m in await chat.store.search(room.id, query, 10)}

    for query in ("cafe", "café", "CAFÉ", "ecole", "école"):
        assert await found(query) == {cafe.id}, query
    assert await found("well-known") == {hyphen.id, spaced.id}
    assert await found("well known") == {hyphen.id, spaced.id}
    assert await found("hauptstrasse") == {street.id}
    assert await found("hauptstraße") == {street.id}
    assert await found("example.com") == {mail.id}
    assert await found("example") == {mail.id}
    assert await found("run") == set()  # words, not stems


async def test_search_skips_deleted_and_sees_edited_text(chat: Chat) -> None:
    room = await chat.room()
    deleted = await chat.post(room.id, "alice", "banana split")
    edited = await chat.post(room.id, "alice", "apple pie")
    await chat.store.commit(DeleteMessage(room.id, deleted.id, "alice", now()))
    await chat.store.commit(
        EditMessage(room.id, edited.id, "alice", {"text": "cherry pie"}, (), now())
    )
    assert await chat.store.search(room.id, "banana", 10) == []
    assert await chat.store.search(room.id, "apple", 10) == []
    assert [m.id for m in await chat.store.search(room.id, "cherry", 10)] == [edited.id]


OPERATOR_QUERIES = [
    'AND OR "',
    "NEAR(",
    '"',
    '""',
    "*",
    "fox*",
    "-fox",
    "fox:",
    "(",
    ")",
    "'",
    "o'brien",
    "NOT",
    "a & b | !c",
    "^fox",
    "%_\\",
    "   ",
    "!!!",
    "fox NEAR/2 quick",
    "{quick}",
]


async def test_search_handles_operator_characters_safely(chat: Chat) -> None:
    room = await chat.room()
    fox = await chat.post(room.id, "alice", "the quick brown fox and the NEAR ones")
    for query in OPERATOR_QUERIES:
        results = await chat.store.search(room.id, query, 10)
        assert all(m.id == fox.id for m in results), query
    assert [m.id for m in await chat.store.search(room.id, "fox*", 10)] == [fox.id]


async def test_search_treats_operator_words_as_words(chat: Chat) -> None:
    room = await chat.room()
    near = await chat.post(room.id, "alice", "stay near me")
    await chat.post(room.id, "alice", "far away")
    assert [m.id for m in await chat.store.search(room.id, "NEAR", 10)] == [near.id]
    assert [m.id for m in await chat.store.search(room.id, '"near"', 10)] == [near.id]


# -- read markers and unread counts ----------------------------------------------------


async def test_unread_counts_and_mentions_follow_the_read_marker(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob"))
    await chat.post(room.id, "alice", "hello")  # 2
    second = await chat.post(room.id, "alice", "hey @bob")  # 3
    await chat.post(room.id, "bob", "hi @alice")  # 4
    await chat.post(room.id, "alice", "@bob @bob again")  # 5
    assert await chat.store.unread_count(room.id, "bob") == (3, 2)
    assert await chat.store.unread_count(room.id, "alice") == (1, 1)

    assert await chat.store.mark_read(room.id, "bob", second.seq) == 3
    assert await chat.store.unread_count(room.id, "bob") == (1, 1)
    assert await chat.store.mark_read(room.id, "bob", 2) == 3  # never backwards
    assert await chat.store.unread_count(room.id, "bob") == (1, 1)
    member = await chat.store.get_member(room.id, "bob")
    assert member is not None and member.last_read_seq == 3
    assert await chat.store.mark_read(room.id, "bob", 5) == 5
    assert await chat.store.unread_count(room.id, "bob") == (0, 0)


async def test_deleted_messages_are_not_unread(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob"))
    message = await chat.post(room.id, "alice", "oops @bob")
    await chat.post(room.id, "alice", "fine")
    assert await chat.store.unread_count(room.id, "bob") == (2, 1)
    await chat.store.commit(DeleteMessage(room.id, message.id, "alice", now()))
    assert await chat.store.unread_count(room.id, "bob") == (1, 0)


async def test_mark_read_needs_a_membership(chat: Chat) -> None:
    room = await chat.room(joined=("alice",))
    with pytest.raises(ChatError) as info:
        await chat.store.mark_read(room.id, "mallory", 1)
    assert info.value.code is ErrorCode.NOT_A_MEMBER


async def test_list_user_rooms_with_unread_counts(chat: Chat) -> None:
    quiet = await chat.room(joined=("alice", "bob"))
    busy = await chat.room(joined=("alice", "bob"))
    invited = await chat.room(RoomType.GROUP_CHAT, joined=("carol",), invited=("bob",))
    await chat.room(joined=("alice", "carol"))  # bob is not in it
    await chat.post(quiet.id, "alice", "one")
    for text in ("a", "b @bob", "c"):
        await chat.post(busy.id, "alice", text)
    await chat.post(busy.id, "bob", "mine")
    summaries = {s.room.id: s for s in await chat.store.list_user_rooms("bob")}
    assert set(summaries) == {quiet.id, busy.id, invited.id}
    assert (summaries[busy.id].unread_count, summaries[busy.id].unread_mentions) == (3, 1)
    assert (summaries[quiet.id].unread_count, summaries[quiet.id].unread_mentions) == (1, 0)
    assert summaries[invited.id].member.state is MembershipState.INVITED
    assert summaries[busy.id].member.user_id == "bob"
    assert summaries[busy.id].room.last_seq == 5
    ordered = [s.room.id for s in await chat.store.list_user_rooms("bob")]
    assert ordered[0] == busy.id  # most recently active first
    await chat.store.mark_read(busy.id, "bob", 5)
    again = {s.room.id: s for s in await chat.store.list_user_rooms("bob")}
    assert (again[busy.id].unread_count, again[busy.id].unread_mentions) == (0, 0)
    assert set(await chat.store.user_room_ids("bob")) == {quiet.id, busy.id}  # joined only


# -- membership ------------------------------------------------------------------------


def joining(room_id: str, user_id: str, state: MembershipState = MembershipState.JOINED) -> Member:
    return Member(room_id, user_id, Role.MEMBER, state, now())


async def test_join_and_leave_events_and_member_count(chat: Chat) -> None:
    room = await chat.room(joined=("alice",))
    joined = await chat.store.commit(AddMember(joining(room.id, "bob"), "bob"))
    assert joined is not None and (joined.type, joined.seq) == (EventType.USER_JOINED, 2)
    assert joined.data["userId"] == "bob"
    assert await chat.store.commit(AddMember(joining(room.id, "bob"), "bob")) is None
    stored = await chat.store.get_room(room.id)
    assert stored is not None and (stored.member_count, stored.last_seq) == (2, 2)
    assert set(await chat.store.user_room_ids("bob")) == {room.id}

    left = await chat.store.commit(RemoveMember(room.id, "bob", "bob", now()))
    assert left is not None and left.type is EventType.USER_LEFT
    assert (left.data["userId"], left.data["reason"]) == ("bob", "left")
    assert await chat.store.get_member(room.id, "bob") is None
    assert await chat.store.commit(RemoveMember(room.id, "bob", "bob", now())) is None
    stored = await chat.store.get_room(room.id)
    assert stored is not None and (stored.member_count, stored.last_seq) == (1, 3)
    assert await chat.store.user_room_ids("bob") == []


async def test_removal_by_someone_else_is_marked_removed(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob"))
    event = await chat.store.commit(RemoveMember(room.id, "bob", "alice", now()))
    assert event is not None
    assert (event.data["reason"], event.data["removedBy"]) == ("removed", "alice")


async def test_a_post_queued_behind_its_senders_removal_is_refused(chat: Chat) -> None:
    # The service checked bob's send against its caches before they heard of the
    # removal; the store is the last word, in the order the commands were queued.
    room = await chat.room(joined=("alice", "bob"))
    removal = chat.store.commit_nowait(RemoveMember(room.id, "bob", "alice", now()))
    late = chat.store.commit_nowait(PostMessage(chat.draft(room.id, "bob", "too late")))
    fine = chat.store.commit_nowait(PostMessage(chat.draft(room.id, "alice", "still here")))
    removed, posted = await removal, await fine
    with pytest.raises(ChatError) as refusal:
        await late
    assert refusal.value.code is ErrorCode.NOT_A_MEMBER
    assert removed is not None and posted is not None
    assert (removed.seq, posted.seq) == (2, 3)  # the refusal took no seq
    assert await chat.seqs(room.id) == [1, 2, 3]


async def test_an_edit_or_reaction_queued_behind_its_authors_removal_is_refused(
    chat: Chat,
) -> None:
    room = await chat.room(joined=("alice", "bob"))
    said = await chat.post(room.id, "bob", "before the removal")
    removal = chat.store.commit_nowait(RemoveMember(room.id, "bob", "alice", now()))
    edit = chat.store.commit_nowait(
        EditMessage(room.id, said.id, "bob", {"text": "rewritten after"}, (), now())
    )
    reaction = chat.store.commit_nowait(AddReaction(room.id, said.id, "bob", "🔥", now()))
    assert await removal is not None
    for late in (edit, reaction):
        with pytest.raises(ChatError) as refusal:
            await late
        assert refusal.value.code is ErrorCode.NOT_A_MEMBER
    stored = await chat.store.get_message(said.id)
    assert stored is not None
    assert (stored.content, stored.reactions) == ({"text": "before the removal"}, ())
    assert await chat.seqs(room.id) == [1, 2, 3]


async def test_posts_of_a_removed_member_are_refused_until_they_join_again(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob"))
    await chat.post(room.id, "bob", "numbered from the counter this node knows")
    await chat.post(room.id, "bob", "and again")
    assert chat.store._applier.counters.known([room.id]) is not None
    await chat.store.commit(RemoveMember(room.id, "bob", "alice", now()))
    for attempt in range(2):  # the room's counter is known: not read again for this
        await refused(
            ErrorCode.NOT_A_MEMBER,
            PostMessage(chat.draft(room.id, "bob", f"after the removal {attempt}")),
            chat.store,
        )
    assert (await chat.post(room.id, "alice", "others post as before")).seq == 5
    await chat.store.commit(AddMember(joining(room.id, "bob"), "bob"))
    assert (await chat.post(room.id, "bob", "back again")).seq == 7


async def remove_on_another_node(database_url: str, room_id: str, user_id: str) -> None:
    """Another node (a store of its own on the same database) removes ``user_id``."""
    other = SqlStore(database_url)
    await other.open()
    try:
        assert await other.commit(RemoveMember(room_id, user_id, "alice", now())) is not None
    finally:
        await other.close()


async def test_a_removal_by_another_node_refuses_the_removed_members_posts_here(
    database_url: str, chat: Chat
) -> None:
    room = await chat.room(joined=("alice", "bob"))
    await chat.post(room.id, "bob", "this node knows the counter now")
    await remove_on_another_node(database_url, room.id, "bob")
    await refused(
        ErrorCode.NOT_A_MEMBER,
        PostMessage(chat.draft(room.id, "bob", "checked against a stale cache")),
        chat.store,
    )
    assert await chat.seqs(room.id) == [1, 2, 3]


@pytest.mark.parametrize("reread", ["reaction", "batch with a new room", "hold-off over"])
async def test_another_nodes_removal_stays_final_after_this_node_reads_the_counter_again(
    database_url: str, chat: Chat, reread: str
) -> None:
    # Once this node has read the room's counter again (a batch the long way), it numbers
    # posts from a counter that includes the removal: only the memberships can tell.
    room = await chat.room(joined=("alice", "bob"))
    said = await chat.post(room.id, "alice", "this node knows the counter now")
    await remove_on_another_node(database_url, room.id, "bob")
    if reread == "reaction":
        await chat.store.commit(AddReaction(room.id, said.id, "alice", "🔥", now()))
    elif reread == "batch with a new room":
        fresh = await chat.room(joined=("carol",))
        here = chat.store.commit_nowait(PostMessage(chat.draft(room.id, "alice", "here")))
        there = chat.store.commit_nowait(PostMessage(chat.draft(fresh.id, "carol", "there")))
        await here, await there
    else:
        chat.store._applier.counters.holdoff = 0.0  # the guard's hold-off has run out
        await chat.post(room.id, "alice", "numbered after the other node's event")
    assert chat.store._applier.counters.known([room.id]) is not None
    for attempt in range(2):
        await refused(
            ErrorCode.NOT_A_MEMBER,
            PostMessage(chat.draft(room.id, "bob", f"checked against a stale cache {attempt}")),
            chat.store,
        )
    frames = [orjson.loads(e.frame) for e in await chat.store.events_after(room.id, 0, 100)]
    assert [f["data"].get("senderId") for f in frames].count("bob") == 0


async def test_joins_and_posts_in_one_batch_are_all_stored(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob"), invited=("carol",))
    await chat.post(room.id, "bob", "this node knows the counter now")
    at = now()
    commands: list[WriteCommand] = [
        AddMember(joining(room.id, "dave"), "dave"),
        PostMessage(chat.draft(room.id, "dave", "just joined")),
        AddMember(replace(joining(room.id, "carol"), invited_by="alice"), "carol"),
        PostMessage(chat.draft(room.id, "carol", "invited, then joined")),
        RemoveMember(room.id, "bob", "bob", at),
        AddMember(joining(room.id, "bob"), "bob"),
        PostMessage(chat.draft(room.id, "bob", "left and came back")),
    ]
    pending = [chat.store.commit_nowait(c) for c in commands]
    results = [await p for p in pending]
    assert all(r is not None for r in results)
    assert [r.seq for r in results if r is not None] == list(range(3, 10))


@pytest.mark.parametrize("known", [False, True], ids=["counter read", "counter known"])
async def test_a_post_waiting_on_a_removal_in_another_transaction_is_refused(
    database_url: str, chat: Chat, known: bool
) -> None:
    # Another node's removal holds the room (PostgreSQL: its row lock; SQLite: the write
    # lock) when the post's batch starts: the memberships are read once it committed.
    room = await chat.room(joined=("alice", "bob"))
    if known:
        await chat.post(room.id, "alice", "this node knows the counter now")
    remove = "DELETE FROM memberships WHERE room_id = :room AND user_id = 'bob'"
    count = "UPDATE rooms SET last_seq = last_seq + 1, member_count = member_count - 1 "
    count += "WHERE id = :room"
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as blocker:
            if database_url.startswith("sqlite"):
                await blocker.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await blocker.execute(
                    sql_text("SELECT 1 FROM rooms WHERE id = :room FOR UPDATE"), {"room": room.id}
                )
            await blocker.execute(sql_text(remove), {"room": room.id})
            await blocker.execute(sql_text(count), {"room": room.id})
            post = asyncio.create_task(
                refused(
                    ErrorCode.NOT_A_MEMBER,
                    PostMessage(chat.draft(room.id, "bob", "racing the removal")),
                    chat.store,
                )
            )
            await asyncio.sleep(0.3)
            assert not post.done()  # it waits for the lock
            await blocker.commit()
        await post
    finally:
        await engine.dispose()


async def test_a_full_room_refuses_joins_without_burning_a_seq(chat: Chat) -> None:
    room = await chat.room(RoomType.GROUP_CHAT, joined=("alice", "bob"), max_participants=2)
    error = await refused(
        ErrorCode.ROOM_FULL, AddMember(joining(room.id, "carol"), "carol"), chat.store
    )
    assert error.details == {"maxParticipants": 2}
    assert await chat.last_seq(room.id) == 1
    await chat.store.commit(RemoveMember(room.id, "bob", "bob", now()))
    assert await chat.store.commit(AddMember(joining(room.id, "carol"), "carol")) is not None
    assert await chat.seqs(room.id) == [1, 2, 3]


async def test_concurrent_joins_never_overfill_a_room(chat: Chat) -> None:
    room = await chat.room(RoomType.GROUP_CHAT, joined=("alice",), max_participants=5)
    results = await asyncio.gather(
        *(chat.store.commit(AddMember(joining(room.id, f"u{i}"), f"u{i}")) for i in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, RoomEvent) for r in results) == 4
    assert all(r.code is ErrorCode.ROOM_FULL for r in results if isinstance(r, ChatError))
    stored = await chat.store.get_room(room.id)
    assert stored is not None and stored.member_count == 5
    assert len(await chat.store.list_members(room.id)) == 5


async def test_invite_then_join(chat: Chat) -> None:
    room = await chat.room(RoomType.GROUP_CHAT, joined=("alice",))
    invite = Member(room.id, "dave", Role.MEMBER, MembershipState.INVITED, now(), "alice")
    invited = await chat.store.commit(AddMember(invite, "alice"))
    assert invited is not None and invited.type is EventType.USER_INVITED
    assert (invited.data["userId"], invited.data["invitedBy"]) == ("dave", "alice")
    member = await chat.store.get_member(room.id, "dave")
    assert member is not None and member.state is MembershipState.INVITED
    stored = await chat.store.get_room(room.id)
    assert stored is not None and stored.member_count == 1  # invitees do not count
    assert await chat.store.user_room_ids("dave") == []
    assert await chat.store.commit(AddMember(invite, "alice")) is None  # invited twice

    joined = await chat.store.commit(AddMember(joining(room.id, "dave"), "dave"))
    assert joined is not None and joined.type is EventType.USER_JOINED
    member = await chat.store.get_member(room.id, "dave")
    assert member is not None and member.state is MembershipState.JOINED
    assert member.invited_by == "alice"
    stored = await chat.store.get_room(room.id)
    assert stored is not None and stored.member_count == 2
    assert await chat.store.commit(AddMember(invite, "alice")) is None  # already joined
    assert await chat.seqs(room.id) == [1, 2, 3]


async def test_removing_an_invitee_keeps_the_member_count(chat: Chat) -> None:
    room = await chat.room(RoomType.GROUP_CHAT, joined=("alice", "bob"), invited=("carol",))
    assert await chat.store.commit(RemoveMember(room.id, "carol", "alice", now())) is not None
    stored = await chat.store.get_room(room.id)
    assert stored is not None and stored.member_count == 2


async def test_role_changes(chat: Chat) -> None:
    room = await chat.room(joined=("alice", "bob"))
    event = await chat.store.commit(ChangeRole(room.id, "bob", Role.MODERATOR, "alice", now()))
    assert event is not None and event.type is EventType.ROLE_CHANGED
    assert event.data == {"userId": "bob", "role": "moderator", "changedBy": "alice"}
    member = await chat.store.get_member(room.id, "bob")
    assert member is not None and member.role is Role.MODERATOR


async def test_room_updates_apply_and_take_a_seq(chat: Chat) -> None:
    room = await chat.room(RoomType.GROUP_CHAT, joined=("alice", "bob", "carol"))
    smaller = replace(room.settings, max_participants=3, read_only=True)
    event = await chat.store.commit(
        UpdateRoom(room.id, "alice", now(), name="Renamed", settings=smaller, metadata={"k": 1})
    )
    assert event is not None and (event.type, event.seq) == (EventType.ROOM_UPDATED, 2)
    assert event.data["room"]["name"] == "Renamed"
    assert event.data["room"]["lastSeq"] == 2
    stored = await chat.store.get_room(room.id)
    assert stored is not None
    assert (stored.name, stored.metadata, stored.settings) == ("Renamed", {"k": 1}, smaller)
    assert stored.updated_at is not None
    command = AddMember(joining(room.id, "dave"), "dave")
    await refused(ErrorCode.ROOM_FULL, command, chat.store)


# -- durability across restarts --------------------------------------------------------


async def test_reopening_keeps_everything_and_continues_numbering(database_url: str) -> None:
    first = SqlStore(database_url)
    await first.open()
    chat = Chat(first)
    room = await chat.room(joined=("alice", "bob"))
    message = await chat.post(room.id, "alice", "before restart", client_id="c-1")
    await chat.store.commit(AddReaction(room.id, message.id, "bob", "👍", now()))
    await chat.store.mark_read(room.id, "bob", 3)
    await first.close()

    second = SqlStore(database_url)
    await second.open()  # migrations are idempotent
    try:
        again = Chat(second)
        stored = await second.get_room(room.id)
        assert stored is not None and (stored.last_seq, stored.member_count) == (3, 2)
        kept = await second.get_message(message.id)
        assert kept is not None and kept.content == {"text": "before restart"}
        assert kept.reactions == (Reaction("👍", ("bob",)),)
        member = await second.get_member(room.id, "bob")
        assert member is not None and member.last_read_seq == 3
        await refused(
            ErrorCode.CONFLICT,
            PostMessage(again.draft(room.id, "alice", "retry", client_id="c-1")),
            second,
        )
        after = await again.post(room.id, "alice", "after restart")
        assert after.seq == 4
        assert await again.seqs(room.id) == [1, 2, 3, 4]
        assert [m.id for m in await second.search(room.id, "restart", 10)] == [
            after.id,
            message.id,
        ]
    finally:
        await second.close()


async def test_edit_moves_mentions_and_delete_decrements_reply_count(database_url: str) -> None:
    """Unread mentions follow an edit's text; a deleted reply leaves the thread count."""
    store = SqlStore(database_url)
    await store.open()
    try:
        now = datetime.now(UTC)
        room = Room(
            new_id(),
            RoomType.GROUP_CHAT,
            "g",
            None,
            "ann",
            DEFAULT_SETTINGS[RoomType.GROUP_CHAT],
            {},
            now,
        )
        await store.create_room(
            room, [Member(room.id, "ann", Role.OWNER, MembershipState.JOINED, now)], None
        )
        for user in ("bob", "cid"):
            await store.commit(
                AddMember(Member(room.id, user, Role.MEMBER, MembershipState.JOINED, now), user)
            )
        root = Message(
            new_id(), room.id, "ann", MessageType.TEXT, {"text": "hi @bob"}, now, mentions=("bob",)
        )
        await store.commit(PostMessage(root))
        assert await store.unread_count(room.id, "bob") == (1, 1)
        await store.commit(EditMessage(room.id, root.id, "ann", {"text": "hi @cid"}, ("cid",), now))
        assert (await store.unread_count(room.id, "bob"))[1] == 0
        assert (await store.unread_count(room.id, "cid"))[1] == 1
        reply = Message(
            new_id(), room.id, "bob", MessageType.TEXT, {"text": "yo"}, now, reply_to=root.id
        )
        await store.commit(PostMessage(reply))
        assert (await store.get_message(root.id)).reply_count == 1  # type: ignore[union-attr]
        await store.commit(DeleteMessage(room.id, reply.id, "bob", now))
        assert (await store.get_message(root.id)).reply_count == 0  # type: ignore[union-attr]
    finally:
        await store.close()
