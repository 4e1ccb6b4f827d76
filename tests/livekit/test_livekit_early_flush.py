"""Early first clause through LiveKit: ``tts.stream()`` fed token by token, default settings."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import tts as lk_tts
from livekit.agents.utils import is_given
from livekit.plugins import cosyvoice
from livekit.plugins.cosyvoice.factory import create_tts
from livekit_helpers import LIMIT, Collected, run_stream, spoken_tasks, tone_duration

from cosyvoice_stream import adapters
from cosyvoice_stream.server import EmbeddedServer

FIRST = ["Well", ",", " tomorrow", " in", " Hang", "zhou", ","]
REST = [" the", " weather", " looks", " sunny", " and", " warm", "."]
TEXT = "".join(FIRST + REST)
SENTENCES = ["Well,", "tomorrow in Hangzhou, the weather looks sunny and warm."]


async def test_first_clause_audio_before_the_rest_of_the_sentence_is_pushed(
    server: EmbeddedServer, make_tts
) -> None:
    tts = make_tts()
    out = Collected()
    async with tts.stream() as stream:
        for token in FIRST:
            stream.push_text(token)
        # The sentence has no end yet: only the early flush makes this audio.
        out.events.append(await asyncio.wait_for(stream.__anext__(), LIMIT))
        for token in REST:
            stream.push_text(token)
        stream.end_input()

        async def rest() -> None:
            async for event in stream:
                out.events.append(event)

        await asyncio.wait_for(rest(), LIMIT)
    (task,) = spoken_tasks(server)
    # LiveKit's end_input() flushes too: sent unless finish-task follows it at once.
    assert task.flushes in (1, 2) and task.sentences == SENTENCES and task.state == "finished"
    assert out.events[-1].is_final
    assert "".join(out.transcripts) == TEXT
    starts = [t.start_time for t in out.transcripts if is_given(t.start_time)]
    assert starts == sorted(starts) and len(starts) == 10


async def test_token_by_token_one_task_one_segment(server: EmbeddedServer, make_tts) -> None:
    out = await run_stream(make_tts(), FIRST + REST)
    (task,) = spoken_tasks(server)
    assert task.flushes in (1, 2) and task.sentences == SENTENCES
    assert len({ev.segment_id for ev in out.events}) == 1 and out.events[-1].is_final
    assert sum(f.duration for f in out.frames) == pytest.approx(tone_duration(10), abs=0.01)


async def test_livekit_flush_is_the_core_flush(server: EmbeddedServer, make_tts) -> None:
    """``SynthesizeStream.flush()`` sends the protocol's flush in the same task; LiveKit
    1.8.9 itself drops text pushed after it (one segment per stream)."""
    tts = make_tts(early_flush=False)
    async with tts.stream() as stream:
        stream.push_text("It costs about")
        stream.flush()
        first = await asyncio.wait_for(stream.__anext__(), LIMIT)  # no sentence end: the flush did it
        assert first.frame.duration > 0
        stream.push_text(" three dollars.")  # LiveKit warns and drops this
        stream.end_input()
        rest = await asyncio.wait_for(_drain(stream), LIMIT)
    (task,) = spoken_tasks(server)
    assert task.texts == ["It costs about"] and task.flushes == 1 and task.state == "finished"
    assert rest[-1].is_final


async def _drain(stream: lk_tts.SynthesizeStream) -> list[lk_tts.SynthesizedAudio]:
    return [event async for event in stream]


async def test_early_flush_off_by_argument_config_and_env(server: EmbeddedServer) -> None:
    engines = [
        cosyvoice.TTS(base_url=server.url, early_flush=False),
        create_tts({"url": server.url, "early_flush": False}),
        adapters.create_tts({"url": server.url}, framework="livekit", env={"COSYVOICE_EARLY_FLUSH": "false"}),
    ]
    try:
        for engine in engines:
            assert engine.synthesizer.early_flush is False
            await run_stream(engine, FIRST + REST)
    finally:
        for engine in engines:
            await engine.aclose()
    tasks = spoken_tasks(server)
    assert all(t.flushes <= 1 for t in tasks)  # end_input()'s flush at most
    assert all(t.sentences == [" ".join(SENTENCES)] for t in tasks)
