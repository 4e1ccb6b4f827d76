"""The client leaves nothing for the garbage collector when a stream is cut off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cosyvoice_stream import AsyncSynthesizer, AudioChunk
from cosyvoice_stream.aio.stream import SynthesisStream, _TaskRun
from cosyvoice_stream.server import EmbeddedServer


async def _cancel_after_first_audio(synth: AsyncSynthesizer) -> None:
    stream = synth.stream()
    stream.push_text("Several words, so that the audio is still coming when the stream is cancelled.")
    await stream.finish()
    async for event in stream:
        if isinstance(event, AudioChunk) and event.audio:
            break
    await asyncio.wait_for(stream.cancel(), 2)


async def test_a_cancelled_stream_leaves_no_reference_cycle(
    alive_without_collector: Callable[[type], int],
) -> None:
    # A barge-in used to leave the stream's task run alive in a cycle through its task's
    # CancelledError (the traceback holds the run's frames) until a full collection.
    async with (
        EmbeddedServer(engine="tone", rtf=1.0) as server,
        AsyncSynthesizer(url=server.url, api_key="sk-test") as synth,
    ):
        for _ in range(3):
            await _cancel_after_first_audio(synth)
        assert sum(1 for record in server.tasks if record.texts) == 3
        assert alive_without_collector(SynthesisStream) == 0
        assert alive_without_collector(_TaskRun) == 0
