"""adapters/sql/writer.py: group commit batching, isolation of bad items, draining on close."""

from __future__ import annotations

import asyncio

import pytest

from chatsphere.adapters.sql.writer import GroupCommitWriter, WriterClosed


class Poisoned(Exception):
    pass


class Runner:
    """A batch runner that records its batches and fails any batch holding a poisoned item."""

    def __init__(self, poison: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.poison = poison
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        if self.gate is not None:
            await self.gate.wait()
        bad = [i for i in items if i in self.poison]
        if bad:
            raise Poisoned(f"poisoned item {bad[0]}")
        self.batches.append(list(items))
        return [i * 10 for i in items]


async def started(runner: Runner, max_batch: int = 512) -> GroupCommitWriter[int, int]:
    writer: GroupCommitWriter[int, int] = GroupCommitWriter(runner, max_batch)
    writer.start()
    return writer


async def test_concurrent_submits_share_few_batches() -> None:
    runner = Runner()
    writer = await started(runner)
    results = await asyncio.gather(*(writer.submit(i) for i in range(200)))
    assert results == [i * 10 for i in range(200)]
    assert sorted(i for batch in runner.batches for i in batch) == list(range(200))
    assert len(runner.batches) <= 3
    assert (writer.batches, writer.items) == (len(runner.batches), 200)
    await writer.close()


async def test_a_command_two_loop_passes_away_joins_the_next_batch() -> None:
    # While a batch commits, one command is already queued and a frame arrives whose
    # session needs two passes of the loop to submit (wake, then send): both must share
    # the next batch rather than the frame starting one of its own.
    runner = Runner()
    runner.gate = asyncio.Event()
    writer = await started(runner)
    arrived: list[asyncio.Task[int]] = []

    async def session(item: int) -> int:
        await asyncio.sleep(0)
        return await writer.submit(item)

    async def commit_then_frame(items: list[int]) -> list[int | Exception]:
        results = await Runner.__call__(runner, items)
        if items == [0]:
            arrived.append(asyncio.ensure_future(session(2)))
        return results

    writer._run_batch = commit_then_frame  # type: ignore[assignment]
    first = asyncio.ensure_future(writer.submit(0))
    for _ in range(5):
        await asyncio.sleep(0)  # the batch [0] is committing, held at the gate
    queued = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0)
    runner.gate.set()
    assert await asyncio.gather(first, queued) == [0, 10]
    assert await arrived[0] == 20
    assert runner.batches == [[0], [1, 2]]
    await writer.close()


async def test_batches_respect_the_maximum_and_keep_submission_order() -> None:
    runner = Runner()
    writer = await started(runner, max_batch=7)
    await asyncio.gather(*(writer.submit(i) for i in range(50)))
    assert all(len(batch) <= 7 for batch in runner.batches)
    assert [i for batch in runner.batches for i in batch] == list(range(50))
    await writer.close()


async def test_a_poisoned_item_does_not_fail_its_neighbours() -> None:
    runner = Runner(poison=frozenset({13}))
    writer = await started(runner)
    results = await asyncio.gather(*(writer.submit(i) for i in range(30)), return_exceptions=True)
    for i, result in enumerate(results):
        if i == 13:
            assert isinstance(result, Poisoned)
        else:
            assert result == i * 10
    committed = sorted(i for batch in runner.batches for i in batch)
    assert committed == [i for i in range(30) if i != 13]
    await writer.close()


async def test_a_per_item_error_is_returned_to_that_item_only() -> None:
    async def run(items: list[int]) -> list[int | Exception]:
        return [ValueError(str(i)) if i % 2 else i for i in items]

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(run, 100)
    writer.start()
    results = await asyncio.gather(*(writer.submit(i) for i in range(6)), return_exceptions=True)
    assert results[0::2] == [0, 2, 4]
    assert all(isinstance(r, ValueError) for r in results[1::2])
    await writer.close()


async def test_the_writer_keeps_working_after_a_failure() -> None:
    runner = Runner(poison=frozenset({1}))
    writer = await started(runner)
    with pytest.raises(Poisoned):
        await writer.submit(1)
    assert await writer.submit(2) == 20
    await writer.close()


async def test_close_drains_queued_work() -> None:
    runner = Runner()
    runner.gate = asyncio.Event()
    writer = await started(runner, max_batch=3)
    submits = [asyncio.ensure_future(writer.submit(i)) for i in range(10)]
    await asyncio.sleep(0)  # all ten are queued; the first batch waits at the gate
    closing = asyncio.ensure_future(writer.close())
    await asyncio.sleep(0)
    assert not closing.done()
    runner.gate.set()
    await closing
    assert [s.result() for s in submits] == [i * 10 for i in range(10)]
    assert writer.pending == 0


async def test_submit_after_close_raises_writer_closed() -> None:
    writer = await started(Runner())
    assert await writer.submit(1) == 10
    await writer.close()
    with pytest.raises(WriterClosed):
        await writer.submit(2)


async def test_submit_before_start_raises_writer_closed() -> None:
    writer: GroupCommitWriter[int, int] = GroupCommitWriter(Runner(), 10)
    with pytest.raises(WriterClosed):
        await writer.submit(1)


async def test_close_of_an_idle_writer_returns() -> None:
    writer = await started(Runner())
    await writer.close()
    await writer.close()  # twice is harmless
