"""Server-side sentence segmentation of streamed text.

Sentence ends: ``。！？；`` (immediately), ``. ! ? ;`` when followed by
whitespace or by the end of the text received so far, and newlines. An ASCII
terminator followed by anything else (``3.14``, ``e.g.x``) is no end. The one
exception: a lone ``.`` right after a digit at the end of the text received so
far waits for the next character, since ``3.`` may become ``3.14``. Closing
quotes and brackets right after a terminator stay with the sentence.
"""

from __future__ import annotations

from ..text import billable_characters

CJK_TERMINATORS = frozenset("。！？；")
ASCII_TERMINATORS = frozenset(".!?;")
_TERMINATORS = CJK_TERMINATORS | ASCII_TERMINATORS
_CLOSERS = frozenset("\"')]}”’」』）】》〕")


class Segmenter:
    """Accumulates text and returns the complete sentences found in it.

    ``feed()`` and ``flush()`` return raw pieces (with their surrounding
    whitespace): joined, they give back every character fed, in order.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._scan = 0  # index from which the buffer has not been scanned yet

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        return self._split(final=False)

    def flush(self) -> list[str]:
        """Everything left: complete sentences, then the incomplete rest."""
        pieces = self._split(final=True)
        if self._buffer:
            pieces.append(self._buffer)
        self._buffer = ""
        self._scan = 0
        return pieces

    def _split(self, *, final: bool) -> list[str]:
        pieces: list[str] = []
        buf = self._buffer
        start = 0  # start of the current sentence in buf
        i = self._scan
        n = len(buf)
        while i < n:
            ch = buf[i]
            if ch == "\n":
                pieces.append(buf[start : i + 1])
                start = i = i + 1
                continue
            if ch not in _TERMINATORS:
                i += 1
                continue
            j = i + 1
            while j < n and (buf[j] in _TERMINATORS or buf[j] in _CLOSERS):
                j += 1
            run = buf[i:j]
            if any(c in CJK_TERMINATORS for c in run):
                end = j
            elif j < n:
                if not buf[j].isspace():
                    i = j
                    continue
                end = j
            elif final or run != "." or not buf[i - 1 : i].isdigit():
                end = j
            else:
                # "3." at the end of the text so far may become "3.14": wait for more.
                self._buffer = buf[start:]
                self._scan = i - start
                return pieces
            pieces.append(buf[start:end])
            start = i = end
        self._buffer = buf[start:]
        self._scan = len(self._buffer)
        return pieces


def split_sentences(text: str) -> list[str]:
    """All the sentence pieces of a complete text (see ``Segmenter``)."""
    segmenter = Segmenter()
    pieces = segmenter.feed(text)
    pieces.extend(segmenter.flush())
    return pieces


def plain_characters(text: str) -> int:
    """Billable characters of plain text (never read as SSML, even if it looks like it)."""
    return billable_characters("x" + text) - 1 if text else 0
