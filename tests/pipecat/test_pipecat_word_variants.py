"""Word times through Pipecat in every server variant shared/PROTOCOL.md lists.

The embedded server plays each variant (where the words come, whether times
restart per sentence, the old events without type/index); the word frames'
times must follow the audio the pipeline carries within 30 ms.
"""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import TTSSpeakFrame
from pipecat_cosyvoice import CosyVoiceTTSService
from pipecat_helpers import audio_bytes, run_pipeline, word_frames

TEXT = "one two three. four five. six seven eight nine."
RATE = 24000
VARIANTS = [
    (placement, origin, legacy)
    for placement in ("sentence-end", "task-finished", "task-finished-flat", "both")
    for origin in ("task", "sentence")
    for legacy in (False, True)
]


def onsets(pcm: bytes, rate: int) -> list[float]:
    """Seconds at which each tone word starts (silence to sound)."""
    loud = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > 0
    edges = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return [s / rate for s in ([0] if loud.size and loud[0] else []) + edges.tolist()]


@pytest.mark.parametrize(("placement", "origin", "legacy"), VARIANTS)
async def test_word_frames_follow_the_audio(start_server, placement: str, origin: str, legacy: bool) -> None:
    server = await start_server(word_timestamps_in=placement, word_time_origin=origin, legacy_events=legacy)
    tts = CosyVoiceTTSService(url=server.url)
    down, up = await run_pipeline(tts, [TTSSpeakFrame(TEXT)], sample_rate=RATE)

    assert not up
    words = word_frames(down)
    assert [w.text.strip(".") for w in words] == TEXT.replace(".", "").split()
    heard = onsets(audio_bytes(down), RATE)
    assert len(heard) == len(words)
    # pts are on the pipeline's clock: compare each word's distance from the first.
    for word, onset in zip(words, heard, strict=True):
        assert abs((word.pts - words[0].pts) / 1e9 - (onset - heard[0])) <= 0.03, (word.text, word.pts, onset)
