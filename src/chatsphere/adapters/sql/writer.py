"""Group commit: many concurrent writes share one transaction and one fsync.

Callers ``await submit(item)``; a single task drains the queue in batches of up to
``max_batch`` and hands each batch to ``run_batch`` (one transaction). While one batch
commits, the next fills, so durability costs one commit per batch, not per message.
If a batch fails as a whole (say a unique-key race), each of its items is retried in
a transaction of its own so that one bad item cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ...errors import ChatError, ErrorCode

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger(__name__)

BatchRunner = Callable[[list[Item]], Awaitable[list[Result | Exception]]]

#: Passes of the event loop the writer lets run before it takes a batch. Commands that
#: a session task sends reach ``submit`` a pass after their frame was read (the task
#: wakes, then sends; a send the listener starts at once arrives in the same pass): with
#: one pass those commands missed the batch and started a small one of their own, and
#: every commit has a fixed cost (on SQLite ~160 µs of the writer's CPU, mostly the
#: WAL's sync). One pass more costs the idle case microseconds.
GATHER_PASSES = 2


class WriterClosed(ChatError):
    """The writer is shutting down and takes no new work (retry on another node)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SERVICE_UNAVAILABLE, message)


class GroupCommitWriter(Generic[Item, Result]):
    def __init__(self, run_batch: BatchRunner[Item, Result], max_batch: int) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="group-commit")

    async def submit(self, item: Item) -> Result:
        return await self.submit_nowait(item)

    def submit_nowait(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item``; the future resolves once its batch has committed (or failed).

        Items commit in the order they were queued, whichever way they were submitted.
        """
        if self._closing or self._task is None:
            raise WriterClosed("the store is closing")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wakeup.set()
        return future

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        """Stop taking work, commit everything already queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            # Let the senders that the last commit woke up run first, so their next
            # commands join this batch instead of trickling into tiny ones.
            for _ in range(GATHER_PASSES):
                await asyncio.sleep(0)
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run_batch(items)
        except Exception as exc:
            if len(batch) == 1:
                results = [exc]
            else:
                log.debug("batch of %d failed (%s); retrying one by one", len(batch), exc)
                for pair in batch:
                    await self._commit([pair])
                return
        self.batches += 1
        self.items += len(items)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
