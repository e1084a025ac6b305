"""domain/values.py: hot value objects are mutable at run time but frozen to mypy."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from mypy import api

from chatsphere.domain.messages import Message, MessageType

SNIPPET = """
from datetime import UTC, datetime

from chatsphere.domain.events import EventType, RoomEvent
from chatsphere.domain.messages import Message, MessageType
from chatsphere.ports.bus import Delivery

m = Message("id", "room", "user", MessageType.TEXT, {}, datetime.now(UTC))
m.seq = 3
e = RoomEvent("room", 1, EventType.NEW_MESSAGE, {}, b"")
e.seq = 2
d = Delivery("room:x", b"")
d.frame = b"x"
"""


def test_mypy_refuses_assignments_to_their_fields(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    out, _, status = api.run(["--no-incremental", "--cache-dir", os.devnull, str(snippet)])
    assert status == 1
    refused = [line.split(": error: ")[1] for line in out.splitlines() if ": error: " in line]
    assert refused == [
        'Property "seq" defined in "Message" is read-only  [misc]',
        'Property "seq" defined in "RoomEvent" is read-only  [misc]',
        'Property "frame" defined in "Delivery" is read-only  [misc]',
    ]


def test_replace_makes_a_changed_copy() -> None:
    draft = Message("id", "room", "user", MessageType.TEXT, {"text": "hi"}, datetime.now(UTC))
    stored = replace(draft, seq=7)
    assert (draft.seq, stored.seq, stored.content) == (0, 7, {"text": "hi"})
    assert not hasattr(draft, "__dict__")  # slotted
