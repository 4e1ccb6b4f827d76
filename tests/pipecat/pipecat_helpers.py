"""Helpers of the Pipecat adapter tests: a scripted source, a live probe, frame inspection.

Every test drives a real pipeline through ``pipecat.tests.utils.run_test``.
Tests that need to act at a point of the audio (interrupt after the first
audio frame, start the next utterance after the previous one ended) put a
``Driver`` in front of the service and a ``Probe`` after it: the driver runs
a script that pushes frames and waits on the probe's events, and holds the
``EndFrame`` of ``run_test`` until the script is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    MetricsFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test

#: Upper bound of any wait in these tests (a hang fails fast instead of at the global timeout).
WAIT_S = 10.0


class Probe(FrameProcessor):
    """Records every frame in the order it was pushed and lets a script wait for one."""

    def __init__(self, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
        super().__init__(enable_direct_mode=True)
        self.frames: list[Frame] = []
        self.times: list[float] = []  # time.monotonic() when each frame passed
        self._direction = direction
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == self._direction:
            self.record(frame)
        await self.push_frame(frame, direction)

    def record(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.times.append(time.monotonic())
        self._changed.set()

    def time_of(self, predicate: Callable[[Frame], bool]) -> float:
        """When the first frame matching ``predicate`` passed."""
        return next(t for t, f in zip(self.times, self.frames, strict=True) if predicate(f))

    async def wait_for(self, predicate: Callable[[list[Frame]], bool], timeout: float = WAIT_S) -> None:
        async def wait() -> None:
            while not predicate(self.frames):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def wait_count(self, kind: type[Frame], count: int = 1) -> None:
        await self.wait_for(lambda frames: sum(isinstance(f, kind) for f in frames) >= count)


Script = Callable[["Driver"], Awaitable[None]]


class Driver(FrameProcessor):
    """Runs ``script`` once the pipeline started; the EndFrame waits for the script.

    It also records what comes back upstream (errors go upstream).
    """

    def __init__(self, script: Script) -> None:
        super().__init__()
        self._script = script
        self._task: asyncio.Task[None] | None = None
        self.upstream = Probe(FrameDirection.UPSTREAM)  # a recorder only, not in the pipeline

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.UPSTREAM:
            self.upstream.record(frame)
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, EndFrame) and self._task is not None:
            await asyncio.wait_for(self._task, WAIT_S)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._task = self.create_task(self._script(self), name="test-script")


async def run_pipeline(
    tts: FrameProcessor,
    frames: Sequence[Frame] = (),
    *,
    script: Script | None = None,
    probe: Probe | None = None,
    sample_rate: int = 24000,
    metrics: bool = False,
    timeout: float = 20.0,
) -> tuple[list[Frame], list[Frame]]:
    """``run_test`` around ``tts`` (plus driver and probe when scripted), bounded in time."""
    if script is not None:
        driver = Driver(script)
        processor: FrameProcessor = Pipeline([driver, tts, probe or Probe()])
    else:
        processor = tts
    params = PipelineParams(
        audio_out_sample_rate=sample_rate, enable_metrics=metrics, enable_usage_metrics=metrics
    )
    down, up = await asyncio.wait_for(
        run_test(processor, frames_to_send=list(frames), pipeline_params=params), timeout
    )
    return list(down), list(up)


# -- inspection ---------------------------------------------------------------
def of_type(frames: Sequence[Frame], kind: type[Any]) -> list[Any]:
    return [f for f in frames if isinstance(f, kind)]


def audio_bytes(frames: Sequence[Frame], context_id: str | None = None) -> bytes:
    return b"".join(
        f.audio
        for f in frames
        if isinstance(f, TTSAudioRawFrame) and (context_id is None or f.context_id == context_id)
    )


def tags_of(pcm: bytes) -> set[int]:
    """The tone engine's amplitudes in ``pcm`` (|sample| == the task's tag; gaps are 0)."""
    samples = np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.int32))
    return set(np.unique(samples[samples > 0]).tolist())


def spoken_tasks(server: Any) -> list[Any]:
    """Server tasks that received text (prewarmed, unused tasks are left out)."""
    return [t for t in server.tasks if t.texts]


def task_saying(server: Any, fragment: str) -> Any:
    """The one server task whose text contains ``fragment`` (tasks may be pre-started in any order)."""
    (task,) = [t for t in server.tasks if fragment in "".join(t.texts)]
    return task


def errors(up: Sequence[Frame]) -> list[ErrorFrame]:
    return of_type(up, ErrorFrame)


def word_frames(frames: Sequence[Frame]) -> list[TTSTextFrame]:
    return of_type(frames, TTSTextFrame)


def metrics_of(frames: Sequence[Frame], kind: type[Any]) -> list[Any]:
    return [d for f in of_type(frames, MetricsFrame) for d in f.data if isinstance(d, kind)]


def context_ids(frames: Sequence[Frame]) -> list[str]:
    return [f.context_id for f in of_type(frames, TTSStartedFrame)]


def stopped_ids(frames: Sequence[Frame]) -> list[str]:
    return [f.context_id for f in of_type(frames, TTSStoppedFrame)]
