"""One error taxonomy for the wire, REST problem responses and logs.

Every refusal ChatSphere makes carries a stable :class:`ErrorCode`. The same code
appears in a WebSocket ``error`` frame, in a REST ``{"error": {...}}`` body and in
the log line, so a client can branch on it and an operator can grep for it.

Hierarchy::

    Exception
     └── ChatError            (code, message, details, retryable)

``ChatError`` is only for refusals a client should see. Bugs stay ordinary
exceptions; the edges turn them into ``internal_error`` without leaking a trace.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Stable, machine-readable reasons for a refusal. Never rename a member."""

    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_PAYLOAD = "invalid_payload"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_A_MEMBER = "not_a_member"
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_FULL = "room_full"
    MESSAGE_NOT_FOUND = "message_not_found"
    MESSAGE_DELETED = "message_deleted"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    ALREADY_MEMBER = "already_member"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ROOMS = "too_many_rooms"
    RESUME_GAP_TOO_LARGE = "resume_gap_too_large"
    BLOCKED_BY_MODERATION = "blocked_by_moderation"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


#: HTTP status for each code, used by the REST layer.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_FRAME: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.INVALID_PAYLOAD: 422,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_A_MEMBER: 403,
    ErrorCode.ROOM_NOT_FOUND: 404,
    ErrorCode.ROOM_FULL: 409,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.MESSAGE_DELETED: 410,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.ALREADY_MEMBER: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_MANY_ROOMS: 429,
    ErrorCode.RESUME_GAP_TOO_LARGE: 409,
    ErrorCode.BLOCKED_BY_MODERATION: 422,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}

_RETRYABLE = {ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.INTERNAL_ERROR}


class ChatError(Exception):
    """A refusal with a stable code, safe to show to the client that caused it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed if sent again later."""
        return self.code in _RETRYABLE

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object used on the wire and in REST problem bodies."""
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"ChatError({self.code.value!r}, {self.message!r})"


def room_not_found(room_id: str) -> ChatError:
    # Also used for private rooms the caller may not see: existence must not leak.
    return ChatError(ErrorCode.ROOM_NOT_FOUND, f"room {room_id!r} not found")


def not_a_member(room_id: str) -> ChatError:
    return ChatError(ErrorCode.NOT_A_MEMBER, f"not a member of room {room_id!r}")


def message_not_found(message_id: str) -> ChatError:
    return ChatError(ErrorCode.MESSAGE_NOT_FOUND, f"message {message_id!r} not found")
