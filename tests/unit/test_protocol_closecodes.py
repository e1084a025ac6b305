"""protocol/closecodes.py: which close codes tell a client to reconnect on its own."""

from __future__ import annotations

import pytest

from chatsphere.protocol.closecodes import CloseCode, should_reconnect


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (CloseCode.NORMAL, False),
        (CloseCode.GOING_AWAY, True),
        (CloseCode.PROTOCOL_ERROR, False),
        (CloseCode.UNSUPPORTED_DATA, False),
        (CloseCode.MESSAGE_TOO_BIG, False),
        (CloseCode.INTERNAL_ERROR, True),
        (CloseCode.TRY_AGAIN_LATER, True),
        (CloseCode.SLOW_CONSUMER, True),
        (CloseCode.HEARTBEAT_TIMEOUT, True),
        (CloseCode.UNAUTHORIZED, False),
        (CloseCode.FORBIDDEN, False),
        (1006, True),  # abnormal closure: the network dropped
        (1012, True),  # service restart
        (1008, False),  # policy violation
        (4000, True),
        (4250, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (3000, False),
        (5000, False),
    ],
)
def test_should_reconnect(code: int, reconnect: bool) -> None:
    assert should_reconnect(code) is reconnect


def test_every_close_code_is_decided() -> None:
    for code in CloseCode:
        assert isinstance(should_reconnect(code), bool)


def test_application_codes_sit_in_the_range_that_matches_their_behaviour() -> None:
    for code in CloseCode:
        if 4000 <= code < 4500:
            assert should_reconnect(code), code
        if 4500 <= code < 5000:
            assert not should_reconnect(code), code


def test_wire_values_are_stable() -> None:
    # Clients hard-code these numbers; never renumber a member.
    wire = {code.name: int(code) for code in CloseCode}
    assert wire == {
        "NORMAL": 1000,
        "GOING_AWAY": 1001,
        "PROTOCOL_ERROR": 1002,
        "UNSUPPORTED_DATA": 1003,
        "INVALID_PAYLOAD": 1007,
        "MESSAGE_TOO_BIG": 1009,
        "INTERNAL_ERROR": 1011,
        "TRY_AGAIN_LATER": 1013,
        "SLOW_CONSUMER": 4000,
        "HEARTBEAT_TIMEOUT": 4001,
        "UNAUTHORIZED": 4501,
        "FORBIDDEN": 4503,
    }
