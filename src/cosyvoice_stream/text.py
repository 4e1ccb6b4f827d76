"""Text rules of the service: billable character count, SSML detection, splitting.

Pure functions, no I/O. The counting rule is the seed document's: every CJK
ideograph (Chinese, Japanese kanji, Korean hanja) counts 2, every other
character 1, and SSML tags do not count.
"""

from __future__ import annotations

import html
import re

from .errors import InvalidParameterError

#: Per continue-task message limit of the seed document (billable characters).
MAX_MESSAGE_CHARACTERS = 2_000
#: Per task limit of the seed document (billable characters).
MAX_TASK_CHARACTERS = 200_000

# CJK Unified Ideographs and their extensions, plus the compatibility blocks.
_IDEOGRAPH_RANGES: tuple[tuple[int, int], ...] = (
    (0x3400, 0x4DBF),  # Extension A
    (0x4E00, 0x9FFF),  # Unified Ideographs
    (0xF900, 0xFAFF),  # Compatibility Ideographs
    (0x20000, 0x2A6DF),  # Extension B
    (0x2A700, 0x2EBEF),  # Extensions C-F
    (0x2F800, 0x2FA1F),  # Compatibility Supplement
    (0x30000, 0x323AF),  # Extensions G-H
)
_IDEOGRAPH_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _IDEOGRAPH_RANGES)
_IDEOGRAPH_RE = re.compile(f"[{_IDEOGRAPH_CLASS}]")
_TAG_RE = re.compile(r"<[^<>]*>")
_SSML_RE = re.compile(r"^\s*<speak[\s>/]", re.IGNORECASE)
_SSML_AT = re.compile(r"\s*<speak[\s>/]", re.IGNORECASE)  # at a given position (``match(text, pos)``)
_BAD_CHAR_RE = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_ideograph(char: str) -> bool:
    """True for a CJK ideograph, which the service bills as 2 characters."""
    return _IDEOGRAPH_RE.match(char) is not None


def is_ssml(text: str) -> bool:
    """True when the text is an SSML document (it starts with ``<speak``)."""
    return _SSML_RE.match(text) is not None


def is_complete_ssml(text: str) -> bool:
    """A whole ``<speak>...</speak>`` document, not the first token of one (streamed text)."""
    return is_ssml(text) and text.rstrip().endswith("</speak>")


def strip_ssml(text: str) -> str:
    """The spoken text of an SSML document: tags removed, entities decoded."""
    return html.unescape(_TAG_RE.sub("", text))


def billable_characters(text: str) -> int:
    """Characters the service bills for ``text`` (the seed's counting rule).

    >>> [billable_characters(t) for t in ("你好", "中A文123", "中文。", "中 文。", "<speak>你好</speak>")]
    [4, 8, 5, 6, 4]
    """
    if is_ssml(text):
        text = strip_ssml(text)
    return len(text) + len(_IDEOGRAPH_RE.findall(text))


def check_text(text: object, *, name: str = "text") -> str:
    """Validate one piece of caller text; returns it unchanged.

    Refuses non-strings, lone surrogates (not encodable as UTF-8) and control
    characters other than tab, newline and carriage return.
    """
    if not isinstance(text, str):
        raise InvalidParameterError(f"{name} must be a str, got {type(text).__name__}", parameter=name)
    bad = _BAD_CHAR_RE.search(text)
    if bad is not None:
        raise InvalidParameterError(
            f"{name} contains the invalid character {bad.group()!r} at index {bad.start()}"
            " (lone surrogates and control characters cannot be synthesized)",
            parameter=name,
        )
    return text


# Boundaries in order of preference: after a sentence end, after a clause
# mark, after whitespace. The look-behind keeps the mark in the left piece.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;…\n])")
_CLAUSE_END = re.compile(r"(?<=[,，、:：）)\]」』”\"'])")
_SPACE = re.compile(r"(?<=\s)")
_BOUNDARIES = (_SENTENCE_END, _CLAUSE_END, _SPACE)


def split_text(text: str, limit: int = MAX_MESSAGE_CHARACTERS) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` billable characters.

    Cuts at the last sentence end that fits, else the last clause mark, else
    the last whitespace, else as late as possible; never between the halves of
    a surrogate pair, and never where the rest would start with ``<speak``
    (a piece of plain text must not turn into an SSML document).
    ``"".join(split_text(t)) == t`` always holds, and no piece is empty.
    """
    if limit < 2:
        raise InvalidParameterError(f"limit must be at least 2, got {limit}", parameter="limit")
    pieces: list[str] = []
    rest = text
    while rest:
        cut = _longest_prefix(rest, limit)
        if cut == len(rest):
            pieces.append(rest)
            break
        cut = _best_boundary(rest, cut)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    return pieces


def _longest_prefix(text: str, limit: int) -> int:
    """Length of the longest prefix of ``text`` within ``limit`` billable characters."""
    if len(text) <= limit // 2:
        return len(text)  # even all-ideograph text fits
    used = 0
    for i, char in enumerate(text):
        used += 2 if is_ideograph(char) else 1
        if used > limit:
            return i
    return len(text)


def _best_boundary(text: str, cut: int) -> int:
    window = text[:cut]
    for pattern in _BOUNDARIES:
        positions = [m.start() for m in pattern.finditer(window)]
        for p in reversed(positions):
            if 0 < p <= cut and not _SSML_AT.match(text, p):
                return p
    # Hard cut: never leave a high surrogate at the end of a piece, nor start an SSML-looking one.
    while cut > 1 and ("\ud800" <= text[cut - 1] <= "\udbff" or _SSML_AT.match(text, cut)):
        cut -= 1
    return max(cut, 1)
