"""Speech engines of the embedded server: ``tone`` (deterministic) and ``espeak`` (real speech)."""

from __future__ import annotations

from .base import Engine
from .tone import ToneEngine


def create_engine(name: str, *, tone_word_ms: float = 200.0, tone_gap_ms: float = 50.0) -> Engine:
    """The engine called ``name``; raises a clear error when its library is missing."""
    if name == "tone":
        return ToneEngine(tone_word_ms, tone_gap_ms)
    if name == "espeak":
        from .espeak import EspeakEngine

        return EspeakEngine()
    raise ValueError(f"unknown engine {name!r}: expected 'tone' or 'espeak'")


__all__ = ["Engine", "ToneEngine", "create_engine"]
