"""CosyVoiceTTSService in real Pipecat pipelines (run_test) against the embedded tone server.

The tone engine makes exact assertions possible: every word is 200 ms of
square wave plus a 50 ms gap (divided by the speech rate), and every sample
of a task's audio has |sample| == that task's tag (times volume / 50).
"""

from __future__ import annotations

import itertools

import pytest
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData
from pipecat.services.tts_service import TextAggregationMode
from pipecat_cosyvoice import CosyVoiceTTSService
from pipecat_helpers import (
    Driver,
    Probe,
    audio_bytes,
    context_ids,
    metrics_of,
    of_type,
    run_pipeline,
    spoken_tasks,
    stopped_ids,
    tags_of,
    task_saying,
    word_frames,
)

from cosyvoice_stream import billable_characters

WORD_NS = 250_000_000  # one tone word plus its gap, at speech rate 1
TOLERANCE_NS = 1_000_000


def tokens_of(text: str) -> list[str]:
    """LLM-style tokens: pieces of at most 3 characters, spaces leading."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        out.extend(piece[j : j + 3] for j in range(0, len(piece), 3))
    return out


def llm_turn(text: str) -> list:
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in tokens_of(text)),
        LLMFullResponseEndFrame(),
    ]


def assert_word_grid(pts: list[int], step_ns: int = WORD_NS) -> None:
    """Word times on the tone grid: strictly increasing, exactly one word apart, across sentences."""
    assert pts == sorted(pts) and len(set(pts)) == len(pts), pts
    for a, b in itertools.pairwise(pts):
        assert abs((b - a) - step_ns) <= TOLERANCE_NS, (a, b)


# -- a TTSSpeakFrame at any output rate ----------------------------------------------
@pytest.mark.parametrize(
    ("rate", "service_rate"), [(16000, 16000), (24000, 24000), (48000, 48000), (32000, 44100)]
)
async def test_speak_frame_at_pipeline_rate(server, rate: int, service_rate: int) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    text = "Hello there. How are you today?"
    down, up = await run_pipeline(tts, [TTSSpeakFrame(text)], sample_rate=rate)

    assert not up
    (task,) = spoken_tasks(server)
    assert task.parameters["sample_rate"] == service_rate  # native when CosyVoice has the rate
    (ctx,) = context_ids(down)
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame))]
    assert kinds[0] is TTSStartedFrame and kinds[-1] is TTSStoppedFrame
    assert set(kinds[1:-1]) == {TTSAudioRawFrame}
    audio_frames = of_type(down, TTSAudioRawFrame)
    assert all(f.sample_rate == rate and f.num_channels == 1 and f.context_id == ctx for f in audio_frames)
    pcm = audio_bytes(down)
    assert len(pcm) % 2 == 0
    if rate == service_rate:
        assert len(pcm) == task.audio_bytes_sent  # every byte, nothing else
        assert tags_of(pcm) == {task.tag}
    else:
        assert abs(len(pcm) / 2 / rate - 6 * 0.25) < 0.005  # 6 words, resampled from 44.1 kHz

    words = word_frames(down)
    assert [w.text for w in words] == text.split()
    assert all(w.context_id == ctx for w in words)
    assert_word_grid([w.pts for w in words])
    assert stopped_ids(down) == [ctx]


# -- streamed LLM text ------------------------------------------------------------------
async def test_llm_token_stream_goes_to_one_task(server) -> None:
    text = "The first sentence is short. The second one follows it! Is the third a question?"
    tts = CosyVoiceTTSService(url=server.url)  # TextAggregationMode.TOKEN by default
    down, up = await run_pipeline(tts, llm_turn(text))

    assert not up
    (task,) = spoken_tasks(server)  # one CosyVoice task for the whole turn
    assert len(task.texts) > 3  # tokens streamed as they came, not sentences
    assert "".join(task.texts) == text
    assert task.sentences == [
        "The first sentence is short.",
        "The second one follows it!",
        "Is the third a question?",
    ]
    pcm = audio_bytes(down)
    assert len(pcm) == task.audio_bytes_sent == 15 * 24000 // 4 * 2
    assert tags_of(pcm) == {task.tag}
    words = word_frames(down)
    assert [w.text for w in words] == text.split()
    assert_word_grid([w.pts for w in words])  # increasing across all three sentences
    # The turn's end follows its audio and words.
    end = next(i for i, f in enumerate(down) if isinstance(f, LLMFullResponseEndFrame))
    assert end > max(i for i, f in enumerate(down) if isinstance(f, (TTSAudioRawFrame, TTSStoppedFrame)))


async def test_sentence_aggregation_sends_sentences_to_one_task(server) -> None:
    text = "One two three. Four five six. Seven eight."
    tts = CosyVoiceTTSService(url=server.url, text_aggregation_mode=TextAggregationMode.SENTENCE)
    down, up = await run_pipeline(tts, llm_turn(text))

    assert not up
    (task,) = spoken_tasks(server)
    assert [t.strip() for t in task.texts] == ["One two three.", "Four five six.", "Seven eight."]
    assert len(audio_bytes(down)) == task.audio_bytes_sent
    words = word_frames(down)
    assert [w.text for w in words] == text.split()
    assert_word_grid([w.pts for w in words])


async def test_chinese_words_and_billable_usage(server) -> None:
    text = "你好，世界。今天天气很好。"
    tts = CosyVoiceTTSService(url=server.url, settings=CosyVoiceTTSService.Settings(language="zh"))
    down, up = await run_pipeline(tts, [TTSSpeakFrame(text)], metrics=True)

    assert not up
    (task,) = spoken_tasks(server)
    assert task.parameters["language_hints"] == ["zh"]
    words = word_frames(down)
    assert "".join(w.text for w in words) == text
    assert len(words) == 10  # one per ideograph, punctuation attached
    assert all(w.includes_inter_frame_spaces for w in words)  # no spaces inserted between characters
    assert_word_grid([w.pts for w in words])
    usage = metrics_of(down, TTSUsageMetricsData)
    assert [u.value for u in usage] == [task.characters] == [billable_characters(text)] == [23]


async def test_metrics_ttfb_and_usage_once_per_turn(server) -> None:
    text = "Metrics come from the service. 中文也算。"
    tts = CosyVoiceTTSService(url=server.url)
    down, _ = await run_pipeline(tts, llm_turn(text), metrics=True)

    (task,) = spoken_tasks(server)
    ttfb = [m.value for m in metrics_of(down, TTFBMetricsData) if m.value > 0]
    assert len(ttfb) == 1 and 0 < ttfb[0] < 2.0
    # The service's billable count (ideographs count 2), reported once: not len(text) on top.
    assert [u.value for u in metrics_of(down, TTSUsageMetricsData)] == [task.characters]
    assert task.characters == billable_characters(text) == len(text) + 4


# -- interruptions --------------------------------------------------------------------
LONG = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen."


async def test_interruption_stops_audio_and_next_utterance_is_clean(start_server) -> None:
    server = await start_server(rtf=0.25)  # 4 s of audio takes ~1 s: interrupt in the middle
    tts = CosyVoiceTTSService(url=server.url)
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(TTSSpeakFrame(LONG))
        await probe.wait_count(TTSAudioRawFrame)
        await driver.push_frame(InterruptionFrame())
        await probe.wait_count(InterruptionFrame)
        await driver.push_frame(TTSSpeakFrame("A fresh answer."))
        await probe.wait_for(lambda fs: len(stopped_ids(fs)) >= 1)

    down, up = await run_pipeline(tts, script=script, probe=probe)

    assert not up
    assert len(spoken_tasks(server)) == 2
    first, second = task_saying(server, "sixteen"), task_saying(server, "fresh")
    ctx1, ctx2 = context_ids(down)
    # The next utterance did not wait for the old task (which had ~1 s of real time left).
    interrupted_at = probe.time_of(lambda f: isinstance(f, InterruptionFrame))
    answered_at = probe.time_of(lambda f: isinstance(f, TTSAudioRawFrame) and f.context_id == ctx2)
    assert answered_at - interrupted_at < 0.5
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    before, after = down[:cut], down[cut + 1 :]
    assert tags_of(audio_bytes(before)) == {first.tag}
    # Not one sample of the first utterance after the interruption.
    assert not [f for f in after if isinstance(f, TTSAudioRawFrame) and f.context_id == ctx1]
    assert tags_of(audio_bytes(after)) == {second.tag}
    # The first task was cut off at the server too; the second one is complete.
    assert first.state != "finished" and first.audio_bytes_sent < 16 * 12000
    assert second.state == "finished"
    assert len(audio_bytes(after, ctx2)) == second.audio_bytes_sent == 3 * 12000
    assert stopped_ids(down) == [ctx2]
    assert [w.text for w in word_frames(after)] == ["A", "fresh", "answer."]


async def test_interruption_mid_llm_turn_then_new_turn(start_server) -> None:
    server = await start_server(rtf=0.25)
    tts = CosyVoiceTTSService(url=server.url)
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(LLMFullResponseStartFrame())
        for token in tokens_of(LONG + " And more words are still coming"):
            await driver.push_frame(LLMTextFrame(token))
        await probe.wait_count(TTSAudioRawFrame)
        await driver.push_frame(InterruptionFrame())
        await probe.wait_count(InterruptionFrame)
        for frame in llm_turn("Sorry, go ahead."):
            await driver.push_frame(frame)
        await probe.wait_count(LLMFullResponseEndFrame)

    down, up = await run_pipeline(tts, script=script, probe=probe)

    assert not up
    assert len(spoken_tasks(server)) == 2
    first, second = task_saying(server, "one two"), task_saying(server, "Sorry")
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    after = down[cut + 1 :]
    assert tags_of(audio_bytes(down[:cut])) == {first.tag}
    assert tags_of(audio_bytes(after)) == {second.tag}
    assert first.state != "finished"
    assert len(audio_bytes(after)) == second.audio_bytes_sent == 3 * 12000
    words = word_frames(after)
    assert [w.text for w in words] == ["Sorry,", "go", "ahead."]
    assert_word_grid([w.pts for w in words])


async def test_uninterruptible_speech_survives_an_interruption(start_server) -> None:
    server = await start_server(rtf=0.1)
    tts = CosyVoiceTTSService(url=server.url)
    probe = Probe()
    keep = TTSSpeakFrame("Please hold while I transfer your call.")
    keep.interruptible = False

    async def script(driver: Driver) -> None:
        await driver.push_frame(keep)
        await probe.wait_count(TTSAudioRawFrame)
        await driver.push_frame(InterruptionFrame())
        await probe.wait_count(TTSStoppedFrame)

    down, _ = await run_pipeline(tts, script=script, probe=probe)

    (task,) = spoken_tasks(server)
    assert task.state == "finished"
    assert len(audio_bytes(down)) == task.audio_bytes_sent == 7 * 12000


# -- other paths ---------------------------------------------------------------------
async def test_without_word_timestamps_the_text_follows_the_audio(server) -> None:
    tts = CosyVoiceTTSService(url=server.url, word_timestamps=False)
    down, up = await run_pipeline(tts, [TTSSpeakFrame("No word times here.")])

    assert not up
    (task,) = spoken_tasks(server)
    assert not task.parameters.get("word_timestamp_enabled", False)
    assert " ".join(w.text for w in word_frames(down)) == "No word times here."
    last_audio = max(i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame))
    assert all(down.index(w) > last_audio for w in word_frames(down))


async def test_end_frame_mid_turn_speaks_what_was_sent(server) -> None:
    frames = [LLMFullResponseStartFrame(), *(LLMTextFrame(t) for t in tokens_of("Cut short by the end"))]
    tts = CosyVoiceTTSService(url=server.url)
    down, up = await run_pipeline(tts, frames)  # run_test then sends EndFrame, no LLMFullResponseEndFrame

    assert not up
    (task,) = spoken_tasks(server)
    assert task.state == "finished" and "".join(task.texts) == "Cut short by the end"
    assert len(audio_bytes(down)) == task.audio_bytes_sent == 5 * 12000


@pytest.mark.parametrize("mode", [TextAggregationMode.TOKEN, TextAggregationMode.SENTENCE])
async def test_ssml_document_in_a_speak_frame(server, mode: TextAggregationMode) -> None:
    ssml = '<speak>Hello <break time="500ms"/> world.</speak>'
    tts = CosyVoiceTTSService(url=server.url, text_aggregation_mode=mode)
    down, up = await run_pipeline(tts, [TTSSpeakFrame(ssml)])

    assert not up
    (task,) = spoken_tasks(server)
    assert task.parameters["enable_ssml"] is True
    assert [t.strip() for t in task.texts] == [ssml]  # one message, the whole document
    assert len(audio_bytes(down)) == task.audio_bytes_sent == (2 * 250 + 500) * 48
    # (In TOKEN mode Pipecat's sentence regrouping also reports the closing tag as text.)
    assert [w.text for w in word_frames(down)][:2] == ["Hello", "world."]
