"""Helpers shared by the LiveKit plugin tests."""

from __future__ import annotations

import asyncio
import contextlib
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


class FaultProxy:
    """A TCP proxy in front of the embedded server, standing in for toxiproxy.

    ``blackhole = True`` is toxiproxy's ``timeout`` toxic with ``timeout=0``:
    connections are accepted and held open, and nothing gets through in
    either direction. ``pause()``/``resume()`` hold and then release the bytes
    of connections (a slow network that recovers).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blackhole = False
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._accepted_changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/api-ws/v1/inference"

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def wait_accepted(self, count: int) -> None:
        async def wait() -> None:
            while self.accepted < count:
                self._accepted_changed.clear()
                await self._accepted_changed.wait()

        await asyncio.wait_for(wait(), LIMIT)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.accepted += 1
        self._accepted_changed.set()
        if self.blackhole:
            await self._pump(reader, None)  # swallow everything; never answer, never close
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.append(up_writer)
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if writer is not None:
                    writer.write(data)
                    await writer.drain()
