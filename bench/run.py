"""Run the benchmark: ChatSphere and both baselines, every scenario, then write the report.

Each server runs as its own subprocess pinned to CPU 0 (``taskset -c 0``), freshly started
for every scenario; the load generator (``bench/loadgen.py``) runs pinned to CPU 1. All load
targets 127.0.0.1 and every run is bounded in time.

Usage (from the repository root; ``python bench/run.py`` works the same)::

    .venv/bin/python -m bench.run                 # quick profile (~4 min), default scenarios
    .venv/bin/python -m bench.run --full          # complete profile (~15 min)
    .venv/bin/python -m bench.run --smoke         # a few connections and messages, < 20 s;
                                                  # exit status 1 if anything failed
    .venv/bin/python -m bench.run --scenarios S2,S3 --servers chatsphere,websockets

The quick and full runs write ``bench/RESULTS.md``, ``bench/results.png`` and
``bench/results.json`` (``--out-dir`` changes where).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a script (``python bench/run.py``): make the ``bench`` package importable.
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.calibrate import calibrate  # noqa: E402
from bench.scenarios import (  # noqa: E402
    DEFAULT_SCENARIOS,
    SCENARIOS,
    SERVERS,
    Profile,
    Scenario,
)
from bench.sysinfo import HostMeter, git_revision, machine_summary, pinned  # noqa: E402

BENCH = ROOT / "bench"
JWT_SECRET = "bench-secret-0123456789-chatsphere-benchmark"  # >= 32 bytes, as the server asks
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SERVER_CPU = "0"
GENERATOR_CPU = "1"


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port_pair() -> int:
    """A port P such that P and P+1 are both free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port pair found")


def tcp_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections at host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@dataclass
class ServerProcess:
    """One running server under test."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    protocol: str
    http: str | None = None

    @property
    def ws_target(self) -> str:
        """The WebSocket URL the generator connects to."""
        if self.protocol == "socketio":
            return f"ws://127.0.0.1:{self.port}"
        return f"ws://127.0.0.1:{self.port}/ws"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it does not exit within 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class RunContext:
    """What every server start needs."""

    python: str
    workdir: Path
    pg_url: str
    quiet_wait: float = 20.0
    env_extra: dict[str, str] = field(default_factory=dict)


def start_server(
    ctx: RunContext, name: str, db: str, env_overrides: dict[str, str], tag: str
) -> ServerProcess:
    """Start ``name`` pinned to the server CPU and wait until it answers."""
    port = free_port_pair()
    log_path = ctx.workdir / f"{tag}.log"
    env = dict(os.environ)
    env.update(ctx.env_extra)
    env["PYTHONUNBUFFERED"] = "1"
    if name == "chatsphere":
        if db == "postgres":
            db_url = ctx.pg_url
        else:
            db_url = f"sqlite+aiosqlite:///{ctx.workdir / (tag + '.db')}"
        env.update(
            {
                "ENVIRONMENT": "development",
                "JWT_SECRET": JWT_SECRET,
                "AUTH_MODE": "jwt",
                "DATABASE_URL": db_url,
                "WS_PORT": str(port),
                "HOST": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_ENABLED": "false",
                "MODERATION_ENABLED": "false",
                "SHUTDOWN_GRACE": "1",
                "BUS": "memory",
            }
        )
        env.update(env_overrides)
        argv = [ctx.python, "-m", "chatsphere", "serve"]
        protocol, http = "chatsphere", f"http://127.0.0.1:{port + 1}"
    elif name == "websockets":
        argv = [ctx.python, "-m", "bench.baselines.ws_broadcast", str(port)]
        protocol, http = "chatsphere", None
    elif name == "socketio":
        argv = [ctx.python, "-m", "bench.baselines.socketio_server", str(port)]
        protocol, http = "socketio", None
    else:
        raise ValueError(f"unknown server {name}")
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            pinned(SERVER_CPU, argv), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = ServerProcess(name, port, proc, log_path, protocol, http)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.log_tail()}")
        if tcp_open("127.0.0.1", port):
            if http is None:
                return server
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{http}/health", timeout=2).status_code == 200:
                    return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not become ready within 90 s:\n{server.log_tail()}")


def run_loadgen(
    ctx: RunContext,
    servers: list[ServerProcess],
    args: list[str],
    label: str,
    time_limit: float,
) -> dict[str, Any]:
    """Run the generator pinned to the generator CPU; returns its JSON result."""
    out = ctx.workdir / f"{label}.json"
    argv = [ctx.python, "-m", "bench.loadgen", "--label", label, "--out", str(out)]
    argv += ["--protocol", servers[0].protocol, "--jwt-secret", JWT_SECRET]
    for s in servers:
        argv += ["--target", s.ws_target, "--server-pid", str(s.proc.pid)]
    if servers[0].http:
        argv += ["--http", servers[0].http]
    argv += args
    cmd = pinned(GENERATOR_CPU, argv)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=time_limit + 90, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "aborted": "generator did not finish in time"}
    if not out.exists():
        return {"ok": False, "aborted": f"generator exited with {proc.returncode} and no result"}
    result: dict[str, Any] = json.loads(out.read_text())
    result["exit_status"] = proc.returncode
    return result


def wait_for_quiet(limit_s: float = 60.0, threshold: float = 25.0) -> float:
    """Wait (bounded) until other processes use less than ``threshold`` % of a core.

    Returns the last one-second sample, which the report shows beside the figures.
    """
    deadline = time.monotonic() + limit_s
    warned = False
    while True:
        meter = HostMeter()
        meter.start()
        time.sleep(1.0)
        busy, _steal = meter.stop()
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        if not warned:
            log(
                f"machine busy ({busy:.0f}% of a core in use elsewhere); waiting up to {limit_s:g}s"
            )
            warned = True


def pg_reachable(url: str) -> bool:
    """True if the PostgreSQL server of ``url`` accepts TCP connections."""
    hostpart = url.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostpart.partition(":")
    return tcp_open(host or "127.0.0.1", int(port or 5432))


@contextlib.contextmanager
def fresh_pg_database(url: str) -> Iterator[str]:
    """A new, empty database beside the one ``url`` names, dropped afterwards.

    Every PostgreSQL case starts from empty tables, as the SQLite cases do from a new
    file: figures that depended on what earlier runs left behind could not be compared,
    and the benchmark's rows stay out of the database it was pointed at.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{make_url(url).database or 'postgres'}_chatsphere_bench"
    dsn = libpq_dsn(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: PostgreSQL settings that move S4's figures; the report prints them with the version.
PG_SETTINGS = (
    "server_version",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "synchronous_commit",
    "full_page_writes",
    "autovacuum",
)


def libpq_dsn(url: str) -> str:
    """The SQLAlchemy URL ``url`` as a libpq connection string (psycopg's)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_settings(url: str) -> dict[str, str]:
    """:data:`PG_SETTINGS` as the server of ``url`` reports them; empty if unreachable."""
    import psycopg

    dsn = libpq_dsn(url)
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name",
                (list(PG_SETTINGS),),
            ).fetchall()
    except psycopg.Error:
        return {}
    return {str(name): str(value) for name, value in rows}


def run_case(
    ctx: RunContext, scenario: Scenario, server: str, db: str, profile: Profile
) -> dict[str, Any]:
    """Start the server(s), run one scenario against them, stop them."""
    case: dict[str, Any] = {"scenario": scenario.key, "server": server, "db": db}
    if db != "postgres":
        return _run_case(ctx, scenario, server, db, profile, case)
    if not pg_reachable(ctx.pg_url):
        case["result"] = {"ok": False, "aborted": f"PostgreSQL not reachable at {ctx.pg_url}"}
        return case
    with fresh_pg_database(ctx.pg_url) as pg_url:
        return _run_case(replace(ctx, pg_url=pg_url), scenario, server, db, profile, case)


def _run_case(
    ctx: RunContext,
    scenario: Scenario,
    server: str,
    db: str,
    profile: Profile,
    case: dict[str, Any],
) -> dict[str, Any]:
    label = f"{scenario.key}-{server}-{db}"
    os.sync()  # the previous case's writes reach the disk now, not during this one
    case["background_cpu_pct"] = wait_for_quiet(ctx.quiet_wait)
    # The host's speed now: the report prints it beside every case, since the ratios
    # compare cases run minutes apart on a machine whose speed can move meanwhile.
    case["host"] = calibrate(ctx.workdir, int(SERVER_CPU), int(GENERATOR_CPU))
    nodes: list[ServerProcess] = []
    try:
        for n in range(scenario.nodes):
            nodes.append(start_server(ctx, server, db, scenario.server_env, f"{label}-n{n}"))
        time.sleep(0.5)
        log(f"{label}: server pid(s) {[s.proc.pid for s in nodes]}, running the generator")
        extra = []
        if db == "postgres":
            extra = ["--aux-command", "postgres", "--checkpoint-dsn", libpq_dsn(ctx.pg_url)]
        case["result"] = run_loadgen(
            ctx,
            nodes,
            scenario.loadgen_args(profile) + extra,
            label,
            scenario.time_limit[profile],
        )
        died = [s for s in nodes if s.proc.poll() is not None]
        if died:
            case["result"]["ok"] = False
            case["result"]["server_died"] = died[0].log_tail()
    except RuntimeError as exc:
        case["result"] = {"ok": False, "aborted": str(exc)}
        log(f"{label}: {exc}")
    finally:
        for s in nodes:
            s.stop()
        for path in ctx.workdir.glob(f"{label}-n*.db*"):
            path.unlink()  # its pages need never be written back; the logs stay
    return case


def smoke(ctx: RunContext, servers: list[str]) -> int:
    """A few connections and messages per server; 0 only if everything arrived."""
    failures = []
    args = [
        "--mode",
        "smoke",
        "--rooms",
        "2",
        "--members",
        "3",
        "--senders-per-room",
        "2",
        "--smoke-messages",
        "20",
        "--time-limit",
        "30",
    ]
    for server in servers:
        label = f"smoke-{server}"
        try:
            node = start_server(ctx, server, "sqlite", {}, label)
        except RuntimeError as exc:
            failures.append(f"{server}: {exc}")
            continue
        try:
            result = run_loadgen(ctx, [node], args, label, 30)
        finally:
            node.stop()
        if not result.get("ok"):
            detail = result.get("problems") or result.get("aborted") or result
            failures.append(f"{server}: {detail}")
        else:
            log(f"{label}: ok {result.get('smoke')}")
    for f in failures:
        log(f"FAILED {f}")
    print("smoke: " + ("FAILED" if failures else "ok") + f" ({len(servers)} servers)")
    return 1 if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the quick profile (default)")
    mode.add_argument("--full", action="store_true", help="the complete profile")
    mode.add_argument("--smoke", action="store_true", help="correctness check, exit 1 on failure")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    p.add_argument("--out-dir", default=str(BENCH))
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="seconds to wait, before each case, for other processes to go quiet (and 4x that "
        "before the first)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep server logs and raw results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"unknown server {s!r} (choose from {', '.join(SERVERS)})")
    workdir = Path(tempfile.mkdtemp(prefix="chatsphere-bench-"))
    ctx = RunContext(
        python=sys.executable, workdir=workdir, pg_url=args.pg_url, quiet_wait=args.quiet_wait
    )
    prog = "python -m bench.run" if __package__ else "python bench/run.py"
    command = prog + " " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        if args.smoke:
            return smoke(ctx, servers)
        profile: Profile = "full" if args.full else "quick"
        keys = [k.strip().upper() for k in args.scenarios.split(",") if k.strip()]
        for k in keys:
            if k not in SCENARIOS:
                sys.exit(f"unknown scenario {k!r} (choose from {', '.join(SCENARIOS)})")
        wait_for_quiet(4 * args.quiet_wait)
        started = time.monotonic()
        started_at = datetime.now(UTC)
        revision = git_revision(ROOT)  # the code under test, before anything is written
        calibration = calibrate(workdir, int(SERVER_CPU), int(GENERATOR_CPU))
        log(f"host calibration: {calibration}")
        planned = [
            (SCENARIOS[key], server, db)
            for key in keys
            for server in servers
            if server in SCENARIOS[key].servers
            for db in SCENARIOS[key].databases_for(server, profile)
        ]
        uses_pg = any(db == "postgres" for _, _, db in planned)
        pg = postgres_settings(args.pg_url) if uses_pg else {}
        cases = []
        for scenario, server, db in planned:
            log(f"--- {scenario.title_for(profile)}: {server} ({db})")
            cases.append(run_case(ctx, scenario, server, db, profile))
        meta = {
            "command": command.strip(),
            "profile": profile,
            "started": started_at.strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.monotonic() - started),
            "pg_url": args.pg_url,
            "revision": revision,
            "machine": machine_summary(),
            "calibration": calibration,
            "postgres": pg,
            "scenarios": keys,
            "servers": servers,
        }
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        report.write_all(out_dir, meta, cases, ROOT)
        log(f"wrote {out_dir / 'RESULTS.md'}, {out_dir / 'results.png'}, results.json")
        failed = [c for c in cases if not c["result"].get("ok")]
        for c in failed:
            reason = c["result"].get("aborted") or c["result"].get("server_died") or "see results"
            log(f"not completed: {c['scenario']} {c['server']} ({c['db']}): {reason}")
        return 0
    finally:
        if args.keep_logs:
            log(f"logs and raw results kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
