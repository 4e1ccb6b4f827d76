"""Where the first clause of streamed text ends: the early-flush point of a turn.

Pure text rules, no I/O. ``FirstClause`` is fed the text of one turn as it
streams in (LLM tokens) and says, once, where the turn's first clause ends:
the first clause mark or sentence end at which the turn holds at least
``min_characters`` billable characters. The stream then flushes there, so
the service synthesizes that clause without waiting for the sentence end.
Once a sentence has ended (shorter than the minimum: "Hi!"), the service's
own segmentation has the first audio on its way and nothing is flushed.

Marks: ``, ; : —`` and sentence ends ``. ! ?`` (every Latin- and
Cyrillic-script language of the service: English, French, German, Spanish,
Italian, Portuguese, Russian, Korean), and the full-width ``，、；：。！？．``
(Chinese, Japanese). A mark is never a boundary inside a number (``3,000``,
``3.5``, ``10:30``), after an abbreviation or an initial (``Dr.``, ``e.g.``,
``z.B.``, ``т.е.``, ``J. Smith``), or inside a word (``example.com``); an
SSML document is never split.
"""

from __future__ import annotations

from .text import billable_characters

#: Billable characters a turn must hold before its first clause is flushed.
#: Measured with ``python -m benchmarks.early_flush_min`` (espeak engine,
#: first packet 150 ms, RTF 0.3; docs/benchmarks.md): 4 flushes "Well,",
#: "Sure,", "好的，" and brings first audio at 40 tokens/s from 402 ms to
#: 177 ms, where 8..16 reach only 302 ms (the first clause is then a
#: whole phrase); the silence after such a short clause, until the rest of
#: the sentence is ready, is 0 ms at 40 and 80 tokens/s and 45 ms (median)
#: at 20 tokens/s. Shorter ("So,", "Oh,") waits for the sentence.
DEFAULT_MIN_CHARACTERS = 4

# Full-width marks end a clause at once: no number or abbreviation uses them.
_WIDE_MARKS = frozenset("，、；：。！？．")
# These end a clause at once after a letter; after a digit only if no digit follows.
_CLAUSE_MARKS = frozenset(",;:")
# Sentence ends: a boundary only when whitespace follows (after any closers).
_SENTENCE_MARKS = frozenset(".!?")
_DASHES = frozenset("—")
_CLOSERS = frozenset("\"')]}”’」』）】》〕»")
_OPENERS = frozenset("\"'([{“‘「『（【《〔«")

# Words that end with a period without ending a clause (lower case, without
# their final period), in the service's Latin- and Cyrillic-script languages.
ABBREVIATIONS = frozenset(
    {
        # English
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e",
        "no", "inc", "ltd", "co", "corp", "approx", "dept", "fig", "mt", "ave", "a.m",
        "p.m", "u.s", "u.k", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec", "vol", "cf", "al", "est", "min", "max", "govt",
        # German
        "z.b", "bzw", "usw", "ca", "nr", "str", "hr", "fr", "u.a", "d.h", "evtl", "ggf",
        "vgl", "inkl", "bspw", "zzgl", "s.o", "s.u",
        # French
        "m", "mme", "mlle", "mm", "p.ex", "env", "av", "bd", "cie",
        # Spanish, Italian, Portuguese
        "sra", "srta", "ud", "uds", "dña", "d", "p.ej", "pág", "sig", "dott", "ecc",
        "pag", "sig.ra", "dra", "exmo", "exma", "págs",
        # Russian
        "г", "гг", "т.е", "т.д", "т.п", "др", "ул", "см", "стр", "им", "т.к", "и.о",
    }
)  # fmt: skip


class FirstClause:
    """Finds the end of the first clause of one turn, as its text streams in.

    ``feed(text)`` returns, once, the offset in ``text`` at which to flush
    (0 when the boundary was confirmed by the start of ``text``, e.g. the
    digit that did not follow ``3,``); otherwise None. After it has answered,
    or once ``disable()`` was called, it returns None for good.
    """

    def __init__(self, min_characters: int = DEFAULT_MIN_CHARACTERS) -> None:
        if isinstance(min_characters, bool) or not isinstance(min_characters, int) or min_characters < 0:
            raise ValueError(f"min_characters={min_characters!r} is invalid: expected an int >= 0")
        self.min_characters = min_characters
        self.done = False
        self._text = ""  # the turn's text so far
        self._scan = 0  # first index of _text not decided yet

    def disable(self) -> None:
        self.done = True

    def feed(self, text: str) -> int | None:
        if self.done:
            return None
        before = len(self._text)
        self._text += text
        if self._text.lstrip().startswith("<"):
            # An SSML document (or markup that may become one) is never split.
            self.done = True
            return None
        end = self._find()
        if end is None:
            return None
        self.done = True
        return max(0, end - before)

    def _find(self) -> int | None:
        """The end of the first qualifying boundary in ``_text``, or None (yet)."""
        text = self._text
        n = len(text)
        i = self._scan
        while i < n:
            ch = text[i]
            end: int | None
            if ch in _WIDE_MARKS:
                end = _after_closers(text, i + 1)
            elif ch in _CLAUSE_MARKS or ch in _DASHES:
                if i + 1 >= n and (ch in _DASHES or _digit(text, i - 1)):
                    break  # "3," may become "3,000"; "—" may become "——": wait
                if _digit(text, i - 1) and _digit(text, i + 1):
                    i += 1
                    continue
                end = i + 1
                while end < n and text[end] in _DASHES:
                    end += 1
            elif ch in _SENTENCE_MARKS:
                j = i + 1
                while j < n and (text[j] in _SENTENCE_MARKS or text[j] in _CLOSERS):
                    j += 1
                if j >= n:
                    break  # the next character says whether this ends a sentence
                if not text[j].isspace() or (ch == "." and _abbreviation(text, i)):
                    i = j
                    continue
                end = j
            else:
                i += 1
                continue
            if billable_characters(text[:end].strip()) >= self.min_characters:
                return end
            if ch in _SENTENCE_MARKS or ch in "。！？．":
                # A whole (short) sentence is on its way to the service already.
                self.done = True
                return None
            i = end
        self._scan = i
        return None


def _digit(text: str, i: int) -> bool:
    return 0 <= i < len(text) and text[i].isdigit()


def _after_closers(text: str, i: int) -> int:
    while i < len(text) and text[i] in _CLOSERS:
        i += 1
    return i


def _abbreviation(text: str, dot: int) -> bool:
    """True when the ``.`` at ``dot`` ends an abbreviation, an initial or a number."""
    start = dot
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in _OPENERS:
        start -= 1
    word = text[start:dot].lower()
    if not word:
        return False
    if word[-1].isdigit():
        return True  # "3." (German ordinals, list numbers): not a safe place to cut
    letters = word.replace(".", "")
    if len(letters) == 1 and letters.isalpha():
        return True  # an initial: "J. Smith"
    return word in ABBREVIATIONS
