"""Small readers of ``/proc`` and of the machine, shared by the generator and the runner."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pinned(cpu: str, argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``taskset -c cpu`` when taskset exists and the CPU is there."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > int(cpu):
        return ["taskset", "-c", cpu, *argv]
    return argv


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (``VmRSS``), or ``None`` if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds consumed so far by ``pid`` (all its threads)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; fields resume after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def open_fds(pid: int) -> int | None:
    """Number of open file descriptors of ``pid``."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass
class CpuMeter:
    """Measures the CPU share of one process between :meth:`start` and :meth:`stop`.

    ``percent`` is CPU seconds over wall seconds x 100 (100 = one full core).
    """

    pid: int | None
    _cpu0: float | None = None
    _wall0: float = 0.0

    def start(self) -> None:
        """Take the first reading."""
        self._cpu0 = cpu_seconds(self.pid) if self.pid else None
        self._wall0 = time.monotonic()

    def stop(self) -> float | None:
        """Return the CPU percentage since :meth:`start`, or ``None`` if unknown."""
        if self.pid is None or self._cpu0 is None:
            return None
        cpu1 = cpu_seconds(self.pid)
        wall = time.monotonic() - self._wall0
        if cpu1 is None or wall <= 0:
            return None
        return round(100.0 * (cpu1 - self._cpu0) / wall, 1)


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib() -> float:
    """Physical memory in GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``-`` if it is missing."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def git_revision(repo: Path) -> str:
    """Short commit of ``repo`` plus ``+dirty`` when the tree has changes, or ``uncommitted``."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    return rev + ("+dirty" if dirty else "")


def machine_summary() -> dict[str, str]:
    """Facts about the machine a result was measured on."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu": f"{cpu_model()} x {os.cpu_count()}",
        "memory": f"{mem_total_gib()} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fd_limit": f"{soft}/{hard}",
    }


def host_cpu_jiffies() -> tuple[int, int]:
    """(busy, steal) jiffies summed over all CPUs since boot, from ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0, 0
    values = [int(v) for v in first[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return user + nice + system + irq + softirq + steal, steal


@dataclass
class HostMeter:
    """Whole-machine CPU use between :meth:`start` and :meth:`stop`, in % of one core."""

    _busy0: int = 0
    _steal0: int = 0
    _wall0: float = 0.0

    def start(self) -> None:
        """Take the first reading."""
        self._busy0, self._steal0 = host_cpu_jiffies()
        self._wall0 = time.monotonic()

    def stop(self) -> tuple[float, float]:
        """(busy %, steal %) since :meth:`start`; 100 = one core fully used."""
        busy, steal = host_cpu_jiffies()
        wall = max(1e-9, time.monotonic() - self._wall0)
        return (
            round(100.0 * (busy - self._busy0) / CLOCK_TICKS / wall, 1),
            round(100.0 * (steal - self._steal0) / CLOCK_TICKS / wall, 1),
        )


def cpu_by_command(command: str) -> dict[int, float]:
    """CPU seconds of every process whose command name (``comm``) is ``command``."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != command:
                continue
        except OSError:
            continue
        secs = cpu_seconds(int(entry.name))
        if secs is not None:
            found[int(entry.name)] = secs
    return found


@dataclass
class CommandMeter:
    """CPU share of all processes named ``command`` (e.g. the PostgreSQL server's backends).

    Processes that start during the window count with all their CPU time; processes that end
    during it are missed, so the figure is a lower bound.
    """

    command: str
    _before: dict[int, float] | None = None
    _wall0: float = 0.0

    def start(self) -> None:
        """Take the first reading."""
        self._before = cpu_by_command(self.command)
        self._wall0 = time.monotonic()

    def stop(self) -> float:
        """CPU percentage (100 = one core) since :meth:`start`."""
        after = cpu_by_command(self.command)
        before = self._before or {}
        used = sum(secs - before.get(pid, 0.0) for pid, secs in after.items())
        wall = max(1e-9, time.monotonic() - self._wall0)
        return round(100.0 * max(0.0, used) / wall, 1)
