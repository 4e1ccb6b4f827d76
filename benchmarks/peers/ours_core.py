"""Driver: our asyncio core (``cosyvoice_stream.AsyncSynthesizer``), in the project venv.

Scenarios: ``ttfa`` (whole text through ``synthesize()``, tokens through
``stream()``; cold = a fresh synthesizer, warm = a prewarmed one),
``interrupt`` (``stream.cancel()`` mid-audio, then the next utterance),
``cpu`` (process CPU per second of audio) and ``concurrency`` (N real-time
streams in one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time

from _common import (
    API_KEY,
    COMPLETE_INDEX,
    LLM_TOKENS,
    LONG_TEXT,
    MODEL,
    SHORT_TEXT,
    TEXT,
    TOKENS,
    VOICE,
    Handover,
    LoopLag,
    amplitude,
    clock,
    cpu_rounds,
    emit,
    interrupt_metrics,
    ms,
    sleep_until,
    spec,
)

from cosyvoice_stream import AsyncSynthesizer, AudioChunk

#: The spec's ``early_flush`` (default: the synthesizer's default, on); set by main().
EARLY_FLUSH = True


def _synth(url: str, rate: int = 24000, **kw) -> AsyncSynthesizer:
    kw.setdefault("early_flush", EARLY_FLUSH)
    return AsyncSynthesizer(MODEL, VOICE, sample_rate=rate, url=url, api_key=API_KEY, prestart=True, **kw)


async def whole_once(synth: AsyncSynthesizer, *, stop_at_first: bool = False) -> float:
    t0 = clock()
    first = None
    agen = synth.synthesize(TEXT)
    try:
        async for ev in agen:
            if first is None and isinstance(ev, AudioChunk) and ev.audio:
                first = clock()
                if stop_at_first:
                    break
    finally:
        await agen.aclose()
    assert first is not None
    return first - t0


async def tokens_once(
    synth: AsyncSynthesizer,
    period: float,
    *,
    stop_at_first: bool = False,
    tokens: list[str] = TOKENS,
    start_index: int = COMPLETE_INDEX,
) -> float:
    hand = Handover()
    start = clock()
    stream = synth.stream()
    got_first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def consume() -> None:
        async for ev in stream:
            if isinstance(ev, AudioChunk) and ev.audio and not got_first.done():
                got_first.set_result(clock())

    consumer = asyncio.ensure_future(consume())
    t0 = 0.0
    for i, tok in enumerate(tokens):
        due = start + i * period
        await sleep_until(due)
        if i == start_index:
            t0 = hand.at(due)
        stream.push_text(tok)
        hand.done()
        if stop_at_first and got_first.done():
            break
    if stop_at_first:
        first = await got_first
        await stream.cancel()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    else:
        await stream.finish()
        await consumer
        first = got_first.result()
    return first - t0


async def ttfa(s: dict) -> dict:
    url, gap, period = s["url"], s["gap_s"], s.get("token_period_s", 0.05)
    out: dict = {}
    for mode in s.get("modes", ["whole", "tokens"]):
        once = whole_once if mode == "whole" else (lambda sy, **kw: tokens_once(sy, period, **kw))
        cold: list = []
        for i in range(s["n_cold"] + 1):
            synth = _synth(url)
            t = await once(synth, stop_at_first=True)
            await synth.aclose()
            if i:  # the first fresh synthesizer of the process warms the code paths
                cold.append(ms(t))
            await asyncio.sleep(gap)
        warm: list = []
        synth = _synth(url)
        await synth.prewarm()
        await asyncio.sleep(gap)
        for i in range(s["n_warm"] + 1):
            t = await once(synth)
            if i:
                warm.append(ms(t))
            await asyncio.sleep(gap)
        stats = synth.pool_stats
        await synth.aclose()
        out[mode] = {
            "cold": cold,
            "warm": warm,
            "pool": stats.__dict__ if hasattr(stats, "__dict__") else str(stats),
        }
    return out


async def llm(s: dict) -> dict:
    """Scenario "llm": first token of a streamed reply -> first audio, warm, per token rate."""
    out: dict = {}
    for rate in s["token_rates"]:
        synth = _synth(s["url"])
        await synth.prewarm()
        await asyncio.sleep(s["gap_s"])
        times: list = []
        for i in range(s["n"] + 1):
            t = await tokens_once(synth, 1.0 / rate, tokens=LLM_TOKENS, start_index=0)
            if i:
                times.append(ms(t))
            await asyncio.sleep(s["gap_s"])
        await synth.aclose()
        out[str(rate)] = times
    return out


async def interrupt(s: dict) -> dict:
    """Cancel mid-audio, then the next utterance at once."""
    url, gap = s["url"], s["gap_s"]
    synth = _synth(url)
    await synth.prewarm()
    await asyncio.sleep(gap)
    trials = []
    for i in range(s["n"] + 1):
        frames: list[tuple[float, int, int]] = []
        enough = asyncio.Event()
        stream = synth.stream()

        async def consume(stream=stream, frames=frames, enough=enough) -> None:
            audio = 0
            async for ev in stream:
                if isinstance(ev, AudioChunk) and ev.audio:
                    frames.append((clock(), len(ev.audio), amplitude(ev.audio)))
                    audio += len(ev.audio)
                    if audio >= s["interrupt_after_bytes"]:
                        enough.set()

        stream.push_text(LONG_TEXT)
        await stream.finish()
        consumer = asyncio.ensure_future(consume())
        try:
            await asyncio.wait_for(enough.wait(), 20)
        except asyncio.TimeoutError:
            trials.append({"error": "not enough audio in 20 s"})
            await stream.cancel()
            continue
        t_int = clock()
        await stream.cancel()  # the interruption
        t_cancelled = t_next = clock()
        agen = synth.synthesize(TEXT)
        async for ev in agen:
            if isinstance(ev, AudioChunk) and ev.audio:
                frames.append((clock(), len(ev.audio), amplitude(ev.audio)))
        await agen.aclose()
        await asyncio.sleep(0.05)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        if i:
            trials.append(
                {**interrupt_metrics(frames, t_int, t_next), "cancel_call_ms": ms(t_cancelled - t_int)}
            )
        await asyncio.sleep(gap)
    await synth.aclose()
    return {"trials": trials}


async def cpu(s: dict) -> dict:
    """Process CPU time over seconds of audio delivered (whole texts, back to back), in rounds."""
    url, rate = s["url"], s["sample_rate"]
    text = SHORT_TEXT if s.get("utterance") == "short" else LONG_TEXT
    synth = _synth(url, rate)
    await synth.prewarm()

    async def once() -> int:
        n = 0
        async for ev in synth.synthesize(text):
            if isinstance(ev, AudioChunk):
                n += len(ev.audio)
        return n

    await once()  # warm-up
    out = await cpu_rounds(once, rate, s["utterances"], s.get("rounds", 5))
    await synth.aclose()
    return out


def _server_cpu(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Level:
    """Counters of one concurrency level."""

    def __init__(self) -> None:
        self.late = 0
        self.late_early = 0  # among a stream's first three frames, where the slack is smallest
        self.late_streams = 0
        self.late_events: list[tuple[float, float]] = []  # (delivered, seconds late), the first 2000
        self.worst = 0.0
        self.frames = 0
        self.errors = 0
        self.first_error: str | None = None
        self.peak = 0
        self.audio_s = 0.0
        self.utterances = 0


async def _one_stream(
    synth: AsyncSynthesizer, delay: float, st: _Level, jitter: float, text: str, turns: int, turn_gap: float
) -> None:
    """``turns`` utterances of ``text``; each next one when the last one's audio has played
    out, plus ``turn_gap`` (the user's turn). A frame is late when it comes after it is due."""
    await asyncio.sleep(delay)
    for _ in range(turns):
        t_first = None
        audio_s = 0.0
        index = 0
        late_here = False
        try:
            async for ev in synth.synthesize(text):
                if isinstance(ev, AudioChunk) and ev.audio:
                    now = clock()
                    if t_first is None:
                        t_first = now + jitter
                    due = t_first + audio_s
                    if now > due:
                        st.late += 1
                        st.late_early += index < 3
                        late_here = True
                        st.worst = max(st.worst, now - due)
                        if len(st.late_events) < 2000:
                            st.late_events.append((now, now - due))
                    audio_s += len(ev.audio) / 2 / 24000
                    st.frames += 1
                    index += 1
        except Exception as error:
            st.errors += 1
            st.first_error = st.first_error or f"{type(error).__name__}: {error}"[:300]
            return
        st.late_streams += late_here
        st.audio_s += audio_s
        st.utterances += 1
        if t_first is not None:
            await asyncio.sleep(max(0.0, t_first + audio_s - clock()) + turn_gap)


async def _sample_rss(st: _Level) -> None:
    while True:
        await asyncio.sleep(0.2)
        st.peak = max(st.peak, _rss())


async def concurrency(s: dict) -> dict:
    """N simultaneous streams in this (fresh) process: a frame is late when delivered
    after it is due (the stream's first audio plus the audio before it). ``utterance``:
    "long" (LONG_TEXT, one per stream) or "short" (SHORT_TEXT, ``turns`` per stream,
    a voice agent's replies on a warm pool)."""
    n = s["streams"]
    text = SHORT_TEXT if s.get("utterance") == "short" else LONG_TEXT
    turns = s.get("turns", 1)
    synth = _synth(s["url"], max_idle_connections=n)
    gc.collect()
    rss0 = _rss()
    await synth.prewarm(n)
    await asyncio.sleep(0.5)
    gc.collect()
    rss_idle = _rss()
    st = _Level()
    st.peak = rss_idle
    lag = LoopLag()
    lag.start()
    sampler = asyncio.ensure_future(_sample_rss(st))
    stagger = s.get("stagger_s", 0.5)
    pid = s.get("server_pid")
    c0, w0, sc0 = time.process_time(), clock(), _server_cpu(pid)
    await asyncio.gather(
        *(
            _one_stream(
                synth,
                stagger * k / n,
                st,
                s.get("jitter_buffer_s", 0.0),
                text,
                turns,
                s.get("turn_gap_s", 0.5),
            )
            for k in range(n)
        )
    )
    c1, w1, sc1 = time.process_time(), clock(), _server_cpu(pid)
    sampler.cancel()
    lags = await lag.stop()
    stats = synth.pool_stats
    await synth.aclose()
    return {
        "streams": n,
        "utterance": s.get("utterance", "long"),
        "turns": turns,
        "utterances": st.utterances,
        "audio_s": st.audio_s,
        "cpu_ms_per_audio_s": (c1 - c0) * 1000 / st.audio_s if st.audio_s else None,
        "late_frames": st.late,
        "late_early_frames": st.late_early,
        "late_streams": st.late_streams,
        "worst_late_ms": ms(st.worst),
        "late_events": st.late_events,
        "client_stalls": lag.stalls[:2000],
        "frames": st.frames,
        "errors": st.errors,
        "first_error": st.first_error,
        "loop_lag": lags,
        "cpu_util": (c1 - c0) / (w1 - w0),
        "server_cpu_util": (sc1 - sc0) / (w1 - w0) if pid else None,
        "idle_conn_kib": (rss_idle - rss0) / n / 1024,
        "connections_opened": stats.opened,
        "active_stream_kib": (st.peak - rss_idle) / n / 1024,
    }


async def main() -> None:
    global EARLY_FLUSH
    s = spec()
    EARLY_FLUSH = s.get("early_flush", True)
    fn = {"ttfa": ttfa, "interrupt": interrupt, "cpu": cpu, "concurrency": concurrency, "llm": llm}[
        s["scenario"]
    ]
    emit(await fn(s))


if __name__ == "__main__":
    asyncio.run(main())
