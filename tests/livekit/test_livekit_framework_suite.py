"""LiveKit's own TTS test invariants, held by ``cosyvoice.TTS`` against the embedded server.

Ported from livekit/agents ``tests/test_tts.py`` (``_do_synthesis``,
``_do_stream``, the empty stream, the timeout and retry cases),
``test_tts_fallback.py`` and ``test_audio_emitter.py``. LiveKit runs them
against cloud providers behind toxiproxy; here the provider is the embedded
server and ``TcpProxy`` plays toxiproxy (``stall()`` is the ``timeout`` toxic
with ``timeout=0``: connections accepted, nothing gets through).

What is checked differently, and why:

* LiveKit checks the audio by transcribing it with Deepgram; the tests never
  leave loopback, so the tone engine's exact durations stand in (every word is
  250 ms of audio).
* Timing tolerances are LiveKit's shape (``timeout`` honoured, not the core's
  10 s default) with room for a shared CI machine: at least the timeout, at
  most the timeout plus 2 to 2.5 s.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from livekit.agents import APIConnectOptions, APITimeoutError, tts
from livekit_helpers import LIMIT, collect_metrics, run_stream, spoken_tasks, tone_duration
from reliability_support import TcpProxy, until

from cosyvoice_stream.server import EmbeddedServer, Fault

TEXT = "The quick brown fox jumps over the lazy dog."
WORDS = len(TEXT.split())


def collect_errors(engine: tts.TTS) -> list[tts.TTSError]:
    found: list[tts.TTSError] = []
    engine.on("error", found.append)
    return found


def tokens(text: str) -> list[str]:
    """LLM-style tokens (``fake_llm_stream``): words with their leading space, split in two."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        out.extend([piece[: len(piece) // 2], piece[len(piece) // 2 :]])
    return [t for t in out if t]


async def do_synthesis(
    engine: tts.TTS, text: str, conn_options: APIConnectOptions
) -> list[tts.SynthesizedAudio]:
    """``_do_synthesis`` of LiveKit's test_tts.py, minus the Deepgram transcription."""
    async with engine.synthesize(text, conn_options=conn_options) as stream:
        events = [event async for event in stream]

    request_ids = [event.request_id for event in events]
    assert all(request_ids), "expected all frames to have a request_id"
    unique = list(dict.fromkeys(request_ids))
    assert [rid for rid, _ in itertools.groupby(request_ids)] == unique, "attempts must not interleave"
    events = [event for event in events if event.request_id == unique[-1]]
    assert all(not event.is_final for event in events[:-1])
    assert 0 < events[-2].frame.duration < 0.25
    assert events[-1].is_final
    assert 0 < events[-1].frame.duration < 0.25
    for event in events:
        assert event.frame.sample_rate == engine.sample_rate
        assert event.frame.num_channels == engine.num_channels
    return events


async def do_stream(
    engine: tts.TTS, segments: list[str], conn_options: APIConnectOptions
) -> list[tts.SynthesizedAudio]:
    """``_do_stream`` of LiveKit's test_tts.py (tokens pushed, flush, end_input), minus Deepgram."""
    async with engine.stream(conn_options=conn_options) as stream:

        async def push() -> None:
            for text in segments:
                for token in tokens(text):
                    stream.push_text(token)
                stream.flush()
            stream.end_input()

        pusher = asyncio.create_task(push())
        try:
            events = [event async for event in stream]
        finally:
            await pusher
    if not segments:
        assert not events
        return events
    request_id = events[0].request_id
    assert request_id and all(e.request_id == request_id for e in events)
    assert all(e.segment_id for e in events)
    by_segment: dict[str, list[tts.SynthesizedAudio]] = {}
    for e in events:
        by_segment.setdefault(e.segment_id, []).append(e)
    assert len(by_segment) == len(segments), "one segment_id per pushed text segment"
    for segment_events in by_segment.values():
        *non_final, final = segment_events
        assert final.is_final and not any(e.is_final for e in non_final)
        assert 0 < final.frame.duration < 0.25
        assert all(0 < e.frame.duration < 0.25 for e in non_final)
    return events


# -- test_tts_synthesize / test_tts_stream / test_tts_stream_empty --------------------------
async def test_synthesize(server: EmbeddedServer, make_tts) -> None:
    async with TcpProxy(server.port) as proxy:
        engine = make_tts(base_url=proxy.url())
        engine.prewarm()
        metrics = collect_metrics(engine)
        events = await asyncio.wait_for(
            do_synthesis(engine, TEXT, APIConnectOptions(max_retry=3, timeout=5)), 30
        )
        await engine.aclose()
    assert len(metrics) == 1
    assert sum(e.frame.duration for e in events) == pytest.approx(tone_duration(WORDS), abs=0.01)


async def test_stream(server: EmbeddedServer, make_tts) -> None:
    async with TcpProxy(server.port) as proxy:
        engine = make_tts(base_url=proxy.url())
        engine.prewarm()
        metrics = collect_metrics(engine)
        events = await asyncio.wait_for(
            do_stream(engine, [TEXT], APIConnectOptions(max_retry=3, timeout=5)), 30
        )
        await engine.aclose()
    assert len(metrics) == 1  # _mark_started() was called: metrics are emitted for streams
    assert sum(e.frame.duration for e in events) == pytest.approx(tone_duration(WORDS), abs=0.01)
    (task,) = spoken_tasks(server)
    assert "".join(task.texts) == TEXT


async def test_stream_empty(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts()
    errors = collect_errors(engine)
    await asyncio.wait_for(do_stream(engine, [], APIConnectOptions(max_retry=3, timeout=5)), 30)
    assert not errors and not spoken_tasks(server)


# -- test_tts_synthesize_timeout / test_tts_stream_timeout -----------------------------------
async def _timeout_case(engine: tts.TTS, run) -> None:  # type: ignore[no-untyped-def]
    """LiveKit's two timeout checks against a server that never answers."""
    errors = collect_errors(engine)
    metrics = collect_metrics(engine)

    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        await asyncio.wait_for(run(APIConnectOptions(max_retry=0, timeout=1.0)), LIMIT)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed <= 3.0, f"expected the 1 s timeout, got {elapsed:.2f} s"
    assert [e.recoverable for e in errors] == [False]

    errors.clear()
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        await asyncio.wait_for(run(APIConnectOptions(max_retry=3, timeout=0.5, retry_interval=0.0)), LIMIT)
    elapsed = time.monotonic() - started
    # Four attempts of 0.5 s, plus LiveKit's fixed 0.1 s before the first retry.
    assert 2.0 <= elapsed <= 4.5, f"expected ~2.1 s for four attempts, got {elapsed:.2f} s"
    assert [e.recoverable for e in errors] == [True, True, True, False]
    assert all(isinstance(e.error, APITimeoutError) and e.error.retryable for e in errors)
    assert not metrics


async def test_synthesize_timeout(server: EmbeddedServer, make_tts) -> None:
    async with TcpProxy(server.port) as proxy:
        proxy.stall()  # nothing gets through in either direction
        engine = make_tts(base_url=proxy.url())
        await _timeout_case(engine, lambda options: do_synthesis(engine, TEXT, options))
        await engine.aclose()


async def test_stream_timeout(server: EmbeddedServer, make_tts) -> None:
    async with TcpProxy(server.port) as proxy:
        proxy.stall()  # nothing gets through in either direction
        engine = make_tts(base_url=proxy.url())
        await _timeout_case(engine, lambda options: do_stream(engine, [TEXT], options))
        await engine.aclose()


async def test_timeout_bounds_the_wait_for_task_started(server: EmbeddedServer, make_tts) -> None:
    """Connected, but the server never starts the task: ``timeout``, not the core's 10 s ``start``."""
    engine = make_tts(prestart=False)
    server.add_fault(Fault("stall", stage="before_started", seconds=8.0))
    started = time.monotonic()
    with pytest.raises(APITimeoutError, match="the task to start"):
        await run_stream(engine, [TEXT], conn_options=APIConnectOptions(max_retry=0, timeout=1.0))
    assert 1.0 <= time.monotonic() - started <= 3.0


async def test_timeout_does_not_bound_waiting_for_the_llm(server: EmbeddedServer, make_tts) -> None:
    """Silence while more text may come is not a wait for the server (``timeouts.text`` bounds it)."""
    engine = make_tts()
    errors = collect_errors(engine)
    options = APIConnectOptions(max_retry=0, timeout=0.3)
    async with engine.stream(conn_options=options) as stream:
        stream.push_text("A slow")
        await asyncio.sleep(0.8)  # the scenario: an LLM slower than the timeout between tokens
        stream.push_text(" model.")
        stream.end_input()
        events = await asyncio.wait_for(_collect(stream), LIMIT)
    assert not errors
    assert sum(e.frame.duration for e in events) == pytest.approx(tone_duration(3), abs=0.01)


async def _collect(stream: tts.SynthesizeStream) -> list[tts.SynthesizedAudio]:
    return [event async for event in stream]


# -- TTSMetrics.acquire_time ------------------------------------------------------------------
async def test_acquire_time_is_the_whole_wait_for_a_connection(server: EmbeddedServer, make_tts) -> None:
    """The stream waits for the connection ``prewarm()`` is opening: that wait is its acquire time.

    The pool hands it that connection with its task already started, so the
    handshake is not the stream's; reporting only the handshake (as before)
    said 0.0 here.
    """
    held = 0.5
    async with TcpProxy(server.port) as proxy:
        engine = make_tts(base_url=proxy.url())
        metrics = collect_metrics(engine)
        proxy.stall()
        engine.prewarm()
        await until(lambda: len(proxy.links) >= 1, LIMIT, "the proxy accepted prewarm's connection")
        async with engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0)) as stream:
            stream.push_text("Waiting for the line.")
            stream.end_input()
            await asyncio.sleep(held)  # the network holds the handshake this long
            proxy.resume()
            await asyncio.wait_for(_collect(stream), LIMIT)
        await engine.aclose()
    (m,) = metrics
    assert m.connection_reused  # prewarm's connection (with its task started), not one of its own
    assert m.acquire_time >= held * 0.8  # the stream started within a loop turn of its creation


# -- livekit-agents 1.8.9: text after flush() -------------------------------------------------
async def test_text_after_flush_is_dropped_by_the_framework(server: EmbeddedServer, make_tts) -> None:
    """docs/livekit.md: one stream serves one segment; the base class drops later text."""
    engine = make_tts()
    out = await run_stream(engine, ["One two.", None, "Three four."])
    (task,) = spoken_tasks(server)
    assert "".join(task.texts) == "One two."
    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)


# -- test_tts_fallback.py -------------------------------------------------------------------
async def test_fallback_adapter_moves_on_after_the_timeout(server: EmbeddedServer, make_tts) -> None:
    async with TcpProxy(server.port) as proxy:
        proxy.stall()  # nothing gets through in either direction
        dead = make_tts(base_url=proxy.url(), prestart=False)
        alive = make_tts()
        fallback = tts.FallbackAdapter([dead, alive], max_retry_per_tts=0)
        availability: list[tuple[tts.TTS, bool]] = []
        fallback.on("tts_availability_changed", lambda ev: availability.append((ev.tts, ev.available)))
        started = time.monotonic()
        async with fallback.synthesize(
            TEXT, conn_options=APIConnectOptions(max_retry=0, timeout=1.0)
        ) as stream:
            events = await asyncio.wait_for(_collect_chunked(stream), LIMIT)
        elapsed = time.monotonic() - started
        await fallback.aclose()
        await dead.aclose()
    assert (dead, False) in availability
    assert sum(e.frame.duration for e in events) == pytest.approx(tone_duration(WORDS), abs=0.02)
    assert elapsed <= 1.0 + 3.0, f"the dead provider held the fallback for {elapsed:.2f} s"


async def _collect_chunked(stream: tts.ChunkedStream) -> list[tts.SynthesizedAudio]:
    return [event async for event in stream]


# -- test_audio_emitter.py ------------------------------------------------------------------
async def test_emitter_invariants_transcripts_and_duration(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts()
    out = await run_stream(engine, tokens(TEXT))
    assert "".join(out.transcripts) == TEXT  # every timed piece preserved, in order
    starts = [t.start_time for t in out.transcripts]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert [e.is_final for e in out.events].count(True) == 1 and out.events[-1].is_final
    assert out.duration == pytest.approx(tone_duration(WORDS), abs=0.01)  # pushed duration is accurate
