"""The tone engine: deterministic square waves, one per word, for exact assertions.

Word i of a sentence lasts ``word_ms / rate`` then a silent gap of
``gap_ms / rate``; a sentence of n words lasts exactly ``n * (word + gap)``
ms (rounded to whole samples). Every sample of a word is ``+A`` or ``-A``
with ``A = tag * volume / 50`` (clipped to int16), so the amplitude tells
which task the audio belongs to. The wave is ~200 Hz times the pitch; the
seed shifts its phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...text import is_ideograph
from ..model import BreakPart, Sentence, Synthesis, VoiceSettings, Word, has_word_character

BASE_FREQUENCY_HZ = 200.0


def tokenize(text: str) -> list[tuple[int, int]]:
    """Raw token spans: every ideograph alone, runs of other non-space characters.

    Punctuation right after an ideograph is a token of its own here; the
    caller attaches punctuation-only tokens to the previous word.
    """
    spans: list[tuple[int, int]] = []
    start = -1
    for i, ch in enumerate(text):
        if ch.isspace():
            if start >= 0:
                spans.append((start, i))
                start = -1
        elif is_ideograph(ch):
            if start >= 0:
                spans.append((start, i))
                start = -1
            spans.append((i, i + 1))
        elif start < 0:
            start = i
    if start >= 0:
        spans.append((start, len(text)))
    return spans


@dataclass
class _Item:
    """A word (with its sentence span) or a break on the sentence timeline."""

    begin: int = 0
    end: int = 0
    spoken: str = ""
    literal: bool = True
    break_ms: float = -1.0


def sentence_words(sentence: Sentence) -> list[_Item]:
    """The timeline of a sentence: words (punctuation attached) and breaks."""
    items: list[_Item] = []
    prefix: int | None = None  # start of leading punctuation waiting for a word
    for part in sentence.parts:
        if isinstance(part, BreakPart):
            items.append(_Item(break_ms=float(part.ms)))
            continue
        for a, b in tokenize(part.spoken):
            token = part.spoken[a:b]
            if part.literal:
                begin, end, literal = part.start + a, part.start + b, True
            else:
                begin, end, literal = part.start, part.end, False
            if not has_word_character(token):
                last = _last_word(items)
                if last is not None:
                    last.end = max(last.end, end)
                    if not last.literal:
                        last.spoken += token
                elif prefix is None:
                    prefix = begin
                continue
            if prefix is not None:
                begin, prefix = min(prefix, begin), None
            items.append(_Item(begin, end, token, literal))
    return items


def _last_word(items: list[_Item]) -> _Item | None:
    for item in reversed(items):
        if item.break_ms < 0:
            return item
    return None


def word_count(text: str) -> int:
    """Words of a plain sentence as the tone engine counts them."""
    return sum(1 for item in sentence_words(Sentence.plain(text)) if item.break_ms < 0)


class ToneEngine:
    """Square-wave words; cheap enough to run on the event loop."""

    name = "tone"
    blocking = False

    def __init__(self, word_ms: float = 200.0, gap_ms: float = 50.0) -> None:
        self.word_ms = float(word_ms)
        self.gap_ms = float(gap_ms)

    def synthesize(self, sentence: Sentence, voice: VoiceSettings) -> Synthesis:
        rate = voice.rate or 1.0
        word_ms, gap_ms = self.word_ms / rate, self.gap_ms / rate
        sr = voice.sample_rate
        per_ms = sr / 1000.0
        spans: list[tuple[int, int]] = []
        words: list[Word] = []
        t = 0.0
        text = sentence.text
        for item in sentence_words(sentence):
            if item.break_ms >= 0:
                t += item.break_ms
                continue
            spans.append((round(t * per_ms), round((t + word_ms) * per_ms)))
            shown = text[item.begin : item.end] if item.literal else item.spoken
            words.append(Word(shown, item.begin, item.end, t, t + word_ms))
            t += word_ms + gap_ms
        total = round(t * per_ms)
        amplitude = min(32767, round(voice.tag * voice.volume / 50))
        samples = np.zeros(total, dtype=np.int16)
        if amplitude and spans:
            half = max(1, round(sr / (2.0 * BASE_FREQUENCY_HZ * (voice.pitch or 1.0))))
            period = np.full(2 * half, -amplitude, dtype=np.int16)
            period[:half] = amplitude
            # sample n is +A when ((n + phase) // half) is even
            wave = np.resize(np.roll(period, -(voice.seed % (2 * half))), total)
            for a, b in spans:
                samples[a:b] = wave[a:b]
        return Synthesis(samples, sr, words)

    def close(self) -> None:
        return None


def tone_tags(pcm: bytes) -> set[int]:
    """The distinct non-zero ``|sample|`` values of int16 PCM: the tags of the tasks it came from."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int32)
    return {int(v) for v in np.unique(np.abs(samples)) if v}
