"""Crash test: SIGKILL the server at random moments while clients send; nothing acked is lost.

Four SDK senders and one REST sender (``Idempotency-Key``) send 2,000 messages in
total, each with its own client message id, several in flight at a time. A seeded RNG
picks the moments at which the server process is killed with SIGKILL and restarted
on the same ports and store (a SQLite file; in a second run a PostgreSQL database);
the SDK reconnects and retries unacknowledged sends with the same ``clientMessageId``
on its own, the REST sender retries with the same key. A reader stays connected
throughout, reconnecting and resuming on its own.

Afterwards: every acknowledged message is in history exactly once, with the seq it
was acknowledged with; no client message id is stored twice; the room's event log is
numbered 1..lastSeq with no gap; and the reader saw every message once, in seq order.

The one-line summary (``CRASH-TEST …``) is what docs/reliability.md quotes; see it with
``.venv/bin/python -m pytest tests/reliability/test_crash.py -q -s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, require_service, reset_postgres
from tests.reliability._support import (
    RecordingClient,
    all_history,
    create_room,
    duplicates,
    gaps,
    room_events_from_zero,
    wait_until,
)
from tests.reliability.conftest import ServerFactory

SEED = int(os.environ.get("CRASH_SEED", "20240611"))
SDK_SENDERS = 4
PER_SDK_SENDER = 450
REST_MESSAGES = 200
TOTAL = SDK_SENDERS * PER_SDK_SENDER + REST_MESSAGES  # 2,000
WINDOW = 6  # sends in flight per SDK sender
KILLS = 4


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    server_factory: ServerFactory, store: str
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    if store == "postgres":
        # The killed node's PostgreSQL sessions die with it, mid-transaction or with a
        # COMMIT sent and its answer lost; the restarted node finds what was committed.
        require_service("PostgreSQL", PG_URL, 5432)
        await reset_postgres(PG_URL)
        server = server_factory(DATABASE_URL=PG_URL)
    else:
        server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "crash")

    reader = server.sdk("reader")
    assert isinstance(reader, RecordingClient)
    await reader.connect()
    await reader.join_room(room_id)
    senders = [server.sdk(f"sender{i}") for i in range(SDK_SENDERS)]
    for sender in senders:
        await sender.connect()
        await sender.join_room(room_id)
    async with server.rest("rester") as http:
        joined = await http.post(f"/rooms/{room_id}/members", json={})
        assert joined.status_code == 201, joined.text

    acked: dict[str, dict[str, Any]] = {}
    lost_acks_recovered = 0  # acks that came back "duplicate": stored before a kill, ack lost
    done = asyncio.Event()

    async def sdk_sender(index: int, client: Any) -> None:
        nonlocal lost_acks_recovered
        todo = iter(range(PER_SDK_SENDER))

        async def worker() -> None:
            nonlocal lost_acks_recovered
            for n in todo:
                cmid = f"sdk{index}-{n}"
                # The SDK retries across reconnects with the same clientMessageId.
                ack = await client.send_message(
                    room_id, f"message {n} from sender{index}", client_message_id=cmid
                )
                assert ack["clientMessageId"] == cmid
                if ack.get("duplicate"):
                    lost_acks_recovered += 1
                acked[cmid] = ack

        await asyncio.gather(*(worker() for _ in range(WINDOW)))

    async def rest_sender() -> None:
        nonlocal lost_acks_recovered
        async with server.rest("rester") as http:
            for n in range(REST_MESSAGES):
                key = f"rest-{n}"
                while True:
                    try:
                        response = await http.post(
                            f"/rooms/{room_id}/messages",
                            json={"content": {"text": f"rest message {n}"}},
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.TransportError:  # killed mid-request, or not up yet
                        await asyncio.sleep(0.05)
                        continue
                    if response.status_code >= 500:
                        await asyncio.sleep(0.05)
                        continue
                    break
                assert response.status_code in (200, 201), response.text
                if response.status_code == 200:
                    lost_acks_recovered += 1
                body = response.json()
                assert body["clientMessageId"] == key
                acked[key] = body

    kill_points = sorted(rng.sample(range(TOTAL // 10, TOTAL * 9 // 10), KILLS))
    kills: list[int] = []

    async def killer() -> None:
        for point in kill_points:
            while len(acked) < point and not done.is_set():
                await asyncio.sleep(0.005)
            if done.is_set():
                return
            await asyncio.sleep(rng.uniform(0, 0.05))  # land anywhere in a batch's life
            server.kill()
            kills.append(len(acked))
            await asyncio.sleep(rng.uniform(0, 0.5))  # down for a moment: clients retry
            await server.start()

    kill_task = asyncio.create_task(killer())
    try:
        async with asyncio.timeout(100):
            await asyncio.gather(*(sdk_sender(i, c) for i, c in enumerate(senders)), rest_sender())
    finally:
        done.set()
    await kill_task
    assert len(acked) == TOTAL
    last_acked = max(a["seq"] for a in acked.values())
    await wait_until(
        lambda: reader.last_seq.get(room_id, 0) >= last_acked,
        60,
        "the reader to catch up through its reconnects",
    )

    # -- what the store kept -------------------------------------------------------
    history = await all_history(server, "owner", room_id)
    by_cmid = Counter(m["clientMessageId"] for m in history)
    duplicated = sorted(k for k, n in by_cmid.items() if n > 1)
    lost = sorted(k for k in acked if k not in by_cmid)
    stored = {m["clientMessageId"]: m for m in history}
    changed = sorted(
        k
        for k, a in acked.items()
        if k in stored and (stored[k]["id"], stored[k]["seq"]) != (a["id"], a["seq"])
    )
    events = await room_events_from_zero(server, "owner", room_id)
    event_seqs = [e["seq"] for e in events]
    async with server.rest("owner") as http:
        last_seq = (await http.get(f"/rooms/{room_id}")).json()["lastSeq"]
    log_gaps = gaps(event_seqs, 1, last_seq)
    message_events = {e["data"]["id"]: e["seq"] for e in events if e["type"] == "new_message"}

    # -- what the reader saw -------------------------------------------------------
    seen = [e for e in reader.seen.get(room_id, []) if e["type"] == "new_message"]
    seen_ids = [e["data"]["id"] for e in seen]
    raw = reader.raw_seqs.get(room_id, [])
    reader_first = raw[0]
    reader_gaps = gaps(raw, reader_first, last_seq)
    reader_dups = duplicates(raw)
    missing_for_reader = sorted({m["id"] for m in history} - set(seen_ids))

    elapsed = time.monotonic() - started
    print(
        f"\nCRASH-TEST store={store} seed={SEED} sent={TOTAL} acked={len(acked)} "
        f"kills={len(kills)} lost={len(lost)} duplicates={len(duplicated)} "
        f"lost_acks_recovered_by_retry={lost_acks_recovered} stored={len(history)} "
        f"last_seq={last_seq} event_log_gaps={len(log_gaps)} "
        f"reader_reconnects={reader.connections - 1} reader_missed={len(missing_for_reader)} "
        f"reader_duplicates={len(reader_dups)} elapsed={elapsed:.1f}s"
    )

    assert len(kills) == KILLS, f"only {len(kills)} kills happened"
    assert not lost, f"acknowledged but not stored: {lost[:10]}"
    assert not duplicated, f"stored twice: {duplicated[:10]}"
    assert not changed, f"stored with another id/seq than acknowledged: {changed[:10]}"
    assert len(history) == TOTAL
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(set(seqs)), "history is not strictly ascending by seq"
    assert event_seqs == list(range(1, last_seq + 1)), f"event log gaps: {log_gaps[:10]}"
    assert message_events == {m["id"]: m["seq"] for m in history}
    # The non-message events are the room's creation and the six joins.
    assert sorted(e["type"] for e in events if e["type"] != "new_message") == [
        "room_created",
        *["user_joined"] * (2 + SDK_SENDERS),
    ]
    assert reader.connections > 1, "the reader never had to reconnect"
    assert not reader_dups, f"the server sent the reader these seqs twice: {reader_dups[:10]}"
    assert not reader_gaps, f"the reader never got these seqs: {reader_gaps[:10]}"
    assert raw == sorted(raw)
    assert not missing_for_reader
    assert seen_ids == [m["id"] for m in history], "the reader saw messages out of seq order"

    for client in (reader, *senders):
        await client.close()
    assert await server.terminate() == 0
    # Every restart came up on the killed node's files as they were, with nothing to say
    # about them (LOG_LEVEL=WARNING), and the file itself is sound.
    assert server.starts == KILLS + 1
    complaints = [
        line
        for line in server.log_path.read_text().splitlines()
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line or "Traceback" in line
    ]
    assert not complaints, complaints[:10]
    if store == "sqlite":
        with contextlib.closing(sqlite3.connect(server.db_path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_sdk_reconnects_through_handshakes_cut_off_midway(
    server_factory: ServerFactory,
) -> None:
    """While the node is down something on its port accepts and hangs up at once (a
    process dying during a handshake, a proxy): the SDK keeps reconnecting, and its
    pending send is stored once when the node is back."""
    server = server_factory()
    await server.start()
    room_id = await create_room(server, "owner", "cut")
    client = server.sdk("alice")
    await client.connect()
    await client.join_room(room_id)
    server.kill()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # the start of the HTTP upgrade request, then nothing back
        writer.close()

    cut: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cut.append(1)
        await hang_up(reader, writer)

    impostor = await asyncio.start_server(counted, "127.0.0.1", server.ws_port)
    pending = asyncio.create_task(
        client.send_message(room_id, "across the outage", client_message_id="outage-1")
    )
    try:
        await wait_until(lambda: len(cut) >= 2, 30, "reconnect attempts to be cut off")
    finally:
        impostor.close()
        await impostor.wait_closed()
    await server.start()
    try:
        ack = await asyncio.wait_for(pending, 60)
        history = await all_history(server, "owner", room_id)
        assert [m["clientMessageId"] for m in history] == ["outage-1"]
        assert history[0]["id"] == ack["id"]
        assert client.connections == 2
    finally:
        await client.close()
