"""The server variants of word timestamps, and where the tone engine's words start in the audio.

Shared by the suites that check word times against the audio through the core
(tests/reliability), Pipecat and LiveKit: every variant of
``ServerConfig(word_timestamps_in=..., word_time_origin=..., legacy_events=...)``.
"""

from __future__ import annotations

import numpy as np

#: Three sentences, so that later sentences show any time-origin mistake.
WORDS_TEXT = "one two three. four five. six seven eight nine."
#: (word_timestamps_in, word_time_origin, legacy_events) of every variant the server plays.
VARIANTS = [
    (placement, origin, legacy)
    for placement in ("sentence-end", "task-finished", "task-finished-flat", "both")
    for origin in ("task", "sentence")
    for legacy in (False, True)
]


def onsets(pcm: bytes, rate: int) -> list[float]:
    """Seconds at which each tone word starts in 16-bit PCM: silence to sound."""
    loud = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > 0
    edges = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    starts = ([0] if loud.size and loud[0] else []) + edges.tolist()
    return [s / rate for s in starts]
