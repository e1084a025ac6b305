"""RoomCounters: which counters a batch of posts may be numbered from without reading them."""

from __future__ import annotations

from chatsphere.adapters.sql.counters import RoomCounters


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def committed(counters: RoomCounters, values: dict[str, int]) -> None:
    counters.stage(values)
    counters.committed()


def test_known_only_when_every_room_of_the_batch_is() -> None:
    counters = RoomCounters()
    assert counters.known(["a"]) is None
    committed(counters, {"a": 3, "b": 7})
    assert counters.known(["a", "b"]) == {"a": 3, "b": 7}
    assert counters.known(["a", "c"]) is None


def test_a_batch_counts_only_once_it_committed() -> None:
    counters = RoomCounters()
    committed(counters, {"a": 3})
    counters.stage({"a": 9, "b": 1})
    assert counters.known(["a"]) == {"a": 3}
    counters.discard()  # its transaction failed
    counters.committed()  # nothing staged any more: a later commit adds nothing
    assert counters.known(["a"]) == {"a": 3}
    assert counters.known(["b"]) is None
    counters.stage({"a": 9, "b": 1})
    counters.committed()
    assert counters.known(["a", "b"]) == {"a": 9, "b": 1}


def test_a_refused_room_is_forgotten_and_held_off_for_a_while() -> None:
    clock = Clock()
    counters = RoomCounters(holdoff=10.0, clock=clock)
    committed(counters, {"a": 3, "b": 4})
    counters.stage({"a": 5, "b": 6})
    counters.refused(["a"])
    counters.committed()  # the refusal dropped the staged values too
    assert counters.known(["b"]) == {"b": 4}
    assert counters.known(["a"]) is None
    committed(counters, {"a": 8})  # read again the long way…
    assert counters.known(["a", "b"]) is None  # …but another node writes there
    clock.now += 10.5
    assert counters.known(["a", "b"]) == {"a": 8, "b": 4}


def test_memory_is_bounded() -> None:
    counters = RoomCounters(capacity=3)
    committed(counters, {"a": 1, "b": 1, "c": 1})
    committed(counters, {"d": 1})
    assert len(counters) <= 3
    assert counters.known(["d"]) == {"d": 1}
