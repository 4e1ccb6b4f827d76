"""Failures, LiveKit's retries, and interruption, against the embedded server.

Fault tests use ``prestart=False``: a fault is consumed by the next run-task,
and with prestart the next run-task may be a connection being primed for a
later stream rather than the stream under test.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from livekit.agents import APIConnectionError, APIError, APIStatusError, tts
from livekit_helpers import LIMIT, NO_RETRY, RETRY, run_stream, run_synthesize, spoken_tasks, tone_duration

from cosyvoice_stream.server import EmbeddedServer, Fault


def collect_errors(engine: tts.TTS) -> list[tts.TTSError]:
    found: list[tts.TTSError] = []
    engine.on("error", found.append)
    return found


async def test_drop_before_started_is_retried_by_the_framework(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts(prestart=False)
    errors = collect_errors(engine)
    server.add_fault(Fault(kind="drop", stage="before_started"))

    out = await run_stream(engine, ["Hello world."], conn_options=RETRY)

    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)
    assert [ev.is_final for ev in out.events].count(True) == 1
    (error,) = errors
    assert error.recoverable and isinstance(error.error, APIConnectionError) and error.error.retryable
    dropped, spoken = server.tasks[0], server.tasks[1]
    assert dropped.state == "aborted" and dropped.frames_sent == 0
    assert spoken.state == "finished" and "".join(spoken.texts) == "Hello world."


async def test_synthesize_is_retried_too(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts(prestart=False)
    errors = collect_errors(engine)
    server.add_fault(Fault(kind="drop", stage="before_started"))
    out = await run_synthesize(engine, "Hello world.", conn_options=RETRY)
    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)
    assert [e.recoverable for e in errors] == [True]
    assert [t.state for t in server.tasks] == ["aborted", "finished"]


async def test_bad_voice_is_not_retried(server: EmbeddedServer, make_tts) -> None:
    # A voice the client does not know, refused by the service with code 418.
    server.add_fault(
        Fault(kind="fail_task", code="InvalidParameter", message="[tts:]Engine return error code: 418")
    )
    engine = make_tts(prestart=False, voice="my-cloned-voice")
    errors = collect_errors(engine)

    with pytest.raises(APIStatusError) as info:
        await run_stream(engine, ["Hello world."], conn_options=RETRY)

    assert info.value.retryable is False and info.value.status_code == 400
    assert "418" in info.value.message
    (task,) = server.tasks  # one attempt, no retry
    assert task.state == "failed" and info.value.request_id == task.task_id
    assert [e.recoverable for e in errors] == [False]


async def test_rejected_text_is_not_retried(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts(prestart=False)
    server.add_fault(
        Fault(
            kind="fail_task",
            stage="audio",
            code="InvalidParameter",
            message="Please ensure input text is valid.",
        )
    )
    with pytest.raises(APIStatusError) as info:
        await run_stream(engine, ["Hello world."], conn_options=RETRY)
    assert info.value.retryable is False
    assert len(server.tasks) == 1


async def test_server_error_before_audio_is_retried(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts(prestart=False)
    server.add_fault(
        Fault(kind="fail_task", stage="before_started", code="InternalError", message="engine busy")
    )
    out = await run_stream(engine, ["Hello world."], conn_options=RETRY)
    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)
    assert [t.state for t in server.tasks] == ["failed", "finished"]


async def test_bad_key_is_not_retried_and_never_logged(
    start_server, make_tts, caplog: pytest.LogCaptureFixture
) -> None:
    guarded = await start_server(api_keys={"the-right-key"})
    secret = "sk-wrong-and-secret-0042"
    engine = make_tts(base_url=guarded.url, api_key=secret)
    errors = collect_errors(engine)

    with caplog.at_level(logging.DEBUG), pytest.raises(APIStatusError) as info:
        await run_stream(engine, ["Hello world."], conn_options=RETRY)

    assert info.value.retryable is False and info.value.status_code in (401, 403)
    assert guarded.connections_opened == 0 and guarded.tasks == []
    assert [e.recoverable for e in errors] == [False]
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)

    good = make_tts(base_url=guarded.url, api_key="the-right-key")
    out = await run_stream(good, ["Hello."])
    assert out.duration > 0


async def test_drop_after_audio_is_not_retried(server: EmbeddedServer, make_tts) -> None:
    """LiveKit never retries once audio reached the listener (it would repeat it)."""
    engine = make_tts(prestart=False)
    errors = collect_errors(engine)
    server.add_fault(Fault(kind="drop", stage="audio", after_frames=4))
    with pytest.raises(APIError) as info:
        await run_stream(engine, ["One two three four five six seven eight."], conn_options=RETRY)
    assert isinstance(info.value, APIConnectionError) and info.value.retryable  # retryable, yet not retried
    assert "ConnectionLostError" in str(info.value)
    (task,) = server.tasks
    assert task.state == "aborted" and task.frames_sent == 4
    assert [e.recoverable for e in errors] == [False]


async def test_closing_a_stream_mid_speech_cancels_the_task_and_keeps_the_pool_healthy(
    start_server, make_tts
) -> None:
    paced = await start_server(rtf=1.0)  # audio paced in real time, so speech is still running
    engine = make_tts(base_url=paced.url)
    metrics: list = []
    engine.on("metrics_collected", metrics.append)
    stream = engine.stream(conn_options=NO_RETRY)
    stream.push_text("one two three four five six seven eight nine ten eleven twelve.")
    stream.end_input()
    first = await asyncio.wait_for(stream.__anext__(), LIMIT)
    assert first.frame.duration > 0

    started = time.perf_counter()
    await stream.aclose()
    closed_in = time.perf_counter() - started

    assert closed_in < 0.1
    stats = engine.synthesizer.pool_stats
    assert stats.in_use == 0 and stats.discarded >= 1  # the busy connection was dropped, not pooled
    assert metrics == []  # no metrics for a segment that never completed

    # The next utterance works at once, on a fresh or warm connection, with its own audio only.
    out = await run_stream(engine, ["Next."], conn_options=NO_RETRY)
    # (+10 ms: with paced audio LiveKit may end the segment with a silent 10 ms marker frame)
    assert tone_duration(1) <= out.duration <= tone_duration(1) + 0.011
    interrupted, following = spoken_tasks(paced)
    assert interrupted.state == "aborted"
    assert interrupted.audio_bytes_sent < 24000 * 2 * tone_duration(12) / 2
    assert following.state == "finished"


async def test_closing_the_tts_ends_running_streams(server: EmbeddedServer, make_tts) -> None:
    engine = make_tts()
    stream = engine.stream(conn_options=NO_RETRY)
    stream.push_text("Never finished")
    await asyncio.wait_for(engine.aclose(), LIMIT)
    assert engine.synthesizer.pool_stats.in_use == 0
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(stream.__anext__(), LIMIT)
