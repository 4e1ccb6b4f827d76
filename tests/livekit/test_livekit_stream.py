"""tts.stream() and tts.synthesize() against the embedded server."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents.utils import is_given
from livekit.agents.voice.io import TimedString
from livekit_helpers import (
    FLUSH,
    LIMIT,
    collect_metrics,
    run_stream,
    run_synthesize,
    spoken_tasks,
    tags_of,
    tone_duration,
)

from cosyvoice_stream.server import EmbeddedServer

PUSHES = ["Hel", "lo there, ", "how are", " you today?", " Fine", " thanks.", FLUSH]
TEXT = "".join(p for p in PUSHES if p)
WORDS = 8  # Hello there how are you today Fine thanks


def assert_monotonic(transcripts: list[TimedString]) -> None:
    starts = [t.start_time for t in transcripts if is_given(t.start_time)]
    assert starts == sorted(starts)
    for t in transcripts:
        if is_given(t.start_time):
            assert is_given(t.end_time) and t.end_time >= t.start_time


@pytest.mark.parametrize("rate", [16000, 24000, 48000, 32000])
async def test_stream_in_fragments_at_every_rate(server: EmbeddedServer, make_tts, rate: int) -> None:
    tts = make_tts(sample_rate=rate)
    metrics = collect_metrics(tts)
    out = await run_stream(tts, PUSHES)

    (task,) = spoken_tasks(server)
    assert "".join(task.texts) == TEXT
    # Supported rates are asked for natively; 32000 Hz comes from 44100 Hz, resampled.
    assert task.parameters["sample_rate"] == (44100 if rate == 32000 else rate)
    assert task.parameters["word_timestamp_enabled"] is True
    assert {frame.sample_rate for frame in out.frames} == {rate}
    assert {frame.num_channels for frame in out.frames} == {1}
    assert out.duration == pytest.approx(tone_duration(WORDS), abs=0.01)
    if rate != 32000:  # untouched samples: the task's tag and silence only
        assert tags_of(out.frames) == {task.tag}

    # Exactly one segment: the last frame, and only it, is final.
    assert [ev.is_final for ev in out.events] == [False] * (len(out.events) - 1) + [True]
    assert len({ev.segment_id for ev in out.events}) == 1
    assert out.events[0].segment_id == task.task_id  # the client task id names the segment

    transcripts = out.transcripts
    assert "".join(transcripts) == TEXT
    assert_monotonic(transcripts)
    assert transcripts[0].start_time == pytest.approx(0.0, abs=1e-6)
    assert transcripts[-1].end_time <= out.duration + 1e-6

    (m,) = metrics
    assert m.streamed and not m.cancelled
    assert m.characters_count == len(TEXT)
    assert 0 < m.ttfb < LIMIT
    assert m.audio_duration == pytest.approx(out.duration, abs=1e-6)
    assert m.request_id == out.events[0].request_id
    assert m.segment_id == task.task_id
    assert (m.metadata.model_name, m.metadata.model_provider) == ("cosyvoice-v3-flash", "DashScope")


async def test_transcripts_of_english_and_chinese_stay_monotonic(server: EmbeddedServer, make_tts) -> None:
    pushes = ["Good morning. ", "How are you? ", "今天天气", "很好。", "我们", "去公园吧！", " See you."]
    out = await run_stream(make_tts(), pushes)

    transcripts = out.transcripts
    text = "".join(pushes)
    assert "".join(transcripts) == text  # no spaces inserted between Chinese words or sentences
    assert_monotonic(transcripts)
    # Times run on across the sentences: each sentence starts after the previous one.
    chinese = [t for t in transcripts if any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert [str(t) for t in chinese][:3] == ["今", "天", "天"]
    assert chinese[0].start_time == pytest.approx(tone_duration(5), abs=1e-6)  # after 5 English words
    last = transcripts[-1]
    assert str(last) == "you."
    assert last.end_time == pytest.approx(out.duration - 0.05, abs=0.01)  # the last word, before its gap


async def test_flush_has_the_text_synthesized_without_waiting_for_more(
    server: EmbeddedServer, make_tts
) -> None:
    """A trailing '.' makes the server wait for more text; a flush ends the task instead."""
    tts = make_tts()
    async with tts.stream() as stream:
        stream.push_text("It costs 3.")
        stream.flush()
        first = await asyncio.wait_for(stream.__anext__(), LIMIT)  # input not ended
        assert first.frame.duration > 0
        stream.end_input()
        rest = [ev async for ev in stream]
    (task,) = spoken_tasks(server)
    assert task.finish_received and task.state == "finished"
    assert rest[-1].is_final


async def test_second_stream_reuses_the_warm_connection(server: EmbeddedServer, make_tts) -> None:
    tts = make_tts()
    metrics = collect_metrics(tts)
    await run_stream(tts, ["One two."])
    await run_stream(tts, ["Three four."])

    first, second = metrics
    assert not first.connection_reused and first.acquire_time > 0  # a new connection was opened
    # acquire_time is the whole wait for a connection (utils.ConnectionPool's meaning):
    # picking up a warm one with its task started costs next to nothing, not a handshake.
    assert second.connection_reused and 0.0 <= second.acquire_time < first.acquire_time
    first_task, second_task = spoken_tasks(server)
    assert first_task.connection_id == second_task.connection_id


async def test_prewarm_opens_a_primed_connection(server: EmbeddedServer, make_tts) -> None:
    tts = make_tts()
    metrics = collect_metrics(tts)
    tts.prewarm()  # in the background: a connection with a task already started
    await tts.synthesizer.pool.wait_until(lambda pool: any(c.primed for c in pool.idle), LIMIT)
    assert server.connections_opened >= 1 and len(server.tasks) == 1  # one started task, no text

    await run_stream(tts, ["Ready."])
    (m,) = metrics
    assert m.connection_reused  # acquire_time: see test_livekit_framework_suite.py


async def test_update_options_applies_to_new_streams_only(server: EmbeddedServer, make_tts) -> None:
    tts = make_tts(voice="longanyang")
    async with tts.stream() as old:
        tts.update_options(voice="longanhuan", speech_rate=2.0)
        old.push_text("Old voice.")
        old.end_input()
        old_out = [ev async for ev in old]
    new_out = await run_stream(tts, ["New voice."])

    old_task, new_task = spoken_tasks(server)
    assert (old_task.parameters["voice"], old_task.parameters["rate"]) == ("longanyang", 1.0)
    assert (new_task.parameters["voice"], new_task.parameters["rate"]) == ("longanhuan", 2.0)
    assert sum(ev.frame.duration for ev in old_out) == pytest.approx(tone_duration(2), abs=0.01)
    assert new_out.duration == pytest.approx(tone_duration(2, speech_rate=2.0), abs=0.01)


async def test_word_timestamps_off_pushes_no_transcripts(server: EmbeddedServer, make_tts) -> None:
    out = await run_stream(make_tts(word_timestamps=False), ["Hello world."])
    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)
    assert out.transcripts == []
    (task,) = spoken_tasks(server)
    assert not task.parameters.get("word_timestamp_enabled")


async def test_whitespace_only_stream_ends_without_audio(server: EmbeddedServer, make_tts) -> None:
    out = await run_stream(make_tts(), [" ", "\n", FLUSH])
    assert out.events == []
    assert spoken_tasks(server) == []


async def test_synthesize_plain_text(server: EmbeddedServer, make_tts) -> None:
    tts = make_tts(sample_rate=16000)
    metrics = collect_metrics(tts)
    out = await run_synthesize(tts, "Hello there. 你好。")

    (task,) = spoken_tasks(server)
    assert task.texts == ["Hello there. 你好。"]
    assert task.parameters.get("enable_ssml") is not True
    assert {f.sample_rate for f in out.frames} == {16000}
    assert out.duration == pytest.approx(tone_duration(4), abs=0.01)
    assert tags_of(out.frames) == {task.tag}
    assert out.events[-1].is_final
    assert "".join(out.transcripts) == "Hello there. 你好。"
    assert_monotonic(out.transcripts)
    (m,) = metrics
    assert not m.streamed and m.characters_count == len("Hello there. 你好。") and m.ttfb > 0


async def test_synthesize_ssml(server: EmbeddedServer, make_tts) -> None:
    ssml = '<speak>Hello <break time="500ms"/> world &amp; friends</speak>'
    out = await run_synthesize(make_tts(), ssml)

    (task,) = spoken_tasks(server)
    assert task.texts == [ssml] and task.parameters["enable_ssml"] is True
    # "&" is no word for the tone engine: 3 words and the break.
    assert out.duration == pytest.approx(tone_duration(3) + 0.5, abs=0.005)
    spoken = "".join(out.transcripts)
    assert "<" not in spoken and spoken.split() == ["Hello", "world", "&", "friends"]
    assert_monotonic(out.transcripts)


async def test_ssml_is_refused_on_streaming_input(server: EmbeddedServer, make_tts) -> None:
    with pytest.raises(APIStatusError, match="SSML") as info:
        await run_stream(make_tts(), ["<speak>Hello</speak>"], conn_options=APIConnectOptions(max_retry=2))
    assert info.value.retryable is False and info.value.status_code == 400


async def test_synthesize_whitespace_is_silent(server: EmbeddedServer, make_tts) -> None:
    out = await run_synthesize(make_tts(), "   ")
    assert out.events == [] and spoken_tasks(server) == []


async def test_streams_can_run_concurrently(server: EmbeddedServer, make_tts) -> None:
    tts = make_tts()
    a, b = await asyncio.gather(run_stream(tts, ["One two three."]), run_stream(tts, ["Four five."]))
    task_a, task_b = sorted(spoken_tasks(server), key=lambda t: len("".join(t.texts)), reverse=True)
    assert tags_of(a.frames) == {task_a.tag} and tags_of(b.frames) == {task_b.tag}
    assert task_a.connection_id != task_b.connection_id  # one task per connection at a time
    assert a.duration == pytest.approx(tone_duration(3), abs=0.01)
