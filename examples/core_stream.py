"""Stream LLM-like text fragments through the core asyncio client.

Runs against the embedded server (eSpeak NG) unless DASHSCOPE_API_KEY is set,
then against the cloud. Writes the audio to core_stream.wav.

    python examples/core_stream.py [--out core_stream.wav]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from cosyvoice_stream import AsyncSynthesizer, SynthesisComplete
from cosyvoice_stream.audio import wav_bytes

TOKENS = ["Hello", " there", "! ", "This audio", " was streamed", " token by token", ". ", "你好", "，世界。"]


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[str | None]:
    if os.environ.get("DASHSCOPE_API_KEY"):
        yield None  # the cloud
        return
    from cosyvoice_stream.server import EmbeddedServer

    async with EmbeddedServer(engine="espeak") as server:
        yield server.url


async def main() -> bytes:
    async with (
        endpoint() as url,
        AsyncSynthesizer(url=url, sample_rate=24000, word_timestamp_enabled=True) as synth,
    ):
        stream = synth.stream()
        for token in TOKENS:
            stream.push_text(token)
        await stream.finish()
        audio = bytearray()
        async for event in stream:
            audio += event.audio
            for word in event.words:
                print(f"  {word.start:6.2f}s-{word.end:5.2f}s  {word.text}")
            if isinstance(event, SynthesisComplete):
                m = event.metrics
                print(
                    f"time to first audio: {m.time_to_first_audio * 1000:.0f} ms, "
                    f"billable characters: {m.billable_characters}"
                )
    return bytes(audio)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("core_stream.wav"))
    out = parser.parse_args().out
    pcm = asyncio.run(main())
    out.write_bytes(wav_bytes(pcm, 24000))
    print(f"wrote {out} ({len(pcm) / 48000:.2f} s of audio)")
