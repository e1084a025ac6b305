"""services/access.py: the room, membership and room-list caches, and what invalidates them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import cast

import pytest

from chatsphere.domain.events import EventType, RoomEvent
from chatsphere.domain.rooms import (
    DEFAULT_SETTINGS,
    Member,
    MembershipState,
    Role,
    Room,
    RoomType,
)
from chatsphere.errors import ChatError, ErrorCode
from chatsphere.ports.store import Store
from chatsphere.services.access import Access
from tests.unit.fakes import FakeClock


class ReadCountingStore:
    """The three reads Access makes, from dicts; each read counted, and one can be held."""

    def __init__(self) -> None:
        self.room_ids: dict[str, list[str]] = {}
        self.rooms: dict[str, Room] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.reads: Counter[str] = Counter()
        self.hold: asyncio.Event | None = None  # while set up, reads wait for it
        self.reading = asyncio.Event()

    async def _read(self, what: str) -> None:
        self.reads[what] += 1
        if self.hold is not None:
            self.reading.set()
            await self.hold.wait()

    async def user_room_ids(self, user_id: str) -> list[str]:
        answer = list(self.room_ids.get(user_id, []))  # the state when the read began
        await self._read(f"rooms_of:{user_id}")
        return answer

    async def get_room(self, room_id: str) -> Room | None:
        await self._read(f"room:{room_id}")
        return self.rooms.get(room_id)

    async def get_member(self, room_id: str, user_id: str) -> Member | None:
        await self._read(f"member:{room_id}:{user_id}")
        return self.members.get((room_id, user_id))


@pytest.fixture
def store() -> ReadCountingStore:
    return ReadCountingStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def access(store: ReadCountingStore, clock: FakeClock) -> Access:
    return Access(cast(Store, store), clock, ttl=60.0, jitter=0.0)


async def test_a_room_list_is_read_once_within_the_ttl(
    access: Access, store: ReadCountingStore, clock: FakeClock
) -> None:
    store.room_ids["alice"] = ["r1", "r2"]
    assert await access.user_rooms("alice") == ["r1", "r2"]
    clock.advance(59)
    assert await access.user_rooms("alice") == ["r1", "r2"]
    assert store.reads["rooms_of:alice"] == 1
    clock.advance(2)  # past the TTL: another node's change may be unseen, so read again
    await access.user_rooms("alice")
    assert store.reads["rooms_of:alice"] == 2


async def test_entries_filled_together_expire_spread_over_the_last_part_of_the_ttl(
    store: ReadCountingStore, clock: FakeClock
) -> None:
    """A crowd's entries must not all expire, and be read again, in the same instant."""
    access = Access(cast(Store, store), clock, ttl=60.0, jitter=0.25)
    users = [f"u{i}" for i in range(200)]
    for user in users:
        await access.user_rooms(user)

    async def reread() -> int:
        before = sum(store.reads.values())
        for user in users:
            await access.user_rooms(user)
        return sum(store.reads.values()) - before

    clock.advance(44.9)  # before 1 - jitter of the TTL: every entry still fresh
    assert await reread() == 0
    clock.advance(7.6)  # 52.5 s, the middle of the 45-60 s span: about half expired
    half = await reread()
    assert 40 <= half <= 160  # binomial(200, 1/2) leaves this range with p < 1e-17
    clock.advance(7.6)  # 60.1 s: past the TTL, every entry not re-read at 52.5 s expired
    assert await reread() == 200 - half


def test_jitter_must_leave_part_of_the_ttl(store: ReadCountingStore, clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        Access(cast(Store, store), clock, jitter=1.0)


async def test_an_empty_room_list_is_cached_too(access: Access, store: ReadCountingStore) -> None:
    for _ in range(3):
        assert await access.user_rooms("loner") == []
    assert store.reads["rooms_of:loner"] == 1


async def test_a_membership_change_drops_the_users_room_list(
    access: Access, store: ReadCountingStore
) -> None:
    assert await access.user_rooms("alice") == []
    await access.user_rooms("bob")
    store.room_ids["alice"] = ["r1"]
    access.forget_member("r1", "alice")
    assert await access.user_rooms("alice") == ["r1"]
    await access.user_rooms("bob")
    assert store.reads == Counter({"rooms_of:alice": 2, "rooms_of:bob": 1})


async def _read_across(access: Access, store: ReadCountingStore, change: str) -> list[str]:
    """Read alice's rooms while the membership ``change`` commits; returns what it saw."""
    store.hold = asyncio.Event()
    read = asyncio.create_task(access.user_rooms("alice"))
    await store.reading.wait()
    if change == "alice":
        store.room_ids["alice"] = ["r1"]
        access.forget_member("r1", "alice")
    else:
        store.room_ids[change] = ["r1"]
        access.forget_member("r1", change)
    store.hold.set()
    seen = await read
    store.hold = None
    return seen


async def test_a_read_overtaken_by_a_change_of_its_user_is_not_cached(
    access: Access, store: ReadCountingStore
) -> None:
    assert await _read_across(access, store, "alice") == []  # the state before the join
    assert await access.user_rooms("alice") == ["r1"]  # not the stale answer
    assert store.reads["rooms_of:alice"] == 2


async def test_a_read_across_another_users_change_is_still_cached(
    access: Access, store: ReadCountingStore
) -> None:
    """Joins elsewhere must not make the room lists read meanwhile (connects) miss again."""
    assert await _read_across(access, store, "bob") == []
    assert await access.user_rooms("alice") == []
    assert store.reads["rooms_of:alice"] == 1


async def test_concurrent_reads_of_one_key_are_each_judged_on_their_own(
    access: Access, store: ReadCountingStore
) -> None:
    store.hold = asyncio.Event()
    first = asyncio.create_task(access.member("r1", "alice"))
    await store.reading.wait()
    access.forget_member("r1", "alice")  # overtakes the first read only
    store.reading.clear()
    second = asyncio.create_task(access.member("r1", "alice"))
    await store.reading.wait()
    store.hold.set()
    await asyncio.gather(first, second)
    store.hold = None
    await access.member("r1", "alice")  # the second read, begun after the change, was kept
    assert store.reads["member:r1:alice"] == 2


async def test_room_reads_in_flight_across_a_room_change_are_not_cached(
    access: Access, store: ReadCountingStore
) -> None:
    store.hold = asyncio.Event()
    read = asyncio.create_task(access.room("r1"))
    other = asyncio.create_task(access.room("r2"))
    await store.reading.wait()
    await asyncio.sleep(0)
    access.forget_room("r1")
    store.hold.set()
    await asyncio.gather(read, other)
    store.hold = None
    await access.room("r1")
    await access.room("r2")
    assert store.reads == Counter({"room:r1": 2, "room:r2": 1})


async def test_no_bookkeeping_is_left_behind(access: Access, store: ReadCountingStore) -> None:
    class Boom(Exception):
        pass

    async def failing(user_id: str) -> list[str]:
        raise Boom

    real = store.user_room_ids
    store.user_room_ids = failing  # type: ignore[method-assign]
    with pytest.raises(Boom):
        await access.user_rooms("alice")
    store.user_room_ids = real  # type: ignore[method-assign]
    await _read_across(access, store, "alice")
    await _read_across(access, store, "bob")
    assert access._loading_user_rooms == {}
    assert access._loading_members == {}
    assert access._loading_rooms == {}


# -- joined: the check every send makes ------------------------------------------------


def room_with(
    store: ReadCountingStore, room_id: str, *, private: bool, members: tuple[str, ...]
) -> None:
    kind = RoomType.GROUP_CHAT if private else RoomType.PUBLIC_ROOM
    at = datetime(2024, 1, 1, tzinfo=UTC)
    store.rooms[room_id] = Room(
        id=room_id,
        type=kind,
        name=room_id,
        description=None,
        created_by=members[0],
        settings=DEFAULT_SETTINGS[kind],
        metadata={},
        created_at=at,
    )
    for user in members:
        store.members[(room_id, user)] = Member(
            room_id, user, Role.MEMBER, MembershipState.JOINED, at
        )


async def test_joined_reads_the_room_and_membership_once_within_the_ttl(
    access: Access, store: ReadCountingStore, clock: FakeClock
) -> None:
    room_with(store, "r1", private=False, members=("alice",))
    for _ in range(3):
        room, member = await access.joined("alice", "r1")
        assert (room.id, member.user_id) == ("r1", "alice")
    assert store.reads == Counter({"room:r1": 1, "member:r1:alice": 1})
    clock.advance(61)
    await access.joined("alice", "r1")
    assert store.reads == Counter({"room:r1": 2, "member:r1:alice": 2})


async def test_joined_refuses_from_the_cache_as_the_store_would(
    access: Access, store: ReadCountingStore
) -> None:
    room_with(store, "open", private=False, members=("alice",))
    room_with(store, "secret", private=True, members=("alice",))
    for _ in range(2):  # the first answer comes from the store, the second from the cache
        with pytest.raises(ChatError) as outsider:
            await access.joined("mallory", "open")
        assert outsider.value.code is ErrorCode.NOT_A_MEMBER
        with pytest.raises(ChatError) as hidden:
            await access.joined("mallory", "secret")
        assert hidden.value.code is ErrorCode.ROOM_NOT_FOUND
        with pytest.raises(ChatError) as missing:
            await access.joined("alice", "nowhere")
        assert missing.value.code is ErrorCode.ROOM_NOT_FOUND
    assert store.reads["member:secret:mallory"] == 1


async def test_a_member_who_left_is_refused_at_once(
    access: Access, store: ReadCountingStore
) -> None:
    room_with(store, "r1", private=False, members=("alice", "bob"))
    await access.joined("alice", "r1")
    await access.joined("bob", "r1")
    del store.members[("r1", "bob")]
    access.observe(RoomEvent("r1", 5, EventType.USER_LEFT, {"userId": "bob"}, b""))
    with pytest.raises(ChatError) as refused:
        await access.joined("bob", "r1")
    assert refused.value.code is ErrorCode.NOT_A_MEMBER
    await access.joined("alice", "r1")  # others keep their cached membership
    assert store.reads["member:r1:alice"] == 1
