"""adapters/ratelimit_memory.py: token buckets driven by an injected clock."""

from __future__ import annotations

import pytest

from chatsphere.adapters.ratelimit_memory import MemoryRateLimiter, NoRateLimiter
from chatsphere.ports.ratelimit import RateLimiter
from tests.unit.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_burst_then_refusal_with_retry_after(clock: FakeClock) -> None:
    limiter: RateLimiter = MemoryRateLimiter(clock, rate=2.0, burst=5)
    assert [limiter.hit("alice") for _ in range(5)] == [0.0] * 5
    wait = limiter.hit("alice")
    assert wait == pytest.approx(0.5)  # one token at 2 per second
    assert limiter.hit("alice") == pytest.approx(0.5)  # a refusal takes nothing


def test_tokens_refill_with_time(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, rate=2.0, burst=5)
    for _ in range(5):
        limiter.hit("alice")
    clock.advance(0.5)
    assert limiter.hit("alice") == 0.0
    assert limiter.hit("alice") > 0
    clock.advance(1.0)
    assert limiter.hit("alice") == 0.0
    assert limiter.hit("alice") == 0.0
    assert limiter.hit("alice") > 0


def test_refill_is_capped_at_the_burst(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, rate=10.0, burst=3)
    clock.advance(3600)
    assert [limiter.hit("alice") for _ in range(3)] == [0.0] * 3
    assert limiter.hit("alice") > 0


def test_keys_are_independent(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, rate=1.0, burst=1)
    assert limiter.hit("alice") == 0.0
    assert limiter.hit("alice") > 0
    assert limiter.hit("bob") == 0.0


def test_cost_takes_several_tokens(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, rate=1.0, burst=10)
    assert limiter.hit("upload", cost=8) == 0.0
    assert limiter.hit("upload", cost=4) == pytest.approx(2.0)
    clock.advance(2.0)
    assert limiter.hit("upload", cost=4) == 0.0


def test_retry_after_is_honest(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock, rate=4.0, burst=2)
    limiter.hit("k")
    limiter.hit("k")
    wait = limiter.hit("k")
    clock.advance(wait)
    assert limiter.hit("k") == 0.0


def test_no_rate_limiter_never_refuses() -> None:
    limiter: RateLimiter = NoRateLimiter()
    assert all(limiter.hit("alice") == 0.0 for _ in range(1000))
