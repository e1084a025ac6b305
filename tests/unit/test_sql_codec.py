"""Search folding: the ASCII shortcut must index exactly what the general path does."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from chatsphere.adapters.sql.codec import _WORD, from_ms, search_text, search_words, to_ms


def _general(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    return _WORD.findall("".join(c for c in folded if not unicodedata.combining(c)))


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_folds_as_the_general_path_does(text: str) -> None:
    assert search_words(text) == _general(text)


def test_every_ascii_character_folds_as_the_general_path_does() -> None:
    for code in range(128):
        text = f"a{chr(code)}B{chr(code)}9"
        assert search_words(text) == _general(text), code


@given(st.text())
def test_any_text_folds_as_the_general_path_does(text: str) -> None:
    assert search_words(text) == _general(text)


def test_folding_drops_case_accents_and_punctuation() -> None:
    assert search_words("Crème BRÛLÉE, s'il_vous plaît!") == [
        "creme",
        "brulee",
        "s",
        "il",
        "vous",
        "plait",
    ]
    assert search_words("HELLO, World_2") == ["hello", "world", "2"]
    assert search_text({"text": "Hi THERE", "caption": "Voilà"}) == "hi there voila"


@given(st.datetimes(timezones=st.just(UTC)))
def test_stored_milliseconds_are_the_exact_floor_and_read_back(moment: datetime) -> None:
    exact = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert to_ms(moment) == exact
    assert from_ms(exact) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
