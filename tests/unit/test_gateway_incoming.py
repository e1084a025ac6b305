"""gateway/ws_server.py IncomingFrames: frames reach the session in order, and a client
that sends faster than its session works stops being read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from chatsphere.gateway.ws_server import MAX_QUEUED_FRAMES, RESUME_QUEUED_FRAMES, IncomingFrames


@dataclass
class ReadSwitch:
    """Records the reading state the listener asks the socket for."""

    pauses: int = 0
    resumes: int = 0

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1


def make() -> tuple[IncomingFrames, ReadSwitch]:
    switch = ReadSwitch()
    raw: Any = switch
    return IncomingFrames(raw), switch


async def test_frames_come_out_in_order_and_the_iterator_ends_with_the_connection() -> None:
    incoming, _ = make()
    seen: list[str | bytes] = []

    async def session() -> None:
        async for frame in incoming:
            seen.append(frame)

    task = asyncio.get_running_loop().create_task(session())
    await asyncio.sleep(0)  # the session waits for its first frame
    incoming.put("a")
    incoming.put(b"b")
    await asyncio.sleep(0)
    incoming.put("c")
    await asyncio.sleep(0)
    incoming.finish()
    await asyncio.wait_for(task, 5)
    assert seen == ["a", b"b", "c"]


async def test_reading_pauses_past_the_queue_limit_and_resumes_once_drained() -> None:
    incoming, switch = make()
    for n in range(MAX_QUEUED_FRAMES):
        incoming.put(str(n))
    assert switch.pauses == 0
    incoming.put("one too many")
    incoming.put("and another")
    assert switch.pauses == 1  # once, however many more arrive
    taken = 0
    iterator = aiter(incoming)
    while switch.resumes == 0:
        await anext(iterator)
        taken += 1
    assert MAX_QUEUED_FRAMES + 2 - taken == RESUME_QUEUED_FRAMES
    assert switch.pauses == 1


async def test_a_finished_connection_drops_what_its_session_had_not_taken() -> None:
    incoming, switch = make()
    for n in range(MAX_QUEUED_FRAMES + 1):
        incoming.put(str(n))
    incoming.finish()
    assert [frame async for frame in incoming] == []
    assert switch.resumes == 0  # nothing to read from a closed socket


async def test_while_the_session_waits_new_frames_are_started_at_once() -> None:
    incoming, _ = make()
    started: list[str | bytes] = []
    handed: list[Any] = []
    give_back = {"slow"}

    def start(message: str | bytes) -> Any:
        started.append(message)
        return ("begun", message) if message in give_back else None

    async def session() -> None:
        async for item in incoming:
            handed.append(item)
            await asyncio.sleep(0.01)  # busy with it: what arrives now is queued

    incoming.handle_directly(start)
    task = asyncio.get_running_loop().create_task(session())
    await asyncio.sleep(0)  # the session waits for its first frame
    incoming.put("fast-1")
    incoming.put("fast-2")
    assert started == ["fast-1", "fast-2"] and handed == []  # the session was not woken
    incoming.put("slow")  # given back: queued for the session, which wakes
    incoming.put("while-busy")  # not started: it must wait for "slow"
    await asyncio.sleep(0)
    assert started == ["fast-1", "fast-2", "slow"]
    await asyncio.sleep(0.05)
    assert handed == [("begun", "slow"), "while-busy"]
    incoming.put("fast-3")  # idle again: started at once
    assert started[-1] == "fast-3" and handed[-1] == "while-busy"
    incoming.handle_directly(None)
    incoming.put("off")
    await asyncio.sleep(0.05)
    assert handed[-1] == "off" and started[-1] == "fast-3"
    incoming.finish()
    await asyncio.wait_for(task, 5)
