"""The node's garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from chatsphere.server import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    long_lived = {"kept": ["for", "the", "process"]}
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # fewer young collections than the default
    assert gc.get_freeze_count() > 0
    # Frozen: no collection walks it any more.
    assert gc.is_tracked(long_lived)
    assert not any(obj is long_lived for obj in gc.get_objects())
    # Garbage made after start-up is still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
