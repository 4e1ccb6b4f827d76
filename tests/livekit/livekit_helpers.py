"""Helpers shared by the LiveKit plugin tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, metrics, tts
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.agents.voice.io import TimedString

from cosyvoice_stream.server import EmbeddedServer, TaskRecord

LIMIT = 10.0  # seconds: the bound of every wait in these tests
#: Fast retries, so a retried failure costs ~0.1 s (LiveKit's first retry is after 0.1 s).
RETRY = APIConnectOptions(max_retry=2, retry_interval=0.0, timeout=5.0)
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)
FLUSH = None  # in a list of pushes: call flush()


@dataclass
class Collected:
    events: list[tts.SynthesizedAudio] = field(default_factory=list)

    @property
    def frames(self) -> list[rtc.AudioFrame]:
        return [ev.frame for ev in self.events]

    @property
    def duration(self) -> float:
        return sum(frame.duration for frame in self.frames)

    @property
    def samples(self) -> np.ndarray:
        return samples_of(self.frames)

    @property
    def transcripts(self) -> list[TimedString]:
        return [t for frame in self.frames for t in frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]


def samples_of(frames: Sequence[rtc.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([np.frombuffer(frame.data, dtype=np.int16) for frame in frames])


def tags_of(frames: Sequence[rtc.AudioFrame]) -> set[int]:
    """The tone engine's task tags present in the frames (|sample| of non-silent samples)."""
    samples = np.abs(samples_of(frames).astype(np.int32))
    return set(np.unique(samples[samples > 0]).tolist())


async def run_stream(
    engine: tts.TTS,
    pushes: Sequence[str | None],
    *,
    conn_options: APIConnectOptions = RETRY,
    end_input: bool = True,
) -> Collected:
    """Push text (``None``: flush), end the input, collect every event (bounded)."""
    out = Collected()

    async def run() -> None:
        async with engine.stream(conn_options=conn_options) as stream:
            for push in pushes:
                if push is None:
                    stream.flush()
                else:
                    stream.push_text(push)
            if end_input:
                stream.end_input()
            async for event in stream:
                out.events.append(event)

    await asyncio.wait_for(run(), LIMIT)
    return out


async def run_synthesize(engine: tts.TTS, text: str, *, conn_options: APIConnectOptions = RETRY) -> Collected:
    out = Collected()

    async def run() -> None:
        async with engine.synthesize(text, conn_options=conn_options) as stream:
            async for event in stream:
                out.events.append(event)

    await asyncio.wait_for(run(), LIMIT)
    return out


def spoken_tasks(server: EmbeddedServer) -> list[TaskRecord]:
    """Tasks that received text (prestart also leaves started, unused tasks)."""
    return [task for task in server.tasks if task.texts]


def tone_duration(words: int, speech_rate: float = 1.0) -> float:
    """Seconds of audio the tone engine makes for ``words`` words (200 ms + 50 ms gap each)."""
    return words * 0.25 / speech_rate


def collect_metrics(engine: tts.TTS) -> list[metrics.TTSMetrics]:
    found: list[metrics.TTSMetrics] = []
    engine.on("metrics_collected", found.append)
    return found
