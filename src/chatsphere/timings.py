"""The node's own timings on the monotonic clock, for finding what made a delivery slow.

Off unless ``TIMINGS_LOG`` names a file. A slow delivery is seldom slow on its own: it
waited behind a group commit whose sync was slow, a checkpoint pass that held the disk, a
garbage collection, or a loop that was busy elsewhere. This log records each of those with
its start on ``CLOCK_MONOTONIC``, the clock the benchmark's generator stamps its slow
deliveries with (``python -m bench.loadgen … --slow-log``), so the two can be read side by
side (``python -m bench.timeline``).

One line per event, tab-separated: kind, start (ns), wall time (µs), the thread's CPU time
(µs, or ``-`` where not measured), then ``key=value`` details. The kinds:

- ``batch``: a group commit on the event loop, from handing the batch to the writer
  thread until its events were fanned out (``n`` commands, ``fanout_us``).
- ``commit``: the same batch's transaction in the writer thread (``n``).
- ``checkpoint``: a WAL pass in the checkpoint thread (``log`` frames in the WAL,
  ``copied`` frames, ``sync_us`` for syncing the database file).
- ``wal_restart``: the writer finishing a checkpoint between two commits (``complete``).
- ``search``: a round of feeding the full-text index, seen from the loop (``indexed``).
- ``gc``: a garbage collection, in whichever thread ran it (``gen``, ``collected``).
- ``lag``: the event loop woke a probe more than :data:`LAG_THRESHOLD_MS` late.

Lines are kept in memory and written once a second by the loop, and at close. Recording
costs a clock read or two and a tuple per event; the lag probe wakes the loop every
:data:`LAG_PROBE_MS` ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

#: How often the lag probe asks to be woken, and how late it must be to be logged.
LAG_PROBE_MS = 5.0
LAG_THRESHOLD_MS = 2.0
#: Seconds between writes of the recorded lines.
FLUSH_INTERVAL = 1.0

_Entry = tuple[str, int, int, int | None, str]


class TimingLog:
    """Collects timed events from any thread and appends them to a file.

    :meth:`record` may be called from any thread (appending to a deque is atomic);
    :meth:`start` and :meth:`close` run on the event loop.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: deque[_Entry] = deque()
        self._file: TextIO | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._gc_start = 0
        self.recorded = 0

    def record(
        self, kind: str, start_ns: int, wall_ns: int, cpu_ns: int | None = None, detail: str = ""
    ) -> None:
        """Log one event that began at ``start_ns`` (``time.monotonic_ns()``)."""
        self._entries.append((kind, start_ns, wall_ns, cpu_ns, detail))
        self.recorded += 1

    def record_since(self, kind: str, start_ns: int, cpu_start_ns: int, detail: str = "") -> None:
        """Log an event of the calling thread that began at ``start_ns``, when its CPU
        clock (``time.thread_time_ns()``) read ``cpu_start_ns``; it ends now."""
        wall = time.monotonic_ns() - start_ns
        self.record(kind, start_ns, wall, time.thread_time_ns() - cpu_start_ns, detail)

    async def start(self) -> None:
        """Open the file, install the collector's callback, start the flush and lag tasks."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        gc.callbacks.append(self._on_gc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flush_periodically(), name="timings-flush"),
            loop.create_task(self._probe_lag(), name="timings-lag"),
        ]

    async def close(self) -> None:
        """Stop the tasks and the collector's callback, write what is left, close the file."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def flush(self) -> None:
        """Write the recorded lines."""
        if self._file is None:
            return
        entries = self._entries
        lines = []
        while entries:
            kind, start_ns, wall_ns, cpu_ns, detail = entries.popleft()
            cpu = "-" if cpu_ns is None else str(cpu_ns // 1000)
            lines.append(f"{kind}\t{start_ns}\t{wall_ns // 1000}\t{cpu}\t{detail}\n")
        if lines:
            self._file.writelines(lines)
            self._file.flush()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # A collection holds the GIL from start to stop, so starts and stops never interleave.
        if phase == "start":
            self._gc_start = time.monotonic_ns()
        else:
            now = time.monotonic_ns()
            detail = f"gen={info.get('generation')} collected={info.get('collected')}"
            self.record("gc", self._gc_start, now - self._gc_start, None, detail)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()

    async def _probe_lag(self) -> None:
        period_ns = int(LAG_PROBE_MS * 1e6)
        threshold_ns = int(LAG_THRESHOLD_MS * 1e6)
        while True:
            asked = time.monotonic_ns()
            await asyncio.sleep(LAG_PROBE_MS / 1000)
            late = time.monotonic_ns() - asked - period_ns
            if late > threshold_ns:
                self.record("lag", asked + period_ns, late)
