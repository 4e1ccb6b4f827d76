"""Word timestamps: from the service's per-sentence reports to one task timeline.

The service reports words per sentence, in sentence-end events, in
task-finished, or in both (dialects), with times that may or may not restart
at zero for every sentence. ``WordTimeline`` de-duplicates them, places each
sentence on the task's audio timeline, keeps times monotonic, and maps every
word back to a character offset in the caller's text.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import RawWord

# How far ahead of the cursor a word is searched for in the caller's text.
_SEARCH_WINDOW = 400


@dataclass(frozen=True)
class WordTiming:
    """One spoken word, in seconds from the start of the task's audio.

    ``char_start``/``char_end`` index the text pushed to the task (all pushes
    concatenated); None when the service's word text was not found there.
    """

    text: str
    start: float
    end: float
    sentence_index: int
    char_start: int | None = None
    char_end: int | None = None


class WordTimeline:
    """Normalises raw word reports of one task (sans-I/O)."""

    def __init__(self) -> None:
        self._source = ""
        self._cursor = 0
        self._seen: set[tuple[int, int | None, int | None, str, int]] = set()
        self._sentence_start_ms: dict[int, float] = {}
        self._offset_ms: dict[int, float] = {}
        self._last_start_ms = 0.0
        self._last_end_ms = 0.0

    def add_source_text(self, text: str) -> None:
        self._source += text

    def sentence_began(self, index: int, audio_ms: float) -> None:
        """Record where on the audio timeline sentence ``index`` starts."""
        self._sentence_start_ms.setdefault(index, audio_ms)

    def add_words(self, index: int, words: tuple[RawWord, ...]) -> list[WordTiming]:
        """New words of sentence ``index``, placed on the task timeline; repeats are dropped."""
        fresh = []
        for word in words:
            key = (index, word.begin_index, word.end_index, word.text, word.begin_time)
            if key in self._seen:
                continue
            self._seen.add(key)
            fresh.append(word)
        if not fresh:
            return []
        offset = self._sentence_offset(index, fresh[0])
        result = []
        for word in fresh:
            start = max(word.begin_time + offset, self._last_start_ms)
            end = max(word.end_time + offset, start)
            self._last_start_ms = start
            self._last_end_ms = max(self._last_end_ms, end)
            char_start, char_end = self._locate(word.text)
            result.append(WordTiming(word.text, start / 1000, end / 1000, index, char_start, char_end))
        return result

    def _sentence_offset(self, index: int, first: RawWord) -> float:
        if index in self._offset_ms:
            return self._offset_ms[index]
        start = self._sentence_start_ms.get(index)
        if start is not None:
            # Task-relative times land near the sentence's audio start;
            # sentence-relative ones near zero. Pick the nearer reading.
            offset = 0.0 if first.begin_time >= start / 2 else start
        else:
            offset = self._last_end_ms if first.begin_time < self._last_end_ms else 0.0
        self._offset_ms[index] = offset
        return offset

    def _locate(self, word: str) -> tuple[int | None, int | None]:
        needle = word.strip()
        if not needle:
            return None, None
        window = self._source[self._cursor : self._cursor + _SEARCH_WINDOW + len(needle)]
        pos = window.find(needle)
        if pos < 0:
            pos = window.casefold().find(needle.casefold())
        if pos < 0:
            return None, None
        start = self._cursor + pos
        self._cursor = start + len(needle)
        return start, self._cursor
