"""From committed events to the bus, and to in-process listeners.

Room events are published after commit, in ``seq`` order; their frame bytes were
encoded once at commit and are never re-encoded. Ephemeral events (typing, presence,
read receipts) are encoded here, once, and published without a ``seq``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..domain.events import EventType, RoomEvent
from ..ports.bus import Broker, Delivery, room_channel, user_channel
from ..protocol.codec import ephemeral_frame
from .access import Access

log = logging.getLogger(__name__)

#: ``listener(event_type, room_id, data)``; called in-process for every event.
EventListener = Callable[[str, str | None, dict[str, Any]], None]


class Publisher:
    def __init__(self, broker: Broker, access: Access) -> None:
        self._broker = broker
        self._access = access
        self._listeners: list[EventListener] = []

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    def _notify(self, kind: str, room_id: str | None, data: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(kind, room_id, data)
            except Exception:  # a faulty embedder callback must not break delivery
                log.exception("event listener failed")

    def committed(self, events: Sequence[RoomEvent]) -> None:
        """The store's commit listener: fan out each committed room event."""
        for event in events:
            self._access.observe(event)
            drop = event.data.get("userId") if event.type is EventType.USER_LEFT else None
            self._broker.publish(
                Delivery(room_channel(event.room_id), event.frame, event.seq, drop_user=drop)
            )
            if event.type is EventType.USER_INVITED:
                self.to_user(
                    event.data["userId"],
                    EventType.ROOM_INVITATION,
                    {"roomId": event.room_id, "invitedBy": event.data.get("invitedBy")},
                )
            if self._listeners:
                self._notify(event.type.value, event.room_id, event.data)

    def ephemeral(
        self, room_id: str, kind: EventType, data: dict[str, Any], exclude_user: str | None = None
    ) -> None:
        frame = ephemeral_frame(kind.value, room_id, data)
        self._broker.publish(Delivery(room_channel(room_id), frame, exclude_user=exclude_user))
        if self._listeners:
            self._notify(kind.value, room_id, data)

    def to_user(self, user_id: str, kind: EventType, data: dict[str, Any]) -> None:
        frame = ephemeral_frame(kind.value, None, data)
        self._broker.publish(Delivery(user_channel(user_id), frame))
        if self._listeners:
            self._notify(kind.value, None, data)
