"""Word times through Pipecat in every server variant shared/PROTOCOL.md lists.

The embedded server plays each variant (where the words come, whether times
restart per sentence, the old events without type/index); the word frames'
times must follow the audio the pipeline carries within 30 ms.
"""

from __future__ import annotations

import pytest
from pipecat.frames.frames import TTSSpeakFrame
from pipecat_cosyvoice import CosyVoiceTTSService
from pipecat_helpers import audio_bytes, run_pipeline, word_frames
from word_variants import VARIANTS, onsets
from word_variants import WORDS_TEXT as TEXT

RATE = 24000


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
