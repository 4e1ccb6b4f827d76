from cosyvoice_stream.protocol import RawWord
from cosyvoice_stream.timestamps import WordTimeline


def w(text: str, begin: int, end: int, bi: int | None = None) -> RawWord:
    return RawWord(text, bi, None if bi is None else bi + len(text), begin, end)


def test_sentence_relative_times_are_placed_on_the_task_timeline() -> None:
    tl = WordTimeline()
    tl.add_source_text("Hi there. Bye now.")
    tl.sentence_began(0, 0.0)
    first = tl.add_words(0, (w("Hi", 0, 200, 0), w("there.", 250, 450, 3)))
    tl.sentence_began(1, 500.0)
    second = tl.add_words(1, (w("Bye", 0, 200, 0), w("now.", 250, 450, 4)))
    assert [x.start for x in first + second] == [0.0, 0.25, 0.5, 0.75]
    assert [(x.char_start, x.char_end) for x in first + second] == [(0, 2), (3, 9), (10, 13), (14, 18)]


def test_task_relative_times_are_kept() -> None:
    tl = WordTimeline()
    tl.sentence_began(0, 0.0)
    tl.add_words(0, (w("a", 0, 100),))
    tl.sentence_began(1, 500.0)
    [word] = tl.add_words(1, (w("b", 520, 600),))
    assert word.start == 0.52


def test_repeated_reports_are_dropped() -> None:
    tl = WordTimeline()
    words = (w("a", 0, 100, 0), w("b", 100, 200, 2))
    assert len(tl.add_words(0, words)) == 2
    assert tl.add_words(0, words) == []  # the same sentence again (task-finished dialect)


def test_without_sentence_begin_times_stay_monotonic() -> None:
    tl = WordTimeline()
    tl.add_words(0, (w("a", 0, 100), w("b", 100, 300)))
    [c] = tl.add_words(1, (w("c", 0, 100),))
    assert c.start >= 0.3


def test_cjk_words_map_to_the_caller_text_without_spaces() -> None:
    tl = WordTimeline()
    tl.add_source_text("今天天气很好。")
    out = tl.add_words(0, (w("今天", 0, 300), w("天气", 300, 600), w("很好", 600, 900)))
    assert [(x.char_start, x.char_end) for x in out] == [(0, 2), (2, 4), (4, 6)]


def test_words_not_in_the_text_keep_their_times_without_offsets() -> None:
    tl = WordTimeline()
    tl.add_source_text("It costs 5 dollars.")
    out = tl.add_words(0, (w("It", 0, 100), w("five", 100, 200), w("dollars.", 200, 300)))
    assert out[1].char_start is None and out[2].char_start == 11
