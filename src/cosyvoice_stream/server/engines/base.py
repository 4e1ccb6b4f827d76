"""What an engine is: something that turns one sentence into samples and word timings."""

from __future__ import annotations

from typing import Protocol

from ..model import Sentence, Synthesis, VoiceSettings


class Engine(Protocol):
    """A speech engine.

    ``synthesize`` is synchronous. When ``blocking`` is True the server runs
    it in the engine's own worker thread (``run_in_executor``), else inline
    on the event loop (it must then be cheap).
    """

    name: str
    blocking: bool

    def synthesize(self, sentence: Sentence, voice: VoiceSettings) -> Synthesis: ...

    def close(self) -> None: ...
