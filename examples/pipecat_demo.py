"""A Pipecat bot speaking with CosyVoice, offline by default.

    python examples/pipecat_demo.py --out demo.wav        (what `make demo` runs)

The pipeline is a real Pipecat pipeline, minus the transport:

    ScriptedLLM  ->  CosyVoiceTTSService  ->  Recorder
    (a greeting as TTSSpeakFrame, then a reply streamed token by token as
     LLMFullResponseStartFrame / LLMTextFrame... / LLMFullResponseEndFrame)

With DASHSCOPE_API_KEY set it talks to the CosyVoice cloud service; without
it, it starts the embedded DashScope-compatible server in-process (eSpeak NG
voices, no network) and points the service at it. The bot's audio goes to the
WAV file; time to first audio and the word timings are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from loguru import logger
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner
from pipecat_cosyvoice import CosyVoiceTTSService

from cosyvoice_stream.server import EmbeddedServer

GREETING = "Hi! I'm a Pipecat bot with a CosyVoice voice."
REPLY = (
    "Sure, CosyVoice streams speech while the reply is still being written. "
    "Every token goes straight to one synthesis task, and the words come back with timestamps."
)
TOKEN_INTERVAL_S = 0.02  # a brisk LLM: 50 tokens per second


@dataclass
class Utterance:
    """What the recorder saw of one audio context."""

    first_text_at: float
    first_audio_at: float | None = None
    audio_bytes: int = 0
    words: list[tuple[str, float]] = field(default_factory=list)


class ScriptedLLM(FrameProcessor):
    """Stands in for an LLM: a greeting, then a reply streamed token by token."""

    def __init__(self, marks: list[float]) -> None:
        super().__init__()
        self._marks = marks  # when each utterance's first text left this processor
        self.first_clause_at: float | None = None  # when the reply's first clause was complete
        self._task: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._task = self.create_task(self._speak(), name="scripted-llm")

    async def _speak(self) -> None:
        self._marks.append(time.monotonic())
        await self.push_frame(TTSSpeakFrame(GREETING))
        await self.push_frame(LLMFullResponseStartFrame())
        first = True
        async for token in tokens(REPLY):
            if first:
                self._marks.append(time.monotonic())
                first = False
            await self.push_frame(LLMTextFrame(token))
            if self.first_clause_at is None and token.rstrip().endswith((",", ".", "!", "?")):
                self.first_clause_at = time.monotonic()
        await self.push_frame(LLMFullResponseEndFrame())
        await self.push_frame(EndWorkerFrame())  # the worker ends the pipeline after the queued frames


async def tokens(text: str) -> AsyncIterator[str]:
    """Word-piece tokens the way an LLM streams them (leading spaces included)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        while piece:
            yield piece[:4]
            piece = piece[4:]
            await asyncio.sleep(TOKEN_INTERVAL_S)


class Recorder(FrameProcessor):
    """The sink: keeps the bot's audio, word timings and metrics."""

    def __init__(self, marks: list[float]) -> None:
        super().__init__()
        self.audio: list[bytes] = []
        self.utterances: list[Utterance] = []
        self.ttfb: list[float] = []
        self.billed_characters = 0
        self._marks = marks
        self._current: Utterance | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        now = time.monotonic()
        if isinstance(frame, TTSStartedFrame):
            mark = self._marks[len(self.utterances)] if len(self._marks) > len(self.utterances) else now
            self._current = Utterance(first_text_at=mark)
            self.utterances.append(self._current)
        elif isinstance(frame, TTSAudioRawFrame) and self._current is not None:
            if self._current.first_audio_at is None:
                self._current.first_audio_at = now
            self._current.audio_bytes += len(frame.audio)
            self.audio.append(frame.audio)
        elif isinstance(frame, TTSTextFrame) and self._current is not None and frame.pts is not None:
            self._current.words.append((frame.text, frame.pts / 1e9))
        elif isinstance(frame, TTSStoppedFrame):
            self._current = None
        elif isinstance(frame, MetricsFrame):
            for data in frame.data:
                if isinstance(data, TTFBMetricsData) and data.value > 0:
                    self.ttfb.append(data.value)
                elif isinstance(data, TTSUsageMetricsData):
                    self.billed_characters += data.value
        await self.push_frame(frame, direction)


async def run_bot(url: str | None, out: str, sample_rate: int) -> int:
    marks: list[float] = []
    llm = ScriptedLLM(marks)
    tts = CosyVoiceTTSService(url=url, voice="longanyang")
    recorder = Recorder(marks)
    errors: list[str] = []

    @tts.event_handler("on_error")
    async def on_error(processor: FrameProcessor, error: object) -> None:
        errors.append(str(getattr(error, "error", error)))

    worker = PipelineWorker(
        Pipeline([llm, tts, recorder]),
        params=PipelineParams(
            audio_out_sample_rate=sample_rate, enable_metrics=True, enable_usage_metrics=True
        ),
        cancel_on_idle_timeout=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), timeout=120)

    pcm = b"".join(recorder.audio)
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    print(f"\nwrote {out}: {len(pcm) / (2 * sample_rate):.2f} s of audio at {sample_rate} Hz")
    for n, utterance in enumerate(recorder.utterances, 1):
        kind = "TTSSpeakFrame" if n == 1 else "streamed LLM reply"
        if utterance.first_audio_at is not None:
            ttfa = (utterance.first_audio_at - utterance.first_text_at) * 1000
            print(f"utterance {n} ({kind}): first audio {ttfa:.0f} ms after its first text")
            if n == 2 and llm.first_clause_at is not None:
                # The first clause is flushed early (early_flush): the rest is the LLM's pace.
                after = (utterance.first_audio_at - llm.first_clause_at) * 1000
                print(f"  ({after:.0f} ms after its first clause, 'Sure,', was complete)")
        if utterance.words:
            origin = utterance.words[0][1]
            timings = " ".join(f"{word}@{t - origin:.2f}s" for word, t in utterance.words)
            print(f"  words: {timings}")
    if recorder.ttfb:
        print("TTFB (Pipecat metrics): " + ", ".join(f"{v * 1000:.0f} ms" for v in recorder.ttfb))
    print(f"billed characters: {recorder.billed_characters}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 0 if pcm and not errors else 1


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo.wav", help="WAV file for the bot's audio")
    parser.add_argument("--sample-rate", type=int, default=24000, help="the pipeline's output rate")
    parser.add_argument("--engine", default="espeak", choices=("espeak", "tone"), help="offline engine")
    parser.add_argument("--verbose", action="store_true", help="show Pipecat's debug log")
    args = parser.parse_args()
    if not args.verbose:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")

    if os.environ.get("DASHSCOPE_API_KEY"):
        print("DASHSCOPE_API_KEY is set: using the CosyVoice cloud service")
        return await run_bot(None, args.out, args.sample_rate)
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(EmbeddedServer(engine=args.engine))
        print(f"no DASHSCOPE_API_KEY: using the embedded server ({args.engine} engine) at {server.url}")
        return await run_bot(server.url, args.out, args.sample_rate)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
