"""services/presence.py on a real SQLite store: who hears about a connect, at what cost."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chatsphere.app import ChatSphereService


class Recorder:
    """Counts the store's room-list reads and records published presence and typing."""

    def __init__(self, service: ChatSphereService) -> None:
        self.reads: Counter[str] = Counter()
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []
        real = service.store.user_room_ids

        async def counted(user_id: str) -> list[str]:
            self.reads[user_id] += 1
            return await real(user_id)

        service.store.user_room_ids = counted  # type: ignore[method-assign]
        service.on("*", lambda kind, room, data: self.events.append((kind, room, data)))

    def presence(self, user_id: str) -> list[tuple[str | None, str]]:
        return [
            (room, data["status"])
            for kind, room, data in self.events
            if kind == "presence_updated" and data["userId"] == user_id
        ]

    def typing_stopped(self) -> list[tuple[str | None, str]]:
        return [
            (room, data["userId"]) for kind, room, data in self.events if kind == "typing_stopped"
        ]


@pytest.fixture
def recorder(service: ChatSphereService) -> Recorder:
    return Recorder(service)


async def _session(service: ChatSphereService, user_id: str, connection_id: str) -> None:
    await service.presence.connected(user_id, connection_id)
    await service.presence.disconnected(user_id, connection_id)


async def test_connect_and_disconnect_twice_read_a_roomless_users_rooms_once(
    service: ChatSphereService, recorder: Recorder
) -> None:
    await _session(service, "fan", "c1")
    await _session(service, "fan", "c2")
    assert recorder.reads == Counter({"fan": 1})
    assert recorder.presence("fan") == []  # in no room: nobody to tell


async def test_connect_and_disconnect_twice_read_a_members_rooms_once(
    service: ChatSphereService, recorder: Recorder
) -> None:
    room = await service.create_chat_room("owner", "public_room", "lobby")
    await service.join_chat_room("alice", room.id)
    recorder.reads.clear()
    await _session(service, "alice", "c1")
    await _session(service, "alice", "c2")
    assert recorder.reads == Counter({"alice": 1})
    statuses = ["online", "offline", "online", "offline"]
    assert recorder.presence("alice") == [(room.id, s) for s in statuses]


async def test_a_join_between_sessions_is_seen_at_the_next_connect(
    service: ChatSphereService, recorder: Recorder
) -> None:
    await _session(service, "alice", "c1")
    room = await service.create_chat_room("owner", "public_room", "lobby")
    await service.join_chat_room("alice", room.id)
    await _session(service, "alice", "c2")
    assert recorder.reads == Counter({"alice": 2})
    assert recorder.presence("alice") == [(room.id, "online"), (room.id, "offline")]
    await service.leave_chat_room("alice", room.id)
    await _session(service, "alice", "c3")
    assert recorder.reads == Counter({"alice": 3})
    assert len(recorder.presence("alice")) == 2  # left: the room hears no more


async def test_presence_goes_only_to_joined_rooms(
    service: ChatSphereService, recorder: Recorder
) -> None:
    joined = await service.create_chat_room("owner", "group_chat", "joined", participants=["bob"])
    await service.join_chat_room("bob", joined.id)
    invited = await service.create_chat_room("owner", "group_chat", "secret", participants=["bob"])
    other = await service.create_chat_room("owner", "group_chat", "other")
    await _session(service, "bob", "c1")
    rooms = {room for room, _ in recorder.presence("bob")}
    assert rooms == {joined.id}
    assert invited.id not in rooms and other.id not in rooms


async def test_the_last_disconnect_stops_only_that_users_typing(
    service: ChatSphereService, recorder: Recorder
) -> None:
    rooms = [await service.create_chat_room("owner", "public_room", f"r{i}") for i in range(2)]
    for room in rooms:
        for user in ("alice", "bob"):
            await service.join_chat_room(user, room.id)
    await service.presence.connected("alice", "tab1")
    await service.presence.connected("alice", "tab2")
    await service.presence.connected("bob", "c1")
    for room in rooms:
        await service.set_typing("alice", room.id)
        await service.set_typing("bob", room.id)

    await service.presence.disconnected("alice", "tab1")
    assert recorder.typing_stopped() == []  # another tab is still there
    await service.presence.disconnected("alice", "tab2")
    assert sorted(recorder.typing_stopped()) == sorted((room.id, "alice") for room in rooms)
    recorder.events.clear()
    await service.set_typing("alice", rooms[0].id, False)  # already stopped: says nothing
    assert recorder.typing_stopped() == []
    await service.presence.disconnected("bob", "c1")
    assert sorted(recorder.typing_stopped()) == sorted((room.id, "bob") for room in rooms)
