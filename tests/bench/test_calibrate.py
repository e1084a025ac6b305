"""The host calibration measures something real, and the report describes the recorded host.

No timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import calibrate, report

ROOT = Path(__file__).resolve().parents[2]


def test_calibration_measures_each_figure(tmp_path: Path) -> None:
    figures = calibrate.calibrate(tmp_path, 0, 1)

    assert set(figures) == {
        "loopback_send_us",
        "fdatasync_p50_ms",
        "fdatasync_p99_ms",
        "python_loop_ms",
    }
    assert all(value > 0 for value in figures.values())
    assert figures["fdatasync_p50_ms"] <= figures["fdatasync_p99_ms"]
    assert list(tmp_path.iterdir()) == []  # the sync probe's file is gone


def test_report_describes_the_recorded_host_not_the_current_one(tmp_path: Path) -> None:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    meta = {
        **data["meta"],
        "machine": {
            "cpu": "Recorded CPU x 2",
            "memory": "8.0 GiB",
            "kernel": "6.1.0-test",
            "python": "3.11.9",
            "fd_limit": "1024/4096",
        },
        "postgres": {"server_version": "15.99", "shared_buffers": "128MB"},
        "calibration": {
            "loopback_send_us": 3.25,
            "fdatasync_p50_ms": 0.2,
            "fdatasync_p99_ms": 0.9,
            "python_loop_ms": 41.5,
        },
    }

    report.write_markdown(tmp_path / "RESULTS.md", meta, data["cases"], ROOT)

    text = (tmp_path / "RESULTS.md").read_text()
    assert "Machine: Recorded CPU x 2, 8.0 GiB, Linux 6.1.0-test, Python 3.11.9" in text
    assert "costs 3.25 µs of the sender's CPU" in text
    assert "takes 0.2 ms (p99 0.9)" in text
    assert "Python loop takes 41.5 ms" in text
    assert "PostgreSQL server 15.99" in text
    assert "(its settings: shared_buffers 128MB)." in text


def test_report_without_calibration_leaves_the_line_out(tmp_path: Path) -> None:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    meta = {k: v for k, v in data["meta"].items() if k != "calibration"}

    report.write_markdown(tmp_path / "RESULTS.md", meta, data["cases"], ROOT)

    assert "Host calibration" not in (tmp_path / "RESULTS.md").read_text()


def test_report_prints_the_host_speed_recorded_before_each_case(tmp_path: Path) -> None:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    # Only the two readings set here: the recorded results may carry their own.
    cases = [{k: v for k, v in c.items() if k != "host"} for c in data["cases"]]
    slow = {"loopback_send_us": 6.5, "fdatasync_p50_ms": 0.125, "python_loop_ms": 98.7}
    fast = {"loopback_send_us": 3.25, "fdatasync_p50_ms": 0.1, "python_loop_ms": 41.5}
    s3 = [c for c in cases if c["scenario"] == "S3"]
    s3[0]["host"], s3[1]["host"] = slow, fast

    report.write_markdown(tmp_path / "RESULTS.md", data["meta"], cases, ROOT)

    text = (tmp_path / "RESULTS.md").read_text()
    section = text.split("## Host speed before each case", 1)[1].split("## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| S")]
    assert rows == [
        f"| S3 | {report._label(s3[0])} | 98.7 | 6.50 | 0.125 |",
        f"| S3 | {report._label(s3[1])} | 41.5 | 3.25 | 0.100 |",
    ]


def test_a_run_without_readings_per_case_has_no_host_section(tmp_path: Path) -> None:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    cases = [{k: v for k, v in c.items() if k != "host"} for c in data["cases"]]
    report.write_markdown(tmp_path / "RESULTS.md", data["meta"], cases, ROOT)
    assert "## Host speed before each case" not in (tmp_path / "RESULTS.md").read_text()
