"""How long must the first clause be before it is flushed on its own? (measurement)

    python -m benchmarks.early_flush_min [--wav-dir DIR]

Streams LLM-like replies token by token through the core against the
embedded server with real speech (espeak engine, the benchmark's timing
model: first packet 150 ms, RTF 0.3) at 20/40/80 tokens per second, for
several minimum first-clause lengths (``early_flush_min_characters``), and
prints per setting: time from the first token to the first audio, and the
longest silence once audio has started (the playback underrun a listener
hears after the flushed clause, when the rest of the sentence is not ready
yet). With ``--wav-dir`` it also writes each reply's audio, for listening.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import wave
from pathlib import Path

from cosyvoice_stream import AsyncSynthesizer, AudioChunk
from cosyvoice_stream.server import EmbeddedServer, ServerConfig

REPLIES = [
    ["Well", ",", " tomorrow", " in", " Hang", "zhou", ",", " the", " weather", " looks", " sunny", " and",
     " warm", ".", " Bring", " a", " hat", "!"],
    ["Sure", ",", " I", " can", " help", " with", " that", ".", " Your", " table", " is", " booked", " for",
     " seven", ",", " by", " the", " window", "."],
    ["Yes", ";", " the", " train", " leaves", " at", " 10", ":", "30", ",", " from", " platform", " three",
     ",", " and", " arrives", " at", " noon", "."],
    ["好的", "，", "明天", "杭州", "的", "天气", "晴朗", "，", "气温", "二十", "五", "度", "左右", "。"],
    ["您好", "，", "您的", "订单", "已经", "发货", "，", "预计", "明天", "送达", "。"],
]  # fmt: skip
MINIMUMS = (0, 4, 8, 12, 16, 24)
RATES = (20, 40, 80)
RATE_HZ = 24000


async def once(synth: AsyncSynthesizer, tokens: list[str], period: float) -> tuple[float, float, bytes]:
    """(first token -> first audio, longest silence after playback started, audio)."""
    stream = synth.stream()
    arrivals: list[tuple[float, int]] = []  # (time, bytes) of each audio chunk
    chunks: list[bytes] = []

    async def consume() -> None:
        async for event in stream:
            if isinstance(event, AudioChunk) and event.audio:
                arrivals.append((time.perf_counter(), len(event.audio)))
                chunks.append(event.audio)

    reader = asyncio.ensure_future(consume())
    start = time.perf_counter()
    for i, token in enumerate(tokens):
        delay = start + i * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stream.push_text(token)
    await stream.finish()
    await asyncio.wait_for(reader, 30)
    first = arrivals[0][0]
    # Playback: each chunk plays when it has arrived and the previous one has played out.
    played_to = first
    longest = 0.0
    for at, size in arrivals:
        if at > played_to:
            longest = max(longest, at - played_to)
            played_to = at
        played_to += size / 2 / RATE_HZ
    return first - start, longest, b"".join(chunks)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav-dir", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    config = ServerConfig(engine="espeak", first_packet_delay_ms=150, rtf=0.3)
    async with EmbeddedServer(config) as server:
        print("min  rate  first audio ms (median)  longest silence after start ms (median / max)")
        for minimum in (None, *MINIMUMS):
            for rate in RATES:
                firsts, gaps = [], []
                synth = AsyncSynthesizer(
                    url=server.url,
                    sample_rate=RATE_HZ,
                    early_flush=minimum is not None,
                    early_flush_min_characters=minimum or 0,
                )
                await synth.prewarm()
                for r in range(args.repeat):
                    for n, reply in enumerate(REPLIES):
                        first, gap, audio = await once(synth, reply, 1 / rate)
                        firsts.append(first * 1000)
                        gaps.append(gap * 1000)
                        if args.wav_dir and r == 0 and rate == 40:
                            args.wav_dir.mkdir(parents=True, exist_ok=True)
                            name = args.wav_dir / f"reply{n}-min{'off' if minimum is None else minimum}.wav"
                            with wave.open(str(name), "wb") as out:
                                out.setnchannels(1)
                                out.setsampwidth(2)
                                out.setframerate(RATE_HZ)
                                out.writeframes(audio)
                await synth.aclose()
                label = "off" if minimum is None else str(minimum)
                print(
                    f"{label:>4} {rate:>4}  {statistics.median(firsts):8.0f}"
                    f"                 {statistics.median(gaps):6.0f} / {max(gaps):4.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    asyncio.run(main())
