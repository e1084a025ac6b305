"""Threads that do a SQLite store's upkeep at a lower priority than the node's own."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

#: Niceness a background thread adds: the scheduler then gives the event loop's and the
#: writer's threads about ten times its share of a busy core, still several times what
#: checkpoints and full-text indexing need.
BACKGROUND_NICENESS = 10


def lower_thread_priority() -> None:
    """Lower the calling thread's scheduling priority (on Linux niceness is per thread).

    Meant as a thread pool's initializer. The WAL checkpoint and the full-text indexer
    run on the node's core: at equal priority each took turns with the event loop and
    the writer for tens of milliseconds at a time, and the deliveries of that window made
    the p99 at half the best rate. At a lower priority they are preempted whenever the
    loop or the writer has work, and use the time the node leaves idle.
    """
    try:
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))
    except (AttributeError, OSError):  # not Linux, or not allowed: equal priority then
        log.debug("could not lower a background thread's priority")
