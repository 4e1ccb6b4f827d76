"""Issue 14 #8, the flush storm: 100 flushes in one stream are one task on one connection.

Before: each ``flush()`` finished the task and started a new one, so 100 flushes
opened 101 connections and 201 tasks. Flushes never multiply connections or
tasks, through the core and through LiveKit's ``SynthesizeStream.flush()``.
"""

from __future__ import annotations

import asyncio

from livekit.agents import tts as lk_tts
from livekit.plugins import cosyvoice

from cosyvoice_stream import AsyncSynthesizer, AudioChunk, SynthesisComplete, WordTimestamps
from cosyvoice_stream.server import EmbeddedServer

FLUSHES = 100
LIMIT = 20.0


def fragment(i: int) -> str:
    return f" part{i}"


def assert_one_task_one_connection(server: EmbeddedServer) -> None:
    spoken = [t for t in server.tasks if t.texts]
    assert len(spoken) == 1, f"{len(spoken)} tasks received text"
    (task,) = spoken
    assert task.state == "finished" and task.flushes == FLUSHES
    assert "".join(task.texts) == "".join(fragment(i) for i in range(FLUSHES)) + " end"
    # keep_warm=0: no spare connection; the next task may be primed on the same one.
    assert server.connections_opened == 1
    assert len(server.tasks) <= 2


async def test_core_100_flushes_one_connection_one_task(server: EmbeddedServer) -> None:
    async with AsyncSynthesizer(url=server.url, keep_warm=0, word_timestamp_enabled=True) as synth:
        stream = synth.stream()
        for i in range(FLUSHES):
            stream.push_text(fragment(i))
            stream.flush()
        stream.push_text(" end")
        await stream.finish()
        audio = 0
        starts: list[float] = []
        done = 0

        async def read() -> None:
            nonlocal audio, done
            async for event in stream:
                if isinstance(event, AudioChunk):
                    audio += len(event.audio)
                elif isinstance(event, WordTimestamps):
                    starts.extend(w.start for w in event.words)
                elif isinstance(event, SynthesisComplete):
                    done += 1

        await asyncio.wait_for(read(), LIMIT)
    assert_one_task_one_connection(server)
    assert done == 1 and audio == server.tasks[0].audio_bytes_sent
    assert len(starts) == FLUSHES + 1 and starts == sorted(starts)


async def test_livekit_100_flushes_one_connection_one_task(server: EmbeddedServer) -> None:
    """LiveKit 1.8.9 drops text pushed after a flush (it warns that one segment per stream
    is supported); the flushes still all reach the plugin, and send one flush at most."""
    tts = cosyvoice.TTS(base_url=server.url)
    tts.synthesizer.pool.keep_warm = 0
    try:
        async with tts.stream() as stream:
            stream.push_text(fragment(0))
            for i in range(FLUSHES):
                stream.flush()
                stream.push_text(fragment(i + 1))  # dropped by LiveKit itself
            stream.end_input()

            async def read() -> list[lk_tts.SynthesizedAudio]:
                return [event async for event in stream]

            events = await asyncio.wait_for(read(), LIMIT)
    finally:
        await tts.aclose()
    assert events and events[-1].is_final
    spoken = [t for t in server.tasks if t.texts]
    assert len(spoken) == 1
    (task,) = spoken
    assert task.texts == [fragment(0)] and task.flushes <= 1 and task.state == "finished"
    assert server.connections_opened == 1 and len(server.tasks) <= 2
