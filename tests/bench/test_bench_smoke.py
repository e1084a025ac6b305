"""The benchmark harness keeps working: a tiny run against ChatSphere and both baselines.

Correctness only (every send acked, every member got every message); no timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_smoke() -> None:
    for module in ("picows", "socketio"):
        try:
            __import__(module)
        except ImportError:
            if IN_CI:
                pytest.fail(f"{module} missing: CI installs the bench extra")
            pytest.skip(f"{module} not installed (pip install -e '.[bench]')")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke: ok" in proc.stdout
