"""S1's heartbeat rounds: the generator answers and counts a node's pings while a probe
room measures delivery. Correctness only (pings counted, nothing lost); no timing."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from bench.run import RunContext, run_loadgen, start_server

pytestmark = pytest.mark.slow

CONNECTIONS = 100


def test_the_generator_answers_and_counts_heartbeats_during_the_probe() -> None:
    pytest.importorskip("picows")
    workdir = Path(tempfile.mkdtemp(prefix="chatsphere-bench-test-"))
    ctx = RunContext(python=sys.executable, workdir=workdir, pg_url="", quiet_wait=0)
    # A one-second interval, so a few seconds hold several rounds.
    node = start_server(ctx, "chatsphere", "sqlite", {"HEARTBEAT_INTERVAL": "1"}, "heartbeat")
    try:
        args = ["--mode", "idle", "--levels", str(CONNECTIONS), "--idle-seconds", "0.5"]
        args += ["--settle-seconds", "0.2", "--heartbeat-seconds", "4", "--probe-rate", "20"]
        result = run_loadgen(ctx, [node], args, "heartbeat", 60)
    finally:
        node.stop()
    assert result.get("ok"), result
    rounds = result["heartbeat"]
    # Every connection (and the probe's ten) was pinged, answered and kept, several times.
    assert rounds["connections"] == CONNECTIONS
    assert rounds["pings"] >= 3 * CONNECTIONS
    assert rounds["drops"] == 0
    for probe in (result["probe_alone"], rounds["probe"]):
        assert probe["sent"] > 0 and probe["acked"] == probe["sent"]
        assert probe["delivered"] == probe["expected"] == probe["sent"] * 10
