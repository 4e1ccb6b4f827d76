"""Word timings turned back into the text that was sent, piece by piece.

Frameworks that build the agent's transcript by concatenating timed pieces
(LiveKit's ``TimedString``) need pieces that, joined, give back the text
exactly; this module computes them from the core's word timings. It knows
nothing of any framework: a piece is ``(text, start, end)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .languages import unspaced
from .text import is_ideograph
from .timestamps import WordTiming


@dataclass(frozen=True)
class TimedPiece:
    """A piece of the transcript; ``start``/``end`` are None for text no word covers."""

    text: str
    start: float | None = None
    end: float | None = None


class TranscriptAligner:
    """Cuts the text of one utterance into timed pieces as word timings arrive.

    Each piece runs from the end of the previous one to the end of its word,
    plus the punctuation and spaces that follow it; what no word covers is
    returned by ``rest()`` at the end. Times (seconds from the start of the
    utterance's audio) come from the core unchanged. For SSML, whose tags and
    entities are not spoken, the pieces are the words themselves, spaced
    unless the script is written without spaces.
    """

    def __init__(self, *, ssml: bool = False) -> None:
        self._ssml = ssml
        self._text = ""
        self._cursor = 0

    def add_text(self, text: str) -> None:
        self._text += text

    def align(self, words: Sequence[WordTiming]) -> list[TimedPiece]:
        if self._ssml:
            return [
                TimedPiece(w.text if unspaced(w.text[-1:]) else w.text + " ", w.start, w.end)
                for w in words
                if w.text
            ]
        pieces: list[TimedPiece] = []
        text = self._text
        for word in words:
            if word.char_end is None or word.char_end <= self._cursor:
                continue  # not found in the text: a later piece or rest() covers it
            end = word.char_end
            while end < len(text) and not text[end].isspace() and not _is_word_char(text[end]):
                end += 1
            while end < len(text) and text[end].isspace():
                end += 1
            pieces.append(TimedPiece(text[self._cursor : end], word.start, word.end))
            self._cursor = end
        return pieces

    def rest(self) -> TimedPiece | None:
        """The text after the last timed word (None when it is blank, or for SSML)."""
        if self._ssml:
            return None
        piece = self._text[self._cursor :]
        self._cursor = len(self._text)
        return TimedPiece(piece) if piece.strip() else None


def _is_word_char(char: str) -> bool:
    return char.isalnum() or is_ideograph(char)
