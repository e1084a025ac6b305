"""Messages, their content rules, reactions and mentions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..errors import ChatError, ErrorCode
from .rooms import Member, Role
from .values import hot_value


class MessageType(StrEnum):
    TEXT = "text"
    MEDIA = "media"
    SYSTEM = "system"
    TIP = "tip"
    POLL = "poll"
    VOICE_NOTE = "voice_note"


class MessageStatus(StrEnum):
    SENT = "sent"
    EDITED = "edited"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Reaction:
    emoji: str
    user_ids: tuple[str, ...]


@hot_value
class Message:
    id: str
    room_id: str
    sender_id: str
    type: MessageType
    content: dict[str, Any]
    created_at: datetime
    seq: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    mentions: tuple[str, ...] = ()
    client_message_id: str | None = None
    status: MessageStatus = MessageStatus.SENT
    updated_at: datetime | None = None
    reactions: tuple[Reaction, ...] = ()
    reply_count: int = 0

    @property
    def deleted(self) -> bool:
        return self.status is MessageStatus.DELETED


@dataclass(frozen=True, slots=True)
class MessageEdit:
    message_id: str
    content: dict[str, Any]
    edited_at: datetime
    edited_by: str


_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})")
MAX_EMOJI_LENGTH = 64
MAX_POLL_OPTIONS = 20


def parse_mentions(text: str) -> tuple[str, ...]:
    """User ids mentioned as ``@user`` in ``text``, in order of first appearance."""
    if "@" not in text:  # most messages: skip the regular expression
        return ()
    seen: dict[str, None] = {}
    for match in _MENTION.finditer(text):
        seen.setdefault(match.group(1).rstrip(".-"), None)
    return tuple(seen)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ChatError(ErrorCode.INVALID_PAYLOAD, message)


def validate_content(
    kind: MessageType, content: dict[str, Any], max_text: int, sender: Member | None
) -> None:
    """Check ``content`` fits ``kind``; raise ``invalid_payload`` or ``message_too_large``.

    ``sender`` is None for messages the server itself posts.
    """
    text = content.get("text")
    _require(text is None or isinstance(text, str), "content.text must be a string")
    if isinstance(text, str) and len(text) > max_text:
        raise ChatError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"text is {len(text)} characters; the limit is {max_text}",
            {"limit": max_text},
        )
    if kind is MessageType.TEXT:
        _require(isinstance(text, str) and text.strip() != "", "a text message needs content.text")
    elif kind in (MessageType.MEDIA, MessageType.VOICE_NOTE):
        _require(
            isinstance(content.get("url"), str) or isinstance(content.get("mediaId"), str),
            f"a {kind.value} message needs content.url or content.mediaId",
        )
        if kind is MessageType.VOICE_NOTE:
            duration = content.get("duration")
            _require(
                isinstance(duration, int | float)
                and not isinstance(duration, bool)
                and 0 < duration <= 3600,
                "a voice_note needs content.duration in seconds (0-3600]",
            )
    elif kind is MessageType.TIP:
        amount = content.get("amount")
        _require(
            isinstance(amount, int | float) and not isinstance(amount, bool) and amount > 0,
            "a tip needs a positive content.amount",
        )
        currency = content.get("currency", "USD")
        _require(
            isinstance(currency, str) and len(currency) == 3 and currency.isalpha(),
            "content.currency must be a 3-letter code",
        )
    elif kind is MessageType.POLL:
        options = content.get("options")
        _require(isinstance(content.get("question"), str), "a poll needs content.question")
        _require(
            isinstance(options, list)
            and 2 <= len(options) <= MAX_POLL_OPTIONS
            and all(isinstance(o, str) and o for o in options),
            f"a poll needs 2 to {MAX_POLL_OPTIONS} non-empty string options",
        )
    elif kind is MessageType.SYSTEM:
        _require(
            sender is None or sender.role.rank >= Role.ADMIN.rank,
            "only the server and room admins post system messages",
        )
        _require(isinstance(text, str), "a system message needs content.text")


def validate_emoji(emoji: str) -> None:
    _require(
        isinstance(emoji, str) and 0 < len(emoji) <= MAX_EMOJI_LENGTH and not emoji.isspace(),
        f"emoji must be 1 to {MAX_EMOJI_LENGTH} characters",
    )


def mentions_in(content: dict[str, Any]) -> tuple[str, ...]:
    text = content.get("text")
    return parse_mentions(text) if isinstance(text, str) else ()


def tombstone(message: Message) -> dict[str, Any]:
    """What is left of a deleted message's content: nothing."""
    return {}
