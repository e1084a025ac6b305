"""WebSocket close codes, and whether a client should reconnect after each.

Ranges carry behaviour (as in centrifuge): 4000-4499 mean "reconnect and resume",
4500-4999 mean "do not reconnect without fixing something first".
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect (elsewhere) and resume
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003  # binary frames are not part of the protocol
    INVALID_PAYLOAD = 1007  # a text frame that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # frame over WS_MAX_PAYLOAD
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # node at WS_MAX_CONNECTIONS
    SLOW_CONSUMER = 4000  # send queue overflowed; reconnect and resume
    HEARTBEAT_TIMEOUT = 4001  # no pong in time; reconnect and resume
    UNAUTHORIZED = 4501  # missing, bad or expired token: get a new one first
    FORBIDDEN = 4503  # banned or not allowed on this node


RECONNECT = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.SLOW_CONSUMER,
        CloseCode.HEARTBEAT_TIMEOUT,
    }
)


def should_reconnect(code: int) -> bool:
    """Whether a client that saw ``code`` should reconnect on its own."""
    if code in RECONNECT:
        return True
    if 4000 <= code < 4500:
        return True
    if 4500 <= code < 5000:
        return False
    return code in (1006, 1012)  # abnormal closure, service restart
