"""What every driver shares. Standard library only: drivers run in the peers' own
environments, where neither this project nor its dependencies are installed.

A driver is run as ``python <driver>.py '<spec JSON>'`` and prints its result
as one line ``RESULT <json>`` on stdout (anything else it prints is ignored).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

#: The whole-text utterance: three sentences.
TEXT = "Sure, it is booked. See you at seven! Anything else?"

#: The same text as an LLM streams it: leading-space tokens, one every 50 ms.
TOKENS = [
    "Sure",
    ",",
    " it",
    " is",
    " booked",
    ".",
    " See",
    " you",
    " at",
    " seven",
    "!",
    " Anything",
    " else",
    "?",
]
assert "".join(TOKENS) == TEXT

#: The token that completes the first sentence: "." after "booked". The
#: clock starts when it is handed over. (The service ends a sentence at a
#: terminator that ends the text received so far; the embedded server does
#: too, and counts its first-packet delay from there.)
COMPLETE_INDEX = 5

#: Scenario "llm": an LLM reply streamed token by token; the clock starts at its
#: first token. Its first clause ("Well,") ends with token LLM_CLAUSE_INDEX, its
#: first sentence with the last token.
LLM_TOKENS = [
    "Well",
    ",",
    " tomorrow",
    " in",
    " Hang",
    "zhou",
    ",",
    " the",
    " weather",
    " looks",
    " sunny",
    " and",
    " warm",
    ".",
]
LLM_TEXT = "".join(LLM_TOKENS)
LLM_CLAUSE_INDEX = 1

#: A long utterance (interruption, CPU, concurrency): six sentences, 104 CJK
#: characters, 5.2 s of tone audio. Chinese because livekit-plugins-aliyun
#: deletes the spaces of English text (its sentencizer runs with
#: remove_emoji=True), which would shorten its tone audio and skew
#: per-second figures; CJK text reaches the service intact from every client.
LONG_TEXT = (
    "感谢您的来电，您周五晚上的预订已经确认。我们为您准备了靠窗的四人桌，就像您要求的那样。"
    "六点以后停车免费，入口在大楼的北侧。如果您会迟到，请给我们打电话，我们会为您保留十五分钟。"
    "厨房十点关门，请提前安排点餐。请问还有什么可以帮您的吗？"
)

#: A short utterance (scenario "short", the short half of concurrency): a voice agent's
#: one-sentence reply, 2.4 s of tone audio at the concurrency server's 100 + 25 ms a
#: character (19 characters; punctuation is silent).
SHORT_TEXT = "您周五晚上的预订已经确认，靠窗的四人桌。"

API_KEY = "sk-benchmark-not-a-real-key"
MODEL = "cosyvoice-v3-flash"
VOICE = "longanyang"

clock = time.perf_counter


def spec() -> dict[str, Any]:
    """The driver's instructions (argv[1]); pins the process when BENCH_CPU is set."""
    cpu = os.environ.get("BENCH_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    return json.loads(sys.argv[1])


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def amplitude(pcm: bytes) -> int:
    """Peak absolute sample of 16-bit PCM: the tone engine's per-task tag."""
    if len(pcm) < 2:
        return 0
    try:
        import numpy as np

        a = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        return int(np.abs(a.astype(np.int32)).max())
    except ImportError:  # pragma: no cover - every peer environment has numpy
        import array

        arr = array.array("h", pcm[: len(pcm) // 2 * 2])
        return max(abs(x) for x in arr)


class Handover:
    """When a streamed token counts as handed over.

    ``due`` is when the simulated LLM produced the token. If the API's
    previous call kept the producer busy past ``due`` (a ``push`` that
    connects and blocks), the token counts as handed over at ``due``: the
    API is charged for its block. Otherwise it is the moment of the call, so
    a timer that woke the producer a little late is charged to no one.
    Call ``at(due)`` right before the API call and ``done()`` right after.
    """

    def __init__(self) -> None:
        self.prev_end = 0.0

    def at(self, due: float) -> float:
        return due if self.prev_end > due else clock()

    def done(self) -> None:
        self.prev_end = clock()


def sleep_until_sync(deadline: float) -> None:
    wait = deadline - clock()
    if wait > 0:
        time.sleep(wait)


async def sleep_until(deadline: float) -> None:
    """Sleep on the event loop until ``deadline`` with ~0.1 ms precision
    (loop timers alone may wake 1 ms late): the last 2 ms yield in a loop."""
    import asyncio

    wait = deadline - clock() - 0.002
    if wait > 0:
        await asyncio.sleep(wait)
    while clock() < deadline:  # noqa: ASYNC110 - a deliberate 2 ms yield loop for precision
        await asyncio.sleep(0)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


class LoopLag:
    """Event-loop lag: a ticker asking to wake every ``period`` seconds. Each tick at least
    ``stall`` seconds late is also kept in ``stalls`` as (end, seconds) on ``clock``."""

    def __init__(self, period: float = 0.01, stall: float = 0.010) -> None:
        self.period = period
        self.stall = stall
        self.lags: list[float] = []
        self.stalls: list[tuple[float, float]] = []
        self._task = None

    def start(self) -> None:
        import asyncio

        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        import asyncio

        while True:
            t = clock()
            await asyncio.sleep(self.period)
            end = clock()
            lag = end - t - self.period
            self.lags.append(lag)
            if lag >= self.stall:
                self.stalls.append((end, lag))

    async def stop(self) -> dict[str, float | None]:
        import asyncio
        import contextlib

        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {
            "p50_ms": ms(percentile(self.lags, 0.5)),
            "p99_ms": ms(percentile(self.lags, 0.99)),
            "max_ms": ms(max(self.lags) if self.lags else None),
        }


def interrupt_metrics(frames: list[tuple[float, int, int]], t_int: float, t_next: float) -> dict[str, Any]:
    """Figures of one interruption from every audio frame the consumer got.

    ``frames``: (time delivered, bytes, peak amplitude) of the interrupted
    utterance and of the next one. The tone engine gives each task its own
    amplitude, so a frame is stale when it was delivered after the
    interruption and carries the amplitude of the interrupted task, wherever
    it shows up (in the old stream or leaked into the next utterance).
    """
    old = {a for t, _, a in frames if t <= t_int and a}
    stale = [(t, n) for t, n, a in frames if t > t_int and a in old]
    first_next = next((t for t, _, a in frames if t >= t_next and a and a not in old), None)
    return {
        "last_frame_after_ms": ms(max(t for t, _ in stale) - t_int) if stale else 0.0,
        "stale_bytes": sum(n for _, n in stale),
        "next_ttfa_ms": ms(first_next - t_next) if first_next is not None else None,
    }


def _cpu_result(rounds: list[tuple[float, float, int]], rate: int) -> dict[str, Any]:
    """Per round (cpu seconds, wall seconds, audio bytes): the median round is the figure."""
    per = sorted((c * 1000 / (b / 2 / rate), c, w, b) for c, w, b in rounds if b)
    if not per:
        return {"error": "no audio"}
    figure = per[len(per) // 2][0]
    return {
        "cpu_ms_per_audio_s": figure,
        "rounds_ms_per_audio_s": [round(x[0], 3) for x in per],
        "cpu_s": sum(x[1] for x in per),
        "wall_s": sum(x[2] for x in per),
        "audio_s": sum(x[3] for x in per) / 2 / rate,
    }


async def cpu_rounds(once, rate: int, utterances: int, rounds: int = 5) -> dict[str, Any]:
    """Run ``once()`` (returns audio bytes) ``utterances`` times in ``rounds`` rounds,
    timing process CPU (all threads) per round."""
    import gc

    per_round = max(1, utterances // rounds)
    out = []
    for _ in range(rounds):
        gc.collect()
        c0, w0, n = time.process_time(), clock(), 0
        for _ in range(per_round):
            n += await once()
        out.append((time.process_time() - c0, clock() - w0, n))
    return _cpu_result(out, rate)


def cpu_rounds_sync(once, rate: int, utterances: int, rounds: int = 5) -> dict[str, Any]:
    import gc

    per_round = max(1, utterances // rounds)
    out = []
    for _ in range(rounds):
        gc.collect()
        c0, w0, n = time.process_time(), clock(), 0
        for _ in range(per_round):
            n += once()
        out.append((time.process_time() - c0, clock() - w0, n))
    return _cpu_result(out, rate)
