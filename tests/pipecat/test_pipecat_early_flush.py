"""Early first clause through Pipecat: an LLM turn streamed token by token, default settings."""

from __future__ import annotations

from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.tests.utils import SleepFrame
from pipecat_cosyvoice import CosyVoiceTTSService
from pipecat_cosyvoice.factory import create_tts
from pipecat_helpers import Driver, Probe, audio_bytes, of_type, run_pipeline, spoken_tasks, word_frames

FIRST = ["Well", ",", " tomorrow", " in", " Hang", "zhou", ","]
REST = [" the", " weather", " looks", " sunny", " and", " warm", "."]
SENTENCES = ["Well,", "tomorrow in Hangzhou, the weather looks sunny and warm."]


def paced_turn(tokens: list[str], gap_s: float = 0.02) -> list:
    frames: list = [LLMFullResponseStartFrame()]
    for token in tokens:
        frames += [LLMTextFrame(token), SleepFrame(sleep=gap_s)]
    return [*frames, LLMFullResponseEndFrame()]


async def test_first_clause_audio_before_the_rest_of_the_sentence_is_pushed(server) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(LLMFullResponseStartFrame())
        for token in FIRST:
            await driver.push_frame(LLMTextFrame(token))
        await probe.wait_count(TTSAudioRawFrame)  # no sentence end yet: only the flush makes audio
        for token in REST:
            await driver.push_frame(LLMTextFrame(token))
        await driver.push_frame(LLMFullResponseEndFrame())
        await probe.wait_count(TTSStoppedFrame)

    _, up = await run_pipeline(tts, script=script, probe=probe)
    assert not up
    (task,) = spoken_tasks(server)
    assert task.flushes == 1 and task.sentences == SENTENCES
    assert task.finish_received and task.state == "finished"  # flush_audio still ends the task


async def test_token_stream_with_sleeps_one_task_words_in_order(server) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    down, up = await run_pipeline(tts, paced_turn(FIRST + REST))
    assert not up
    (task,) = spoken_tasks(server)
    assert task.flushes == 1 and task.sentences == SENTENCES and task.state == "finished"
    assert len(audio_bytes(down)) == task.audio_bytes_sent
    words = word_frames(down)
    assert [w.text for w in words][:3] == ["Well,", "tomorrow", "in"]
    pts = [w.pts for w in words]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert len(of_type(down, TTSStoppedFrame)) == 1


async def test_early_flush_off_by_constructor_and_by_config(server) -> None:
    for tts in (
        CosyVoiceTTSService(url=server.url, early_flush=False),
        create_tts({"url": server.url, "early_flush": False}),
    ):
        _, up = await run_pipeline(tts, paced_turn(FIRST + REST, gap_s=0.0))
        assert not up
    tasks = spoken_tasks(server)
    assert [t.flushes for t in tasks] == [0, 0]
    assert [t.sentences for t in tasks] == [[" ".join(SENTENCES)]] * 2
