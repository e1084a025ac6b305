"""The report's half-rate table sets each server's half-rate latency beside its best."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parents[2]


def recorded_s2() -> list[dict[str, Any]]:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    return [copy.deepcopy(c) for c in data["cases"] if c["scenario"] == "S2"]


def test_lowest_p99_is_the_best_passing_undisturbed_step() -> None:
    case = recorded_s2()[0]
    steps = case["result"]["steps"]
    for s in steps:
        s.update(ok=True, disturbed=False, p99_ms=20.0)
    steps[1].update(p99_ms=3.0, ok=False)  # failed: not a rate it sustained
    steps[2].update(p99_ms=4.0, disturbed=True)  # other load: not scored
    steps[3].update(p99_ms=6.5)
    steps[4].update(p99_ms=None)  # nothing measured

    low = report._lowest_p99(case)

    assert low is steps[3]


def test_half_rate_table_shows_the_lowest_p99_beside_the_half_rate_one() -> None:
    case = recorded_s2()[0]
    for s in case["result"]["steps"]:
        s.update(ok=True, disturbed=False, p99_ms=30.0)
    case["result"]["steps"][2].update(p99_ms=8.5, rate=16.0)

    lines = report._half_rate_table([case])

    row = next(line for line in lines if line.startswith(f"| {report._label(case)} |"))
    assert row.endswith("| 8.5 at 16.0 |"), row
    assert "Lowest p99 in the climb" in "\n".join(lines)
