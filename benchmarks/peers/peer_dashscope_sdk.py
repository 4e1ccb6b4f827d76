"""Driver: the official ``dashscope`` SDK (``audio.tts_v2.SpeechSynthesizer``), in its own env.

Its fastest way to first audio is used: callback mode (``on_data``), not
the blocking ``call()`` that returns all audio at the end. A synthesizer
object serves one task (it opens a new connection per task and cannot be
reused), so cold and warm are the same path; the SDK's own answer to warm
connections, ``SpeechSynthesizerObjectPool``, is measured as its warm case.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

import dashscope
from _common import (
    API_KEY,
    COMPLETE_INDEX,
    LLM_TOKENS,
    LONG_TEXT,
    MODEL,
    TEXT,
    TOKENS,
    VOICE,
    Handover,
    amplitude,
    clock,
    cpu_rounds_sync,
    emit,
    interrupt_metrics,
    ms,
    sleep_until_sync,
    spec,
)
from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer, SpeechSynthesizerObjectPool

dashscope.api_key = API_KEY

FORMATS = {
    8000: AudioFormat.PCM_8000HZ_MONO_16BIT,
    16000: AudioFormat.PCM_16000HZ_MONO_16BIT,
    22050: AudioFormat.PCM_22050HZ_MONO_16BIT,
    24000: AudioFormat.PCM_24000HZ_MONO_16BIT,
    44100: AudioFormat.PCM_44100HZ_MONO_16BIT,
    48000: AudioFormat.PCM_48000HZ_MONO_16BIT,
}


class Callback(ResultCallback):
    def __init__(self, record_frames: bool = False) -> None:
        self.first: float | None = None
        self.got_first = threading.Event()
        self.done = threading.Event()
        self.bytes = 0
        self.record = record_frames
        self.frames: list[tuple[float, int, int]] = []

    def on_data(self, data: bytes) -> None:
        now = clock()
        if self.first is None:
            self.first = now
            self.got_first.set()
        self.bytes += len(data)
        if self.record:
            self.frames.append((now, len(data), amplitude(data)))

    def on_complete(self) -> None:
        self.done.set()

    def on_error(self, message) -> None:
        self.done.set()

    def on_close(self) -> None:
        self.done.set()


def _new(url: str, cb: Callback, rate: int = 24000) -> SpeechSynthesizer:
    return SpeechSynthesizer(model=MODEL, voice=VOICE, format=FORMATS[rate], callback=cb, url=url)


def _settle(synth: SpeechSynthesizer) -> None:
    """Wait for the SDK's completion thread to mark the task stopped before the synthesizer
    goes back to the pool. Otherwise (callback mode, ObjectPool) that thread can mark the
    *next* task stopped after the synthesizer was borrowed again, and its ``call()`` fails
    with ``InvalidTask: speech synthesizer task has stopped`` (a race in the SDK)."""
    stopped = getattr(synth, "_stopped", None)
    if stopped is not None:
        stopped.wait(5)


def whole_once(synth: SpeechSynthesizer, cb: Callback) -> float:
    t0 = clock()
    synth.call(TEXT)  # callback mode: returns once the text is sent
    cb.got_first.wait(30)
    cb.done.wait(30)
    assert cb.first is not None
    return cb.first - t0


def tokens_once(
    synth: SpeechSynthesizer,
    cb: Callback,
    period: float,
    tokens: list[str] = TOKENS,
    start_index: int = COMPLETE_INDEX,
) -> float:
    hand = Handover()
    start = clock()
    t0 = 0.0
    for i, tok in enumerate(tokens):
        due = start + i * period
        sleep_until_sync(due)
        if i == start_index:
            t0 = hand.at(due)
        synth.streaming_call(tok)  # the first call connects and starts the task: it blocks
        hand.done()
    synth.streaming_complete()
    assert cb.first is not None
    return cb.first - t0


def ttfa(s: dict) -> dict:
    url, gap, period = s["url"], s["gap_s"], s.get("token_period_s", 0.05)
    out: dict = {}
    for mode in s.get("modes", ["whole", "tokens"]):
        plain: list = []
        for i in range(s["n_cold"] + 1):
            cb = Callback()
            synth = _new(url, cb)
            t = whole_once(synth, cb) if mode == "whole" else tokens_once(synth, cb, period)
            if i:
                plain.append(ms(t))
            time.sleep(gap)
        pooled: list = []
        if s.get("object_pool", True):
            pool = SpeechSynthesizerObjectPool(max_size=1, url=url)
            time.sleep(gap)
            for i in range(s["n_warm"] + 1):
                cb = Callback()
                synth = pool.borrow_synthesizer(model=MODEL, voice=VOICE, format=FORMATS[24000], callback=cb)
                t = whole_once(synth, cb) if mode == "whole" else tokens_once(synth, cb, period)
                _settle(synth)
                pool.return_synthesizer(synth)
                if i:
                    pooled.append(ms(t))
                time.sleep(gap)
            pool.shutdown()
        out[mode] = {"cold": plain, "warm": plain, "warm_object_pool": pooled}
    return out


def llm(s: dict) -> dict:
    """Scenario "llm": first token of a streamed reply -> first audio, per token rate, with the
    SDK's object pool (its warm path: connection and task set-up off the first token)."""
    url, gap = s["url"], s["gap_s"]
    out: dict = {}
    for rate in s["token_rates"]:
        pool = SpeechSynthesizerObjectPool(max_size=1, url=url)
        time.sleep(gap)
        times: list = []
        for i in range(s["n"] + 1):
            cb = Callback()
            synth = pool.borrow_synthesizer(model=MODEL, voice=VOICE, format=FORMATS[24000], callback=cb)
            t = tokens_once(synth, cb, 1.0 / rate, tokens=LLM_TOKENS, start_index=0)
            _settle(synth)
            pool.return_synthesizer(synth)
            if i:
                times.append(ms(t))
            time.sleep(gap)
        pool.shutdown()
        out[str(rate)] = times
    return out


def interrupt(s: dict) -> dict:
    """``streaming_cancel()`` mid-audio (finish-task with directive=cancel), then the next utterance."""
    url, gap = s["url"], s["gap_s"]
    trials = []
    for i in range(s["n"] + 1):
        cb = Callback(record_frames=True)
        synth = _new(url, cb)
        synth.streaming_call(LONG_TEXT)
        deadline = clock() + 20
        while cb.bytes < s["interrupt_after_bytes"] and clock() < deadline:
            time.sleep(0.001)
        if cb.bytes < s["interrupt_after_bytes"]:
            trials.append({"error": f"only {cb.bytes} bytes of audio in 20 s"})
            continue
        t_int = clock()
        synth.streaming_cancel()  # returns after the server's task-finished
        t_cancelled = t_next = clock()
        cb2 = Callback(record_frames=True)
        whole_once(_new(url, cb2), cb2)
        time.sleep(0.05)
        if i:
            frames = cb.frames + cb2.frames
            trials.append(
                {**interrupt_metrics(frames, t_int, t_next), "cancel_call_ms": ms(t_cancelled - t_int)}
            )
        time.sleep(gap)
    return {"trials": trials}


def cpu(s: dict) -> dict:
    url, rate = s["url"], s["sample_rate"]
    if rate not in FORMATS:
        return {"unsupported": f"AudioFormat has no PCM format at {rate} Hz (no resampling in the SDK)"}
    pool = SpeechSynthesizerObjectPool(max_size=1, url=url)

    def once() -> int:
        cb = Callback()
        synth = pool.borrow_synthesizer(model=MODEL, voice=VOICE, format=FORMATS[rate], callback=cb)
        synth.call(LONG_TEXT)
        cb.done.wait(60)
        _settle(synth)
        pool.return_synthesizer(synth)
        return cb.bytes

    once()  # warm-up
    out = cpu_rounds_sync(once, rate, s["utterances"], s.get("rounds", 5))
    pool.shutdown()
    out["note"] = "SpeechSynthesizerObjectPool (pre-connected), callback mode"
    return out


def main() -> None:
    s = spec()
    fn = {"ttfa": ttfa, "interrupt": interrupt, "cpu": cpu, "llm": llm}[s["scenario"]]
    code = 0
    try:
        emit(fn(s))
    except Exception:
        traceback.print_exc()
        code = 1
    # The SDK leaves non-daemon threads (the object pool's reconnector) that would keep
    # the interpreter alive after an error: leave without waiting for them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
