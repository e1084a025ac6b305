"""Token buckets in process memory (one node)."""

from __future__ import annotations

from ..clock import Clock


class MemoryRateLimiter:
    """``rate`` tokens per second, at most ``burst`` saved up, per key."""

    def __init__(self, clock: Clock, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def hit(self, key: str, cost: float = 1.0) -> float:
        now = self._clock.monotonic()
        tokens, stamp = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - stamp) * self._rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / self._rate
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        self._buckets[key] = (tokens - cost, now)
        return 0.0


class NoRateLimiter:
    """Used when RATE_LIMIT_ENABLED=false."""

    def hit(self, key: str, cost: float = 1.0) -> float:
        return 0.0
