"""Host calibration: three figures that say how fast this machine is at what the scenarios do.

Results are ratios to baselines measured in the same run, but absolute figures (S3's
10,000 messages/s, a p99 in milliseconds) still depend on the host, and the hosts this
benchmark has run on differed by up to twice in what a delivery costs. The report prints
these next to the machine's name, so that two result files from different hosts can be
compared by what their hosts cost:

- **loopback send**: CPU on the sending core per ``send`` of one small WebSocket-sized frame
  over TCP on 127.0.0.1 to a reader on the other core. The kernel runs the receiver's side
  of loopback TCP inside the sender's system call, so this is most of what one fan-out
  delivery costs a server (S2 is 1,000 of them per message).
- **write + fdatasync**: wall time to append 16 KiB to a file and sync it, in the bench's
  work directory: what a durable commit waits for (S3, S4).
- **Python loop**: CPU time of a fixed piece of pure-Python work (dict and string
  operations): the interpreter's speed on this CPU.

Each is measured where the scenarios run (the sender on the server's CPU, the reader on
the generator's) and takes about a second.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.sysinfo import pinned

#: A frame the size of a chat event (the scenarios send ~150-byte events).
FRAME = b"\x81\x7e\x00\x96" + b"x" * 150
SENDS = 40_000
SYNCS = 300
SYNC_BYTES = 16 * 1024

_READER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = bytearray(1 << 20)
while s.recv_into(buf):
    pass
"""


@contextlib.contextmanager
def _pinned_to(cpu: int) -> Iterator[None]:
    """Run the calling thread on ``cpu`` for the block (Linux; elsewhere unpinned)."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None or cpu >= (os.cpu_count() or 1):
        yield
        return
    before = os.sched_getaffinity(0)
    setaffinity(0, {cpu})
    try:
        yield
    finally:
        setaffinity(0, before)


def loopback_send_us(sender_cpu: int, reader_cpu: int) -> float:
    """Median sender CPU (µs) per ``send`` of :data:`FRAME` over loopback TCP, of 3 rounds."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(10)
        reader = subprocess.Popen(
            pinned(str(reader_cpu), [sys.executable, "-c", _READER, str(port)])
        )
        try:
            conn, _ = server.accept()
            conn.settimeout(None)
            with conn, _pinned_to(sender_cpu):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                send = conn.send
                rounds = []
                for _ in range(3):
                    start = time.thread_time()
                    for _ in range(SENDS):
                        send(FRAME)
                    rounds.append((time.thread_time() - start) / SENDS * 1e6)
        finally:
            try:  # it stops once the connection closes
                reader.wait(timeout=10)
            except subprocess.TimeoutExpired:
                reader.kill()
                reader.wait()
    return round(statistics.median(rounds), 2)


def fdatasync_ms(directory: Path) -> tuple[float, float]:
    """(p50, p99) wall ms to append :data:`SYNC_BYTES` to a file in ``directory`` and sync."""
    sync = getattr(os, "fdatasync", os.fsync)
    path = directory / "calibrate-sync.bin"
    block = os.urandom(SYNC_BYTES)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(SYNCS):
            os.write(fd, block)
            start = time.perf_counter()
            sync(fd)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    times.sort()
    return round(times[len(times) // 2], 3), round(times[int(len(times) * 0.99)], 3)


def _python_work() -> int:
    total = 0
    for i in range(200_000):
        room = f"r{i % 100}"
        event = {"type": "message", "seq": i, "room": room}
        total += len(event) + len(room) + i % 7
    return total


def python_loop_ms(cpu: int) -> float:
    """Best of 5: CPU ms of :func:`_python_work` on ``cpu``."""
    best = float("inf")
    with _pinned_to(cpu):
        for _ in range(5):
            start = time.thread_time()
            _python_work()
            best = min(best, time.thread_time() - start)
    return round(best * 1e3, 1)


def calibrate(workdir: Path, server_cpu: int, generator_cpu: int) -> dict[str, Any]:
    """All three figures; a figure that could not be measured is left out."""
    result: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result["loopback_send_us"] = loopback_send_us(server_cpu, generator_cpu)
    with contextlib.suppress(OSError):
        p50, p99 = fdatasync_ms(workdir)
        result["fdatasync_p50_ms"], result["fdatasync_p99_ms"] = p50, p99
    result["python_loop_ms"] = python_loop_ms(server_cpu)
    return result


def describe(calibration: dict[str, Any]) -> str:
    """One sentence for the report; empty when nothing was measured."""
    parts = []
    if "loopback_send_us" in calibration:
        parts.append(
            f"a {len(FRAME)}-byte frame sent over loopback TCP costs "
            f"{calibration['loopback_send_us']} µs of the sender's CPU"
        )
    if "fdatasync_p50_ms" in calibration:
        parts.append(
            f"appending {SYNC_BYTES // 1024} KiB and syncing it takes "
            f"{calibration['fdatasync_p50_ms']} ms (p99 {calibration['fdatasync_p99_ms']})"
        )
    if "python_loop_ms" in calibration:
        parts.append(f"the reference Python loop takes {calibration['python_loop_ms']} ms")
    if not parts:
        return ""
    return (
        "Host calibration (`bench/calibrate.py`; compare these before comparing absolute "
        "figures between hosts): " + "; ".join(parts) + "."
    )


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(calibrate(Path(tmp), 0, 1)))
