"""The PresenceStore contract, run against every implementation.

To add a backend (Redis), add one factory to ``STORES``; every test runs against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from chatsphere.adapters.presence_memory import MemoryPresenceStore
from chatsphere.domain.presence import PresenceStatus
from chatsphere.ports.presence import PresenceStore
from tests.unit.fakes import FakeClock


async def memory_store(clock: FakeClock) -> PresenceStore:
    return MemoryPresenceStore(clock)


STORES: dict[str, Callable[[FakeClock], Awaitable[PresenceStore]]] = {
    "memory": memory_store,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(STORES))
async def presence(request: pytest.FixtureRequest, clock: FakeClock) -> PresenceStore:
    return await STORES[request.param](clock)


def test_memory_store_satisfies_the_protocol() -> None:
    _: PresenceStore = MemoryPresenceStore(FakeClock())


async def test_unknown_users_are_offline(presence: PresenceStore) -> None:
    [ghost] = await presence.get(["ghost"])
    assert ghost.user_id == "ghost"
    assert ghost.status is PresenceStatus.OFFLINE
    assert ghost.connections == 0
    assert ghost.last_seen is None


async def test_first_connection_brings_a_user_online(presence: PresenceStore) -> None:
    state, changed = await presence.connect("alice", "c1")
    assert changed is True
    assert state.status is PresenceStatus.ONLINE
    assert state.connections == 1
    [stored] = await presence.get(["alice"])
    assert stored.status is PresenceStatus.ONLINE


async def test_two_connections_keep_a_user_online_until_both_go(
    presence: PresenceStore, clock: FakeClock
) -> None:
    await presence.connect("alice", "c1")
    second, changed = await presence.connect("alice", "c2")
    assert changed is False
    assert second.connections == 2

    clock.advance(60)
    after_one, changed = await presence.disconnect("alice", "c1")
    assert changed is False
    assert after_one.status is PresenceStatus.ONLINE
    assert after_one.connections == 1

    clock.advance(60)
    after_both, changed = await presence.disconnect("alice", "c2")
    assert changed is True
    assert after_both.status is PresenceStatus.OFFLINE
    assert after_both.connections == 0
    assert after_both.last_seen == clock.now()
    [stored] = await presence.get(["alice"])
    assert stored.status is PresenceStatus.OFFLINE
    assert stored.last_seen == clock.now()


async def test_the_same_connection_twice_counts_once(presence: PresenceStore) -> None:
    await presence.connect("alice", "c1")
    await presence.connect("alice", "c1")
    state, changed = await presence.disconnect("alice", "c1")
    assert changed is True
    assert state.status is PresenceStatus.OFFLINE


@pytest.mark.parametrize("status", [PresenceStatus.AWAY, PresenceStatus.BUSY])
async def test_an_explicit_status_sticks_across_a_second_connection(
    presence: PresenceStore, status: PresenceStatus
) -> None:
    await presence.connect("alice", "c1")
    state, changed = await presence.set_status("alice", status, "in a meeting")
    assert changed is True
    assert (state.status, state.custom_status) == (status, "in a meeting")

    again, changed = await presence.connect("alice", "c2")
    assert changed is False
    assert (again.status, again.custom_status) == (status, "in a meeting")

    still, changed = await presence.disconnect("alice", "c1")
    assert changed is False
    assert still.status is status


async def test_setting_the_same_status_again_is_not_a_change(presence: PresenceStore) -> None:
    await presence.connect("alice", "c1")
    await presence.set_status("alice", PresenceStatus.BUSY, None)
    _, changed = await presence.set_status("alice", PresenceStatus.BUSY, None)
    assert changed is False
    _, changed = await presence.set_status("alice", PresenceStatus.BUSY, "focus")
    assert changed is True
    _, changed = await presence.set_status("alice", PresenceStatus.ONLINE, "focus")
    assert changed is True


async def test_reconnecting_after_going_offline_is_online_again(
    presence: PresenceStore,
) -> None:
    await presence.connect("alice", "c1")
    await presence.set_status("alice", PresenceStatus.AWAY, None)
    await presence.disconnect("alice", "c1")
    state, changed = await presence.connect("alice", "c2")
    assert changed is True
    assert state.status is PresenceStatus.ONLINE


async def test_users_are_independent(presence: PresenceStore) -> None:
    await presence.connect("alice", "c1")
    await presence.connect("bob", "c2")
    await presence.set_status("bob", PresenceStatus.BUSY, None)
    await presence.disconnect("alice", "c1")
    alice, bob, carol = await presence.get(["alice", "bob", "carol"])
    assert (alice.user_id, alice.status) == ("alice", PresenceStatus.OFFLINE)
    assert (bob.user_id, bob.status) == ("bob", PresenceStatus.BUSY)
    assert (carol.user_id, carol.status) == ("carol", PresenceStatus.OFFLINE)


async def test_disconnecting_an_unknown_connection_keeps_others(presence: PresenceStore) -> None:
    await presence.connect("alice", "c1")
    state, changed = await presence.disconnect("alice", "never-registered")
    assert changed is False
    assert state.status is PresenceStatus.ONLINE
    assert state.connections == 1


@pytest.mark.parametrize("status", [PresenceStatus.ONLINE, PresenceStatus.BUSY])
async def test_a_status_set_without_a_connection_does_not_bring_a_user_online(
    presence: PresenceStore, status: PresenceStatus
) -> None:
    # Presence is connection-driven: with nothing connected there is nothing to expire
    # a ghost "online" later, so the user stays offline.
    state, _ = await presence.set_status("alice", status, "via REST")
    assert state.status is PresenceStatus.OFFLINE
    assert state.connections == 0
    [stored] = await presence.get(["alice"])
    assert stored.status is PresenceStatus.OFFLINE
    online, changed = await presence.connect("alice", "c1")
    assert online.status is PresenceStatus.ONLINE and changed is True
