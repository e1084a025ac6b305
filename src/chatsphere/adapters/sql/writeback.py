"""Writing a file's dirty pages back to disk a piece at a time (Linux ``sync_file_range``).

After each WAL checkpoint pass the database file holds a second's worth of dirty pages,
scattered over it. One ``fdatasync`` sends them all to the disk at once, and every group
commit's WAL sync that lands meanwhile waits behind that burst: on the virtual disk of the
benchmark host, commits of 4-7 ms of wall time for ~1 ms of CPU while the sync ran (bench/
PERFORMANCE.md, Changes). Written back piece by piece, waiting for each, the disk never
holds more than one piece ahead of a commit; the ``fdatasync`` after it finds little left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The smallest piece written back at once, and the most pieces per file (past 1 GiB the
#: pieces grow, so a pass costs at most ~1,000 calls of ~1 µs each on a clean file).
PIECE_BYTES = 1 << 20
MAX_PIECES = 1024

# sync_file_range(2): wait for writeback already under way, start it, wait for it.
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4
_WRITE_AND_WAIT = _WAIT_BEFORE | _WRITE | _WAIT_AFTER

SyncRange = Callable[[int, int, int, int], int]


def _load_sync_file_range() -> SyncRange | None:
    """libc's ``sync_file_range``, or None where there is none (not Linux)."""
    name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def write_back_gradually(fd: int) -> bool:
    """Write the dirty pages of ``fd``'s file back in pieces, waiting for each.

    Does not make them durable (the disk's cache is not flushed): call ``fdatasync``
    after it. False where the system has no ``sync_file_range`` or refused it; the
    caller's ``fdatasync`` then does all the work, as it would have anyway.
    """
    sync_range = _sync_file_range
    if sync_range is None:
        return False
    size = os.fstat(fd).st_size
    piece = max(PIECE_BYTES, -(-size // MAX_PIECES))
    for offset in range(0, size, piece):
        if sync_range(fd, offset, piece, _WRITE_AND_WAIT) != 0:
            log.debug("sync_file_range failed: %s", os.strerror(ctypes.get_errno()))
            return False
    return True
