"""The node's timings log: what it records, on which clock, and that it costs nothing off."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

from chatsphere.app import ChatSphereService
from chatsphere.timings import LAG_THRESHOLD_MS, TimingLog
from tests.conftest import make_settings


def read_lines(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


async def test_events_are_written_as_tab_separated_lines_on_the_monotonic_clock(
    tmp_path: Path,
) -> None:
    log = TimingLog(tmp_path / "t.log")
    await log.start()
    try:
        log.record("commit", 1_000_000_000, 2_500_000, 700_000, "n=3")
        log.record("search", 2_000_000_000, 1_999, None, "indexed=0")
    finally:
        await log.close()
    assert read_lines(tmp_path / "t.log")[:2] == [
        ["commit", "1000000000", "2500", "700", "n=3"],
        ["search", "2000000000", "1", "-", "indexed=0"],
    ]


async def test_a_collection_and_a_blocked_loop_are_logged(tmp_path: Path) -> None:
    log = TimingLog(tmp_path / "t.log")
    await log.start()
    try:
        before = time.monotonic_ns()
        gc.collect()
        await asyncio.sleep(0.01)  # the lag probe is waiting on its timer now
        time.sleep(0.05)  # the loop cannot run for 50 ms
        await asyncio.sleep(0.02)
        after = time.monotonic_ns()
    finally:
        await log.close()
    lines = read_lines(tmp_path / "t.log")
    collections = [line for line in lines if line[0] == "gc"]
    assert any(line[4].startswith("gen=2 ") for line in collections)
    assert all(before <= int(line[1]) <= after for line in collections)
    lags = [line for line in lines if line[0] == "lag"]
    assert lags, lines
    worst = max(int(line[2]) for line in lags)
    assert 40_000 <= worst < 200_000  # µs late: the 50 ms the loop was blocked, about
    assert worst > LAG_THRESHOLD_MS * 1000
    # Closed: the collector no longer reports to it.
    assert log._on_gc not in gc.callbacks


async def test_a_node_with_a_timings_log_records_its_group_commits_and_checkpoints(
    tmp_path: Path,
) -> None:
    path = tmp_path / "timings.log"
    settings = make_settings(tmp_path, timings_log=str(path))
    before = time.monotonic_ns()
    async with ChatSphereService(settings) as chat:
        chat.store._checkpoint_interval = 0.05
        room = await chat.create_chat_room("alice", "group_chat", "r")
        await asyncio.gather(*(chat.send_message("alice", room.id, f"m{i}") for i in range(40)))
        checkpoints_by = time.monotonic() + 5
        while time.monotonic() < checkpoints_by:
            await asyncio.sleep(0.05)
            chat.timings.flush()  # type: ignore[union-attr]
            if "checkpoint\t" in path.read_text():
                break
    after = time.monotonic_ns()
    lines = read_lines(path)
    kinds = {line[0] for line in lines}
    assert {"batch", "commit", "checkpoint"} <= kinds, kinds
    assert all(before <= int(line[1]) <= after for line in lines)
    commits = [line for line in lines if line[0] == "commit"]
    # Every send was in some batch (a room is created outside the group commit), and
    # each batch's writer-thread CPU is measured.
    assert sum(int(line[4].removeprefix("n=")) for line in commits) == 40
    assert all(line[3] != "-" and int(line[3]) <= int(line[2]) + 1_000 for line in commits)
    batches = [line for line in lines if line[0] == "batch"]
    assert len(batches) == len(commits)
    assert all("fanout_us=" in line[4] for line in batches)
    checkpoint = next(line for line in lines if line[0] == "checkpoint")
    assert checkpoint[4].startswith("log=") and " copied=" in checkpoint[4]


async def test_without_the_setting_nothing_is_timed(tmp_path: Path) -> None:
    async with ChatSphereService(make_settings(tmp_path)) as chat:
        assert chat.timings is None
        assert chat.store._timings is None
        room = await chat.create_chat_room("alice", "group_chat", "r")
        await chat.send_message("alice", room.id, "hello")
    assert list(tmp_path.glob("*.log")) == []
