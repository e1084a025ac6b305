"""The generator's slow-delivery log: what it writes, and only when asked.

No timing is asserted: the latencies are made up from fixed timestamps.
"""

from __future__ import annotations

import io

from bench import loadgen

START = 1_000_000_000


def _frame(sent_ns: int) -> bytes:
    return b'{"type":"new_message","data":{"content":{"text":"x","ts":%d}}}' % sent_ns


def test_deliveries_over_the_threshold_are_logged_with_send_time_and_latency() -> None:
    log = io.StringIO()
    rec = loadgen.Recorder(log, slow_ms=5.0)
    rec.reset(START)

    rec.delivery(_frame(START + 10), START + 10 + 2_000_000)  # 2 ms: not slow
    rec.delivery(_frame(START + 20), START + 20 + 7_500_000)  # 7.5 ms
    rec.delivery(_frame(START + 30), START + 30 + 5_000_000)  # exactly 5 ms: not over

    assert log.getvalue().splitlines() == [f"{START + 20} 7500000"]
    assert rec.delivered == 3  # scoring is unchanged


def test_stale_deliveries_and_a_recorder_without_a_log_write_nothing() -> None:
    log = io.StringIO()
    rec = loadgen.Recorder(log, slow_ms=1.0)
    rec.reset(START)
    rec.delivery(_frame(START - 1), START + 50_000_000)  # sent before the window
    assert log.getvalue() == ""
    assert rec.stale == 1

    quiet = loadgen.Recorder()
    quiet.reset(START)
    quiet.delivery(_frame(START), START + 50_000_000)
    assert quiet.slow_ns == 0
    assert quiet.delivered == 1


def test_the_command_line_passes_the_log_and_threshold_on() -> None:
    cfg = loadgen.parse_args(
        ["--target", "ws://127.0.0.1:9/ws", "--slow-log", "/tmp/slow.txt", "--slow-ms", "8"]
    )
    assert (cfg.slow_log, cfg.slow_ms) == ("/tmp/slow.txt", 8.0)
    assert loadgen.parse_args(["--target", "ws://127.0.0.1:9/ws"]).slow_log == ""
