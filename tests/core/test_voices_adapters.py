"""A voice without word timestamps degrades in a real Pipecat pipeline (one log line, text without pts)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame, TTSTextFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from pipecat_cosyvoice import CosyVoiceTTSService

from cosyvoice_stream.server import EmbeddedServer

LIMIT = 20.0


async def _speak(tts: CosyVoiceTTSService, text: str) -> list[object]:
    params = PipelineParams(audio_out_sample_rate=24000)
    down, _ = await asyncio.wait_for(
        run_test(tts, frames_to_send=[TTSSpeakFrame(text)], pipeline_params=params), LIMIT
    )
    return list(down)


async def test_pipecat_pushes_text_without_word_times_for_a_v1_voice(
    start_server, caplog: pytest.LogCaptureFixture
) -> None:
    server: EmbeddedServer = await start_server()
    with caplog.at_level(logging.INFO, logger="cosyvoice_stream"):
        tts = CosyVoiceTTSService(url=server.url, model="cosyvoice-v1", voice="longwan", prewarm=False)
        down = await _speak(tts, "No word times here.")

    (task,) = [t for t in server.tasks if t.texts]
    assert task.state == "finished" and task.parameters["voice"] == "longwan"
    assert "word_timestamp_enabled" not in task.parameters
    words = [f for f in down if isinstance(f, TTSTextFrame)]
    assert " ".join(w.text for w in words) == "No word times here."
    last_audio = max(i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame))
    assert all(down.index(w) > last_audio for w in words)  # pushed after the audio, not timed
    degraded = [r for r in caplog.records if "has no word timestamps" in r.getMessage()]
    assert len(degraded) == 1 and "longwan" in degraded[0].getMessage()


async def test_pipecat_keeps_word_times_for_a_voice_with_them(start_server) -> None:
    server: EmbeddedServer = await start_server()
    tts = CosyVoiceTTSService(url=server.url, model="cosyvoice-v2", voice="longxiaochun_v2", prewarm=False)
    down = await _speak(tts, "Timed words here.")

    (task,) = [t for t in server.tasks if t.texts]
    assert task.parameters["word_timestamp_enabled"] is True
    words = [f for f in down if isinstance(f, TTSTextFrame)]
    assert [w.text for w in words] == ["Timed", "words", "here."]
    assert all(w.pts is not None for w in words)
