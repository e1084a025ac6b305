"""The RateLimiter port."""

from __future__ import annotations

from typing import Protocol


class RateLimiter(Protocol):
    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``; 0.0 if allowed, else seconds until it would be."""
        ...
