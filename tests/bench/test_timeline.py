"""bench/timeline.py: slow deliveries grouped into incidents and matched to the node's events."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.timeline import (
    attach_events,
    group_incidents,
    main,
    read_node_log,
    read_slow_log,
    summary,
)

MS = 1_000_000


def write_slow(path: Path, rows: list[tuple[int, int]]) -> None:
    path.write_text("".join(f"{send} {latency}\n" for send, latency in rows))


def write_node(path: Path, rows: list[tuple[str, int, int, str, str]]) -> None:
    path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows))


def test_slow_deliveries_close_together_form_one_incident(tmp_path: Path) -> None:
    slow = tmp_path / "slow.log"
    write_slow(
        slow,
        [
            (1_000 * MS, 30 * MS),
            (1_005 * MS, 25 * MS),
            (1_012 * MS, 6 * MS),  # under the threshold: left out
            (1_018 * MS, 12 * MS),
            (2_000 * MS, 15 * MS),  # a second apart: its own incident
        ],
    )
    incidents = group_incidents(read_slow_log(slow, threshold_ms=10), gap_ms=20)
    assert [(i.count, i.worst_ms) for i in incidents] == [(3, 30.0), (1, 15.0)]
    assert incidents[0].first_send_ns == 1_000 * MS
    assert incidents[0].last_delivery_ns == 1_030 * MS


def test_each_incident_gets_the_node_events_around_it(tmp_path: Path) -> None:
    slow, node = tmp_path / "slow.log", tmp_path / "node.log"
    write_slow(slow, [(1_000 * MS, 30 * MS), (1_005 * MS, 25 * MS), (5_000 * MS, 12 * MS)])
    write_node(
        node,
        [
            # a long checkpoint pass that began before the incident and ran into it
            ("checkpoint", 900 * MS, 120_000, "3000", "log=10 copied=10 sync_us=9000"),
            # a slow commit inside it, and a fast one that is not notable
            ("commit", 1_002 * MS, 25_000, "600", "n=12"),
            ("commit", 1_010 * MS, 500, "400", "n=12"),
            # long over before the incident began
            ("gc", 100 * MS, 4_000, "-", "gen=0 collected=3"),
            ("not a line",),
        ],
    )
    incidents = group_incidents(read_slow_log(slow, 10), 20)
    attach_events(incidents, read_node_log(node))
    first, second = incidents
    assert [e.kind for e in first.events] == ["checkpoint", "commit"]
    assert first.events[1].wall_ns == 25 * MS and first.events[1].cpu_ns == 600_000
    assert second.events == []
    lines = summary(incidents)
    assert lines[0] == "2 incidents, 3 slow deliveries"
    assert "  checkpoint       1 (50 %)" in lines
    assert "  nothing          1 (50 %)" in lines


def test_the_command_prints_the_summary_and_the_worst_incident(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow, node = tmp_path / "slow.log", tmp_path / "node.log"
    write_slow(slow, [(1_000 * MS, 40 * MS)])
    write_node(node, [("lag", 1_010 * MS, 30_000, "-", "")])
    assert main(["--slow", str(slow), "--node", str(node), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 incidents, 1 slow deliveries" in out
    assert "worst 40.0 ms" in out
    assert "+10.0 ms lag          wall   30.00 ms" in out
