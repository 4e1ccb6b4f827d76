"""First-clause detection (cosyvoice_stream.clauses): where a turn is flushed early."""

from __future__ import annotations

import re

import pytest

from cosyvoice_stream.clauses import DEFAULT_MIN_CHARACTERS, FirstClause


def first_clause(pieces: list[str], minimum: int = 12) -> str | None:
    """The text up to the flush point, fed as ``pieces``; None if no flush."""
    detector = FirstClause(minimum)
    sent = ""
    for piece in pieces:
        cut = detector.feed(piece)
        if cut is not None:
            assert detector.feed("more, text, here. ") is None  # once per turn
            return sent + piece[:cut]
        sent += piece
    return None


def tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


CASES = [
    ("Well, tomorrow in Hangzhou, the weather looks sunny.", "Well, tomorrow in Hangzhou,"),
    ("It costs 3,000 dollars, give or take.", "It costs 3,000 dollars,"),
    ("Pi is 3.14159 roughly, they say.", "Pi is 3.14159 roughly,"),
    ("Meet at 10:30 tomorrow morning; bring it.", "Meet at 10:30 tomorrow morning;"),
    ("Dr. Smith and e.g. Mr. Jones went home, then left.", "Dr. Smith and e.g. Mr. Jones went home,"),
    ("J. R. R. Tolkien wrote it, they said.", "J. R. R. Tolkien wrote it,"),
    ("Visit example.com today, please.", "Visit example.com today,"),
    ("Hi! Well, tomorrow in Hangzhou, it rains.", None),  # a sentence is on its way already
    ("你好！今天天气很好，我们去公园吧。", None),
    ("The answer is simple — we wait and see.", "The answer is simple —"),
    ("Here is the plan: first we eat.", "Here is the plan:"),
    ("This sentence ends here. And another one.", "This sentence ends here."),
    ('He said "it is done." Then he left.', 'He said "it is done."'),
    ("今天天气很好，我们去公园吧。", "今天天气很好，"),
    ("苹果、香蕉和橘子都很好吃。", "苹果、香蕉和橘子都很好吃。"),
    ("明日はとても良い天気、散歩しましょう。", "明日はとても良い天気、"),
    ("오늘은 날씨가 정말 좋네요, 산책 갈까요?", "오늘은 날씨가 정말 좋네요,"),
    ("Bonjour M. Dupont, comment allez-vous ?", "Bonjour M. Dupont,"),
    ("Das ist z.B. sehr gut, oder nicht?", "Das ist z.B. sehr gut,"),
    ("Am 3. Oktober feiern wir, alle zusammen.", "Am 3. Oktober feiern wir,"),
    ("Hola Sra. García, ¿cómo está usted?", "Hola Sra. García,"),
    ("Il costo è di 2,50 euro, circa.", "Il costo è di 2,50 euro,"),
    ("O preço é 1.500 reais, mais ou menos.", "O preço é 1.500 reais,"),
    ("Он сказал, т.е. подтвердил, что придёт.", "Он сказал, т.е. подтвердил,"),
    ("Short one.", None),
    ("no boundary at all in this text", None),
    ("<speak>Well, tomorrow in Hangzhou, the weather.</speak>", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
@pytest.mark.parametrize("split", ["tokens", "characters", "whole"])
def test_first_clause(text: str, expected: str | None, split: str) -> None:
    pieces = tokens(text) if split == "tokens" else list(text) if split == "characters" else [text]
    assert first_clause(pieces) == expected


def test_the_default_minimum_flushes_short_openings() -> None:
    assert DEFAULT_MIN_CHARACTERS == 4
    assert first_clause(tokens("Well, tomorrow it rains."), DEFAULT_MIN_CHARACTERS) == "Well,"
    assert first_clause(tokens("好的，明天晴。"), DEFAULT_MIN_CHARACTERS) == "好的，"
    assert first_clause(tokens("So, it rains today, sadly."), DEFAULT_MIN_CHARACTERS) == "So, it rains today,"


def test_a_comma_after_a_digit_waits_for_the_next_character() -> None:
    detector = FirstClause(0)
    assert detector.feed("about 3,") is None
    assert detector.feed("000") is None
    assert detector.feed(" items,") == len(" items,")


def test_a_boundary_confirmed_by_the_next_piece_cuts_at_its_start() -> None:
    detector = FirstClause(0)
    assert detector.feed("It is 3,") is None
    assert detector.feed(" maybe") == 0


def test_minimum_counts_billable_characters() -> None:
    assert first_clause(["你好，", "世界，"], minimum=6) == "你好，世界，"
    assert first_clause(["你好，", "世界，"], minimum=5) == "你好，"
    assert first_clause(["Hi, there, friend, "], minimum=0) == "Hi,"


def test_disable_and_invalid_minimum() -> None:
    detector = FirstClause()
    detector.disable()
    assert detector.feed("Well, tomorrow in Hangzhou, it rains.") is None
    with pytest.raises(ValueError):
        FirstClause(-1)
