"""Shared driver logic for LiveKit Agents TTS plugins (livekit-agents 1.8).

A driver module supplies ``make_tts(url, sample_rate)`` (and says whether
the plugin implements ``synthesize()``); this runs the scenarios on the
plugin's public interface: ``tts.synthesize(text)`` (a ``ChunkedStream``) and
``tts.stream()`` (``push_text``, ``end_input``), iterating ``SynthesizedAudio``
frames as an ``AgentSession`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class Plugin:
    def __init__(
        self, make_tts: Callable[..., Any], *, has_synthesize: bool, aclose_tts: Callable | None = None
    ):
        self.make_tts = make_tts
        self.has_synthesize = has_synthesize
        self.aclose_tts = aclose_tts

    async def close(self, tts: Any) -> None:
        with contextlib.suppress(Exception):
            await tts.aclose()
        if self.aclose_tts is not None:
            await self.aclose_tts(tts)


def _frame_bytes(ev: Any) -> bytes:
    return bytes(ev.frame.data.cast("B")) if hasattr(ev.frame.data, "cast") else bytes(ev.frame.data)


async def _consume(stream: Any, on_frame: Callable[[float, bytes], None]) -> None:
    async for ev in stream:
        data = _frame_bytes(ev)
        if data:
            on_frame(clock(), data)


async def whole_once(plugin: Plugin, tts: Any, *, text: str = TEXT, stop_at_first: bool = False) -> float:
    first: list[float] = []
    t0 = clock()
    if plugin.has_synthesize:
        stream = tts.synthesize(text)
    else:  # no synthesize(): the whole text through stream()
        stream = tts.stream()
        stream.push_text(text)
        stream.end_input()
    try:
        async for ev in stream:
            if not first and len(ev.frame.data):
                first.append(clock())
                if stop_at_first:
                    break
    finally:
        await stream.aclose()
    return first[0] - t0


async def tokens_once(
    tts: Any,
    period: float,
    *,
    stop_at_first: bool = False,
    tokens: list[str] = TOKENS,
    start_index: int = COMPLETE_INDEX,
) -> float:
    hand = Handover()
    start = clock()
    stream = tts.stream()
    got: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_frame(t: float, data: bytes) -> None:
        if not got.done():
            got.set_result(t)

    consumer = asyncio.ensure_future(_consume(stream, on_frame))
    t0 = 0.0
    for i, tok in enumerate(tokens):
        due = start + i * period
        await sleep_until(due)
        if i == start_index:
            t0 = hand.at(due)
        stream.push_text(tok)
        hand.done()
        if stop_at_first and got.done():
            break
    stream.end_input()
    if stop_at_first:
        first = await got
    else:
        await consumer
        first = got.result()
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await consumer
    await stream.aclose()
    return first - t0


async def ttfa(plugin: Plugin, s: dict) -> dict:
    url, gap, period = s["url"], s["gap_s"], s.get("token_period_s", 0.05)
    out: dict = {}
    for mode in s.get("modes", ["whole", "tokens"]):

        async def once(tts: Any, stop_at_first: bool = False, mode: str = mode) -> float:
            if mode == "whole":
                return await whole_once(plugin, tts, stop_at_first=stop_at_first)
            return await tokens_once(tts, period, stop_at_first=stop_at_first)

        cold: list = []
        for i in range(s["n_cold"] + 1):
            tts = plugin.make_tts(url, 24000)
            t = await once(tts, stop_at_first=True)
            await plugin.close(tts)
            if i:
                cold.append(ms(t))
            await asyncio.sleep(gap)
        warm: list = []
        tts = plugin.make_tts(url, 24000)
        tts.prewarm()
        await asyncio.sleep(gap)
        for i in range(s["n_warm"] + 1):
            t = await once(tts)
            if i:
                warm.append(ms(t))
            await asyncio.sleep(gap)
        await plugin.close(tts)
        out[mode] = {"cold": cold, "warm": warm}
        if mode == "whole" and not plugin.has_synthesize:
            out[mode]["note"] = "synthesize() is not implemented: whole text pushed through stream()"
    return out


async def llm(plugin: Plugin, s: dict) -> dict:
    """Scenario "llm": first token of a streamed reply -> first audio, warm, per token rate."""
    out: dict = {}
    for rate in s["token_rates"]:
        tts = plugin.make_tts(s["url"], 24000)
        tts.prewarm()
        await asyncio.sleep(s["gap_s"])
        times: list = []
        for i in range(s["n"] + 1):
            t = await tokens_once(tts, 1.0 / rate, tokens=LLM_TOKENS, start_index=0)
            if i:
                times.append(ms(t))
            await asyncio.sleep(s["gap_s"])
        await plugin.close(tts)
        out[str(rate)] = times
    return out


async def interrupt(plugin: Plugin, s: dict) -> dict:
    """``stream.aclose()`` mid-audio (what AgentSession does on interruption), then the next utterance."""
    url, gap = s["url"], s["gap_s"]
    tts = plugin.make_tts(url, 24000)
    tts.prewarm()
    await asyncio.sleep(gap)
    trials = []
    for i in range(s["n"] + 1):
        frames: list[tuple[float, int, int]] = []
        got = [0]
        enough = asyncio.Event()
        stream = tts.stream()
        stream.push_text(LONG_TEXT)
        stream.end_input()

        def on_frame(t: float, data: bytes, frames=frames, got=got, enough=enough) -> None:
            frames.append((t, len(data), amplitude(data)))
            got[0] += len(data)
            if got[0] >= s["interrupt_after_bytes"]:
                enough.set()

        consumer = asyncio.ensure_future(_consume(stream, on_frame))
        try:
            await asyncio.wait_for(enough.wait(), 20)
        except asyncio.TimeoutError:
            trials.append({"error": f"only {got[0]} bytes of audio in 20 s"})
            await stream.aclose()
            continue
        t_int = clock()
        await stream.aclose()
        t_cancelled = t_next = clock()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
        stream2 = tts.synthesize(TEXT) if plugin.has_synthesize else tts.stream()
        if not plugin.has_synthesize:
            stream2.push_text(TEXT)
            stream2.end_input()
        await _consume(stream2, lambda t, d, frames=frames: frames.append((t, len(d), amplitude(d))))
        await stream2.aclose()
        if i:
            trials.append(
                {**interrupt_metrics(frames, t_int, t_next), "cancel_call_ms": ms(t_cancelled - t_int)}
            )
        await asyncio.sleep(gap)
    await plugin.close(tts)
    return {"trials": trials}


async def cpu(plugin: Plugin, s: dict) -> dict:
    url, rate = s["url"], s["sample_rate"]
    tts = plugin.make_tts(url, rate)
    tts.prewarm()

    async def once() -> int:
        n = 0
        if plugin.has_synthesize:
            stream = tts.synthesize(LONG_TEXT)
        else:
            stream = tts.stream()
            stream.push_text(LONG_TEXT)
            stream.end_input()
        async for ev in stream:
            n += len(ev.frame.data) * 2 if ev.frame.data.itemsize == 2 else len(ev.frame.data)
        await stream.aclose()
        return n

    try:
        if await once() == 0:
            raise RuntimeError("no audio")
    except Exception as error:
        await plugin.close(tts)
        return {"unsupported": f"{type(error).__name__}: {error}"[:300]}
    out = await cpu_rounds(once, rate, s["utterances"], s.get("rounds", 5))
    await plugin.close(tts)
    return out


def run(plugin_factory: Callable[[], Plugin]) -> None:
    s = spec()

    async def main() -> None:
        plugin = plugin_factory()
        fn = {"ttfa": ttfa, "interrupt": interrupt, "cpu": cpu, "llm": llm}[s["scenario"]]
        emit(await fn(plugin, s))

    import logging

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
