"""The one language table of the package: ``language_hints`` values and the CJK check.

Every layer (options validation, the Pipecat service, the LiveKit plugin)
maps a user's language through ``language_hint``/``find_language_hint``, so a
tag accepted by one adapter is accepted by the other. ``unspaced`` is the one
test for scripts written without spaces between words.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import InvalidParameterError
from .text import is_ideograph

if TYPE_CHECKING:  # timestamps imports protocol, which imports options, which imports this
    from .timestamps import WordTiming

#: The ``language_hints`` values the service understands.
LANGUAGES: tuple[str, ...] = ("zh", "en", "fr", "de", "ja", "ko", "ru")

#: ISO 639-2/3 codes (and Cantonese, which CosyVoice speaks under the ``zh`` hint).
LANGUAGE_ALIASES: dict[str, str] = {
    "cmn": "zh",
    "yue": "zh",
    "zho": "zh",
    "chi": "zh",
    "eng": "en",
    "fra": "fr",
    "fre": "fr",
    "deu": "de",
    "ger": "de",
    "jpn": "ja",
    "kor": "ko",
    "rus": "ru",
}


def find_language_hint(language: object) -> str | None:
    """The hint for a BCP-47 tag, a POSIX locale or an ISO code; None when there is none.

    ``"en-US"`` -> ``"en"``, ``"zh_CN"`` -> ``"zh"``, ``"zh-Hans-CN"`` -> ``"zh"``,
    ``"yue"`` -> ``"zh"``, ``"eng"`` -> ``"en"``. Enum members (Pipecat's
    ``Language``) are read through their ``value``.
    """
    value = getattr(language, "value", language)
    if not isinstance(value, str) or not value.strip():
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    primary = LANGUAGE_ALIASES.get(primary, primary)
    return primary if primary in LANGUAGES else None


def language_hint(language: object) -> str:
    """Like ``find_language_hint``, but a language without a hint is an ``InvalidParameterError``."""
    hint = find_language_hint(language)
    if hint is None:
        shown = getattr(language, "value", language)
        raise InvalidParameterError(
            f"language={shown!r} is invalid: expected a language tag of one of {', '.join(LANGUAGES)}"
            " (or a regional variant such as en-US, zh_CN)",
            parameter="language",
        )
    return hint


def unspaced(char: str) -> bool:
    """A character of a script written without spaces (CJK ideographs, kana, CJK
    and full-width punctuation): no space goes between it and its neighbours."""
    return bool(char) and (
        is_ideograph(char)
        or "\u3000" <= char <= "\u30ff"  # CJK punctuation, hiragana, katakana
        or "\uff00" <= char <= "\uffef"  # full-width forms
    )


def spacing_runs(words: Iterable[WordTiming]) -> list[tuple[bool, list[WordTiming]]]:
    """Consecutive words grouped by ``unspaced`` script: ``(True, [...])`` for words
    written without spaces between them, ``(False, [...])`` for the others, in order
    (frameworks join the first kind without spaces and the second with them)."""
    runs: list[tuple[bool, list[WordTiming]]] = []
    for word in words:
        kind = any(unspaced(ch) for ch in word.text)
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(word)
        else:
            runs.append((kind, [word]))
    return runs
