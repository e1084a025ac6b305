"""domain/messages.py: mentions, content validation per message type, emoji."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chatsphere.domain.messages import (
    MAX_EMOJI_LENGTH,
    MAX_POLL_OPTIONS,
    MessageType,
    mentions_in,
    parse_mentions,
    validate_content,
    validate_emoji,
)
from chatsphere.domain.rooms import Member, MembershipState, Role
from chatsphere.errors import ChatError, ErrorCode

LIMIT = 100
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def sender(role: Role = Role.MEMBER) -> Member:
    return Member("r1", "alice", role, MembershipState.JOINED, NOW)


def accepts(kind: MessageType, content: dict[str, Any], who: Member | None = None) -> None:
    validate_content(kind, content, LIMIT, who or sender())


def refuses(
    kind: MessageType,
    content: dict[str, Any],
    who: Member | None = None,
    code: ErrorCode = ErrorCode.INVALID_PAYLOAD,
) -> ChatError:
    with pytest.raises(ChatError) as info:
        validate_content(kind, content, LIMIT, who or sender())
    assert info.value.code is code
    return info.value


# -- mentions --------------------------------------------------------------------------


def test_mentions_in_order_of_first_appearance_without_duplicates() -> None:
    assert parse_mentions("@bob hi @carol and @bob again, @alice") == ("bob", "carol", "alice")


def test_email_addresses_are_not_mentions() -> None:
    assert parse_mentions("mail a@b.com or x.y@example.org") == ()
    assert parse_mentions("ping me@home and @dave") == ("dave",)


def test_trailing_punctuation_is_not_part_of_the_name() -> None:
    assert parse_mentions("thanks @bob. and @carol-, @dan!") == ("bob", "carol", "dan")
    assert parse_mentions("(@erin) @frank?") == ("erin", "frank")


def test_names_keep_inner_dots_and_dashes() -> None:
    assert parse_mentions("hey @jane.doe and @x-y_z") == ("jane.doe", "x-y_z")


def test_no_mentions() -> None:
    assert parse_mentions("") == ()
    assert parse_mentions("a lone @ sign") == ()
    assert parse_mentions("@@double") == ()


def test_mentions_in_reads_only_string_text() -> None:
    assert mentions_in({"text": "hi @bob"}) == ("bob",)
    assert mentions_in({"text": 5}) == ()
    assert mentions_in({"url": "https://x/@bob"}) == ()


# -- text ------------------------------------------------------------------------------


def test_text_message_accepted() -> None:
    accepts(MessageType.TEXT, {"text": "hello"})


@pytest.mark.parametrize("content", [{}, {"text": ""}, {"text": "   \n\t"}, {"text": 42}])
def test_text_message_needs_non_blank_text(content: dict[str, Any]) -> None:
    refuses(MessageType.TEXT, content)


def test_text_at_the_limit_is_accepted() -> None:
    accepts(MessageType.TEXT, {"text": "x" * LIMIT})


@pytest.mark.parametrize("kind", list(MessageType))
def test_text_over_the_limit_is_too_large_with_the_limit_in_details(kind: MessageType) -> None:
    error = refuses(
        kind, {"text": "x" * (LIMIT + 1)}, sender(Role.OWNER), code=ErrorCode.MESSAGE_TOO_LARGE
    )
    assert error.details == {"limit": LIMIT}
    assert error.to_dict()["details"] == {"limit": LIMIT}


# -- media and voice notes -------------------------------------------------------------


@pytest.mark.parametrize("content", [{"url": "https://cdn/x.png"}, {"mediaId": "m1"}])
def test_media_needs_a_url_or_media_id(content: dict[str, Any]) -> None:
    accepts(MessageType.MEDIA, content)
    accepts(MessageType.MEDIA, {**content, "text": "caption"})


@pytest.mark.parametrize("content", [{}, {"text": "only text"}, {"url": 5}, {"mediaId": None}])
def test_media_without_a_reference_is_refused(content: dict[str, Any]) -> None:
    refuses(MessageType.MEDIA, content)


@pytest.mark.parametrize("duration", [0.5, 1, 3600])
def test_voice_note_duration_in_range(duration: float) -> None:
    accepts(MessageType.VOICE_NOTE, {"mediaId": "m1", "duration": duration})


@pytest.mark.parametrize("duration", [None, 0, -1, 3600.5, 3601, True, "10"])
def test_voice_note_duration_out_of_range(duration: object) -> None:
    refuses(MessageType.VOICE_NOTE, {"mediaId": "m1", "duration": duration})


def test_voice_note_needs_a_reference_too() -> None:
    refuses(MessageType.VOICE_NOTE, {"duration": 3})


# -- tips ------------------------------------------------------------------------------


def test_tip_with_amount_and_default_currency() -> None:
    accepts(MessageType.TIP, {"amount": 5})
    accepts(MessageType.TIP, {"amount": 0.5, "currency": "EUR"})


@pytest.mark.parametrize("amount", [0, -3, None, "5", True])
def test_tip_needs_a_positive_amount(amount: object) -> None:
    refuses(MessageType.TIP, {"amount": amount})


@pytest.mark.parametrize("currency", ["US", "USDT", "12$", 840, ""])
def test_tip_currency_is_a_three_letter_code(currency: object) -> None:
    refuses(MessageType.TIP, {"amount": 5, "currency": currency})


# -- polls -----------------------------------------------------------------------------


def test_poll_with_two_to_twenty_options() -> None:
    accepts(MessageType.POLL, {"question": "?", "options": ["a", "b"]})
    accepts(
        MessageType.POLL,
        {"question": "?", "options": [str(i) for i in range(MAX_POLL_OPTIONS)]},
    )
    assert MAX_POLL_OPTIONS == 20


@pytest.mark.parametrize(
    "options",
    [
        None,
        [],
        ["only one"],
        [str(i) for i in range(MAX_POLL_OPTIONS + 1)],
        ["a", ""],
        ["a", 2],
        "a,b",
    ],
)
def test_poll_options_out_of_bounds(options: object) -> None:
    refuses(MessageType.POLL, {"question": "?", "options": options})


def test_poll_needs_a_question() -> None:
    refuses(MessageType.POLL, {"options": ["a", "b"]})


# -- system ----------------------------------------------------------------------------


def test_system_messages_from_the_server_and_admins() -> None:
    validate_content(MessageType.SYSTEM, {"text": "maintenance"}, LIMIT, None)
    accepts(MessageType.SYSTEM, {"text": "rules"}, sender(Role.ADMIN))
    accepts(MessageType.SYSTEM, {"text": "rules"}, sender(Role.OWNER))


@pytest.mark.parametrize("role", [Role.MEMBER, Role.MODERATOR])
def test_system_messages_refused_below_admin(role: Role) -> None:
    refuses(MessageType.SYSTEM, {"text": "fake notice"}, sender(role))


def test_system_message_needs_text() -> None:
    with pytest.raises(ChatError) as info:
        validate_content(MessageType.SYSTEM, {}, LIMIT, None)
    assert info.value.code is ErrorCode.INVALID_PAYLOAD


# -- emoji -----------------------------------------------------------------------------


@pytest.mark.parametrize("emoji", ["👍", ":thumbsup:", "x" * MAX_EMOJI_LENGTH, "🏳️‍🌈"])
def test_valid_emoji(emoji: str) -> None:
    validate_emoji(emoji)


@pytest.mark.parametrize("emoji", ["", " ", "\t\n", "x" * (MAX_EMOJI_LENGTH + 1)])
def test_invalid_emoji(emoji: str) -> None:
    with pytest.raises(ChatError) as info:
        validate_emoji(emoji)
    assert info.value.code is ErrorCode.INVALID_PAYLOAD
