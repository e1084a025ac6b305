"""Resume: across a graceful restart, after a long disconnect, past RESUME_MAX_EVENTS,
and SIGTERM with sends in flight. Real server processes, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from chatsphere.client import Event
from tests.reliability._support import (
    RecordingClient,
    ServerProcess,
    all_history,
    create_room,
    duplicates,
    join_rest,
    recv_json,
    request_raw,
    send_frame,
    token,
    wait_until,
)
from tests.reliability.conftest import ServerFactory

FLOODERS = int(os.environ.get("SEAM_FLOODERS", "6"))
RESUMERS = int(os.environ.get("SEAM_RESUMERS", "3"))
SEAM_TRIALS = int(os.environ.get("SEAM_TRIALS", "1000"))


async def send_many(client: Any, room_id: str, prefix: str, count: int) -> list[dict[str, Any]]:
    acks = []
    for n in range(count):
        acks.append(
            await client.send_message(room_id, f"{prefix} {n}", client_message_id=f"{prefix}-{n}")
        )
    return acks


async def test_graceful_restart_closes_with_1001_and_clients_resume_missing_nothing(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "restart")
    reader = server.sdk("reader")
    sender = server.sdk("sender")
    assert isinstance(reader, RecordingClient)
    for client in (reader, sender):
        await client.connect()
        await client.join_room(room_id)
    await join_rest(server, "watcher", room_id)
    try:
        async with server.raw("watcher") as watcher:
            assert (await recv_json(watcher))["type"] == "connected"
            before = await send_many(sender, room_id, "before", 30)

            # SIGTERM with sends still coming: the SDK keeps retrying through the restart.
            during = asyncio.create_task(send_many(sender, room_id, "during", 30))
            await asyncio.sleep(0.05)
            assert await server.terminate() == 0, server.log_tail()
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await recv_json(watcher)
            assert watcher.close_code == 1001, watcher.close_code
        await wait_until(
            lambda: reader.close_code == sender.close_code == 1001, 30, "SDK clients to see 1001"
        )

        await server.start()
        during_acks = await asyncio.wait_for(during, 60)
        after = await send_many(sender, room_id, "after", 30)
        acked = before + during_acks + after
        last = acked[-1]["seq"]
        await wait_until(lambda: reader.last_seq.get(room_id, 0) >= last, 60, "reader resume")

        history = await all_history(server, "owner", room_id)
        assert [m["id"] for m in history] == [a["id"] for a in acked]
        seen = [e["data"]["id"] for e in reader.seen[room_id] if e["type"] == "new_message"]
        assert seen == [m["id"] for m in history], "reader missed or reordered messages"
        raw = reader.raw_seqs[room_id]
        assert not duplicates(raw), f"duplicates at the resume seam: {duplicates(raw)}"
        assert raw == list(range(raw[0], last + 1))
        assert reader.connections == 2  # one reconnect, after the 1001
    finally:
        await asyncio.gather(reader.close(), sender.close())


async def test_resume_after_long_disconnect_replays_the_gap_then_live_without_seam_duplicates(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "gap")
    sender = server.sdk("sender")
    live_sender = server.sdk("live")
    for client in (sender, live_sender):
        await client.connect()
        await client.join_room(room_id)
    await join_rest(server, "reader", room_id)
    try:
        # The reader was here once, saw up to `last_seen`, then went away.
        first = await send_many(sender, room_id, "seen", 5)
        last_seen = first[-1]["seq"]
        missed = await send_many(sender, room_id, "missed", 200)

        # Resume several times while live messages are being committed, so the
        # replay's read and the live fan-out overlap at the seam.
        live_count = 150
        live = asyncio.create_task(send_many(live_sender, room_id, "live", live_count))
        resumes = [
            asyncio.create_task(_resume_and_follow(server, room_id, last_seen, delay=d))
            for d in (0.0, 0.05, 0.15, 0.3, 0.6)
        ]
        live_acks = await asyncio.wait_for(live, 60)
        final = live_acks[-1]["seq"]
        for outcome in await asyncio.wait_for(asyncio.gather(*resumes), 60):
            replayed, live_events, ack = outcome
            replayed_seqs = [e["seq"] for e in replayed]
            live_seqs = [e["seq"] for e in live_events]
            # Exactly the missed events, in order, first; then live ones, no overlap.
            assert replayed_seqs == list(range(last_seen + 1, last_seen + 1 + len(replayed)))
            assert [e["data"]["id"] for e in replayed[: len(missed)]] == [m["id"] for m in missed]
            # The ack counts what came from the store; live events held during the replay
            # and newer than it are released just before the ack.
            assert ack["replayed"] >= len(missed)
            assert ack["lastSeq"] == last_seen + ack["replayed"] <= replayed_seqs[-1]
            assert replayed_seqs + live_seqs == list(range(last_seen + 1, final + 1)), (
                f"seam: replay ended at {replayed_seqs[-1]}, live began "
                f"{live_seqs[:3]}, duplicates {duplicates(replayed_seqs + live_seqs)}"
            )
    finally:
        await asyncio.gather(sender.close(), live_sender.close())


async def _resume_and_follow(
    server: ServerProcess, room_id: str, last_seen: int, delay: float
) -> tuple[list[Event], list[Event], dict[str, Any]]:
    """A fresh connection resuming from ``last_seen``; (replayed, live, ack) until the end."""
    await asyncio.sleep(delay)
    replayed: list[Event] = []
    live: list[Event] = []
    async with server.raw("reader", max_size=None) as ws:
        assert (await recv_json(ws))["type"] == "connected"

        def keep(msg: Event) -> None:
            if msg.get("roomId") == room_id and isinstance(msg.get("seq"), int):
                replayed.append(msg)

        answer = await request_raw(
            ws, {"type": "resume", "id": "r", "rooms": {room_id: last_seen}}, on_event=keep
        )
        assert answer["type"] == "ack", answer
        ack = answer["data"]["rooms"][room_id]
        assert "error" not in ack, ack
        # Follow live events until the live sender's last one.
        async with server.rest("owner") as http:
            while True:
                with contextlib.suppress(TimeoutError):
                    msg = await recv_json(ws, timeout=1.0)
                    if msg.get("roomId") == room_id and isinstance(msg.get("seq"), int):
                        live.append(msg)
                        continue
                room = (await http.get(f"/rooms/{room_id}")).json()
                got = (live or replayed)[-1]["seq"]
                if got >= room["lastSeq"] and room["lastSeq"] >= last_seen + 200 + 150:
                    break
    return replayed, live, ack


async def test_resume_gap_too_large_then_history_pages_it(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(RESUME_MAX_EVENTS=50)
    await server.start()
    room_id = await create_room(server, "owner", "big-gap")
    sender = server.sdk("sender")
    await sender.connect()
    await sender.join_room(room_id)
    await join_rest(server, "reader", room_id)
    try:
        last_seen = (await sender.send_message(room_id, "seen"))["seq"]
        missed = await send_many(sender, room_id, "missed", 60)
        room_last = missed[-1]["seq"]

        async with server.raw("reader") as ws:
            assert (await recv_json(ws))["type"] == "connected"
            replayed: list[Event] = []
            answer = await request_raw(
                ws,
                {"type": "resume", "id": 1, "rooms": {room_id: last_seen}},
                on_event=replayed.append,
            )
            assert answer["type"] == "ack", answer
            result = answer["data"]["rooms"][room_id]
            assert result["error"]["code"] == "resume_gap_too_large"
            assert result["error"]["details"] == {
                "oldestSeq": 1,
                "lastSeq": room_last,
                "limit": 50,
            }
            assert result["replayed"] == 0
            assert [e for e in replayed if e.get("roomId") == room_id] == []

            # The client pages history instead, over the same connection…
            paged: list[dict[str, Any]] = []
            after = last_seen
            while True:
                page = await request_raw(
                    ws,
                    {
                        "type": "get_history",
                        "id": f"h{after}",
                        "roomId": room_id,
                        "after": after,
                        "limit": 25,
                    },
                )
                assert page["type"] == "ack", page
                messages = page["data"]["messages"]
                if not messages:
                    break
                paged.extend(messages)
                after = messages[-1]["seq"]
            assert [m["id"] for m in paged] == [m["id"] for m in missed]

            # …and live events keep flowing on it: the subscription survived the refusal.
            sent = await sender.send_message(room_id, "after the gap")
            while True:
                msg = await recv_json(ws)
                if msg.get("type") == "new_message":
                    break
            assert msg["seq"] == sent["seq"] == room_last + 1
        # REST pages the same messages.
        history = await all_history(server, "reader", room_id)
        assert [m["seq"] for m in history] == list(range(last_seen, room_last + 2))

        # A gap of exactly RESUME_MAX_EVENTS is still replayed in full.
        async with server.raw("reader") as ws:
            assert (await recv_json(ws))["type"] == "connected"
            replayed = []
            answer = await request_raw(
                ws,
                {"type": "resume", "id": 2, "rooms": {room_id: room_last + 1 - 50}},
                on_event=replayed.append,
            )
            assert answer["data"]["rooms"][room_id] == {"replayed": 50, "lastSeq": room_last + 1}
            assert [e["seq"] for e in replayed] == list(range(room_last + 2 - 50, room_last + 2))
    finally:
        await sender.close()


async def test_sigterm_with_sends_in_flight_keeps_every_acknowledged_send(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "shutdown")
    users = [f"user{i}" for i in range(6)]
    for user in users:
        await join_rest(server, user, room_id)

    acked_ws: dict[str, dict[str, Any]] = {}
    acked_rest: dict[str, dict[str, Any]] = {}
    attempted: list[str] = []
    close_codes: list[int | None] = []
    stop = asyncio.Event()

    async def ws_flood(user: str) -> None:
        """Pipelined sends on a raw socket; record every ack that arrives before the close."""
        async with server.raw(user) as ws:
            assert (await recv_json(ws))["type"] == "connected"

            window = asyncio.Semaphore(16)  # sends in flight on this socket

            async def writer() -> None:
                n = 0
                with contextlib.suppress(ConnectionClosed):
                    while not stop.is_set():
                        await window.acquire()
                        cmid = f"{user}-{n}"
                        attempted.append(cmid)
                        await send_frame(
                            ws,
                            {
                                "type": "send_message",
                                "id": cmid,
                                "roomId": room_id,
                                "content": {"text": cmid},
                                "clientMessageId": cmid,
                            },
                        )
                        n += 1

            task = asyncio.create_task(writer())
            with contextlib.suppress(ConnectionClosed):
                while True:
                    msg = await recv_json(ws, timeout=60)
                    if msg.get("type") == "ack":
                        acked_ws[msg["id"]] = msg["data"]
                        window.release()
            stop.set()
            window.release()
            await task
            close_codes.append(ws.close_code)

    async def rest_flood(user: str) -> None:
        async with server.rest(user) as http:
            n = 0
            while not stop.is_set():
                key = f"{user}-rest-{n}"
                attempted.append(key)
                n += 1
                try:
                    response = await http.post(
                        f"/rooms/{room_id}/messages",
                        json={"content": {"text": key}},
                        headers={"Idempotency-Key": key},
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    acked_rest[key] = response.json()
                else:  # refused while shutting down: fine, as long as it was not acked
                    return

    floods = [asyncio.create_task(ws_flood(u)) for u in users[:4]]
    floods += [asyncio.create_task(rest_flood(u)) for u in users[4:]]
    await wait_until(lambda: len(acked_ws) + len(acked_rest) >= 200, 60, "sends to flow")
    assert await server.terminate() == 0, server.log_tail()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*floods), 60)
    assert close_codes == [1001] * 4

    await server.start()
    history = await all_history(server, "owner", room_id)
    stored = {m["clientMessageId"]: m for m in history}
    assert len(stored) == len(history), "a clientMessageId was stored twice"
    for cmid, ack in {**acked_ws, **acked_rest}.items():
        assert cmid in stored, f"{cmid} was acknowledged before shutdown but is not stored"
        assert (stored[cmid]["id"], stored[cmid]["seq"]) == (ack["id"], ack["seq"])
    seqs = [m["seq"] for m in history]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "message seqs have a gap"

    # Retrying every attempted send after the restart stores each exactly once: those
    # already stored come back as the original message, the rest are stored now.
    retry_ws = [c for c in attempted if "-rest-" not in c]
    retry_rest = [c for c in attempted if "-rest-" in c]
    clients = {u: server.sdk(u) for u in users[:4]}
    try:
        for client in clients.values():
            await client.connect()
        for cmid in retry_ws:
            ack = await clients[cmid.split("-")[0]].send_message(
                room_id, cmid, client_message_id=cmid
            )
            if cmid in stored:
                assert ack.get("duplicate") is True and ack["id"] == stored[cmid]["id"]
            else:
                assert "duplicate" not in ack
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))
    for key in retry_rest:
        async with server.rest(key.split("-")[0]) as http:
            response = await http.post(
                f"/rooms/{room_id}/messages",
                json={"content": {"text": key}},
                headers={"Idempotency-Key": key},
            )
        assert response.status_code == (200 if key in stored else 201), response.text
        if key in stored:
            assert response.json()["id"] == stored[key]["id"]
    after = await all_history(server, "owner", room_id)
    assert sorted(m["clientMessageId"] for m in after) == sorted(set(attempted))


async def test_resume_seam_has_no_duplicates_while_commits_race_the_replay(
    server_factory: ServerFactory,
) -> None:
    """Many short-gap resumes while four senders commit as fast as they can.

    A replay's read can see a freshly committed batch before that batch's fan-out
    reaches the resuming connection; the connection must then not send it again
    when it arrives live. (Before the fix in gateway/connection.py about 1 % of
    such resumes received a few events twice.)
    """
    server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "seam")
    await join_rest(server, "reader", room_id)
    senders = [server.sdk(f"flood{i}") for i in range(FLOODERS)]
    latest = 0
    stop = asyncio.Event()

    async def flood(client: Any) -> None:
        nonlocal latest
        await client.join_room(room_id)
        while not stop.is_set():
            latest = max(latest, (await client.send_message(room_id, "x"))["seq"])

    bad: list[str] = []
    trials = 0

    async def resumer() -> None:
        nonlocal trials
        while not stop.is_set():
            since = max(0, latest - 3)
            seqs, replayed = await _resume_briefly(server, room_id, since)
            trials += 1
            if seqs != list(range(since + 1, since + 1 + len(seqs))):
                bad.append(f"since {since}: …{seqs[max(0, replayed - 3) : replayed + 4]}")

    for client in senders:
        await client.connect()
    floods = [asyncio.create_task(flood(c)) for c in senders]
    try:
        await wait_until(lambda: latest > 10, 30, "sends to flow")
        resumers = [asyncio.create_task(resumer()) for _ in range(RESUMERS)]
        # 300 resumes, or as many as 30 s allow on a busy machine; stop at the first bad one.
        with contextlib.suppress(AssertionError):
            await wait_until(
                lambda: trials >= SEAM_TRIALS or bool(bad), 30, "resumes", interval=0.2
            )
        stop.set()
        await asyncio.wait_for(asyncio.gather(*resumers, *floods), 60)
    finally:
        stop.set()
        await asyncio.gather(*(c.close() for c in senders))
    print(f"\nSEAM-TEST resumes={trials} bad={len(bad)}")
    assert not bad, f"{len(bad)} of {trials} resumes got events twice or out of order: {bad[:5]}"
    assert trials >= 30, f"only {trials} resumes ran"


async def _resume_briefly(server: ServerProcess, room_id: str, since: int) -> tuple[list[int], int]:
    """Resume from ``since`` on a fresh connection and listen 0.1 s past the ack.

    Returns the seqs received (replayed, then live) and how many came before the ack.
    """
    seqs: list[int] = []

    def keep(msg: Event) -> None:
        if isinstance(msg.get("seq"), int):
            seqs.append(msg["seq"])

    async with server.raw("reader", max_size=None) as ws:
        assert (await recv_json(ws))["type"] == "connected"
        answer = await request_raw(
            ws, {"type": "resume", "id": "r", "rooms": {room_id: since}}, on_event=keep
        )
        assert answer["type"] == "ack", answer
        replayed = len(seqs)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):  # the live events right after the seam
                while True:
                    keep(await recv_json(ws))
    return seqs, replayed


class GatedClient(RecordingClient):
    """An SDK client whose reconnects wait for ``gate``: it stays away while others send."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def _open(self) -> None:
        if self.connections:
            await self.gate.wait()
        await super()._open()


async def test_sdk_pages_history_when_the_gap_is_too_large(
    server_factory: ServerFactory,
) -> None:
    """The SDK's own reconnect meets resume_gap_too_large and pages the gap itself."""
    server = server_factory(RESUME_MAX_EVENTS=50)
    await server.start()
    room_id = await create_room(server, "owner", "sdk-gap")
    reader = GatedClient(server.ws_url, token=token("reader"), max_backoff=1.0)
    sender = server.sdk("sender")
    try:
        for client in (reader, sender):
            await client.connect()
            await client.join_room(room_id)
        first = (await sender.send_message(room_id, "seen"))["seq"]
        await reader.next_event("new_message", timeout=30)

        await reader.drop()  # the network goes away; the SDK will reconnect on its own
        await send_many(sender, room_id, "missed", 60)
        reader.gate.set()
        live = await send_many(sender, room_id, "live", 20)  # while it pages the gap
        final = live[-1]["seq"]
        await wait_until(lambda: reader.last_seq.get(room_id, 0) >= final, 60, "reader")

        assert reader.connections == 2
        seen = [e for e in reader.seen[room_id] if e["type"] == "new_message"]
        assert [e["seq"] for e in seen] == list(range(first, final + 1)), "a gap or a repeat"
        history = await all_history(server, "owner", room_id)
        assert [e["data"]["id"] for e in seen] == [m["id"] for m in history]
    finally:
        await asyncio.gather(reader.close(), sender.close())


async def test_idempotency_outlives_a_restart_and_a_deletion(
    server_factory: ServerFactory,
) -> None:
    """A clientMessageId / Idempotency-Key is kept as long as the message exists, and a
    deleted message exists on as a tombstone: a late retry never resurrects it."""
    server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "idempotent")
    await join_rest(server, "alice", room_id)

    async def rest_send(key: str) -> httpx.Response:
        async with server.rest("alice") as http:
            return await http.post(
                f"/rooms/{room_id}/messages",
                json={"content": {"text": key}},
                headers={"Idempotency-Key": key},
            )

    client = server.sdk("alice")
    await client.connect()
    try:
        kept = await client.send_message(room_id, "kept", client_message_id="ws-kept")
        doomed = await client.send_message(room_id, "doomed", client_message_id="ws-doomed")
        first = await rest_send("rest-kept")
        assert first.status_code == 201
        await client.delete_message(doomed["id"])
    finally:
        await client.close()
    assert await server.terminate() == 0
    await server.start()

    client = server.sdk("alice")
    await client.connect()
    try:
        again = await client.send_message(room_id, "kept", client_message_id="ws-kept")
        assert again["duplicate"] is True and again["id"] == kept["id"]
        gone = await client.send_message(room_id, "doomed", client_message_id="ws-doomed")
        assert gone["duplicate"] is True and gone["id"] == doomed["id"]
        assert gone["status"] == "deleted" and gone["content"] == {}
    finally:
        await client.close()
    retried = await rest_send("rest-kept")
    assert retried.status_code == 200 and retried.json()["id"] == first.json()["id"]
    history = await all_history(server, "owner", room_id)
    assert [m["clientMessageId"] for m in history] == ["ws-kept", "ws-doomed", "rest-kept"]
