"""Word timestamps: from the service's per-sentence reports to one task timeline.

The service reports words per sentence, in sentence-end events, in
task-finished, or in both (dialects), with times that may or may not restart
at zero for every sentence. ``WordTimeline`` de-duplicates them, places each
sentence on the task's audio timeline, keeps times monotonic, and maps every
word back to a character offset in the caller's text.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
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
    """Normalises raw word reports of one task (sans-I/O).

    Where a sentence starts on the task's audio is known from the audio
    itself: a sentence ends (sentence-end, or the legacy event after its
    audio) once all its audio has arrived, and the next one starts there.
    Each report's times are then read as task-relative or sentence-relative,
    whichever places its first word nearer its sentence's start; a list of
    the whole task's words (task-finished without an index) is cut where the
    times fall back, one piece per sentence.
    """

    def __init__(self) -> None:
        self._source = ""
        self._cursor = 0
        self._seen: set[tuple[int, int | None, int | None, str, int]] = set()
        self._seen_any: set[tuple[str, int, int]] = set()
        self._begin_ms: dict[int, float] = {}
        self._end_ms: dict[int, float] = {}
        self._end_indexes: list[int] = []  # keys of ``_end_ms``, ascending
        self._offset_ms: dict[int, float] = {}
        self._last_start_ms = 0.0
        self._last_end_ms = 0.0

    def add_source_text(self, text: str) -> None:
        self._source += text

    def sentence_began(self, index: int, audio_ms: float) -> None:
        """Record where on the audio timeline sentence ``index`` starts."""
        self._begin_ms.setdefault(index, audio_ms)

    def sentence_ended(self, index: int, audio_ms: float) -> None:
        """Record that all audio of sentence ``index`` arrived by ``audio_ms``."""
        if index not in self._end_ms:
            self._end_ms[index] = audio_ms
            insort(self._end_indexes, index)

    def _start_ms(self, index: int) -> float | None:
        """Where sentence ``index`` starts: the end of the sentence before it, else its begin event."""
        position = bisect_left(self._end_indexes, index)
        if position:
            return self._end_ms[self._end_indexes[position - 1]]
        return self._begin_ms.get(index, 0.0 if not self._end_ms and not self._begin_ms else None)

    def add_words(self, index: int | None, words: tuple[RawWord, ...]) -> list[WordTiming]:
        """New words of sentence ``index`` (None: of the whole task), placed on the task timeline.

        Repeats of words already placed are dropped.
        """
        if index is None:
            return self._add_task_words(words)
        fresh = []
        for word in words:
            key = (index, word.begin_index, word.end_index, word.text, word.begin_time)
            if key in self._seen:
                continue
            self._seen.add(key)
            fresh.append(word)
        if not fresh:
            return []
        if index not in self._offset_ms:
            start = self._start_ms(index)
            if start is None or (start == 0.0 and index > 0 and self._last_end_ms > 0):
                # Nothing tells where this sentence starts: times that fall back
                # continue after the words already placed.
                start_offset = self._last_end_ms if fresh[0].begin_time < self._last_end_ms else 0.0
                self._offset_ms[index] = start_offset
            else:
                self._offset_ms[index] = self._offset(start, fresh[0])
        return self._place(index, fresh, self._offset_ms[index])

    def _add_task_words(self, words: tuple[RawWord, ...]) -> list[WordTiming]:
        fresh = [w for w in words if (w.text, w.begin_time, w.end_time) not in self._seen_any]
        if not fresh:
            return []
        # Times falling back mark a new sentence (times restarting at 0 per sentence).
        pieces: list[list[RawWord]] = [[]]
        for word in fresh:
            if pieces[-1] and word.begin_time < pieces[-1][-1].begin_time:
                pieces.append([])
            pieces[-1].append(word)
        known = sorted({*self._begin_ms, *self._end_ms})
        starts = [self._start_ms(i) or 0.0 for i in known]  # non-decreasing, like the indexes
        result: list[WordTiming] = []
        for number, piece in enumerate(pieces):
            if len(pieces) == 1:  # one rising sequence: task-relative times
                for word in piece:
                    # The sentence whose audio holds the word's time.
                    at = bisect_right(starts, word.begin_time) - 1
                    index = known[max(at, 0)] if known else 0
                    result.extend(self._place(index, [word], 0.0))
                continue
            index = known[number] if number < len(known) else (known[-1] if known else 0) + number
            start = self._start_ms(index) if number < len(known) else None
            start = self._last_end_ms if start is None else start
            result.extend(self._place(index, piece, self._offset(start, piece[0])))
        return result

    @staticmethod
    def _offset(start_ms: float, first: RawWord) -> float:
        # Task-relative times land near the sentence's audio start;
        # sentence-relative ones near zero. Pick the nearer reading.
        return 0.0 if first.begin_time >= start_ms / 2 else start_ms

    def _place(self, index: int, words: list[RawWord], offset: float) -> list[WordTiming]:
        result = []
        for word in words:
            self._seen_any.add((word.text, word.begin_time, word.end_time))
            start = max(word.begin_time + offset, self._last_start_ms)
            end = max(word.end_time + offset, start)
            self._last_start_ms = start
            self._last_end_ms = max(self._last_end_ms, end)
            char_start, char_end = self._locate(word.text)
            result.append(WordTiming(word.text, start / 1000, end / 1000, index, char_start, char_end))
        return result

    @property
    def last_end(self) -> float:
        """End of the latest word placed, seconds on the task timeline."""
        return self._last_end_ms / 1000

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
