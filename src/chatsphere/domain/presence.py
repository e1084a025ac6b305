"""Presence states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PresenceStatus(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    BUSY = "busy"
    OFFLINE = "offline"


MAX_CUSTOM_STATUS = 140


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    status: PresenceStatus
    custom_status: str | None
    last_seen: datetime | None
    connections: int = 0
