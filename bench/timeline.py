"""Set slow deliveries beside what the node was doing when they were slow.

Reads the generator's slow-delivery log (``python -m bench.loadgen … --slow-log FILE``:
send time and latency, ns of CLOCK_MONOTONIC) and the node's timings log (``TIMINGS_LOG``,
see ``chatsphere.timings``: group commits, checkpoint passes, WAL restarts, collections,
loop lags, on the same clock), groups the slow deliveries into incidents (sends less than
``--gap-ms`` apart), and tells for each incident which of the node's events overlapped it.

    python -m bench.timeline --slow slow.log --node timings.log --threshold-ms 10

Prints a summary (how many incidents overlapped each kind of event) and the worst
incidents with the node's events around them, in ms from the incident's first send.
"""

from __future__ import annotations

import argparse
import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Node events that can hold up deliveries whatever their length.
BACKGROUND_KINDS = ("checkpoint", "wal_restart", "search", "gc", "lag")
#: Loop-side and writer-side steps of a group commit, shown when at least this long.
SLOW_STEP_MS = 3.0
#: How far before an incident's first send a node event may have begun and still count.
LOOKBACK_MS = 50.0


@dataclass(frozen=True)
class NodeEvent:
    """One line of the node's timings log."""

    kind: str
    start_ns: int
    wall_ns: int
    cpu_ns: int | None
    detail: str

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.wall_ns


@dataclass
class Incident:
    """Slow deliveries whose sends followed each other closely."""

    first_send_ns: int
    last_delivery_ns: int
    count: int = 0
    worst_ms: float = 0.0
    events: list[NodeEvent] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        return {e.kind for e in self.events}


def read_slow_log(path: Path, threshold_ms: float) -> list[tuple[int, int]]:
    """(send ns, latency ns) of every delivery at or over ``threshold_ms``, by send time."""
    limit = int(threshold_ms * 1e6)
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        send, latency = int(parts[0]), int(parts[1])
        if latency >= limit:
            rows.append((send, latency))
    rows.sort()
    return rows


def read_node_log(path: Path) -> list[NodeEvent]:
    """The node's events, by start time; lines that do not parse are skipped."""
    events = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        kind, start, wall_us, cpu_us, detail = parts
        try:
            cpu = None if cpu_us == "-" else int(cpu_us) * 1000
            events.append(NodeEvent(kind, int(start), int(wall_us) * 1000, cpu, detail))
        except ValueError:
            continue
    events.sort(key=lambda e: e.start_ns)
    return events


def group_incidents(slow: Sequence[tuple[int, int]], gap_ms: float) -> list[Incident]:
    """Slow deliveries grouped by send time: a gap over ``gap_ms`` starts a new incident."""
    gap = int(gap_ms * 1e6)
    incidents: list[Incident] = []
    current: Incident | None = None
    last_send = 0
    for send, latency in slow:
        if current is None or send - last_send > gap:
            current = Incident(send, send + latency)
            incidents.append(current)
        current.count += 1
        current.worst_ms = max(current.worst_ms, latency / 1e6)
        current.last_delivery_ns = max(current.last_delivery_ns, send + latency)
        last_send = send
    return incidents


def _notable(event: NodeEvent, slow_step_ms: float) -> bool:
    return event.kind in BACKGROUND_KINDS or event.wall_ns >= slow_step_ms * 1e6


def attach_events(
    incidents: Iterable[Incident],
    events: Sequence[NodeEvent],
    lookback_ms: float = LOOKBACK_MS,
    slow_step_ms: float = SLOW_STEP_MS,
) -> None:
    """Give each incident the notable node events that overlap it or began shortly before."""
    notable = [e for e in events if _notable(e, slow_step_ms)]
    starts = [e.start_ns for e in notable]
    longest = max((e.wall_ns for e in notable), default=0)
    lookback = int(lookback_ms * 1e6)
    for incident in incidents:
        begin = incident.first_send_ns - lookback
        # Events that began up to the longest event's length before ``begin`` may still
        # be running at it; the rest of the scan is by start time.
        i = bisect.bisect_left(starts, begin - longest)
        while i < len(notable) and notable[i].start_ns <= incident.last_delivery_ns:
            if notable[i].end_ns >= begin:
                incident.events.append(notable[i])
            i += 1


def summary(incidents: Sequence[Incident]) -> list[str]:
    """Lines counting the incidents that overlapped each kind of node event."""
    total = len(incidents)
    lines = [f"{total} incidents, {sum(i.count for i in incidents)} slow deliveries"]
    if not total:
        return lines
    by_kind: Counter[str] = Counter()
    for incident in incidents:
        by_kind.update(incident.kinds)
    for kind, n in by_kind.most_common():
        lines.append(f"  {kind:12s} {n:5d} ({100 * n / total:.0f} %)")
    unexplained = sum(1 for i in incidents if not i.events)
    lines.append(f"  {'nothing':12s} {unexplained:5d} ({100 * unexplained / total:.0f} %)")
    return lines


def describe(incident: Incident) -> list[str]:
    """The incident and its node events, times in ms from its first send."""
    origin = incident.first_send_ns
    span = (incident.last_delivery_ns - origin) / 1e6
    lines = [
        f"incident at {origin} ns: {incident.count} slow deliveries, worst "
        f"{incident.worst_ms:.1f} ms, over {span:.1f} ms"
    ]
    for e in incident.events:
        cpu = "" if e.cpu_ns is None else f" cpu {e.cpu_ns / 1e6:.2f} ms"
        lines.append(
            f"  {(e.start_ns - origin) / 1e6:+8.1f} ms {e.kind:12s} wall {e.wall_ns / 1e6:7.2f} ms"
            f"{cpu} {e.detail}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", type=Path, required=True, help="the generator's --slow-log file")
    p.add_argument("--node", type=Path, required=True, help="the node's TIMINGS_LOG file")
    p.add_argument("--threshold-ms", type=float, default=10.0, help="slow from this latency")
    p.add_argument("--gap-ms", type=float, default=20.0, help="sends further apart split")
    p.add_argument("--top", type=int, default=10, help="worst incidents to show")
    args = p.parse_args(argv)
    incidents = group_incidents(read_slow_log(args.slow, args.threshold_ms), args.gap_ms)
    attach_events(incidents, read_node_log(args.node))
    for line in summary(incidents):
        print(line)
    for incident in sorted(incidents, key=lambda i: i.worst_ms, reverse=True)[: args.top]:
        print()
        for line in describe(incident):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
