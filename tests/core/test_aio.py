"""The asyncio client against the embedded server over real loopback sockets."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from cosyvoice_stream import (
    AsyncSynthesizer,
    AudioChunk,
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    InvalidParameterError,
    SSMLError,
    SynthesisComplete,
    Timeouts,
    VoiceModelMismatchError,
    WordTimestamps,
)
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig

TEXT = "Hello there. How are you today? 今天天气很好。"


def spoken_tasks(server) -> list:
    """Tasks that received text (prestart leaves started, unused tasks too)."""
    return [t for t in server.tasks if t.texts]


def tags_of(pcm: bytes) -> set[int]:
    samples = np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.int32))
    return set(np.unique(samples[samples > 0]).tolist())


async def collect(stream_or_iter, limit: float = 10.0) -> tuple[bytes, list, list]:
    audio, words, done = [], [], []

    async def run() -> None:
        async for event in stream_or_iter:
            if isinstance(event, AudioChunk):
                audio.append(event.audio)
            elif isinstance(event, WordTimestamps):
                words.extend(event.words)
            elif isinstance(event, SynthesisComplete):
                done.append(event.metrics)

    await asyncio.wait_for(run(), limit)
    return b"".join(audio), words, done


@pytest.fixture
async def server():
    async with EmbeddedServer(ServerConfig(engine="tone")) as srv:
        yield srv


def synth_for(server, **kwargs) -> AsyncSynthesizer:
    kwargs.setdefault("word_timestamp_enabled", True)
    return AsyncSynthesizer(url=server.url, **kwargs)


async def test_whole_text_audio_words_and_metrics(server) -> None:
    async with synth_for(server, sample_rate=24000) as synth:
        result = await asyncio.wait_for(synth.synthesize_audio(TEXT), 10)
    record = server.tasks[0]
    assert len(result.audio) == record.audio_bytes_sent
    assert tags_of(result.audio) == {record.tag}
    texts = [w.text for w in result.words]
    assert texts[:2] == ["Hello", "there."] or texts[:2] == ["Hello", "there"]
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert result.words[-1].end <= len(result.audio) / 48000 + 1e-6
    assert result.words[0].char_start == 0
    [metrics] = result.metrics
    assert metrics.request_uuid == record.request_uuid
    assert metrics.billable_characters == metrics.estimated_characters == 32 + 6 * 2 + 1
    assert metrics.time_to_first_audio is not None and metrics.time_to_first_audio >= 0
    assert metrics.audio_duration == pytest.approx(len(result.audio) / 48000)


async def test_streamed_fragments_reach_the_server_in_order(server) -> None:
    tokens = ["The ", "quick ", "brown", " fox. ", "It ", "jumps", "!"]
    async with synth_for(server) as synth:
        stream = synth.stream()
        for token in tokens:
            stream.push_text(token)
        await stream.finish()
        audio, words, done = await collect(stream)
    assert "".join(server.tasks[0].texts) == "".join(tokens)
    assert len(audio) == server.tasks[0].audio_bytes_sent
    assert [w.text.strip(".!") for w in words] == ["The", "quick", "brown", "fox", "It", "jumps"]
    assert len(done) == 1


@pytest.mark.parametrize(
    ("rate", "service_rate"), [(16000, 16000), (48000, 48000), (32000, 44100), (8000, 8000)]
)
async def test_any_output_rate(server, rate: int, service_rate: int) -> None:
    async with synth_for(server, sample_rate=rate) as synth:
        result = await asyncio.wait_for(synth.synthesize_audio("One two three four."), 10)
    record = server.tasks[0]
    assert record.parameters["sample_rate"] == service_rate
    expected = record.audio_bytes_sent / 2 * rate / service_rate
    assert abs(len(result.audio) / 2 - expected) <= 2
    assert len(result.audio) % 2 == 0
    assert result.metrics[0].resampled is (rate != service_rate)


async def test_connection_reused_and_next_task_prestarted(server) -> None:
    async with synth_for(server, keep_warm=0) as synth:
        for _ in range(3):
            await asyncio.wait_for(synth.synthesize_audio("Reuse me."), 10)
        stats = synth.pool_stats
    assert server.connections_opened == 1
    assert stats.reused == 2 and stats.primed_hits == 2
    assert [t.state for t in server.tasks[:3]] == ["finished"] * 3


async def test_prewarm_takes_connection_setup_off_the_first_utterance(server) -> None:
    async with synth_for(server, keep_warm=0) as synth:
        await asyncio.wait_for(synth.prewarm(), 5)
        assert server.connections_opened == 1
        result = await asyncio.wait_for(synth.synthesize_audio("Warm start."), 10)
    assert result.metrics[0].connection_reused
    assert server.connections_opened == 1


async def test_cancel_stops_delivery_at_once_and_next_utterance_is_clean() -> None:
    config = ServerConfig(engine="tone", rtf=1.0, chunk_ms=40)
    async with EmbeddedServer(config) as server, AsyncSynthesizer(url=server.url) as synth:
        first = synth.stream()
        first.push_text("one two three four five six seven eight nine ten eleven twelve.")
        await first.finish()
        iterator = first.__aiter__()
        chunk = await asyncio.wait_for(iterator.__anext__(), 5)
        assert chunk.audio
        await asyncio.wait_for(first.cancel(), 2)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(iterator.__anext__(), 2)
        second = synth.stream()
        second.push_text("Next.")
        await second.finish()
        audio, _, done = await collect(second)
        by_id = {t.task_id: t for t in server.tasks}
        first_tag, second_tag = server.tasks[0].tag, by_id[done[0].task_id].tag
        assert tags_of(audio) == {second_tag} and first_tag != second_tag
        assert done[0].connection_reused  # a primed spare took over: no handshake, no run-task wait
        assert server.tasks[0].audio_bytes_sent < 12 * 250 * 48  # the first task never finished sending


async def test_cancel_from_another_task_ends_a_blocked_iteration() -> None:
    config = ServerConfig(engine="tone", rtf=1.0, chunk_ms=40)
    async with EmbeddedServer(config) as server, AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        stream.push_text("A sentence that is still being typed")  # no end: the server waits for more
        received: list[bytes] = []

        async def consume() -> None:
            async for event in stream:
                received.append(event.audio)

        consumer = asyncio.ensure_future(consume())
        await server.wait_until(lambda srv: any(t.texts for t in srv.tasks), 5)
        await asyncio.wait_for(stream.cancel(), 2)
        await asyncio.wait_for(consumer, 2)  # would hang if the blocked reader were not woken
        assert received == []


async def test_flush_keeps_one_task_and_words_continue(server) -> None:
    async with synth_for(server) as synth:
        stream = synth.stream()
        stream.push_text("First part without an end")
        stream.flush()
        stream.push_text(" and a second part.")
        await stream.finish()
        audio, words, done = await collect(stream)
    (task,) = spoken_tasks(server)
    assert len(done) == 1 and task.flushes == 1
    assert task.sentences == ["First part without an end", "and a second part."]
    assert tags_of(audio) == {task.tag}
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert words[5].start >= 5 * 0.25 - 1e-6  # the second unit's words follow the first's audio
    assert words[5].char_start == len("First part without an end") + 1


async def test_finish_without_text_is_quiet_and_keeps_the_task_warm(server) -> None:
    async with synth_for(server, keep_warm=0) as synth:
        stream = synth.stream()
        await stream.finish()
        audio, _, done = await collect(stream)
        assert audio == b"" and done == []
        result = await asyncio.wait_for(synth.synthesize_audio("Now speak."), 10)
    assert result.audio and server.connections_opened == 1
    assert server.tasks[0].texts == ["Now speak."]  # the unused started task served the next utterance


@pytest.mark.parametrize(
    ("placement", "origin", "legacy"),
    [
        ("sentence-end", "sentence", False),
        ("task-finished", "task", False),
        ("both", "sentence", False),
        ("sentence-end", "task", True),
    ],
)
async def test_word_times_monotonic_in_every_dialect(placement: str, origin: str, legacy: bool) -> None:
    config = ServerConfig(
        engine="tone", word_timestamps_in=placement, word_time_origin=origin, legacy_events=legacy
    )
    async with (
        EmbeddedServer(config) as server,
        AsyncSynthesizer(url=server.url, word_timestamp_enabled=True) as synth,
    ):
        result = await asyncio.wait_for(synth.synthesize_audio("One two. Three four. Five six."), 10)
    assert [w.text.strip(".") for w in result.words] == ["One", "two", "Three", "four", "Five", "six"]
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    # tone engine: every word lasts 250 ms including its gap
    assert starts == pytest.approx([i * 0.25 for i in range(6)], abs=0.01)


async def test_handshake_401_is_an_authentication_error_without_the_key() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", api_keys=frozenset({"right-key"}))) as server:
        synth = AsyncSynthesizer(url=server.url, api_key="sk-wrong-secret-123")
        assert "sk-wrong-secret-123" not in repr(synth)
        with pytest.raises(AuthenticationError) as info:
            await asyncio.wait_for(synth.synthesize_audio("Hi."), 5)
        assert not info.value.retryable
        assert "sk-wrong-secret-123" not in str(info.value)
        await synth.aclose()
        async with AsyncSynthesizer(url=server.url, api_key="right-key") as ok:
            assert (await asyncio.wait_for(ok.synthesize_audio("Hi."), 5)).audio


async def test_task_failed_maps_to_typed_error_and_pool_recovers(server) -> None:
    server.add_fault(
        Fault(kind="fail_task", code="InvalidParameter", message="[tts:]Engine return error code: 418")
    )
    async with synth_for(server) as synth:
        with pytest.raises(VoiceModelMismatchError) as info:
            await asyncio.wait_for(synth.synthesize_audio("Hi."), 5)
        assert not info.value.retryable
        assert (await asyncio.wait_for(synth.synthesize_audio("Again."), 5)).audio


async def test_dropped_connection_mid_audio_is_retryable_and_next_works() -> None:
    async with (
        EmbeddedServer(ServerConfig(engine="tone", chunk_ms=50)) as server,
        AsyncSynthesizer(url=server.url) as synth,
    ):
        server.add_fault(Fault(kind="drop", stage="audio", after_frames=2))
        with pytest.raises(ConnectionLostError) as info:
            await collect(synth.synthesize("one two three four five six."))
        assert info.value.retryable
        assert (await asyncio.wait_for(synth.synthesize_audio("Again."), 5)).audio


async def test_stalled_server_hits_the_client_timeout_quickly(server) -> None:
    server.add_fault(Fault(kind="stall", stage="before_started", seconds=5))
    async with synth_for(server, timeouts=Timeouts(start=0.3)) as synth:
        with pytest.raises(ClientTimeoutError, match="the task to start"):
            await asyncio.wait_for(synth.synthesize_audio("Hi."), 3)


async def test_ssml_only_on_whole_text(server) -> None:
    async with synth_for(server) as synth:
        result = await asyncio.wait_for(
            synth.synthesize_audio('<speak>Hi <break time="500ms"/> there</speak>'), 5
        )
        assert server.tasks[0].parameters.get("enable_ssml") is True
        assert len(result.audio) >= 0.5 * 48000
        stream = synth.stream()
        with pytest.raises(SSMLError):
            stream.push_text("<speak>no</speak>")
        await stream.cancel()


async def test_bad_input_fails_early_and_clearly(server) -> None:
    async with synth_for(server) as synth:
        with pytest.raises(InvalidParameterError, match="empty"):
            await collect(synth.synthesize("   "))
        stream = synth.stream()
        with pytest.raises(InvalidParameterError, match="invalid character"):
            stream.push_text("bad \x00 text")
        await stream.finish()
        with pytest.raises(InvalidParameterError, match="after finish"):
            stream.push_text("late")
    with pytest.raises(InvalidParameterError, match="ws://"):
        AsyncSynthesizer(url="ws://example.com/api-ws/v1/inference", api_key="k")
    with pytest.raises(InvalidParameterError, match="api_key"):
        AsyncSynthesizer(url=server.url, api_key="bad\r\nInjected: 1")
    with pytest.raises(AuthenticationError, match="DASHSCOPE_API_KEY"):
        AsyncSynthesizer()


async def test_key_never_logged(server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-very-secret-key-0001"
    async with AsyncSynthesizer(url=server.url, api_key=secret) as synth:
        await asyncio.wait_for(synth.synthesize_audio("Log everything."), 5)
    assert caplog.records
    assert secret not in caplog.text


async def test_concurrent_streams_each_get_their_own_audio(server) -> None:
    async with synth_for(server) as synth:
        results = await asyncio.wait_for(
            asyncio.gather(*(synth.synthesize_audio(f"Stream number {i}.") for i in range(8))), 15
        )
    by_task = {t.task_id: t for t in server.tasks}
    for result in results:
        record = by_task[result.metrics[0].task_id]
        assert tags_of(result.audio) == {record.tag}
        assert len(result.audio) == record.audio_bytes_sent


async def test_finish_switches_the_deadline_to_first_audio(server) -> None:
    # The text deadline is long; once finish() is called, the first-audio one applies at once.
    server.add_fault(Fault(kind="stall", stage="audio", seconds=5))
    async with synth_for(server, timeouts=Timeouts(text=30, first_audio=0.3)) as synth:
        stream = synth.stream()
        stream.push_text("Words without an end")
        await server.wait_until(lambda srv: any(t.texts for t in srv.tasks), 5)
        started = asyncio.get_running_loop().time()
        await stream.finish()
        with pytest.raises(ClientTimeoutError, match="the first audio"):
            await collect(stream, limit=3)
        assert asyncio.get_running_loop().time() - started < 2
