import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosyvoice_stream.errors import InvalidParameterError
from cosyvoice_stream.text import (
    MAX_MESSAGE_CHARACTERS,
    billable_characters,
    check_text,
    is_ssml,
    split_text,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("你好", 4), ("中A文123", 8), ("中文。", 5), ("中 文。", 6), ("<speak>你好</speak>", 4)],
)
def test_seed_counting_examples(text: str, expected: int) -> None:
    assert billable_characters(text) == expected


def test_kanji_and_hanja_count_two_kana_and_hangul_one() -> None:
    assert billable_characters("漢字") == 4
    assert billable_characters("かな") == 2
    assert billable_characters("한글") == 2
    assert billable_characters("\U00020000") == 2  # extension B ideograph


def test_ssml_tags_not_counted_but_entities_are_text() -> None:
    assert is_ssml('<speak rate="2">a&amp;b</speak>')
    assert billable_characters('<speak rate="2">a&amp;b<break time="1s"/></speak>') == 3
    assert not is_ssml("a <b> c")
    assert billable_characters("a <b> c") == 7


texts = st.text(alphabet=st.sampled_from(list("ab c.,!?。，你好\n😀 ")) | st.characters(), max_size=600)


@given(texts, st.integers(min_value=2, max_value=120))
def test_split_never_loses_duplicates_or_reorders(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(pieces)
    assert all(billable_characters(p) <= limit or len(p) == 1 for p in pieces)


def test_split_prefers_sentence_then_clause_then_space() -> None:
    assert split_text("One two. Three four", 12) == ["One two.", " Three four"]
    assert split_text("alpha, beta gamma", 10) == ["alpha,", " beta ", "gamma"]
    text = "你好。" * 800
    pieces = split_text(text)
    assert all(p.endswith("。") for p in pieces)
    assert all(billable_characters(p) <= MAX_MESSAGE_CHARACTERS for p in pieces)


@pytest.mark.parametrize("bad", ["a\ud800b", "x\x00", "bell\x07"])
def test_check_text_refuses_unencodable_and_control_characters(bad: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid character"):
        check_text(bad)


def test_check_text_refuses_non_strings() -> None:
    with pytest.raises(InvalidParameterError, match="must be a str"):
        check_text(b"bytes")
