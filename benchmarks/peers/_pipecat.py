"""Shared driver logic for Pipecat TTS services (pipecat-ai 1.x).

Each measurement runs a real pipeline, ``Pipeline([tts, sink])`` in a
``PipelineTask`` under a ``PipelineRunner``; text goes in with
``task.queue_frame()`` as a ``TTSSpeakFrame`` (whole text) or as an LLM turn
(``LLMFullResponseStartFrame``, ``LLMTextFrame`` per token,
``LLMFullResponseEndFrame``); audio is timed when its ``TTSAudioRawFrame``
reaches the sink, the processor right after the TTS service. Interruption is
an ``InterruptionFrame`` queued into the pipeline, as a transport does when
the user starts speaking. An utterance is over when all of its audio
(``expected_bytes``, known from the server's tone engine) has arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any

from _common import (
    COMPLETE_INDEX,
    LLM_TOKENS,
    LONG_TEXT,
    TEXT,
    TOKENS,
    Handover,
    amplitude,
    clock,
    cpu_rounds,
    emit,
    interrupt_metrics,
    ms,
    sleep_until,
    spec,
)

warnings.filterwarnings("ignore")

from pipecat.frames.frames import (  # noqa: E402
    ErrorFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.runner import PipelineRunner  # noqa: E402
from pipecat.pipeline.task import PipelineParams, PipelineTask  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.frames: list[tuple[float, int, int]] = []
        self.audio_bytes = 0
        self.changed = asyncio.Event()
        self.errors: list[str] = []
        self.tag_frames = False
        self.head: Sink | None = None  # the processor before the TTS: sees errors pushed upstream

    async def process_frame(self, frame: Any, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            now = clock()
            self.frames.append((now, len(frame.audio), amplitude(frame.audio) if self.tag_frames else 1))
            self.audio_bytes += len(frame.audio)
            self.changed.set()
        elif isinstance(frame, StartFrame):
            self.started.set()
        elif isinstance(frame, ErrorFrame):
            self.errors.append(str(frame.error))
            self.changed.set()
            if self.head is None and hasattr(self, "tail"):
                self.tail.changed.set()
        await self.push_frame(frame, direction)

    def first_after(self, t: float) -> float | None:
        return next((ft for ft, n, _ in self.frames if ft >= t and n), None)

    async def wait_bytes(self, n: int, timeout: float = 30.0) -> None:
        deadline = clock() + timeout
        while self.audio_bytes < n:
            errors = self.errors + (self.head.errors if self.head is not None else [])
            if errors:
                raise RuntimeError(errors[-1])
            self.changed.clear()
            remaining = deadline - clock()
            if remaining <= 0:
                raise TimeoutError(f"audio {self.audio_bytes}/{n} bytes after {timeout} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


def _task_kwargs() -> dict[str, Any]:
    wanted = {
        "idle_timeout_secs": None,
        "cancel_on_idle_timeout": False,
        "enable_rtvi": False,
        "enable_turn_tracking": False,
        "check_dangling_tasks": False,
    }
    params = inspect.signature(PipelineTask.__init__).parameters
    return {k: v for k, v in wanted.items() if k in params}


class Running:
    """A started pipeline ``[tts, sink]``."""

    def __init__(self, tts: Any, rate: int) -> None:
        self.tts = tts
        self.sink = Sink()
        head = Sink()
        head.tail = self.sink  # type: ignore[attr-defined]
        self.sink.head = head
        self.task = PipelineTask(
            Pipeline([head, tts, self.sink]),
            params=PipelineParams(audio_out_sample_rate=rate, enable_metrics=False),
            **_task_kwargs(),
        )
        self.runner = PipelineRunner(handle_sigint=False)
        self._run: asyncio.Task | None = None

    async def start(self) -> Running:
        self._run = asyncio.ensure_future(self.runner.run(self.task))
        await asyncio.wait_for(self.sink.started.wait(), 30)
        return self

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.task.cancel()
        if self._run is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._run, 10)


class Service:
    def __init__(self, make_tts: Callable[[str, int], Any], expected: dict[str, int]) -> None:
        self.make_tts = make_tts
        self.expected = expected  # audio bytes at 24 kHz of TEXT and LONG_TEXT

    def bytes_for(self, key: str, rate: int) -> int:
        # resampled output may be a few samples short of the exact ratio
        return int(self.expected[key] * rate / 24000 * 0.995)


async def whole_once(p: Running, expected: int, *, stop_at_first: bool = False) -> float:
    base = p.sink.audio_bytes
    t0 = clock()
    await p.task.queue_frame(TTSSpeakFrame(TEXT))
    await p.sink.wait_bytes(base + (1 if stop_at_first else expected))
    first = p.sink.first_after(t0)
    assert first is not None
    return first - t0


async def tokens_once(
    p: Running,
    expected: int,
    period: float,
    *,
    stop_at_first: bool = False,
    tokens: list[str] = TOKENS,
    start_index: int = COMPLETE_INDEX,
) -> float:
    base = p.sink.audio_bytes
    hand = Handover()
    start = clock()
    await p.task.queue_frame(LLMFullResponseStartFrame())
    t0 = 0.0
    for i, tok in enumerate(tokens):
        due = start + i * period
        await sleep_until(due)
        if i == start_index:
            t0 = hand.at(due)
        await p.task.queue_frame(LLMTextFrame(tok))
        hand.done()
        if stop_at_first and p.sink.audio_bytes > base:
            break
    await p.task.queue_frame(LLMFullResponseEndFrame())
    await p.sink.wait_bytes(base + (1 if stop_at_first else expected))
    first = p.sink.first_after(t0)
    assert first is not None
    return first - t0


async def ttfa(svc: Service, s: dict) -> dict:
    url, gap, period = s["url"], s["gap_s"], s.get("token_period_s", 0.05)
    expected = svc.bytes_for("text", 24000)
    out: dict = {}
    for mode in s.get("modes", ["whole", "tokens"]):

        async def once(p: Running, stop_at_first: bool = False, mode: str = mode) -> float:
            if mode == "whole":
                return await whole_once(p, expected, stop_at_first=stop_at_first)
            return await tokens_once(p, expected, period, stop_at_first=stop_at_first)

        cold: list = []
        for i in range(s["n_cold"] + 1):
            p = await Running(svc.make_tts(url, 24000), 24000).start()
            t = await once(p, stop_at_first=True)
            await p.stop()
            if i:
                cold.append(ms(t))
            await asyncio.sleep(gap)
        warm: list = []
        p = await Running(svc.make_tts(url, 24000), 24000).start()
        await asyncio.sleep(gap)
        for i in range(s["n_warm"] + 1):
            t = await once(p)
            if i:
                warm.append(ms(t))
            await asyncio.sleep(gap)
        await p.stop()
        out[mode] = {"cold": cold, "warm": warm}
    return out


async def llm(svc: Service, s: dict) -> dict:
    """Scenario "llm": first token of a streamed reply -> first audio, warm, per token rate."""
    expected = svc.bytes_for("llm", 24000)
    out: dict = {}
    for rate in s["token_rates"]:
        p = await Running(svc.make_tts(s["url"], 24000), 24000).start()
        await asyncio.sleep(s["gap_s"])
        times: list = []
        for i in range(s["n"] + 1):
            t = await tokens_once(p, expected, 1.0 / rate, tokens=LLM_TOKENS, start_index=0)
            if i:
                times.append(ms(t))
            await asyncio.sleep(s["gap_s"])
        await p.stop()
        out[str(rate)] = times
    return out


async def interrupt(svc: Service, s: dict) -> dict:
    url, gap = s["url"], s["gap_s"]
    p = await Running(svc.make_tts(url, 24000), 24000).start()
    p.sink.tag_frames = True
    await asyncio.sleep(gap)
    trials = []
    for i in range(s["n"] + 1):
        p.sink.frames = []
        base = p.sink.audio_bytes
        await p.task.queue_frame(TTSSpeakFrame(LONG_TEXT))
        try:
            await p.sink.wait_bytes(base + s["interrupt_after_bytes"], timeout=20)
        except Exception as error:
            trials.append({"error": str(error)[:200]})
            await p.task.queue_frame(InterruptionFrame())
            continue
        t_int = clock()
        await p.task.queue_frame(InterruptionFrame())
        t_next = clock()
        base = p.sink.audio_bytes
        await p.task.queue_frame(TTSSpeakFrame(TEXT))
        # the next utterance's audio (plus whatever stale audio comes along)
        with contextlib.suppress(TimeoutError):
            await p.sink.wait_bytes(base + svc.bytes_for("text", 24000), timeout=10)
        await asyncio.sleep(0.3)  # anything late still counts
        if i:
            trials.append({**interrupt_metrics(list(p.sink.frames), t_int, t_next), "cancel_call_ms": 0.0})
        await asyncio.sleep(gap)
    await p.stop()
    return {"trials": trials}


async def cpu(svc: Service, s: dict) -> dict:
    url, rate = s["url"], s["sample_rate"]
    try:
        p = await Running(svc.make_tts(url, rate), rate).start()
    except Exception as error:
        return {"unsupported": f"{type(error).__name__}: {error}"[:300]}
    expected = svc.bytes_for("long", rate)

    async def once() -> None:
        base = p.sink.audio_bytes
        await p.task.queue_frame(TTSSpeakFrame(LONG_TEXT))
        await p.sink.wait_bytes(base + expected)

    try:
        await once()
    except Exception as error:
        await p.stop()
        return {"unsupported": f"{type(error).__name__}: {error}"[:300]}
    await asyncio.sleep(0.2)

    async def counted() -> int:
        b0 = p.sink.audio_bytes
        await once()
        return p.sink.audio_bytes - b0

    out = await cpu_rounds(counted, rate, s["utterances"], s.get("rounds", 5))
    await p.stop()
    return out


def run(service_factory: Callable[[dict], Service]) -> None:
    s = spec()
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(Exception):
        from loguru import logger

        logger.remove()
        logger.add(lambda m: None, level="ERROR")

    async def main() -> None:
        svc = service_factory(s)
        fn = {"ttfa": ttfa, "interrupt": interrupt, "cpu": cpu, "llm": llm}[s["scenario"]]
        emit(await fn(svc, s))

    asyncio.run(main())
