"""The units the server synthesizes: sentences made of text and break parts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..text import is_ideograph


@dataclass(frozen=True)
class TextPart:
    """Text to speak, and the span of the sentence text it stands for.

    ``spoken`` is what the engine reads; ``start``/``end`` index the
    sentence's ``text``. They differ for SSML ``<sub alias>`` (the alias is
    spoken) and ``<phoneme>`` (``phonemes``/``alphabet`` carry the ph).
    """

    spoken: str
    start: int
    end: int
    phonemes: str | None = None
    alphabet: str | None = None

    @property
    def literal(self) -> bool:
        """True when ``spoken`` is exactly the sentence text of the span."""
        return self.phonemes is None and self.end - self.start == len(self.spoken)


@dataclass(frozen=True)
class BreakPart:
    """Silence (SSML ``<break>``)."""

    ms: int


Part = TextPart | BreakPart


@dataclass(frozen=True)
class Sentence:
    """One sentence of a task: its text (``original_text``) and what to synthesize."""

    text: str
    parts: tuple[Part, ...]
    #: Billable characters of the task's text up to and including this sentence.
    characters: int = 0

    @classmethod
    def plain(cls, text: str, characters: int = 0) -> Sentence:
        return cls(text, (TextPart(text, 0, len(text)),), characters)

    @property
    def speakable(self) -> bool:
        """False when there is nothing to synthesize (only punctuation or spaces)."""
        for part in self.parts:
            if isinstance(part, BreakPart):
                if part.ms > 0:
                    return True
            elif has_word_character(part.spoken) or part.phonemes:
                return True
        return False


def has_word_character(text: str) -> bool:
    return any(ch.isalnum() or is_ideograph(ch) for ch in text)


@dataclass(frozen=True)
class Word:
    """One word's timing: indexes into the sentence text, times in ms from the sentence start."""

    text: str
    begin_index: int
    end_index: int
    begin_time: float
    end_time: float


@dataclass(frozen=True)
class VoiceSettings:
    """The synthesis parameters an engine needs."""

    voice: str
    sample_rate: int
    volume: int = 50
    rate: float = 1.0
    pitch: float = 1.0
    seed: int = 0
    tag: int = 1000
    language: str | None = None
    voice_languages: tuple[str, ...] = ()


@dataclass
class Synthesis:
    """An engine's output for one sentence: mono int16 samples and word timings."""

    samples: npt.NDArray[np.int16]
    sample_rate: int
    words: list[Word] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return len(self.samples) * 1000.0 / self.sample_rate
