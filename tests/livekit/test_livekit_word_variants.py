"""Word times through the LiveKit plugin in every server variant shared/PROTOCOL.md lists.

The embedded server plays each variant (where the words come, whether times
restart per sentence, the old events without type/index); the timed
transcripts must follow the audio frames within 30 ms.
"""

from __future__ import annotations

import pytest
from livekit.agents.utils import is_given
from livekit.plugins import cosyvoice
from livekit_helpers import run_stream
from word_variants import VARIANTS, onsets
from word_variants import WORDS_TEXT as TEXT


@pytest.mark.parametrize(("placement", "origin", "legacy"), VARIANTS)
async def test_transcripts_follow_the_audio(start_server, placement: str, origin: str, legacy: bool) -> None:
    server = await start_server(word_timestamps_in=placement, word_time_origin=origin, legacy_events=legacy)
    tts = cosyvoice.TTS(base_url=server.url)
    try:
        out = await run_stream(tts, [TEXT])
    finally:
        await tts.aclose()

    words = [t for t in out.transcripts if t.strip()]
    assert [w.strip().strip(".") for w in words] == TEXT.replace(".", "").split()
    heard = onsets(out.samples.tobytes(), tts.sample_rate)
    assert len(heard) == len(words)
    for word, onset in zip(words, heard, strict=True):
        assert is_given(word.start_time)
        assert abs(word.start_time - onset) <= 0.03, (str(word), word.start_time, onset)
