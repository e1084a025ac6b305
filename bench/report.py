"""Turn benchmark results into ``RESULTS.md``, ``results.png`` and ``results.json``."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.calibrate import describe
from bench.scenarios import SCENARIOS, SERVER_TITLES, SHORT_TITLES
from bench.sysinfo import git_revision, machine_summary, package_version

Case = dict[str, Any]

PACKAGES = (
    "chatsphere",
    "websockets",
    "picows",
    "python-socketio",
    "python-engineio",
    "uvicorn",
    "uvloop",
    "orjson",
    "SQLAlchemy",
    "aiosqlite",
    "asyncpg",
    "matplotlib",
)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def _codes(codes: dict[str, int] | None) -> str:
    """``0`` or ``N (code: n, ...)`` for connections the server closed."""
    if not codes:
        return "0"
    total = sum(codes.values())
    return f"{total:,} (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(codes.items())) + ")"


def _srv(step: dict[str, Any]) -> str:
    """Server CPU, plus the database's when it was measured."""
    text = _fmt(step.get("server_cpu_pct"))
    if step.get("aux_cpu_pct") is not None:
        text += f" (+{_fmt(step['aux_cpu_pct'])} PostgreSQL)"
    return text


def _label(case: Case) -> str:
    name = str(SHORT_TITLES.get(case["server"], case["server"]))
    if case["server"] == "chatsphere":
        return f"{name} ({'SQLite' if case['db'] == 'sqlite' else 'PostgreSQL'})"
    return name


def postgres_version() -> str:
    """Server version of the local PostgreSQL, if psql can tell."""
    if not shutil.which("psql"):
        return "-"
    try:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "show server_version", "test"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "-"
    return out.stdout.strip() or "-"


def _baseline(cases: list[Case], scenario: str, server: str) -> Case | None:
    for c in cases:
        if c["scenario"] == scenario and c["server"] == server:
            return c
    return None


def _s1_section(cases: list[Case]) -> list[str]:
    rows = [c for c in cases if c["scenario"] == "S1"]
    lines = [
        "| Server | Connections held | RSS / connection (KiB) | Idle CPU (%) | "
        "Connects/s | Server CPU while connecting (%) | Closed by the server so far "
        "(close codes) | Other processes' CPU while idle (%) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    recon = [
        "| Server | Connections | Reconnected | Seconds (drop + reconnect) | Reconnects/s | "
        "Server CPU (%) | RSS after (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    beats = [
        "| Server | Connections | Seconds | Pings answered | Pings/s | Server CPU (%) | "
        "Probe p50 (ms) | Probe p99 (ms) | Probe max (ms) | Probe alone p99 / max (ms) | "
        "Dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    per_conn: dict[str, float | None] = {}
    probe_rate = None
    for c in rows:
        r = c["result"]
        if r.get("aborted") and not r.get("levels"):
            lines.append(f"| {_label(c)} | not run: {r['aborted'][:120]} | | | | | | |")
            continue
        for lv in r.get("levels", []):
            lines.append(
                f"| {_label(c)} | {_fmt(lv['connected'])} of {_fmt(lv['level'])} | "
                f"{_fmt(lv['rss_per_conn_kib'])} | {_fmt(lv['idle_cpu_pct'])} | "
                f"{_fmt(lv['connects_per_s'])} | {_fmt(lv['connect_server_cpu_pct'])} | "
                f"{_codes(lv.get('server_close_codes'))} | {_fmt(lv.get('other_cpu_pct'))} |"
            )
            per_conn[c["server"]] = lv["rss_per_conn_kib"]
        rc = r.get("reconnect")
        if rc:
            rss_after = rc.get("rss_after_kib")
            recon.append(
                f"| {_label(c)} | {_fmt(rc['connections'])} | {_fmt(rc['reconnected'])} | "
                f"{_fmt(rc['total_s'], 2)} | {_fmt(rc['reconnects_per_s'])} | "
                f"{_fmt(rc['server_cpu_pct'])} | "
                f"{_fmt(rss_after / 1024 if rss_after else None)} |"
            )
        hb, alone = r.get("heartbeat"), r.get("probe_alone")
        if hb:
            probe = hb["probe"]
            probe_rate = probe["rate"]
            before = f"{_fmt(alone['p99_ms'])} / {_fmt(alone['max_ms'])}" if alone else "–"
            beats.append(
                f"| {_label(c)} | {_fmt(hb['connections'])} | {_fmt(hb['seconds'])} | "
                f"{_fmt(hb['pings'])} | {_fmt(hb['pings_per_s'])} | {_fmt(hb['server_cpu_pct'])} | "
                f"{_fmt(probe['p50_ms'])} | {_fmt(probe['p99_ms'])} | {_fmt(probe['max_ms'])} | "
                f"{before} | {_fmt(hb['drops'])} |"
            )
    out = [*lines, "", "Mass reconnect (every client drops at once and reconnects):", "", *recon]
    if len(beats) > 2:
        out += [
            "",
            "Heartbeat rounds: right after the mass reconnect, every connection is held through "
            "at least one heartbeat interval of the server's default (ChatSphere 25 s, "
            "websockets 20 s, Socket.IO 25 s), its pings answered by the generator, while a "
            f"probe room of its own (10 members, 2 senders, {_fmt(probe_rate)} msg/s) measures "
            "delivery "
            "latency; the probe also ran alone, before any idle connection was opened. "
            "Server CPU includes the probe's.",
            "",
            *beats,
        ]
    cs = per_conn.get("chatsphere")
    if cs:
        out += [
            "",
            "RSS per connection, ChatSphere vs websockets: "
            f"{_ratio(cs, per_conn.get('websockets'))}; vs Socket.IO: "
            f"{_ratio(cs, per_conn.get('socketio'))} (at the highest level held).",
        ]
    return out


def _traffic_section(cases: list[Case], key: str, p99_limit: float) -> list[str]:
    rows = [c for c in cases if c["scenario"] == key]
    ws = _baseline(cases, key, "websockets")
    sio = _baseline(cases, key, "socketio")

    def best_of(c: Case | None) -> dict[str, Any] | None:
        return c["result"].get("best") if c else None

    ws_best, sio_best = best_of(ws), best_of(sio)
    ws_rate = ws_best["deliveries_per_s"] if ws_best else None
    sio_rate = sio_best["deliveries_per_s"] if sio_best else None
    lines = [
        f"Best sustained step (p99 delivery ≤ {p99_limit:g} ms, everything delivered and acked):",
        "",
        "| Server | Messages in/s (acked) | Deliveries/s | p50 (ms) | p99 (ms) | Ack p50 (ms) | "
        "Ack p99 (ms) | Server CPU (%) | Generator CPU (%) | Deliveries vs websockets | "
        "vs Socket.IO |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        r = c["result"]
        b = r.get("best")
        if not b:
            why = r.get("aborted") or "no step met the limits"
            peak = r.get("peak")
            extra = ""
            if peak:
                extra = (
                    f"; most it delivered: {_fmt(peak['deliveries_per_s'])}/s at p99 "
                    f"{_fmt(peak['p99_ms'])} ms"
                )
            first = r.get("first")
            if first and not peak:
                extra = f"; at {_fmt(first['rate'])} msg/s p99 was {_fmt(first['p99_ms'])} ms"
            lines.append(f"| {_label(c)} | {why[:160]}{extra} | | | | | | | | | |")
            continue
        lines.append(
            f"| {_label(c)} | {_fmt(b['messages_per_s'])} | {_fmt(b['deliveries_per_s'])} | "
            f"{_fmt(b['p50_ms'])} | {_fmt(b['p99_ms'])} | {_fmt(b['ack_p50_ms'])} | "
            f"{_fmt(b['ack_p99_ms'])} | {_srv(b)} | {_fmt(b['gen_cpu_pct'])} | "
            f"{_ratio(b['deliveries_per_s'], ws_rate)} | "
            f"{_ratio(b['deliveries_per_s'], sio_rate)} |"
        )
    if key == "S4":
        lines += [
            "",
            "Ack latency at the first (lowest) rate, where the store and not the CPU sets it:",
            "",
            "| Server | Offered msg/s | Ack p50 (ms) | Ack p99 (ms) | Delivery p50 (ms) | "
            "Delivery p99 (ms) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in rows:
            f = c["result"].get("first")
            if f:
                lines.append(
                    f"| {_label(c)} | {_fmt(f['rate'])} | {_fmt(f['ack_p50_ms'])} | "
                    f"{_fmt(f['ack_p99_ms'])} | {_fmt(f['p50_ms'])} | {_fmt(f['p99_ms'])} |"
                )
    lines += _half_rate_table(rows)
    lines += ["", "<details><summary>Every measured step</summary>", ""]
    lines += [
        "| Server | Step | Offered msg/s | Msg/s | Deliveries/s | p50 | p99 | Ack p99 | "
        "Server CPU % | Gen CPU % | Other CPU % | Steal % | Verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in rows:
        for s in c["result"].get("steps", []):
            verdict = "ok" if s["ok"] else s["reason"].replace("|", "/")
            if s.get("disturbed"):
                verdict = f"disturbed by other load, repeated ({verdict})"
            lines.append(
                f"| {_label(c)} | {s['step']} | {_fmt(s['rate'])} | {_fmt(s['messages_per_s'])} | "
                f"{_fmt(s['deliveries_per_s'])} | {_fmt(s['p50_ms'])} | {_fmt(s['p99_ms'])} | "
                f"{_fmt(s['ack_p99_ms'])} | {_srv(s)} | "
                f"{_fmt(s['gen_cpu_pct'])} | {_fmt(s.get('other_cpu_pct'))} | "
                f"{_fmt(s.get('steal_pct'))} | {verdict} |"
            )
    lines += ["", "</details>"]
    return lines


def _lowest_p99(case: Case) -> dict[str, Any] | None:
    """The climb's passing step with the lowest p99: the best latency this server gave at
    any rate, which bounds what the half-rate step can reach (in S2 one message's fan-out
    to 1,000 sockets on one core takes about that long whatever the rate)."""
    passing = [
        s
        for s in case["result"].get("steps", [])
        if s["ok"] and not s.get("disturbed") and s["p99_ms"] is not None
    ]
    return min(passing, key=lambda s: s["p99_ms"], default=None)


def _half_rate_table(rows: list[Case]) -> list[str]:
    """Latency at half the best sustained rate (the target: p99 under 10 ms there)."""
    measured = [(c, c["result"].get("half")) for c in rows if c["result"].get("best")]
    if not any(h for _, h in measured):
        return []
    lines = [
        "",
        "Latency at half the best sustained rate (after a warm-up at that rate), beside the "
        "lowest p99 of any passing step of the climb:",
        "",
        "| Server | Offered msg/s | Deliveries/s | p50 (ms) | p99 (ms) | Ack p99 (ms) | "
        "Server CPU (%) | Generator CPU (%) | Steal (%) | Verdict | "
        "Lowest p99 in the climb (ms, at msg/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for c, h in measured:
        low = _lowest_p99(c)
        lowest = f"{_fmt(low['p99_ms'])} at {_fmt(low['rate'])}" if low else ""
        if not h:
            lines.append(f"| {_label(c)} | not measured | | | | | | | | | {lowest} |")
            continue
        verdict = "ok" if h["ok"] else h["reason"].replace("|", "/")
        lines.append(
            f"| {_label(c)} | {_fmt(h['rate'])} | {_fmt(h['deliveries_per_s'])} | "
            f"{_fmt(h['p50_ms'])} | {_fmt(h['p99_ms'])} | {_fmt(h['ack_p99_ms'])} | {_srv(h)} | "
            f"{_fmt(h['gen_cpu_pct'])} | {_fmt(h.get('steal_pct'))} | {verdict} | {lowest} |"
        )
    return lines


def _limits(cases: list[Case]) -> list[str]:
    notes = [
        "- Two cores: the server under test is pinned to CPU 0 and the generator to CPU 1; "
        "every server runs one process and one event loop. Loopback TCP costs land on both "
        "CPUs, so these are single-core figures, not what a many-core host would give.",
        "- Latency is measured from the sender's `time.monotonic_ns()` (carried in "
        "`content.ts`) to the moment the generator's callback sees the frame; it includes the "
        "generator's own read queue. Lost deliveries count as infinitely late in p99.",
        "- A step passes when p99 delivery ≤ the limit, every delivery arrived, every send "
        "was acked, no error came back, and deliveries kept pace with the sends.",
        "- The baselines keep nothing and check no token; ChatSphere verifies every JWT, "
        "commits each message before acking and fanning it out.",
        "- Fan-out to 1,000 members (S2) is as costly to read as to write: the generator "
        "receives every delivery on its one core, so near the top of S2 compare 'Generator "
        "CPU' with 'Server CPU' — when both are high, the generator shares the limit.",
        "- The machine is shared: a step during which other load took more than 30% of a "
        "core is flagged as disturbed, left out of the scoring and run again (a bounded "
        "number of times). 'Other CPU %' in the step tables is the machine's busy time beyond "
        "the server, the generator and PostgreSQL: other processes, kernel threads, and time "
        "the hypervisor gave to other guests ('Steal %', also shown on its own). Steal "
        "slows the server and the generator without showing in their own CPU figures.",
    ]
    saturated = []
    for c in cases:
        half = c["result"].get("half")
        for s in c["result"].get("steps", []) + ([half] if half else []):
            if s["gen_cpu_pct"] >= 90:
                saturated.append(f"{c['scenario']} {_label(c)} at {_fmt(s['rate'])} msg/s")
                break
    if saturated:
        notes.append(
            "- The generator's CPU reached ≥ 90% in: "
            + "; ".join(saturated)
            + ". Figures there may be limited by the generator rather than the server."
        )
    else:
        notes.append("- The generator's CPU stayed below 90% in every step.")
    disturbed = []
    for c in cases:
        samples = [s for s in c["result"].get("steps", []) if not s.get("disturbed")]
        samples += c["result"].get("levels", [])
        worst = max((s.get("other_cpu_pct") or 0.0 for s in samples), default=0)
        if worst > 20 or (c.get("background_cpu_pct") or 0) > 25:
            disturbed.append(
                f"{c['scenario']} {_label(c)} (up to {worst:.0f}% of a core in other load; "
                f"{c.get('background_cpu_pct', 0):.0f}% before it started)"
            )
    if disturbed:
        notes.append(
            "- Other load (processes or steal) took CPU during: "
            + "; ".join(disturbed)
            + ". Those figures are lower than a quiet machine would give."
        )
    failed = [c for c in cases if c["result"].get("aborted") or c["result"].get("server_died")]
    for c in failed:
        r = c["result"]
        why = r.get("aborted") or "server exited: " + str(r.get("server_died"))[-300:]
        notes.append(f"- {c['scenario']} {_label(c)} did not complete: {why}")
    return notes


def _host_section(cases: list[Case]) -> list[str]:
    """The host's speed just before each case (recorded by runs since 2026-12-05 17:45).

    The ratios compare cases run minutes apart, and a virtual machine's speed can move
    by a third in that time; these readings say whether it did.
    """
    measured = [c for c in cases if c.get("host")]
    if not measured:
        return []
    lines = [
        "## Host speed before each case",
        "",
        "`bench/calibrate.py` again, right before each case's server started: a ratio between "
        "two cases holds as far as these agree.",
        "",
        "| Case | Server | Python loop (ms) | Loopback send (µs) | Append + fdatasync p50 (ms) |",
        "|---|---|---:|---:|---:|",
    ]
    for c in measured:
        host = c["host"]
        lines.append(
            f"| {c['scenario']} | {_label(c)} | {_fmt(host.get('python_loop_ms'))} | "
            f"{_fmt(host.get('loopback_send_us'), 2)} | {_fmt(host.get('fdatasync_p50_ms'), 3)} |"
        )
    return [*lines, ""]


def write_markdown(path: Path, meta: dict[str, Any], cases: list[Case], root: Path) -> None:
    """Write ``RESULTS.md``."""
    # Recorded by the run since 2026-12-05; older files are described by this machine.
    machine = meta.get("machine") or machine_summary()
    calibration = describe(meta.get("calibration") or {})
    versions = {name: package_version(name) for name in PACKAGES}
    versions["SQLite"] = sqlite3.sqlite_version
    pg = dict(meta.get("postgres") or {})  # recorded by the run since 2026-12-05
    versions["PostgreSQL server"] = pg.pop("server_version", None) or postgres_version()
    pg_settings = (
        " (its settings: " + ", ".join(f"{k} {v}" for k, v in pg.items()) + ")" if pg else ""
    )
    revision = meta.get("revision") or git_revision(root)  # recorded by runs since 2026-12-02
    lines = [
        "# ChatSphere benchmark results",
        "",
        f"Produced by `{meta['command']}` (profile **{meta['profile']}**) on {meta['started']}, "
        f"in {meta['duration_s']} s. Source revision: `{revision}`.",
        "",
        f"Machine: {machine['cpu']}, {machine['memory']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}, open-file limit {machine['fd_limit']}.",
        "",
        *([calibration, ""] if calibration else []),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Servers:",
        "",
        "- **ChatSphere**: `python -m chatsphere serve` with "
        "`AUTH_MODE=jwt RATE_LIMIT_ENABLED=false MODERATION_ENABLED=false LOG_LEVEL=WARNING`, "
        "SQLite (WAL, synchronous=FULL) in a fresh file per scenario, PostgreSQL where "
        f"stated, in a database created empty per scenario on the server of `{meta['pg_url']}`"
        f"{pg_settings}.",
        f"- **websockets**: {SERVER_TITLES['websockets']}, `bench/baselines/ws_broadcast.py`: "
        "the same frames, one `broadcast()` per message, no persistence, uvloop.",
        f"- **Socket.IO**: {SERVER_TITLES['socketio']}, `bench/baselines/socketio_server.py`: "
        "`AsyncServer` rooms and `emit(room=...)`, no persistence, uvicorn defaults.",
        "",
        "Load: `bench/loadgen.py` (picows clients, one process), real HS256 JWTs, "
        "rates stepped up (×2) until p99 delivery passes 50 ms or deliveries fall behind, "
        "then bisected between the last passing and first failing rate until they are within "
        "8 % of each other (full profile). After the climb, "
        "half the best sustained rate runs for a warm-up and then one measured step (10 s in "
        "the full profile): the latency there (repeated once if only its tail failed, as in "
        "the climb). Before "
        "each scenario, after every failing step and before the half-rate step, the "
        "machine's dirty pages are written to disk (`sync`), so that no step waits behind "
        "the writeback of what an earlier one stored; on PostgreSQL a `CHECKPOINT` runs "
        "first, so that no step has to create the WAL segments an earlier one used up.",
        "",
    ]
    by_key = {k: [c for c in cases if c["scenario"] == k] for k in meta["scenarios"]}
    for key, rows in by_key.items():
        if not rows:
            continue
        lines += [f"## {SCENARIOS[key].title_for(meta['profile'])}", ""]
        if SCENARIOS[key].mode == "idle":
            lines += _s1_section(cases)
        else:
            limit = 50.0
            for c in rows:
                cfg = c["result"].get("config") or {}
                limit = float(cfg.get("p99_limit_ms", limit))
            lines += _traffic_section(cases, key, limit)
        lines.append("")
    lines += _host_section(cases)
    lines += ["## Limits of this measurement", "", *_limits(cases), ""]
    lines += [
        "## Reproduce",
        "",
        "```",
        "make bench          # .venv/bin/python bench/run.py --quick   (~4 min on a quiet machine)",
        "make bench-full     # .venv/bin/python bench/run.py --full    (~15-20 min)",
        ".venv/bin/python -m bench.run --smoke    # correctness only, ~10 s",
        "```",
        "",
        "`bench/results.json` holds every step of this run; `bench/results.png` plots "
        "deliveries/s and p99 against the offered rate.",
        "",
    ]
    path.write_text("\n".join(lines))


def write_plot(path: Path, cases: list[Case], profile: str) -> bool:
    """Deliveries/s and p99 against the offered rate, one line per server; False if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    keys = []
    for c in cases:
        if c["result"].get("steps") and c["scenario"] not in keys:
            keys.append(c["scenario"])
    if not keys:
        return False
    fig, axes = plt.subplots(2, len(keys), figsize=(5.4 * len(keys), 8.4), squeeze=False)
    colors = {"chatsphere": "tab:blue", "websockets": "tab:green", "socketio": "tab:orange"}
    for col, key in enumerate(keys):
        top, bottom = axes[0][col], axes[1][col]
        limit = 50.0
        for c in cases:
            if c["scenario"] != key or not c["result"].get("steps"):
                continue
            # One point per rate: the last undisturbed step at it (a repeat decides).
            by_rate: dict[float, dict[str, Any]] = {}
            for step in sorted(c["result"]["steps"], key=lambda s: s["step"]):
                if not step.get("disturbed"):
                    by_rate[step["rate"]] = step
            steps = [by_rate[r] for r in sorted(by_rate)]
            style = "--" if c["db"] == "postgres" else "-"
            color = colors.get(c["server"], "tab:gray")
            for ax, field, pts in (
                (top, "deliveries_per_s", steps),
                (bottom, "p99_ms", [s for s in steps if s["p99_ms"] is not None]),
            ):
                if not pts:
                    continue
                xs = [s["rate"] for s in pts]
                ys = [s[field] for s in pts]
                ax.plot(xs, ys, style, color=color, linewidth=1.2, label=_label(c))
                ax.scatter(
                    xs,
                    ys,
                    facecolors=[color if s["ok"] else "white" for s in pts],
                    edgecolors=color,
                    zorder=3,
                )
            lost = [s["rate"] for s in steps if s["p99_ms"] is None and s["expected"]]
            if lost:
                bottom.scatter(lost, [2000] * len(lost), marker="x", color=color)
            limit = float((c["result"].get("config") or {}).get("p99_limit_ms", limit))
        bottom.axhline(limit, color="red", linewidth=0.8, linestyle=":", label=f"{limit:g} ms")
        top.set_title(SCENARIOS[key].title_for(profile), fontsize=8)
        top.set_ylabel("deliveries/s")
        bottom.set_ylabel("p99 delivery latency (ms); x = deliveries lost")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("offered messages/s")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())
    fig.suptitle(
        "ChatSphere vs baselines: deliveries/s and p99 against the offered rate "
        "(filled: the step met every limit; hollow: it did not; last run at each rate)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(out_dir: Path, meta: dict[str, Any], cases: list[Case], root: Path) -> None:
    """Write the three result files into ``out_dir``."""
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "cases": cases}, indent=1))
    write_plot(out_dir / "results.png", cases, meta["profile"])
    write_markdown(out_dir / "RESULTS.md", meta, cases, root)


def main(argv: list[str] | None = None) -> int:
    """Rewrite the report and plot from the results.json of a finished run."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir", nargs="?", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    data = json.loads((out_dir / "results.json").read_text())
    write_all(out_dir, data["meta"], data["cases"], Path(__file__).resolve().parent.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
